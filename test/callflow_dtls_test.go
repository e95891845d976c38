package test

import (
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
)

// TestCallFlowDTLS: a call-flow number whose WhatsApp side is keyed with
// DTLS-SRTP and ICE, as Meta does by default. wagate answers Meta's
// DTLS offer itself (fingerprint, ICE credentials, setup:active), the
// caller hears the flow's 1 kHz file once keyed, and its keys reach the
// service, whose next flow hangs up.
func TestCallFlowDTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var fs *flowService
	fs = newFlowService(t, e, func(r flowReq) flowReply {
		if r.Capture != nil {
			return flowReply{Body: flowJSON("bye", action("hangup", nil))}
		}
		return flowReply{Body: flowJSON("menu",
			action("playFile", map[string]any{"fileUrl": fs.fileURL("tone1k.wav", toneWAV(1000, 8000, time.Second))}),
			action("sayAndCapture", map[string]any{"promptMessage": "Two digits, please.", "minDigits": 2, "maxDigits": 2}))}
	})
	w := e.startWagate(dtlsOpts(wagateOpts{Route: fs.route("3s", "Sorry.")}))
	meta := newGoPeer(t, e.Meta, metapeer.Config{DTLS: true, KeepFrames: true})

	c := flowCall(t, w, meta)
	ans := string(c.Remote)
	for _, want := range []string{" UDP/TLS/RTP/SAVPF ", "a=setup:active", "a=fingerprint:sha-256 ", "a=ice-ufrag:", "a=rtcp-mux"} {
		if !strings.Contains(ans, want) {
			t.Errorf("wagate's own answer to Meta's DTLS offer lacks %q:\n%s", want, ans)
		}
	}
	waitKeyed(t, c, "call flow")
	h := waitHeard(t, c, "the flow's 1 kHz file, then the question", flowLimit, func(h heard) bool {
		_, end := h.toneFrames(0, 1000, 25)
		return end > 0 && end+10 < len(h.frames)
	})
	s1, e1 := h.toneFrames(0, 1000, 25)
	t.Logf("file start latency (200 OK to the first frame of the 1 kHz file, webhook, fetch and DTLS handshake included): %v", h.frames[s1].At.Sub(c.Dialog.AnsweredAt).Round(time.Millisecond))
	if first := h.frames[s1].At.Sub(c.Dialog.AnsweredAt); first > time.Second {
		t.Errorf("the file started %v after the 200 OK", first)
	}
	checkTone(t, "the flow's 1 kHz file over DTLS-SRTP", h.pcmOf(s1, e1), 48000, 1000, 800*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	sendDigits(t, c, "42")
	start := fs.wait(t, "start", "", 1)
	d := fs.wait(t, "digits", start.CallID, 1)
	if d.Capture == nil || d.Capture.Digits != "42" || d.Capture.Status != "success" {
		t.Errorf("capture over DTLS: %+v, want 42 success", d.Capture)
	}
	waitBye(t, c, "the caller (hangup action)")
	fs.checkSigned(t)
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}
