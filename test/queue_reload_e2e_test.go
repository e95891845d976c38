package test

import (
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
)

// TestQueueReloadChangesAgents: a reload that changes a hunt list's
// agents applies to the calls already waiting in its queue at their next
// look, not only to callers who join after it. Agent 1001 is on the first
// call; the second caller waits, ringing 2001, who is busy, every time
// its rest is over. A SIGHUP then replaces 2001 with 3001 (the shift
// changed): the waiting caller is put through to 3001 within about a
// second, and 2001, no longer in the team, is not rung again.
func TestQueueReloadChangesAgents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p2 := e.newPeer("pbx2", 5)
	p3 := e.newPeer("pbx3", 6)
	a1 := startAgent(t, "a1", e.PBX, agentAnswers)
	a2 := startAgent(t, "a2", p2, agentRefuses)
	a3 := startAgent(t, "a3", p3, agentAnswers)
	const before = `targets: [{endpoint: pbx, user: "1001"}, {endpoint: pbx2, user: "2001"}]`
	w := e.startWagate(wagateOpts{MetaEncryption: "sdes",
		Route:          `{queue: {hunt: team, limit_time: 60s, announce_every: 30s}}`,
		EndpointsExtra: pbxEndpoint("pbx2", p2, "") + pbxEndpoint("pbx3", p3, ""),
		Extra:          `hunt_lists: [{name: team, reject_backoff: 1s, ` + before + `}]`})
	meta := newGoPeer(t, e.Meta, metapeer.Config{})

	c1 := flowCall(t, w, meta)
	a1.one("ACK")
	c2 := flowCall(t, w, meta)
	// The waiting call rings the busy 2001 again after each rest.
	deadline := time.Now().Add(replyLimit)
	for len(a2.got("INVITE")) < 3 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(a2.got("INVITE")); n < 3 {
		t.Fatalf("the busy agent 2001 was rung %d times, want the waiting call to ring it after each 1 s rest", n)
	}

	e.rewriteConfig(before, `targets: [{endpoint: pbx, user: "1001"}, {endpoint: pbx3, user: "3001"}]`)
	w.hup()
	w.waitLogMsg("config reloaded", 0)
	reloaded := time.Now()

	deadline = time.Now().Add(replyLimit)
	for len(a3.got("ACK")) < 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	invs := a3.got("INVITE")
	if len(invs) != 1 || len(a3.got("ACK")) != 1 {
		t.Fatalf("the agent added by the reload got %d INVITEs and %d ACKs, want the waiting call put through to it (events %v)",
			len(invs), len(a3.got("ACK")), a3.all())
	}
	t.Logf("reload → the waiting call rang the new agent after %v", invs[0].at.Sub(reloaded).Round(time.Millisecond))
	if invs[0].user != "3001" {
		t.Errorf("the new agent was rung as %q, want 3001", invs[0].user)
	}
	// A ring of 2001 already under way as the reload landed may end
	// after it; none may start later.
	for _, inv := range a2.got("INVITE") {
		if inv.at.After(reloaded.Add(500 * time.Millisecond)) {
			t.Errorf("2001, removed from the team by the reload, was rung %v after it", inv.at.Sub(reloaded).Round(time.Millisecond))
		}
	}
	hangup(t, c2, "the second caller")
	hangup(t, c1, "the first caller")
	s := w.waitIdle()
	w.expectCounts(s, 2, 2)
}
