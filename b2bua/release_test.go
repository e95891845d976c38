package b2bua

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// nextAgain returns the next message other than a 100, retransmissions
// included (next skips those).
func (p *peer) nextAgain(what string) sip.Message {
	p.t.Helper()
	for {
		select {
		case m, ok := <-p.in:
			if !ok {
				p.t.Fatalf("%s: socket closed", what)
			}
			if r, isRes := m.(*sip.Response); isRes && r.StatusCode == 100 {
				continue
			}
			return m
		case <-time.After(5 * time.Second):
			p.t.Fatalf("waiting for %s: nothing arrived", what)
		}
	}
}

// TestFlowRetransmissionsAfterRelease: what a call empties once done
// with it (release.go: B's INVITE and 2xx, wagate's 2xx to A, the BYE) is
// not needed for the retransmissions that can still come. B's 2xx again
// gets the same ACK again; Meta's INVITE again, during the call and
// after it, starts nothing; Meta's BYE again gets its 200 again and
// reaches the PBX once.
func TestFlowRetransmissionsAfterRelease(t *testing.T) {
	f := startFlow(t, "", "", "")
	inv := metaUICInvite(f)
	f.meta.send(f.addr, inv)
	b := f.pbx.request(sip.INVITE)
	f.pbx.reply(b, 200, "OK", "p1", answerWithSDP(f.pbx.addr()))
	ack := f.pbx.request(sip.ACK)
	ok := f.meta.response(200)
	f.meta.send(f.addr, ackFor(inv, ok))
	time.Sleep(100 * time.Millisecond) // the answer is handled and released

	f.pbx.reply(b, 200, "OK", "p1", answerWithSDP(f.pbx.addr()))
	m := f.pbx.nextAgain("the ACK again")
	again, isReq := m.(*sip.Request)
	if !isReq || again.Method != sip.ACK || callIDOf(again) != callIDOf(ack) ||
		again.CSeq().SeqNo != ack.CSeq().SeqNo || again.Via().Value() != ack.Via().Value() {
		t.Fatalf("for B's 2xx again got:\n%s\nwant the ACK again:\n%s", m, ack)
	}

	f.meta.send(f.addr, inv) // during the call
	bye := byeFor(inv, ok, 2)
	f.meta.send(f.addr, bye)
	first := f.meta.response(200)
	pbye := f.pbx.request(sip.BYE)
	f.pbx.reply(pbye, 200, "OK", "", nil)
	time.Sleep(100 * time.Millisecond)

	f.meta.send(f.addr, bye)
	m = f.meta.nextAgain("the BYE's 200 again")
	res, isRes := m.(*sip.Response)
	if !isRes || res.StatusCode != 200 || res.CSeq().MethodName != sip.BYE || res.String() != first.String() {
		t.Fatalf("for the BYE again got:\n%s\nwant its 200 again:\n%s", m, first)
	}
	f.meta.send(f.addr, inv) // after the call
	f.pbx.silent(300 * time.Millisecond)
}
