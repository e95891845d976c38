package b2bua

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// TestTransferParallelList: a transfer to a parallel hunt list rings its
// targets at once, as a parallel hunt does: the first 2xx wins, the
// other target gets CANCEL, the transferring agent its BYE; the record
// names the winner, and the transfer's INVITEs are not the call's
// attempts.
func TestTransferParallelList(t *testing.T) {
	h := startHuntFlow(t, `{endpoint: pbx, user: "1"}`,
		`  - {name: all, strategy: parallel, targets: [{endpoint: pbx2, user: "2", ring_timeout: 10s}, {endpoint: pbx3, user: "3", ring_timeout: 10s}]}`)
	inv, ok, b := h.answeredBy(h.pbx, "a")
	h.wantBusy("1@pbx", true) // a route to one extension has an agent too
	if _, err := h.srv.Transfer(h.callWithB(callIDOf(b)), Target{Hunt: "all"}); err != nil {
		t.Fatal(err)
	}
	// Both ring before either answers (one at a time, pbx3 would ring
	// only after pbx2's 10 s).
	x2 := h.pbx2.request(sip.INVITE)
	x3 := h.pbx3.request(sip.INVITE)
	if callIDOf(x2) == callIDOf(x3) || header(x2, "X-WABA-Session") == "" || header(x2, "X-WABA-Session") != header(x3, "X-WABA-Session") {
		t.Errorf("targets' INVITEs: Call-IDs %s and %s, X-WABA-Session %q and %q; want their own Call-IDs and the call's session",
			callIDOf(x2), callIDOf(x3), header(x2, "X-WABA-Session"), header(x3, "X-WABA-Session"))
	}
	// The live view shows both targets ringing, beside the agent's leg.
	calls := h.srv.Calls()
	var ringing []string
	for _, r := range calls[0].Ringing {
		ringing = append(ringing, r.Leg+":"+r.User+"@"+r.Endpoint+":"+r.SIPCallID)
	}
	if got, want := strings.Join(ringing, " "), "transfer:2@pbx2:"+callIDOf(x2)+" transfer:3@pbx3:"+callIDOf(x3); got != want || calls[0].B.SIPCallID != callIDOf(b) {
		t.Errorf("live view: ringing %s, b %s; want %s and the agent's %s", got, calls[0].B.SIPCallID, want, callIDOf(b))
	}
	h.pbx2.reply(x2, 180, "Ringing", "r2", nil)
	h.pbx3.reply(x3, 180, "Ringing", "r3", nil)
	h.answer(h.pbx3, x3, "r3")
	cancel := h.pbx2.request(sip.CANCEL)
	if callIDOf(cancel) != callIDOf(x2) {
		t.Fatalf("CANCEL for %s, want the losing target's %s", callIDOf(cancel), callIDOf(x2))
	}
	h.pbx2.reply(cancel, 200, "OK", "r2", nil)
	h.pbx2.reply(x2, 487, "Request Terminated", "r2", nil)
	h.pbx2.request(sip.ACK)
	bye := h.pbx.request(sip.BYE)
	h.pbx.reply(bye, 200, "OK", "", nil)
	h.wantBusy("3@pbx3", true)
	h.wantBusy("2@pbx2", false)
	h.wantBusy("1@pbx", false)
	if calls := h.srv.Calls(); len(calls) != 1 || len(calls[0].Ringing) != 0 || calls[0].B.SIPCallID != callIDOf(x3) {
		t.Errorf("live view after the transfer %+v, want b on %s and nothing ringing", calls, callIDOf(x3))
	}
	h.hangUp(inv, ok, h.pbx3)
	c := h.cdrs.next(t)
	if len(c.Transfers) != 1 || !c.Transfers[0].Connected || c.Transfers[0].To.Endpoint != "pbx3" || c.Transfers[0].To.SIPCallID != callIDOf(x3) || c.Transfers[0].Hunt != "all" {
		t.Errorf("CDR transfers %+v, want one to the list all, answered by pbx3 on %s", c.Transfers, callIDOf(x3))
	}
	if got, want := attemptsOf(c), "1@pbx:answered:200"; got != want {
		t.Errorf("attempts %s, want %s (the call's own B-leg only)", got, want)
	}
}
