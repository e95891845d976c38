package b2bua

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Agent state across transfers, in process (the hunt harness: pbx,
// pbx2, pbx3 peers). least_recent rings free agents first, so which peer
// a new call rings first shows who wagate thinks is busy.

// answeredBy places a UIC that p's target answers (it must be the first
// rung) and returns A's INVITE, the 200 A got and p's INVITE.
func (h *huntFlow) answeredBy(p *peer, tag string) (*sip.Request, *sip.Response, *sip.Request) {
	h.t.Helper()
	inv := h.metaCall()
	b := p.request(sip.INVITE)
	h.answer(p, b, tag)
	ok := h.meta.response(200)
	h.meta.send(h.addr, ackFor(inv, ok))
	return inv, ok, b
}

// callWithB is wagate's id of the live call whose B-leg has Call-ID id.
func (h *huntFlow) callWithB(id string) string {
	h.t.Helper()
	for _, c := range h.srv.Calls() {
		if c.B.SIPCallID == id {
			return c.ID
		}
	}
	h.t.Fatalf("no live call with B-leg %s", id)
	return ""
}

// fromCallee builds an in-dialog request from the callee of b (wagate's
// INVITE to p, answered with tag) to wagate.
func fromCallee(t *testing.T, p *peer, b *sip.Request, tag string, method sip.RequestMethod, cseq int, hdrs ...string) *sip.Request {
	t.Helper()
	raw := fmt.Sprintf("%s %s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s;branch=%s\r\n"+
		"From: <%s>;tag=%s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d %s\r\nMax-Forwards: 70\r\n"+
		"Contact: <sip:%s>\r\n",
		method, b.Contact().Address.String(), p.addr(), sip.GenerateBranch(),
		b.To().Address.String(), tag, b.From().Value(), callIDOf(b), cseq, method, p.addr())
	for _, hd := range hdrs {
		raw += hd + "\r\n"
	}
	return parseReq(t, raw+"Content-Length: 0\r\n\r\n")
}

func (h *huntFlow) wantBusy(agent string, want bool) {
	h.t.Helper()
	// An agent leaving a call is freed once its BYE is written, from the
	// BYE's goroutine: the peer may read the BYE a moment before.
	deadline := time.Now().Add(2 * time.Second)
	for h.srv.hunts.busy(agent) != want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := h.srv.hunts.busy(agent); got != want {
		h.t.Errorf("agent %s busy: %v, want %v", agent, got, want)
	}
}

// TestTransferFreesTransferor: after a blind transfer (API) the
// transferring agent is free at once, and rung first by the next call;
// the agent who took the transfer is busy until the call ends.
func TestTransferFreesTransferor(t *testing.T) {
	h := startHuntFlow(t, "{hunt: lr}", `  - {name: lr, strategy: least_recent, targets: [{endpoint: pbx, user: "1"}, {endpoint: pbx2, user: "2"}, {endpoint: pbx3, user: "3"}]}`)
	inv1, ok1, _ := h.answeredBy(h.pbx, "a")   // 1@pbx busy
	inv2, ok2, b2 := h.answeredBy(h.pbx2, "b") // 2@pbx2 busy
	if _, err := h.srv.Transfer(h.callWithB(callIDOf(b2)), Target{Endpoint: "pbx3", User: "3"}); err != nil {
		t.Fatal(err)
	}
	x := h.pbx3.request(sip.INVITE)
	h.pbx3.reply(x, 180, "Ringing", "c", nil)
	h.answer(h.pbx3, x, "c")
	bye := h.pbx2.request(sip.BYE) // the transferring agent's leg
	h.pbx2.reply(bye, 200, "OK", "", nil)
	h.wantBusy("2@pbx2", false)
	h.wantBusy("3@pbx3", true)
	// 1@pbx and 3@pbx3 are on calls: the freed agent rings first.
	if got := h.firstRung(); got != "pbx2" {
		t.Errorf("first target %s, want pbx2 (the agent that transferred its call away)", got)
	}
	h.hangUp(inv2, ok2, h.pbx3) // the caller now talks to 3@pbx3
	h.cdrs.next(t)
	h.wantBusy("3@pbx3", false)
	h.hangUp(inv1, ok1, h.pbx)
	h.cdrs.next(t)
	h.wantBusy("1@pbx", false)
}

// TestTransferTargetBusy: the agent a call was transferred to counts as
// on a call: least_recent rings it last while it is, even though a hunt
// never rang it.
func TestTransferTargetBusy(t *testing.T) {
	h := startHuntFlow(t, "{hunt: lr}", `  - {name: lr, strategy: least_recent, targets: [{endpoint: pbx2, user: "2"}, {endpoint: pbx3, user: "3"}]}`)
	inv1, ok1, b1 := h.answeredBy(h.pbx2, "a")
	if _, err := h.srv.Transfer(h.callWithB(callIDOf(b1)), Target{Endpoint: "pbx3", User: "3"}); err != nil {
		t.Fatal(err)
	}
	x := h.pbx3.request(sip.INVITE)
	h.answer(h.pbx3, x, "c")
	bye := h.pbx2.request(sip.BYE)
	h.pbx2.reply(bye, 200, "OK", "", nil)
	// 2@pbx2 has just been freed, 3@pbx3 never answered a hunt call:
	// only its transferred call puts it after 2@pbx2.
	if got := h.firstRung(); got != "pbx2" {
		t.Errorf("first target %s, want pbx2 (pbx3 is on the transferred call)", got)
	}
	h.hangUp(inv1, ok1, h.pbx3)
	h.cdrs.next(t)
	// Both free now: pbx2 left its call (the transfer) before pbx3 did.
	if got := h.firstRung(); got != "pbx2" {
		t.Errorf("first target %s, want pbx2 (idle longest)", got)
	}
}

// TestTransferorHangsUpWhileTargetRings: an agent that hangs up while its
// transfer rings is free at once; the target is busy once it answers.
func TestTransferorHangsUpWhileTargetRings(t *testing.T) {
	h := startHuntFlow(t, "{hunt: lr}", `  - {name: lr, strategy: least_recent, targets: [{endpoint: pbx, user: "1"}, {endpoint: pbx2, user: "2"}]}`)
	inv1, ok1, b1 := h.answeredBy(h.pbx, "a")
	if _, err := h.srv.Transfer(h.callWithB(callIDOf(b1)), Target{Endpoint: "pbx2", User: "2"}); err != nil {
		t.Fatal(err)
	}
	x := h.pbx2.request(sip.INVITE)
	h.pbx2.reply(x, 180, "Ringing", "c", nil)
	h.pbx.send(h.addr, fromCallee(t, h.pbx, b1, "a", sip.BYE, 1))
	h.pbx.response(200)
	h.wantBusy("1@pbx", false)
	h.wantBusy("2@pbx2", false) // ringing is not on a call
	h.answer(h.pbx2, x, "c")
	deadline := time.Now().Add(2 * time.Second)
	for !h.srv.hunts.busy("2@pbx2") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	h.wantBusy("2@pbx2", true)
	h.hangUp(inv1, ok1, h.pbx2)
	h.cdrs.next(t)
	h.wantBusy("2@pbx2", false)
}

// TestTransferAttendedFreesAgent: an agent that joins its two calls
// (REFER with Replaces) leaves both: it is free, and rung first again.
func TestTransferAttendedFreesAgent(t *testing.T) {
	h := startHuntFlowWith(t, "{hunt: lr}",
		`  - {name: lr, strategy: least_recent, targets: [{endpoint: pbx2, user: "2"}, {endpoint: pbx, user: "1"}, {endpoint: pbx, user: "4"}]}`,
		`, transfer: {allow: [{endpoint: pbx, users: ["*"]}]}`)
	inv0, ok0, _ := h.answeredBy(h.pbx2, "z") // 2@pbx2 stays on a call
	inv1, ok1, b1 := h.answeredBy(h.pbx, "a") // 1@pbx
	inv2, _, b2 := h.answeredBy(h.pbx, "b")   // 4@pbx: 1 is busy
	if requestUser(b1) != "1" || requestUser(b2) != "4" {
		t.Fatalf("rang %s then %s, want 1 then 4", requestUser(b1), requestUser(b2))
	}
	wagateTag, _ := b2.From().Params.Get("tag")
	replaces := strings.NewReplacer("@", "%40", ";", "%3B", "=", "%3D").Replace(
		fmt.Sprintf("%s;to-tag=%s;from-tag=b", callIDOf(b2), wagateTag))
	h.pbx.send(h.addr, fromCallee(t, h.pbx, b1, "a", sip.REFER, 2,
		fmt.Sprintf("Refer-To: <sip:x@127.0.0.1?Replaces=%s>", replaces), "Referred-By: <sip:1@127.0.0.3>"))
	// 202, the NOTIFYs (answered), then a BYE on each of the agent's
	// dialogs.
	byes := map[string]bool{}
	for len(byes) < 2 {
		switch m := h.pbx.next("the REFER's progress").(type) {
		case *sip.Response:
			if m.StatusCode != 202 {
				t.Fatalf("REFER answered %s", startLine(m))
			}
		case *sip.Request:
			h.pbx.reply(m, 200, "OK", "", nil)
			if m.Method == sip.BYE {
				byes[callIDOf(m)] = true
			}
		}
	}
	if !byes[callIDOf(b1)] || !byes[callIDOf(b2)] {
		t.Fatalf("BYEs for %v, want both of the agent's dialogs", byes)
	}
	h.wantBusy("1@pbx", false)
	h.wantBusy("4@pbx", false)
	// Were 1@pbx and 4@pbx still counted on their calls, all three
	// agents would be busy and the list's first, pbx2, would ring.
	if got := h.firstRung(); got != "pbx" {
		t.Errorf("first target %s, want pbx (its agents joined their calls and left)", got)
	}
	h.hangUp(inv0, ok0, h.pbx2)
	h.cdrs.next(t)
	h.meta.send(h.addr, byeFor(inv1, ok1, 2))
	h.meta.response(200)
	// The joined call ends with it: Meta gets the second caller's BYE.
	bye := h.meta.request(sip.BYE)
	if callIDOf(bye) != callIDOf(inv2) {
		t.Errorf("BYE for %s, want the joined call's %s", callIDOf(bye), callIDOf(inv2))
	}
	h.meta.reply(bye, 200, "OK", "", nil)
}
