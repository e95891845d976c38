package b2bua

import (
	"sync"
	"time"

	"github.com/wagate/wagate/configs"
	sipedge "github.com/wagate/wagate/sip"
)

// Agent state: an agent ("user@endpoint" at a pbx endpoint) is busy for
// as long as a leg wagate connected to it is in a call — the leg a hunt
// (a list, one extension, a call flow's connect, a click-to-call's agent
// leg) or a transfer connected — and free again from the moment that leg
// leaves the call: the call ends, the agent transfers the call on (blind,
// attended, through the API), or hangs up while its transfer rings. The
// hunt strategies (least_recent) and queues read it (huntState.busy);
// least_recent ranks free agents by when their last call ended.
//
// Wrap-up (hunt_lists[].wrap_up): an agent whose leg, reached through a
// hunt list, left its call is in after-call work for that list's
// wrap_up, and every hunt list and queue skips it meanwhile — the state
// is the agent's, not the list's: the person is busy whichever list
// rings. Direct dials (a route's one extension, a transfer to an
// extension) still ring it. The rules are in docs/sip.md "Wrap-up".
//
// The bookkeeping hangs on the leg (leg.agent, under the call's mu), not
// on the call: one call passes through several agents.

type agentState struct {
	active  int       // calls the agent is on now
	lastEnd time.Time // when it last left one
	// ringing counts the INVITEs to the agent under way now (a hunt's
	// attempts, until their goroutine ends): least_recent rings an agent
	// that rings for another call after the free ones, so that calls
	// arriving together do not all ring the same idle agent.
	ringing int
	// wrapUntil ends the after-call work (wrap_up) of the last call it
	// left through a hunt list: hunt lists and queues skip it until then.
	wrapUntil time.Time
}

// AgentMark is what one node knows of an agent ("user@endpoint"): what
// the other nodes' hunt lists and queues go by.
type AgentMark struct {
	// Active counts the calls the agent is on through the node.
	Active int
	// LastEnd is when the agent last left a call there (zero: never).
	LastEnd time.Time
	// WrapUntil ends its after-call work (zero: none).
	WrapUntil time.Time
	// Ringing counts the INVITEs to the agent under way through the node
	// (a hunt's or a queue's attempts, until each ends).
	Ringing int
}

// AgentBoard shares agent state among the nodes of a cluster
// (SetAgentBoard): this node's agents' marks go out through Mark, the
// other nodes' come back through Engine.AgentsElsewhere. Without one,
// agent state is per node.
type AgentBoard interface {
	// Mark hands on this node's state of agent. It is called under the
	// hunt state's lock, on the call path: it must not wait on the
	// network, nor call back into the engine.
	Mark(agent string, m AgentMark)
}

// SetAgentBoard shares this node's agent state through b. Call it
// before Run.
func (s *Engine) SetAgentBoard(b AgentBoard) {
	s.hunts.mu.Lock()
	s.hunts.board = b
	s.hunts.mu.Unlock()
}

// AgentsElsewhere sets what the other nodes hold of agent, merged: on
// calls through them (Active), INVITEs to it under way through them
// (Ringing), the latest end of a call there (LastEnd) and of an
// after-call work (WrapUntil); the zero AgentMark when they hold nothing.
// Hunt lists and queues count it as they count this node's own: an agent
// on a call through another node is busy here, one ringing there is
// ringing here (a queue does not ring it too, least_recent ranks it after
// the free agents), one in wrap-up there is skipped here, least_recent
// ranks by the latest end anywhere. An agent that left a call elsewhere,
// or whose ring there ended (unanswered, or answered: then it is on a
// call), wakes the waiting queue calls, as one that leaves a call of this
// node does.
func (s *Engine) AgentsElsewhere(agent string, m AgentMark) {
	hs := &s.hunts
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if was := hs.elsewhere[agent]; m.Active < was.Active || m.Ringing < was.Ringing {
		hs.wakeLocked()
	}
	if m == (AgentMark{}) {
		delete(hs.elsewhere, agent)
		return
	}
	if hs.elsewhere == nil {
		hs.elsewhere = make(map[string]AgentMark)
	}
	hs.elsewhere[agent] = m
}

// share hands a's state to the board, if any: at every seat and leave,
// and as each INVITE to the agent starts and ends. Called with hs.mu
// held, so that the board gets one agent's changes in the order they
// happened.
func (hs *huntState) share(name string, a *agentState) {
	if hs.board != nil {
		hs.board.Mark(name, AgentMark{Active: a.active, LastEnd: a.lastEnd, WrapUntil: a.wrapUntil, Ringing: a.ringing})
	}
}

// answered notes that the agent name ("user@endpoint") took a call, and
// returns what to call, once, when it leaves that call; wrapUp, when
// given, is then asked for the agent's after-call work (0: none). hs.mu
// is a leaf lock: it may be taken under a call's mu.
func (hs *huntState) answered(name string, wrapUp func() time.Duration) func() {
	leave := hs.seat(name, wrapUp)
	return func() { leave(true) }
}

// seat is answered whose func is told whether the agent's after-call
// work applies: not when the leg was hung up before it ever was in a
// call (its caller had gone as it answered).
func (hs *huntState) seat(name string, wrapUp func() time.Duration) func(wrap bool) {
	hs.mu.Lock()
	if hs.agents == nil {
		hs.agents = make(map[string]*agentState)
	}
	hs.sweepLocked(time.Now())
	a := hs.agents[name]
	if a == nil {
		a = &agentState{}
		hs.agents[name] = a
	}
	a.active++
	hs.share(name, a)
	hs.mu.Unlock()
	var once sync.Once
	return func(after bool) {
		once.Do(func() {
			var wrap time.Duration
			if wrapUp != nil && after {
				wrap = wrapUp()
			}
			now := time.Now()
			hs.mu.Lock()
			a.active--
			a.lastEnd = now
			// An agent on two calls wraps up until the later of them
			// allows.
			if until := now.Add(wrap); wrap > 0 && until.After(a.wrapUntil) {
				a.wrapUntil = until
			}
			hs.share(name, a)
			hs.wakeLocked()
			hs.mu.Unlock()
		})
	}
}

// agentForget is how long an agent on no call, ringing for none and out
// of wrap-up is remembered after it last left a call: every agent ever
// seated (transfer targets too) would otherwise stay for the process's
// life. least_recent then ranks it as never seen: first, as it would
// anyway. The agent board forgets its marks by the same rule.
const agentForget = 24 * time.Hour

// sweepEvery is how often seat sweeps the agents past keeping: rarely,
// so that the call path pays for it once an hour.
const sweepEvery = time.Hour

// sweepLocked forgets the agents past keeping, at most once per
// sweepEvery. An agent on no call and ringing for none has no leave or
// release func pending, so none can reach the state forgotten. Called
// with hs.mu held.
func (hs *huntState) sweepLocked(now time.Time) {
	if now.Sub(hs.sweptAt) < sweepEvery {
		return
	}
	hs.sweptAt = now
	for name, a := range hs.agents {
		if a.active == 0 && a.ringing == 0 && !now.Before(a.wrapUntil) && now.Sub(a.lastEnd) > agentForget {
			delete(hs.agents, name)
		}
	}
}

// rings notes that an INVITE to the agent name ("user@endpoint") is
// under way, and returns what to call, once, when it has ended. An
// agent that never took a call is forgotten when its last ring ends.
// With an agent board the other nodes see it ringing meanwhile.
func (hs *huntState) rings(name string) func() {
	release, _ := hs.ring(name, false)
	return release
}

// reserve is rings for a queue's ring: it notes the INVITE only when the
// agent name is neither ringing for another call nor on one, through this
// node or (as the agent board last told) another, and reports whether it
// did, so that two waiting calls never ring the same agent. Two nodes
// that reserve the same agent within the board's propagation delay
// (milliseconds) still both ring it: the reservation is not a lock in
// Redis, so that no INVITE waits for it.
func (hs *huntState) reserve(name string) (func(), bool) {
	return hs.ring(name, true)
}

func (hs *huntState) ring(name string, onlyFree bool) (func(), bool) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	a := hs.agents[name]
	if o := hs.elsewhere[name]; onlyFree && ((a != nil && (a.ringing > 0 || a.active > 0)) || o.Active > 0 || o.Ringing > 0) {
		return nil, false
	}
	if hs.agents == nil {
		hs.agents = make(map[string]*agentState)
	}
	if a == nil {
		a = &agentState{}
		hs.agents[name] = a
	}
	a.ringing++
	hs.share(name, a)
	var once sync.Once
	return func() {
		once.Do(func() {
			hs.mu.Lock()
			defer hs.mu.Unlock()
			a.ringing--
			// Shared before it may be forgotten: the other nodes must
			// see the ring end, also of an agent that never took a call.
			hs.share(name, a)
			if *a == (agentState{}) && hs.agents[name] == a {
				delete(hs.agents, name)
			}
		})
	}, true
}

// ringingNow reports whether an INVITE to the agent name is under way,
// through this node or another.
func (hs *huntState) ringingNow(name string) bool {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.elsewhere[name].Ringing > 0 {
		return true
	}
	a := hs.agents[name]
	return a != nil && a.ringing > 0
}

// wrapsUntil is when the agent name ends its after-call work, the zero
// time when it is not in wrap-up at now.
func (hs *huntState) wrapsUntil(name string, now time.Time) time.Time {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	until := hs.elsewhere[name].WrapUntil
	if a := hs.agents[name]; a != nil && a.wrapUntil.After(until) {
		until = a.wrapUntil
	}
	if !now.Before(until) {
		return time.Time{}
	}
	return until
}

// wrapUpOf is the after-call work an agent reached through list gets
// when its leg leaves the call: the list's wrap_up in the configuration
// running then (a reload applies to calls that end after it), or, for a
// list a reload removed meanwhile, the one it had when the agent
// answered. nil without a list: an extension dialled directly is no
// list's agent.
func (s *Engine) wrapUpOf(list *configs.HuntList) func() time.Duration {
	if list == nil {
		return nil
	}
	name, then := list.Name, list.WrapUp.D()
	return func() time.Duration {
		if l := s.edge.Config().HuntList(name); l != nil {
			return l.WrapUp.D()
		}
		return then
	}
}

// seatAgent marks callee, now on leg l of c reached through list (nil:
// dialled directly), busy until l leaves the call and, after that, for
// the list's wrap_up. Only pbx endpoints have agents (a BIC's callee is a WhatsApp
// user). A call that ended meanwhile seats nobody: its legs were freed
// already.
func (c *call) seatAgent(l *leg, callee sipedge.Callee, list *configs.HuntList) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seatAgentLocked(l, callee, list)
}

// seatAgentLocked is seatAgent with c.mu held.
func (c *call) seatAgentLocked(l *leg, callee sipedge.Callee, list *configs.HuntList) {
	if callee.EP == nil || callee.EP.Kind != configs.KindPBX || c.state == stateEnded {
		return
	}
	c.freeAgentLocked(l)
	l.agent = c.srv.hunts.seat(callee.Name(), c.srv.wrapUpOf(list))
}

// freeAgentLocked marks the agent on l, if any, free: l left the call.
// Called with c.mu held.
func (c *call) freeAgentLocked(l *leg) {
	if l != nil && l.agent != nil {
		l.agent(true)
		l.agent = nil
	}
}

// takeAgentLocked takes the agent on l, if any, off l and returns what
// frees it (a no-op without one), for the caller to call once l's BYE is
// on the wire. Called with c.mu held.
func (c *call) takeAgentLocked(l *leg) func() {
	if l == nil || l.agent == nil {
		return func() {}
	}
	free := l.agent
	l.agent = nil
	return func() { free(true) }
}

// dropAgentLocked marks the agent on l, if any, free without after-call
// work: its answer crossed the caller's CANCEL, so it was hung up before
// it ever was in a call. Called with c.mu held.
func (c *call) dropAgentLocked(l *leg) {
	if l != nil && l.agent != nil {
		l.agent(false)
		l.agent = nil
	}
}

// skipWrapUp passes over callee, without an INVITE, when the hunt rings a
// hunt list and callee is in after-call work; it reports whether it did.
// No attempt is recorded (nothing was sent); if nobody else answers or
// fails of itself, A hears 486 Busy Here: every agent of the list is
// busy.
func (h *hunt) skipWrapUp(callee sipedge.Callee) bool {
	if h.list == nil {
		return false
	}
	until := h.s.hunts.wrapsUntil(callee.Name(), time.Now())
	if until.IsZero() {
		return false
	}
	h.c.log.Info("target skipped: in wrap-up", "hunt", h.list.Name, "target", callee.Name(),
		"wrap_up_left_s", time.Until(until).Round(time.Millisecond).Seconds())
	if !h.hasBest || weightWrapUp >= h.best.weight {
		h.best, h.hasBest = result{code: 486, reason: "Busy Here", weight: weightWrapUp,
			cause: "agents in wrap-up", outcome: OutcomeFailed}, true
	}
	return true
}
