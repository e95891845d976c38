package test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
)

// Agent state shared by the nodes of a cluster through Redis
// (docs/multinode.md "Agents across nodes"). Meta's calls go straight to
// each node (no Kamailio), as a dispatcher would spread them.

// agentCluster starts Redis and two nodes; setup, given the test's env
// before the nodes start, starts the agents and returns what the nodes'
// options add (routes, endpoints, hunt lists). The Go Meta peer is on
// SDES.
func agentCluster(t *testing.T, setup func(e *env) func(*wagateOpts)) (*cluster, *metapeer.Peer) {
	t.Helper()
	e := newEnv(t)
	c := &cluster{t: t, e: e}
	c.redis = startRedis(t, e.ip(20), filepath.Join(e.dir, "redis"))
	mod := setup(e)
	c.mod = func(o *wagateOpts) {
		o.MetaEncryption = "sdes"
		mod(o)
	}
	c.addNode(1)
	c.addNode(2)
	return c, newGoPeer(t, e.Meta, metapeer.Config{})
}

// remoteGauge is node nd's gauge metric (-1: not served).
func (nd *node) remoteGauge(t *testing.T, metric string) float64 {
	t.Helper()
	v, ok := metricValue(scrapeMetrics(t, nd.e), metric, "")
	if !ok {
		return -1
	}
	return v
}

// waitRemoteBusy waits until node nd counts want agents busy through
// other nodes, and only logs when it does not within limit: the test goes
// on, and its checks of the calls say what went wrong.
func (nd *node) waitRemoteBusy(t *testing.T, want float64, limit time.Duration) {
	t.Helper()
	nd.waitGauge(t, "wagate_agent_state_remote_busy", want, limit)
}

// waitGauge waits until node nd's gauge metric is want, as
// waitRemoteBusy.
func (nd *node) waitGauge(t *testing.T, metric string, want float64, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		got := nd.remoteGauge(t, metric)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Logf("%s: %s %v after %v, want %v", nd.id, metric, got, limit, want)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitCount waits up to limit for agent a's n-th event of kind what, and
// returns them all.
func (a *agent) waitCount(what string, n int, limit time.Duration) []agentEvent {
	deadline := time.Now().Add(limit)
	for {
		evs := a.got(what)
		if len(evs) >= n || time.Now().After(deadline) {
			return evs
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// queueFlow is a call-flow service that puts every call in the queue of
// hunt list team.
func queueFlow(t *testing.T, e *env) *flowService {
	return newFlowService(t, e, func(r flowReq) flowReply {
		return flowReply{Body: flowJSON("queue",
			action("queue", map[string]any{"destination": "team", "limitTime": 60000}),
			action("hangup", nil))}
	})
}

// quietWindow is how long a test watches an agent get no INVITE from a
// waiting queue call: longer than the queue's look every second, so a
// queue that took the agent for free would have rung it.
const quietWindow = 1500 * time.Millisecond

// TestMultiNodeAgentLeastRecent: a least_recent list of agents 1001 and
// 2001, on two nodes. 1001 answers a call through node1; a call to node2
// then rings 2001, not 1001, which is on node1's call. 2001's call ends
// before 1001's: a third call to node2 rings 2001 first, idle the
// longest — not 1001, which node2 never saw leave a call. Before, each
// node knew its own calls only: node2 rang 1001 while it was on node1's
// call (a contact centre's agent got a second call on top of one).
func TestMultiNodeAgentLeastRecent(t *testing.T) {
	t.Parallel()
	var a1, a2 *agent
	c, meta := agentCluster(t, func(e *env) func(*wagateOpts) {
		p2 := e.newPeer("pbx2", 8)
		a1 = startAgent(t, "a1", e.PBX, agentAnswers, func(a *agent) { a.delay = 50 * time.Millisecond })
		a2 = startAgent(t, "a2", p2, agentAnswers, func(a *agent) { a.delay = 50 * time.Millisecond })
		return func(o *wagateOpts) {
			o.Route = "{hunt: agents}"
			o.EndpointsExtra = pbxEndpoint("pbx2", p2, "")
			o.Extra += `
hunt_lists:
  - name: agents
    strategy: least_recent
    targets:
      - {endpoint: pbx, user: "1001"}
      - {endpoint: pbx2, user: "2001"}`
		}
	})
	n1, n2 := c.nodes[0], c.nodes[1]

	c1 := flowCall(t, n1.w, meta)
	a1.one("ACK")
	n2.waitRemoteBusy(t, 1, 5*time.Second)
	c2 := flowCall(t, n2.w, meta)
	if n := len(a1.got("INVITE")); n != 1 {
		t.Fatalf("1001 got %d INVITEs, want 1: node2 rang it while it was on node1's call (events %v)", n, a1.all())
	}
	if n := len(a2.got("INVITE")); n != 1 {
		t.Fatalf("2001 got %d INVITEs, want 1: node2's call for the free agent (events %v)", n, a2.all())
	}

	// 2001 leaves its call first, then 1001 leaves node1's.
	hangup(t, c2, "the second caller")
	a2.one("BYE")
	hangup(t, c1, "the first caller")
	a1.one("BYE")
	// node1's mark of 1001's end has reached node2.
	n2.waitRemoteBusy(t, 0, 5*time.Second)
	c3 := flowCall(t, n2.w, meta)
	if n := len(a2.got("INVITE")); n != 2 {
		t.Errorf("2001 got %d INVITEs, want 2: idle since before 1001 left node1's call, it is least_recent's first (1001: %v)", n, a1.all())
	}
	if n := len(a1.got("INVITE")); n != 1 {
		t.Errorf("1001 got %d INVITEs, want 1: it left node1's call after 2001 left node2's", n)
	}
	hangup(t, c3, "the third caller")
	n1.w.waitIdle()
	n2.w.waitIdle()
}

// TestMultiNodeQueueAgentElsewhere: a queue on node2 over one agent,
// whose call came through node1's queue, with wrap_up 1s. The waiting
// call does not ring the agent while it is on node1's call, nor in the
// wrap-up after it, and rings it once that wrap-up ends. Before, node2's
// queue rang the agent at once, on top of node1's call.
func TestMultiNodeQueueAgentElsewhere(t *testing.T) {
	t.Parallel()
	var a1 *agent
	c, meta := agentCluster(t, func(e *env) func(*wagateOpts) {
		a1 = startAgent(t, "a1", e.PBX, agentAnswers, func(a *agent) { a.delay = 50 * time.Millisecond })
		fs := queueFlow(t, e)
		return func(o *wagateOpts) {
			o.Route = fs.route("3s", "Sorry.")
			o.Extra += "\nhunt_lists: [{name: team, wrap_up: 1s, targets: [{endpoint: pbx, user: \"1001\"}]}]"
		}
	})
	n1, n2 := c.nodes[0], c.nodes[1]
	const wrapUp = time.Second

	c1 := flowCall(t, n1.w, meta)
	a1.one("ACK")
	n2.waitRemoteBusy(t, 1, 5*time.Second)
	c2 := flowCall(t, n2.w, meta)
	n2.w.waitLogCount("call flow queued", 1, flowLimit)
	if invs := a1.waitCount("INVITE", 2, quietWindow); len(invs) > 1 {
		t.Fatalf("node2's queue rang the agent while it was on node1's call (events %v)", a1.all())
	}

	gone := time.Now() // before the caller's BYE: node1's leg leaves the call, and the wrap-up starts, after it
	hangup(t, c1, "the first caller")
	a1.one("BYE")
	invs := a1.waitCount("INVITE", 2, wrapUp+6*time.Second)
	if len(invs) != 2 {
		t.Fatalf("the agent got %d INVITEs, want a second one from node2's waiting call once node1's call and wrap-up ended (events %v)", len(invs), a1.all())
	}
	d := invs[1].at.Sub(gone)
	t.Logf("node1's caller hung up → node2's queue rang the agent after %v (wrap_up 1s)", d.Round(time.Millisecond))
	if d < wrapUp {
		t.Errorf("node2's queue rang the agent %v after node1's caller hung up, within the agent's 1s wrap-up there", d)
	}
	a1.waitCount("ACK", 2, replyLimit)
	hangup(t, c2, "the second caller")
	n1.w.waitIdle()
	n2.w.waitIdle()
}

// TestMultiNodeQueueAgentRingingElsewhere: a queue over one agent, who
// lets its phone ring (ring_timeout 6s), with a waiting call on each
// node. node1's call rings the agent first; node2's waits while that
// INVITE is under way, and rings the agent as soon as it ends unanswered
// (node1's line then rests the agent for reject_backoff, 10 s): the
// agent never has two INVITEs at once. Before, node2's queue rang the
// agent at once, on top of node1's ring (call waiting, or a 486 that
// rests the agent).
func TestMultiNodeQueueAgentRingingElsewhere(t *testing.T) {
	t.Parallel()
	var a1 *agent
	c, meta := agentCluster(t, func(e *env) func(*wagateOpts) {
		a1 = startAgent(t, "a1", e.PBX, agentRings)
		fs := queueFlow(t, e)
		return func(o *wagateOpts) {
			o.Route = fs.route("3s", "Sorry.")
			o.Extra += "\nhunt_lists: [{name: team, ring_timeout: 6s, targets: [{endpoint: pbx, user: \"1001\"}]}]"
		}
	})
	n1, n2 := c.nodes[0], c.nodes[1]
	const ringTimeout = 6 * time.Second

	c1 := flowCall(t, n1.w, meta)
	if invs := a1.waitCount("INVITE", 1, flowLimit); len(invs) != 1 {
		t.Fatalf("node1's queue did not ring the agent (events %v)", a1.all())
	}
	n2.waitGauge(t, "wagate_agent_state_remote_ringing", 1, 5*time.Second)
	c2 := flowCall(t, n2.w, meta)
	n2.w.waitLogCount("call flow queued", 1, flowLimit)
	if len(a1.got("SIP/2.0 487")) > 0 {
		t.Fatalf("node1's ring ended before node2's call was queued: the test shows nothing (events %v)", a1.all())
	}
	invs := a1.waitCount("INVITE", 2, ringTimeout+6*time.Second)
	if len(invs) != 2 {
		t.Fatalf("the agent got %d INVITEs, want a second one from node2's waiting call once node1's ring ended (events %v)", len(invs), a1.all())
	}
	// Each INVITE's ring lasts until the agent's final response to it
	// (487 to its CANCEL); none may start while another rings.
	finals := map[string]time.Time{}
	for _, f := range a1.got("SIP/2.0 487") {
		finals[f.callID] = f.at
	}
	first, second := invs[0], invs[1]
	end, ok := finals[first.callID]
	switch {
	case !ok || second.at.Before(end):
		t.Errorf("node2's queue rang the agent while node1's INVITE to it was under way (events %v)", a1.all())
	default:
		t.Logf("node1's ring ended → node2's queue rang the agent after %v", second.at.Sub(end).Round(time.Millisecond))
	}
	hangup(t, c1, "the first caller")
	hangup(t, c2, "the second caller")
	a1.waitCount("SIP/2.0 487", 2, replyLimit)
	n1.w.waitIdle()
	n2.w.waitIdle()
}

// TestMultiNodeAgentsOfDeadNode: node1, with the agent on a call through
// it, is killed with SIGKILL. node2's waiting queue call leaves the agent
// alone while node1 lives, and rings it once node1's marks vanish with
// its instance (slot_ttl, 2 s here) — the dead node can no longer end
// its call, so nothing else would free the agent. Before, node2 rang the
// agent at once, while node1's call was up.
func TestMultiNodeAgentsOfDeadNode(t *testing.T) {
	t.Parallel()
	var a1 *agent
	c, meta := agentCluster(t, func(e *env) func(*wagateOpts) {
		a1 = startAgent(t, "a1", e.PBX, agentAnswers, func(a *agent) { a.delay = 50 * time.Millisecond })
		fs := queueFlow(t, e)
		return func(o *wagateOpts) {
			o.Route = fs.route("3s", "Sorry.")
			o.Extra += "\nhunt_lists: [{name: team, targets: [{endpoint: pbx, user: \"1001\"}]}]"
		}
	})
	n1, n2 := c.nodes[0], c.nodes[1]

	flowCall(t, n1.w, meta) // left up: its node dies under it
	a1.one("ACK")
	n2.waitRemoteBusy(t, 1, 5*time.Second)
	c2 := flowCall(t, n2.w, meta)
	n2.w.waitLogCount("call flow queued", 1, flowLimit)
	if invs := a1.waitCount("INVITE", 2, quietWindow); len(invs) > 1 {
		t.Fatalf("node2's queue rang the agent while it was on node1's call (events %v)", a1.all())
	}

	n1.w.kill()
	killed := time.Now()
	ttl, _ := time.ParseDuration(slotTTL)
	invs := a1.waitCount("INVITE", 2, ttl+6*time.Second)
	if len(invs) != 2 {
		t.Fatalf("the agent got %d INVITEs, want a second one from node2's waiting call once the killed node1's marks expired (events %v)", len(invs), a1.all())
	}
	t.Logf("node1 killed → node2's queue rang its agent after %v (slot_ttl %s)", invs[1].at.Sub(killed).Round(time.Millisecond), slotTTL)
	a1.waitCount("ACK", 2, replyLimit)
	hangup(t, c2, "the second caller")
	n2.w.waitIdle()
}
