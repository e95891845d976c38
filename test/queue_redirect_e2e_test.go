package test

import (
	"fmt"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
)

// TestQueueRedirectedAgentRests: the queue's only agent forwards every
// call (302, call forwarding on its phone) to an extension that is busy.
// The ring failed as any other: the agent rests for reject_backoff
// (10 s) and is not rung again every second while the caller waits.
func TestQueueRedirectedAgentRests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p2 := e.newPeer("pbx2", 5)
	a1 := startAgent(t, "a1", e.PBX, agentRedirect, func(a *agent) { a.contact = fmt.Sprintf("<sip:2001@%s>", p2.Addr()) })
	a2 := startAgent(t, "a2", p2, agentRefuses)
	w := e.startWagate(wagateOpts{MetaEncryption: "sdes", PBXExtra: ", follow_redirects: true",
		Route:          `{queue: {hunt: team, limit_time: 60s, announce_every: 30s}}`,
		EndpointsExtra: pbxEndpoint("pbx2", p2, ""),
		Extra:          `hunt_lists: [{name: team, reject_backoff: 10s, targets: [{endpoint: pbx, user: "1001"}]}]`})
	meta := newGoPeer(t, e.Meta, metapeer.Config{})

	c := flowCall(t, w, meta)
	a1.one("INVITE")
	if inv := a2.one("INVITE"); inv.user != "2001" {
		t.Fatalf("the redirect went to %q, want 2001", inv.user)
	}
	// Looks every second: three of them go by within the rest.
	time.Sleep(3500 * time.Millisecond)
	if n, m := len(a1.got("INVITE")), len(a2.got("INVITE")); n != 1 || m != 1 {
		t.Errorf("in 3.5 s the forwarding agent got %d INVITEs and its forward target %d, want 1 each (the agent resting 10 s)", n, m)
	}
	hangup(t, c, "the caller")
	w.expectCounts(w.waitIdle(), 1, 1)
}
