package b2bua

import (
	"fmt"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// TestReinviteRightAfter200: an agent that re-INVITEs (hold, resume, …)
// as soon as it has sent the ACK of its last re-INVITE's 200 gets 200,
// not 491: that re-INVITE is answered (RFC 3261 §14.2 allows the next
// once the 200 is sent), however soon the next one comes.
func TestReinviteRightAfter200(t *testing.T) {
	h := startHuntFlow(t, "{endpoint: pbx, user: \"1\"}", "")
	inv, ok, b := h.answeredBy(h.pbx, "a")
	reinvite := func(cseq int, dir string) *sip.Request {
		raw := fmt.Sprintf("INVITE %s SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP %s;branch=%s\r\n"+
			"From: <%s>;tag=a\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d INVITE\r\nMax-Forwards: 70\r\n"+
			"Contact: <sip:%s>\r\nContent-Type: application/sdp\r\n",
			b.Contact().Address.String(), h.pbx.addr(), sip.GenerateBranch(),
			b.To().Address.String(), b.From().Value(), callIDOf(b), cseq, h.pbx.addr())
		body := testSDP + "a=" + dir + "\r\n"
		return parseReq(t, raw+fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body))
	}
	h.pbx.send(h.addr, reinvite(2, "sendonly"))
	for i := range 40 {
		cseq := 2 + i
		res := h.pbx.next("the re-INVITE's final response")
		r, isRes := res.(*sip.Response)
		if !isRes || r.StatusCode != 200 {
			t.Fatalf("re-INVITE %d answered %q, want 200", i, startLine(res))
		}
		// The ACK and the next re-INVITE at once, as a phone that holds
		// and resumes at once does.
		h.pbx.send(h.addr, fromCallee(t, h.pbx, b, "a", sip.ACK, cseq))
		dir := "sendrecv"
		if i%2 == 1 {
			dir = "sendonly"
		}
		h.pbx.send(h.addr, reinvite(cseq+1, dir))
	}
	_ = h.pbx.next("the last re-INVITE's final response")
	h.pbx.send(h.addr, fromCallee(t, h.pbx, b, "a", sip.ACK, 42))
	h.hangUp(inv, ok, h.pbx)
}
