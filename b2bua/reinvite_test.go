package b2bua

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/media"
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

// refusingBridge refuses every re-offer that carries a=x-refuse, as the
// media layer refuses a malformed one.
type refusingBridge struct{ fakeBridge }

func (b refusingBridge) AcceptOffer(s media.Side, offer []byte) ([]byte, media.StreamState, error) {
	if strings.Contains(string(offer), "a=x-refuse") {
		return nil, media.StreamState{}, fmt.Errorf("media: re-offer: %w: line 7: refused by the test", media.ErrBadSDP)
	}
	return b.fakeBridge.AcceptOffer(s, offer)
}

// TestReinviteRightAfter488: an agent whose re-INVITE was refused (488,
// a malformed offer) and that sends its next one as soon as it has sent
// the 488's ACK gets that one answered, not 491: the refused one is over
// once its final response is sent (RFC 3261 §14.2), however soon the
// next comes. Before, the call took re-INVITEs again only after the 488
// had gone out, and a quick peer could get 491 for a valid offer.
func TestReinviteRightAfter488(t *testing.T) {
	h := startHuntFlowBridges(t, "{endpoint: pbx, user: \"1\"}", "", "",
		func(string, *slog.Logger, media.LegConfig, media.LegConfig) (Bridge, error) {
			return refusingBridge{}, nil
		})
	inv, ok, b := h.answeredBy(h.pbx, "a")
	reinvite := func(cseq int, attr string) *sip.Request {
		raw := fmt.Sprintf("INVITE %s SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP %s;branch=%s\r\n"+
			"From: <%s>;tag=a\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d INVITE\r\nMax-Forwards: 70\r\n"+
			"Contact: <sip:%s>\r\nContent-Type: application/sdp\r\n",
			b.Contact().Address.String(), h.pbx.addr(), sip.GenerateBranch(),
			b.To().Address.String(), b.From().Value(), callIDOf(b), cseq, h.pbx.addr())
		body := testSDP + "a=" + attr + "\r\n"
		return parseReq(t, raw+fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body))
	}
	h.pbx.send(h.addr, reinvite(2, "x-refuse"))
	for i := range 40 {
		cseq := 2 + i
		want, next := 488, "sendrecv"
		if i%2 == 1 {
			want, next = 200, "x-refuse"
		}
		res := h.pbx.next("the re-INVITE's final response")
		r, isRes := res.(*sip.Response)
		if !isRes || r.StatusCode != want {
			t.Fatalf("re-INVITE %d answered %q, want %d", i, startLine(res), want)
		}
		// The ACK and the next re-INVITE at once.
		h.pbx.send(h.addr, fromCallee(t, h.pbx, b, "a", sip.ACK, cseq))
		h.pbx.send(h.addr, reinvite(cseq+1, next))
	}
	_ = h.pbx.next("the last re-INVITE's final response")
	h.pbx.send(h.addr, fromCallee(t, h.pbx, b, "a", sip.ACK, 42))
	h.hangUp(inv, ok, h.pbx)
}
