package test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/sipua"
)

// TestTransferAPI: POST /v1/calls/{id}/transfer moves an answered UIC
// from its agent to user 2001 of pbx2: 202 at once, the new agent hears
// the caller and the caller the new agent, the old agent gets BYE (no
// NOTIFY: no REFER asked), Meta no SIP, and GET /v1/calls shows the call
// on its new leg. A body naming Meta's endpoint gets 400, a transfer of
// the ended call 404.
func TestTransferAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rx := newReceiver(t, e)
	c := startCtlIn(t, e, wagateOpts{Extra: eventsYAML(rx)})
	rc := c.call(t)
	lc := waitLiveCall(t, c.e, "the call confirmed", func(lc liveCallDoc) bool { return lc.State == "confirmed" })

	path := "/v1/calls/" + lc.CallID + "/transfer"
	if code, body := callsAPI(t, c.e, "POST", path, `{"endpoint":"meta","user":"2001"}`); code != 400 {
		t.Errorf("transfer to the WhatsApp endpoint: %d %s, want 400", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	answered := answerAsync(ctx, c.pbx2, metapeer.AnswerSpec{Ring: 200 * time.Millisecond})
	code, body := callsAPI(t, c.e, "POST", path, `{"endpoint":"pbx2","user":"2001"}`)
	var doc struct {
		CallID string `json:"call_id"`
		Kind   string `json:"kind"`
		Target string `json:"target"`
	}
	if code != 202 || json.Unmarshal(body, &doc) != nil || doc.CallID != lc.CallID || doc.Kind != "api" || doc.Target != "2001@pbx2" {
		t.Fatalf("POST %s: %d %s", path, code, body)
	}
	nc := waitAnswer(t, answered, "the new agent")
	nc.Media.SetSource(newAgentTone())
	waitBye(t, rc.pbx, "the first agent")
	if n := rc.pbx.Dialog.Received("NOTIFY"); len(n) != 0 {
		t.Errorf("the first agent got %d NOTIFYs for a transfer it did not ask for", len(n))
	}
	mustHear(t, "the new agent hears the caller", nc.Media, 8000, 1000, 1500*time.Millisecond)
	mustHear(t, "the caller hears the new agent", rc.meta.Media, 48000, newAgentHz, 1500*time.Millisecond)
	after := waitLiveCall(t, c.e, "the call on its new leg", func(lc liveCallDoc) bool { return lc.B.Endpoint == "pbx2" })
	if after.CallID != lc.CallID || after.B.SIPCallID != nc.Dialog.CallID {
		t.Errorf("GET /v1/calls after the transfer: %+v, want call %s with b = the new agent's leg", after, lc.CallID)
	}
	checkNoSIPToMeta(t, c.meta, time.Now())
	hangup(t, nc, "the new agent")
	waitBye(t, rc.meta, "the caller")
	c.w.waitIdle()
	if code, _ := callsAPI(t, c.e, "POST", path, `{"endpoint":"pbx2","user":"2001"}`); code != 404 {
		t.Errorf("transfer of an ended call: %d, want 404", code)
	}
	xs := cdrTransfers(t, cdrOfA(t, waitCDRs(t, c.e, 1), rc.meta.Dialog.CallID))
	if len(xs) != 1 || xs[0].Kind != "api" || xs[0].By != "api" || !xs[0].Connected || xs[0].To.SIPCallID != nc.Dialog.CallID {
		t.Errorf("CDR transfers %+v, want one connected api transfer", xs)
	}
	// The call.transferred event carries the same record, between the
	// call's answer and its end.
	evs := ofCall(rx.waitUntil(t, "call.transferred and call.ended", func(evs []rxEvent) bool {
		return len(ofType(evs, "call.transferred")) == 1 && len(ofType(evs, "call.ended")) == 1
	}), lc.CallID)
	if got := strings.Join(types(evs), " "); got != "call.started call.answered call.transferred call.ended" {
		t.Errorf("events %s", got)
	}
	var ev transferDoc
	if err := json.Unmarshal(ofType(evs, "call.transferred")[0].Data, &ev); err != nil || ev.Kind != "api" || !ev.Connected ||
		ev.From.SIPCallID != rc.pbx.Dialog.CallID || ev.To.SIPCallID != nc.Dialog.CallID || ev.Target != "2001@pbx2" {
		t.Errorf("call.transferred %+v (%v), want the api transfer from the first agent's leg to the new one", ev, err)
	}
	rx.checkSigned(t)
}

// TestTransferAPIParallelList: a transfer to a parallel hunt list rings
// both its targets at once; the first to answer takes the caller (media
// both ways), the other gets CANCEL, and the first agent its BYE.
func TestTransferAPIParallelList(t *testing.T) {
	t.Parallel()
	c := startCtl(t, wagateOpts{})
	rc := c.call(t)
	lc := waitLiveCall(t, c.e, "the call confirmed", func(lc liveCallDoc) bool { return lc.State == "confirmed" })
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	// One target answers after ringing 1 s; the other only rings. One at
	// a time, the second would not ring before the first answered.
	answered := answerAsync(ctx, c.pbx2, metapeer.AnswerSpec{Ring: time.Second})
	if code, body := callsAPI(t, c.e, "POST", "/v1/calls/"+lc.CallID+"/transfer", `{"hunt":"all"}`); code != 202 {
		t.Fatalf("transfer to the parallel list: %d %s", code, body)
	}
	other, err := c.pbx2.UA.Accept(ctx)
	if err != nil {
		t.Fatalf("the list's second target got no INVITE: %v", err)
	}
	other.Ring()
	nc := waitAnswer(t, answered, "the agent that answers")
	nc.Media.SetSource(newAgentTone())
	select {
	case <-other.Cancelled():
	case <-time.After(5 * time.Second):
		t.Fatal("the target that did not answer got no CANCEL")
	}
	users := sipua.URIUser(nc.Dialog.Invite.RURI) + " " + sipua.URIUser(other.Req.RURI)
	if users != "2201 2202" && users != "2202 2201" {
		t.Errorf("targets rung %q, want 2201 and 2202", users)
	}
	waitBye(t, rc.pbx, "the first agent")
	mustHear(t, "the caller hears the agent that answered", rc.meta.Media, 48000, newAgentHz, 1500*time.Millisecond)
	mustHear(t, "the agent that answered hears the caller", nc.Media, 8000, 1000, 1500*time.Millisecond)
	hangup(t, rc.meta, "the caller")
	waitBye(t, nc, "the agent that answered")
	c.w.waitIdle()
	xs := cdrTransfers(t, cdrOfA(t, waitCDRs(t, c.e, 1), rc.meta.Dialog.CallID))
	if len(xs) != 1 || !xs[0].Connected || xs[0].To.SIPCallID != nc.Dialog.CallID {
		t.Errorf("CDR transfers %+v, want one connected to %s", xs, nc.Dialog.CallID)
	}
}
