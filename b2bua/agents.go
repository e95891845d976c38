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
// The bookkeeping hangs on the leg (leg.agent, under the call's mu), not
// on the call: one call passes through several agents.

type agentState struct {
	active  int       // calls the agent is on now
	lastEnd time.Time // when it last left one
}

// answered notes that the agent name ("user@endpoint") took a call, and
// returns what to call, once, when it leaves that call. hs.mu is a leaf
// lock: it may be taken under a call's mu.
func (hs *huntState) answered(name string) func() {
	hs.mu.Lock()
	if hs.agents == nil {
		hs.agents = make(map[string]*agentState)
	}
	a := hs.agents[name]
	if a == nil {
		a = &agentState{}
		hs.agents[name] = a
	}
	a.active++
	hs.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			hs.mu.Lock()
			a.active--
			a.lastEnd = time.Now()
			hs.mu.Unlock()
		})
	}
}

// seatAgent marks callee, now on leg l of c, busy until l leaves the
// call. Only pbx endpoints have agents (a BIC's callee is a WhatsApp
// user). A call that ended meanwhile seats nobody: its legs were freed
// already.
func (c *call) seatAgent(l *leg, callee sipedge.Callee) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seatAgentLocked(l, callee)
}

// seatAgentLocked is seatAgent with c.mu held.
func (c *call) seatAgentLocked(l *leg, callee sipedge.Callee) {
	if callee.EP == nil || callee.EP.Kind != configs.KindPBX || c.state == stateEnded {
		return
	}
	c.freeAgentLocked(l)
	l.agent = c.srv.hunts.answered(callee.Name())
}

// freeAgentLocked marks the agent on l, if any, free: l left the call.
// Called with c.mu held.
func (c *call) freeAgentLocked(l *leg) {
	if l != nil && l.agent != nil {
		l.agent()
		l.agent = nil
	}
}
