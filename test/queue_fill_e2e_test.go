package test

import (
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
)

// TestQueueFreeAgentsTakeWaitingCallers: two callers wait in a queue
// over two free agents who take a few seconds to pick up. The second
// caller rings the second agent while the first agent still rings for
// the first caller, instead of waiting, with an agent idle, until the
// first caller was answered; and no agent rings for both callers.
func TestQueueFreeAgentsTakeWaitingCallers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p2 := e.newPeer("pbx2", 5)
	const pickUp = 6 * time.Second
	slow := func(a *agent) { a.delay = pickUp }
	a1 := startAgent(t, "a1", e.PBX, agentAnswers, slow)
	a2 := startAgent(t, "a2", p2, agentAnswers, slow)
	w := e.startWagate(wagateOpts{MetaEncryption: "sdes",
		Route:          `{queue: {hunt: team, limit_time: 60s, announce_every: 30s}}`,
		EndpointsExtra: pbxEndpoint("pbx2", p2, ""),
		Extra:          queueTeam})
	meta := newGoPeer(t, e.Meta, metapeer.Config{})

	c1 := flowCall(t, w, meta)
	first := a1.one("INVITE")
	c2 := flowCall(t, w, meta)
	a1.one("ACK")
	second := a2.one("INVITE")
	a2.one("ACK")
	answered := a1.one("SIP/2.0 200")
	t.Logf("the second agent rang %v after the first", second.at.Sub(first.at).Round(time.Millisecond))
	if !second.at.Before(answered.at) {
		t.Errorf("the second caller rang the free second agent only %v after the first agent answered the first caller, want while it rang",
			second.at.Sub(answered.at).Round(time.Millisecond))
	}
	if n := len(a1.got("INVITE")); n != 1 {
		t.Errorf("the first agent got %d INVITEs, want 1 (never rung for both callers)", n)
	}
	hangup(t, c1, "the first caller")
	hangup(t, c2, "the second caller")
	s := w.waitIdle()
	w.expectCounts(s, 2, 2)
}
