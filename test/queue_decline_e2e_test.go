package test

import (
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
)

// TestCallFlowQueueDecline: in a queue over a parallel list, one agent's
// 603 (on_decline: stop, the default) does not end the ring round: the
// other agent keeps ringing (no CANCEL) and takes the call, and the
// decliner is not rung again.
func TestCallFlowQueueDecline(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p2 := e.newPeer("pbx2", 5)
	a1 := startAgent(t, "a1", e.PBX, agentRefuses, func(a *agent) { a.code = 603 })
	a2 := startAgent(t, "a2", p2, agentAnswers, func(a *agent) { a.delay = 500 * time.Millisecond })
	fs := newFlowService(t, e, func(r flowReq) flowReply {
		return flowReply{Body: flowJSON("queue",
			action("queue", map[string]any{"destination": "team", "limitTime": 60000}),
			action("hangup", nil))}
	})
	w := e.startWagate(wagateOpts{MetaEncryption: "sdes", Route: fs.route("3s", "Sorry."),
		EndpointsExtra: pbxEndpoint("pbx2", p2, ""),
		Extra:          `hunt_lists: [{name: team, strategy: parallel, targets: [{endpoint: pbx, user: "1001"}, {endpoint: pbx2, user: "2001"}]}]`})
	meta := newGoPeer(t, e.Meta, metapeer.Config{})

	c := flowCall(t, w, meta)
	declined := a1.one("SIP/2.0 603")
	inv := a2.one("INVITE")
	a2.one("ACK")
	if n := len(a2.got("CANCEL")); n != 0 {
		t.Errorf("the other agent got %d CANCELs after the decline, want it left ringing", n)
	}
	if !inv.at.Before(declined.at.Add(100 * time.Millisecond)) {
		t.Errorf("the other agent's INVITE came %v after the decline, want the same ring round", inv.at.Sub(declined.at))
	}
	hangup(t, c, "the caller")
	if n := len(a1.got("INVITE")); n != 1 {
		t.Errorf("the declining agent got %d INVITEs, want 1", n)
	}
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}
