package test

import (
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// cancelTimeout is 64·T1, the longest a B-leg may take to end its INVITE
// after wagate cancels it, plus slack for a loaded -race run.
const cancelTimeout = 32*time.Second + 8*time.Second

// TestCancelWithoutFinalResponse: a PBX that answers wagate's CANCEL with
// 200 but never sends 487 for the INVITE, or never answers the CANCEL at
// all, must not hold the call. Within 64·T1 of the CANCEL the call is gone
// from /v1/status with all its RTP ports, and its end is logged with a
// reason.
func TestCancelWithoutFinalResponse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		answerCancel bool
	}{
		{"200 to CANCEL, no 487", true},
		{"CANCEL never answered", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			w := e.startWagate(wagateOpts{})
			pbx := startStuckUAS(t, e.PBX.Addr(), tc.answerCancel)

			e.runSipp(sippSpec{Name: "meta", Scenario: "uac_cancel.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1,
				Args: callArgs(businessNumber, waUser)})
			select {
			case <-pbx.cancelled:
			case <-time.After(peerCallLimit):
				t.Fatalf("the PBX got no CANCEL from wagate within %v of the caller's", peerCallLimit)
			}
			if s := w.status(); s.Calls != 1 {
				t.Fatalf("calls = %d right after the CANCEL, want the call still waiting for the PBX", s.Calls)
			}

			deadline := time.Now().Add(cancelTimeout)
			for {
				s := w.status()
				if s.Calls == 0 && s.PortsInUse == 0 {
					w.expectCounts(s, 1, 1)
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after %v: calls=%d ports_in_use=%d; the cancelled call leaked", cancelTimeout, s.Calls, s.PortsInUse)
				}
				time.Sleep(250 * time.Millisecond)
			}
			// The call leaves the status API as it ends; its end line may
			// reach the log a moment later on a loaded machine.
			for logged := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
				log, _ := os.ReadFile(w.logPath)
				if strings.Contains(string(log), "b-leg never ended its INVITE") {
					break
				}
				if time.Now().After(logged) {
					t.Errorf("the call's end is not logged with its reason (\"b-leg never ended its INVITE\") 5 s after it left /v1/status")
					break
				}
			}
		})
	}
}

// stuckUAS is a PBX that rings, then mishandles the CANCEL.
type stuckUAS struct {
	cancelled chan struct{}
}

// startStuckUAS answers the first INVITE at addr with 180 and its CANCEL
// with 200 (answerCancel) or nothing; it never sends a final response to
// the INVITE.
func startStuckUAS(t *testing.T, addr string, answerCancel bool) *stuckUAS {
	t.Helper()
	u := &stuckUAS{cancelled: make(chan struct{})}
	var gotCancel bool
	startRawUAS(t, addr, func(msg string, reply func(string)) {
		switch {
		case strings.HasPrefix(msg, "INVITE "):
			reply(echoResponse(msg, "180 Ringing", "pbx-tag"))
		case strings.HasPrefix(msg, "CANCEL "):
			if !gotCancel {
				gotCancel = true
				close(u.cancelled)
			}
			if answerCancel {
				reply(echoResponse(msg, "200 OK", "pbx-tag"))
			}
		}
	})
	return u
}

// startRawUAS serves UDP at addr until the test ends, calling handle (in
// one goroutine) with each datagram and a function that answers its
// sender.
func startRawUAS(t *testing.T, addr string, handle func(msg string, reply func(string))) {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenUDP("udp4", ua)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { c.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			handle(string(buf[:n]), func(res string) { _, _ = c.WriteToUDP([]byte(res), from) })
		}
	}()
}

// echoResponse is a response to the raw request msg with its Via, From,
// To (with tag), Call-ID and CSeq.
func echoResponse(msg, status, tag string) string {
	var b strings.Builder
	b.WriteString("SIP/2.0 " + status + "\r\n")
	for _, l := range strings.Split(msg, "\r\n") {
		if l == "" {
			break
		}
		name, _, _ := strings.Cut(l, ":")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "via", "v", "from", "f", "call-id", "i", "cseq":
			b.WriteString(l + "\r\n")
		case "to", "t":
			b.WriteString(l + ";tag=" + tag + "\r\n")
		}
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.String()
}
