package test

import (
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
)

// TestQueueAgentAnswersAfterLimit: limit_time (5 s) passes while the
// queue rings an agent, and the agent picks up as the CANCEL flies: its
// 200 arrives after the CANCEL. The agent gets ACK and BYE (never left in
// a call with nobody), the caller is put through to the fallback, and
// the agent, free again, is not held as on a call: the next caller of
// the queue rings it.
func TestQueueAgentAnswersAfterLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p2 := e.newPeer("pbx2", 5)
	a1 := startAgent(t, "a1", e.PBX, agentAnswers, func(a *agent) { a.delay, a.answersCancelled = 5500*time.Millisecond, true })
	fb := startAgent(t, "fallback", p2, agentAnswers)
	w := e.startWagate(wagateOpts{MetaEncryption: "sdes", APIExtra: tokenAPI,
		Route:          `{queue: {hunt: team, limit_time: 5s, announce_every: 5s, fallback: {endpoint: pbx2, user: "2999"}}}`,
		EndpointsExtra: pbxEndpoint("pbx2", p2, ""),
		Extra:          `hunt_lists: [{name: team, ring_timeout: 60s, reject_backoff: 0s, targets: [{endpoint: pbx, user: "1001"}]}]`})
	meta := newGoPeer(t, e.Meta, metapeer.Config{})
	c := flowCall(t, w, meta)
	inv := a1.one("INVITE")
	cancel := a1.one("CANCEL")
	ok := a1.one("SIP/2.0 200")
	if !ok.at.After(cancel.at) {
		t.Fatalf("the agent's 200 came %v before the CANCEL, want after it", cancel.at.Sub(ok.at))
	}
	ack := a1.one("ACK")
	bye := a1.one("BYE")
	if ack.callID != inv.callID || bye.callID != inv.callID {
		t.Errorf("ACK (%s) and BYE (%s) for the late 200, want both for its INVITE %s", ack.callID, bye.callID, inv.callID)
	}
	fb.one("INVITE")
	fb.one("ACK")
	hangup(t, c, "the first caller")
	w.expectCounts(w.waitIdle(), 1, 1)
	cdr := oneQueueCDR(t, e)
	if got, want := cdr.attempts(), "1001@pbx:cancelled:0 2999@pbx2:answered:200"; got != want {
		t.Errorf("CDR attempts %s, want %s", got, want)
	}

	// The agent is free: a second caller rings it at once.
	c2 := flowCall(t, w, meta)
	invs := waitEvents(a1, "INVITE", 2, replyLimit)
	if len(invs) != 2 {
		t.Fatalf("the agent got %d INVITEs, want the second caller to ring it (it was hung up, not held as on a call)", len(invs))
	}
	hangup(t, c2, "the second caller")
	// Its 200 crosses this caller's CANCEL too: ACK and BYE again.
	waitEvents(a1, "BYE", 2, replyLimit)
	w.expectCounts(w.waitIdle(), 2, 2)
}
