package b2bua

import (
	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
	sipedge "github.com/wagate/wagate/sip"
)

// huntSide is the leg a hunt's attempts dial for. The hunt itself (which
// callee rings next, failover, forks, 3xx, which 2xx wins) is the same
// for all; what differs is the INVITE and who hears the progress:
//   - bSide: the call's B-leg, the callee of A's INVITE (a UIC, a BIC)
//     or of a call flow's connect;
//   - agentSide: a click-to-call's agent leg, which no INVITE of anyone
//     waits on (wagate is the caller; the agent's answer starts the
//     user's call).
type huntSide interface {
	// newLeg is the dialog of the call's nth attempt.
	newLeg(c *call, n int) *leg
	// invite builds attempt at's INVITE with offer and sets up at.leg.
	invite(s *Engine, c *call, at *attempt, offer []byte) *sip.Request
	// ringing is told each ringing 1xx (not 100) of an attempt the hunt
	// still wants, while nobody has answered.
	ringing(h *hunt, at *attempt, res *sip.Response)
	// lateAnswer is told of a 2xx that crossed the caller's giving up
	// (ACKed and hung up already by its attempt).
	lateAnswer(c *call)
	// kind names the leg its attempts ring in the live view
	// (RingingLeg.Leg).
	kind() string
}

// bSide rings the call's B-leg.
type bSide struct{}

func (bSide) newLeg(c *call, n int) *leg {
	return &leg{name: "b", callID: bLegCallID(c.id, n)}
}

func (bSide) invite(s *Engine, c *call, at *attempt, offer []byte) *sip.Request {
	return s.bInvite(c, at, offer)
}

// ringing relays B's ringing to A: every 1xx of a single callee, the
// first of a hunt list (A hears one ringing for the whole hunt), none
// when wagate answered A itself.
func (bSide) ringing(h *hunt, _ *attempt, res *sip.Response) {
	switch {
	case h.local:
	case h.list == nil:
		h.s.relayProvisional(h.c, res, true)
	case !h.rang:
		h.rang = true
		h.s.relayProvisional(h.c, res, false)
	}
}

// lateAnswer: B answered as A gave up. Meta connected a BIC all the
// same: it counts for the user.
func (bSide) lateAnswer(c *call) { c.connected() }

func (bSide) kind() string { return "b" }

// agentSide rings a click-to-call's agents, as From the WhatsApp user
// at wagate's host.
type agentSide struct {
	from sip.Uri
	// follow: sequential strategies move the call's leg a (its Call-ID
	// and endpoint, as GET /v1/calls shows them) to each agent as it
	// rings; a parallel list's agents ring at once, and leg a names the
	// first until one answers.
	follow bool
}

func newAgentSide(agents []sipedge.Agent, list *configs.HuntList) agentSide {
	return agentSide{from: agents[0].From, follow: list == nil || list.Strategy != configs.HuntParallel}
}

// newLeg: the first agent's dialog has the Call-ID the call was
// registered with; the others new ones in the form of every leg wagate
// places, so that a stray 2xx from them is ACKed and hung up.
func (agentSide) newLeg(c *call, n int) *leg {
	id := c.a.id()
	if n > 1 {
		id = newCallID() + bLegCallIDSuffix
	}
	return &leg{name: "a", callID: id}
}

func (as agentSide) invite(s *Engine, c *call, at *attempt, offer []byte) *sip.Request {
	if as.follow {
		s.reg.rebindA(c, at.leg.id(), at.callee.EP)
	}
	return s.agentInvite(c, at, as.from, offer)
}

// ringing reports each agent's first ringing as a call.progress step.
func (agentSide) ringing(h *hunt, at *attempt, res *sip.Response) {
	if !at.rang {
		at.rang = true
		h.s.notifyProgress(h.c, StepAgentRinging, res.StatusCode)
	}
}

// lateAnswer: an agent's 2xx after the call was given up is no call of
// the user's.
func (agentSide) lateAnswer(*call) {}

func (agentSide) kind() string { return "a" }
