package test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/rtppeer"
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
	heard(t, "the new agent hears the caller", nc.Media, 8000, 1000, 1500*time.Millisecond)
	heard(t, "the caller hears the new agent", rc.meta.Media, 48000, newAgentHz, 1500*time.Millisecond)
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

// TestTransferBIC: a dialer's business-initiated call to a WhatsApp user,
// answered; the dialer REFERs it to user 2001 of pbx2 (its transfer.allow
// lists pbx2). The WhatsApp user then talks to the new agent — tones both
// ways — the dialer gets NOTIFY 200 and BYE, and Meta, which answered the
// call, gets no further SIP message.
func TestTransferBIC(t *testing.T) {
	t.Parallel()
	c := startCtl(t, wagateOpts{MetaCodecs: bicMetaCodecs, DialerExtra: `, transfer: {allow: [{endpoint: pbx2, users: ["2*"]}]}`})
	dialer := newGoPeer(t, c.e.Dialer, metapeer.Config{Profile: metapeer.ProfileG711})
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	answered := answerAsync(ctx, c.meta, metapeer.AnswerSpec{})
	dc, err := dialer.Call(ctx, metapeer.CallSpec{Target: c.w.SIPAddr, To: waUser, From: businessNumber})
	if err != nil {
		t.Fatalf("BIC: %v", err)
	}
	mc := waitAnswer(t, answered, "the WhatsApp user")
	since := time.Now()
	mc.Media.SetSource(metaTone())
	dc.Media.SetSource(rtppeer.NewTone(440, toneAmp, 8000))
	time.Sleep(mediaFirstLimit) // the BIC's media toward Meta starts on its own
	heard(t, "the WhatsApp user hears the dialer", mc.Media, 48000, 440, time.Second)

	agent := answerAsync(ctx, c.pbx2, metapeer.AnswerSpec{Ring: 200 * time.Millisecond})
	if code, warn := refer(t, dc.Dialog, c.target("2001")); code != 202 {
		t.Fatalf("REFER from the dialer: %d (%s), want 202", code, warn)
	}
	nc := waitAnswer(t, agent, "the new agent")
	nc.Media.SetSource(newAgentTone())
	if d := nc.Dialog.Invite.Get("X-WABA-Direction"); d != "BIC" || nc.Dialog.Invite.Get("X-WABA-Business-Number") != businessNumber {
		t.Errorf("the new agent's INVITE: X-WABA-Direction %q business %q", d, nc.Dialog.Invite.Get("X-WABA-Business-Number"))
	}
	waitBye(t, dc, "the dialer")
	if n := waitNotifies(t, dc.Dialog); n[len(n)-1] != "SIP/2.0 200 OK" {
		t.Errorf("NOTIFY sipfrags %q, want the last 200 OK", n)
	}
	heard(t, "the new agent hears the WhatsApp user", nc.Media, 8000, 1000, 1500*time.Millisecond)
	heard(t, "the WhatsApp user hears the new agent", mc.Media, 48000, newAgentHz, 1500*time.Millisecond)
	checkNoSIPToMetaSince(t, c.meta, since, time.Now())
	hangup(t, nc, "the new agent")
	waitBye(t, mc, "the WhatsApp user")
	c.w.waitIdle()
	cdr := cdrOfA(t, waitCDRs(t, c.e, 1), nc.Dialog.CallID)
	if xs := cdrTransfers(t, cdr); cdr.Direction != "BIC" || len(xs) != 1 || xs[0].By != "dialer" || xs[0].From.SIPCallID != dc.Dialog.CallID {
		t.Errorf("CDR direction %s a %+v transfers %+v", cdr.Direction, cdr.A, xs)
	}
}

// TestTransferSIPpAgent: SIPp is the transferring agent (uas_refer.xml
// checks the 202, the three sipfrag NOTIFYs and wagate's BYE), the Go
// Meta peer the caller, a Go peer at pbx2 the target: the caller's tone
// reaches the new agent and the new agent's the caller. Then SIPp as an
// agent whose REFERs are refused (uas_refer_refused.xml: 403 for a target
// transfer.allow does not list, 400 for a tel: URI): nothing is dialled
// and the call ends by its BYE.
func TestTransferSIPpAgent(t *testing.T) {
	t.Parallel()
	c := startCtl(t, wagateOpts{})
	c.pbx.Close() // SIPp takes the pbx address
	agent := c.e.startSipp(sippSpec{Name: "pbx", Scenario: "uas_refer.xml", Peer: c.e.PBX, Calls: 1,
		Args: []string{"-d", "1000", "-key", "refer_to", c.target("2001")}})
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	answered := answerAsync(ctx, c.pbx2, metapeer.AnswerSpec{Ring: 200 * time.Millisecond})
	mc, err := c.meta.Call(ctx, metapeer.CallSpec{Target: c.w.SIPAddr, To: businessNumber, From: waUser})
	if err != nil {
		t.Fatalf("UIC: %v", err)
	}
	mc.Media.SetSource(metaTone())
	nc := waitAnswer(t, answered, "the new agent")
	nc.Media.SetSource(newAgentTone())
	agent.requireOK()
	heard(t, "the new agent hears the caller", nc.Media, 8000, 1000, 1500*time.Millisecond)
	heard(t, "the caller hears the new agent", mc.Media, 48000, newAgentHz, 1500*time.Millisecond)
	checkNoSIPToMeta(t, c.meta, time.Now())
	hangup(t, mc, "the caller")
	waitBye(t, nc, "the new agent")
	c.w.waitIdle()

	refused := c.e.startSipp(sippSpec{Name: "pbx_refused", Scenario: "uas_refer_refused.xml", Peer: c.e.PBX, Calls: 1,
		Args: []string{"-d", "500", "-key", "refer_to", c.target("3001")}})
	mc, err = c.meta.Call(ctx, metapeer.CallSpec{Target: c.w.SIPAddr, To: businessNumber, From: waUser})
	if err != nil {
		t.Fatalf("second UIC: %v", err)
	}
	refused.requireOK()
	waitBye(t, mc, "the caller")
	for _, te := range c.pbx2.UA.Trace() {
		if !te.Sent && te.Msg.Method == "INVITE" && te.Msg.RURI != nc.Dialog.Invite.RURI {
			t.Errorf("a refused REFER dialled pbx2: %s", te.Msg.RURI)
		}
	}
	c.w.waitIdle()
}
