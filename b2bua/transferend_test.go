package b2bua

import (
	"strings"
	"sync"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// orderSink records the order of call.transferred and call.ended.
type orderSink struct {
	mu  sync.Mutex
	got []string
}

func (o *orderSink) add(s string) {
	o.mu.Lock()
	o.got = append(o.got, s)
	o.mu.Unlock()
}

func (o *orderSink) take() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := strings.Join(o.got, " ")
	o.got = nil
	return s
}

// TestTransferCallerHangsUpWhileTargetRings: the caller hangs up while
// the target of its transfer rings. The transfer, failed (487), is in
// the call's record and its call.transferred comes before call.ended:
// the record is written as the call ends, and the transfer must not be
// left out because its goroutine saw the end a moment later
// (docs/events.md: every transfer is an entry of the CDR's transfers).
func TestTransferCallerHangsUpWhileTargetRings(t *testing.T) {
	h := startHuntFlow(t, "{endpoint: pbx, user: \"1\"}", "")
	order := h.cdrs.order
	order.take()
	for i := range 5 {
		inv, ok, b := h.answeredBy(h.pbx, "a")
		if _, err := h.srv.Transfer(h.callWithB(callIDOf(b)), Target{Endpoint: "pbx2", User: "2"}); err != nil {
			t.Fatal(err)
		}
		x := h.pbx2.request(sip.INVITE)
		h.pbx2.reply(x, 180, "Ringing", "c", nil)
		h.hangUp(inv, ok, h.pbx) // the transferring agent gets BYE
		cancel := h.pbx2.request(sip.CANCEL)
		h.pbx2.reply(cancel, 200, "OK", "", nil)
		h.pbx2.reply(x, 487, "Request Terminated", "c", nil)
		h.pbx2.request(sip.ACK)
		cdr := h.cdrs.next(t)
		if len(cdr.Transfers) != 1 || cdr.Transfers[0].Connected || cdr.Transfers[0].SIPCode != 487 || cdr.Transfers[0].Target != "2@pbx2" {
			t.Fatalf("call %d: CDR transfers %+v, want the transfer to 2@pbx2, failed 487", i, cdr.Transfers)
		}
		if got := order.take(); got != "transferred ended" {
			t.Fatalf("call %d: events %q, want call.transferred once, then call.ended", i, got)
		}
	}
}
