package test

import (
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/rtppeer"
)

// TestCallFlowInbandDTMF: a call-flow number whose WhatsApp side allows
// only G.711 (Meta's additional_codecs offer, DTLS-SRTP) is answered in
// G.711, and the caller enters its keys as in-band tones, not RFC 4733
// events: wagate's detector takes them, and the service receives them
// and runs its next flow. Once with PCMU and no telephone-event offered,
// once with PCMA and telephone-event offered but never used. Tones are
// 70 ms on, 80 ms off, each frequency at -16 dBFS.
func TestCallFlowInbandDTMF(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, codecs, want string
		eventPT            uint8
		event              bool
	}{
		{"PCMU without telephone-event", "PCMU, PCMA", "PCMU", 255, false},
		{"PCMA, telephone-event unused", "PCMA", "PCMA", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			fs := newFlowService(t, e, func(r flowReq) flowReply {
				if r.Capture != nil {
					return flowReply{Body: flowJSON("bye", action("hangup", nil))}
				}
				return flowReply{Body: flowJSON("pin",
					action("sayAndCapture", map[string]any{"promptMessage": "Enter your PIN, then press hash.",
						"minDigits": 4, "maxDigits": 8, "completeOnHash": true, "digitTimeout": 4000}))}
			})
			w := e.startWagate(dtlsOpts(wagateOpts{MetaCodecs: tc.codecs, Route: fs.route("3s", "Sorry.")}))
			meta := newGoPeer(t, e.Meta, metapeer.Config{DTLS: true, OfferG711: true, EventPT: tc.eventPT, KeepFrames: true})
			c := flowCall(t, w, meta)
			if got := c.Codec().Name; got != tc.want {
				t.Fatalf("the caller's leg uses %s, want %s; wagate's answer:\n%s", got, tc.want, c.Remote)
			}
			if got := strings.Contains(string(c.Remote), "telephone-event"); got != tc.event {
				t.Fatalf("telephone-event in wagate's answer: %v, want %v:\n%s", got, tc.event, c.Remote)
			}
			waitKeyed(t, c, tc.name)
			start := fs.wait(t, "start", "", 1)
			// Keys as the question plays: they barge in. The capture is
			// armed when the question starts; a loaded machine may take
			// longer than usual to render it, and a key pressed before
			// then is not a barge-in.
			c.Media.ResetRecording()
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				if loudest(c.Media.Recording(), 8000) > -40 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the question was never heard")
				}
			}
			time.Sleep(200 * time.Millisecond)
			keys := &rtppeer.DTMFTones{Digits: "2580#", On: 560, Off: 640, Amp: 32767 * 0.158, Rate: 8000}
			c.Media.SetSource(keys)
			for deadline := time.Now().Add(5 * time.Second); !keys.Done() && time.Now().Before(deadline); {
				time.Sleep(20 * time.Millisecond)
			}
			c.Media.SetSource(nil)
			d := fs.wait(t, "digits", start.CallID, 1)
			if d.Capture == nil || *d.Capture != (flowCapture{Digits: "2580", Status: "success", Tries: 1}) {
				t.Errorf("in-band capture: %+v, want 2580 success in 1 try", d.Capture)
			}
			waitBye(t, c, "the caller (hangup action)")
			fs.checkSigned(t)
			s := w.waitIdle()
			w.expectCounts(s, 1, 1)
		})
	}
}
