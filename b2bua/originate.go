package b2bua

import (
	"errors"
	"time"

	"github.com/wagate/wagate/configs"
	"github.com/wagate/wagate/events"
	"github.com/wagate/wagate/media"
	sipedge "github.com/wagate/wagate/sip"
)

// Click-to-call: the control API asks wagate to call an agent and, once
// the agent answers, the WhatsApp user (docs/api.md "Click-to-call").
// wagate is the caller on both legs: leg a is the agent's dialog, leg b
// the business-initiated call to Meta, placed and accounted exactly as a
// dialer's INVITE would be (permission ticket, digest, SRTP, Opus). The
// agent hears a ringback tone from wagate's media while Meta rings.

// OriginClickToCall is the origin of calls started by POST /v1/calls.
const OriginClickToCall = "click_to_call"

// The steps of a click-to-call reported as call.progress events, before
// Meta's call.ringing and call.answered.
const (
	StepAgentRinging  = "agent_ringing"
	StepAgentAnswered = "agent_answered"
)

// Refusal is why wagate refused a click-to-call before dialling anyone:
// the SIP response a dialer's INVITE would have got (Code, Reason,
// MetaError for X-WABA-Error, RetryAfter), the permission gate's verdict
// and the cause written in the refused call's record.
type Refusal struct {
	Code       int
	Reason     string
	MetaError  int
	RetryAfter time.Duration
	Permission string
	Cause      string
}

// originBridge is what a click-to-call needs of its media beyond Bridge
// (media.Bridge has it).
type originBridge interface {
	OfferA() ([]byte, error)
	AnswerA(answerA []byte) ([]byte, error)
	Ringback(src media.FrameSource) (*media.Playback, error)
	AnswerBAfterRingback(answerB []byte) error
	// ReleaseSide: side s's peer may leave before a semi-attended
	// transfer's caller takes its place (no RTP timeout on it).
	ReleaseSide(s media.Side)
}

// ProgressObserver is an optional CallObserver that is also told the
// steps of a click-to-call (the events sink's call.progress).
type ProgressObserver interface {
	CallProgress(events.Call)
}

// Originate starts a click-to-call. The permission gate decides first: a
// refusal comes back at once and nothing is dialled. Otherwise the call
// exists when Originate returns (GET and DELETE /v1/calls/{id} find it),
// and a goroutine the engine owns dials the agent, then the user. A bad
// request is a *sipedge.FieldError.
func (s *Engine) Originate(r sipedge.ClickToCall) (CallInfo, *Refusal, error) {
	cfg := s.edge.Config()
	dec, agents, ferr := sipedge.RouteClickToCall(cfg, r)
	if ferr != nil {
		return CallInfo{}, nil, ferr
	}
	if dec.Hunt != nil {
		agents = s.agentOrder(dec.Hunt, agents)
	}
	agent := agents[0]
	log := s.log.With("origin", OriginClickToCall, "agent", agent.Name(), "agents", len(agents), "business", dec.Number.Number, "user", dec.User)
	permission := ""
	refuse := func(rej *sipedge.Rejection) (CallInfo, *Refusal, error) {
		log.Info("click-to-call refused", "code", rej.Code, "waba_error", rej.MetaError, "why", rej.Log)
		s.notifyOriginRefused(dec, agent, rej, permission)
		return CallInfo{}, &Refusal{Code: rej.Code, Reason: rej.Reason, MetaError: rej.MetaError, RetryAfter: rej.RetryAfter,
			Permission: permission, Cause: rej.Log}, nil
	}
	if s.edge.Draining() {
		s.over.note(overDraining, "")
		return refuse(&sipedge.Rejection{Code: 503, Reason: "Service Unavailable", Log: "draining"})
	}
	if rej := s.over.loadRefusal(s.edge.Config().SIP); rej != nil {
		return refuse(rej)
	}
	var eng FlowEngine
	if r.Flow {
		if s.flows != nil {
			// The number's own callflow (a queue route has no flow for
			// an agent's leg).
			eng = s.flows(dec.Number, configs.Route{CallFlow: dec.Number.Route.CallFlow})
		}
		if eng == nil {
			return CallInfo{}, nil, &sipedge.FieldError{Field: "callflow", Msg: "the business number has no callflow route to run"}
		}
	}
	if rej := s.checkKeying(dec, s.log.With("origin", OriginClickToCall)); rej != nil {
		return refuse(rej)
	}
	var ticket CallTicket
	if !r.Flow {
		// A flow's user is asked about when its flow connects.
		var rej *sipedge.Rejection
		if ticket, permission, rej = s.admitBIC(dec); rej != nil {
			return refuse(rej)
		}
	}
	c := &call{
		srv:        s,
		id:         newCallID(),
		dir:        sipedge.BIC,
		origin:     OriginClickToCall,
		aEndpoint:  agent.EP.Name,
		bEndpoint:  dec.BEP.Name,
		route:      dec,
		created:    time.Now(),
		ackA:       make(chan struct{}),
		ended:      make(chan struct{}),
		a:          &leg{name: "a", ep: agent.EP, side: media.SideA},
		b:          &leg{name: "b", ep: dec.BEP, side: media.SideB},
		ticket:     ticket,
		permission: permission,
	}
	// The agent's dialog has a Call-ID of its own in the form of every
	// leg wagate places, so that a stray 2xx from it is ACKed and hung up.
	c.a.callID = newCallID() + bLegCallIDSuffix
	c.b.callID = c.id + bLegCallIDSuffix
	c.log = s.log.With("call", c.id, "dir", string(dec.Dir), "origin", OriginClickToCall, "a_endpoint", agent.EP.Name,
		"b_endpoint", dec.BEP.Name, "sip_call_id", c.a.callID)
	if eng != nil {
		// Before the call is visible: its end reads c.flow.
		c.flow = newAgentFlowCall(s, c, eng)
	}
	if s.reg.admit(c, cfg.SIP.MaxCalls, agent.EP.MaxCalls, dec.BEP.MaxCalls) != admitOK {
		if ticket != nil {
			ticket.Finish(OutcomeNotSent)
		}
		s.over.note(overConcurrency, "")
		return refuse(&sipedge.Rejection{Code: 503, Reason: "Service Unavailable", Log: "concurrent call limit"})
	}
	c.log.Info("click-to-call started", "agent", agent.Name(), "user", dec.User, "business", dec.Number.Number)
	s.notifyStarted(c)
	s.journalUp(c) // a record after a crash before the answer (invite.go)

	a := legConfig(agent.EP, dec.Number)
	br, err := s.newBridge(c.id, c.log, a, legConfig(dec.BEP, dec.Number))
	if err != nil {
		r := &sipedge.Rejection{Code: 500, Reason: "Server Internal Error", Log: err.Error()}
		if errors.Is(err, media.ErrNoPorts) {
			s.over.note(overPorts, err.Error())
			r = &sipedge.Rejection{Code: 503, Reason: "Service Unavailable", Log: "no free RTP ports", RetryAfter: 5 * time.Second}
		}
		c.finalToA(r)
		c.terminate(nil, r.Log)
		return CallInfo{}, &Refusal{Code: r.Code, Reason: r.Reason, RetryAfter: r.RetryAfter, Permission: permission, Cause: r.Log}, nil
	}
	// Under the call's lock: the call is live already (Hangup, Drain),
	// and if it ended meanwhile nobody else would close the bridge.
	c.mu.Lock()
	ended := c.state == stateEnded
	if !ended {
		c.bridge = br
	}
	c.mu.Unlock()
	if ended {
		br.Close()
		return CallInfo{}, &Refusal{Code: 503, Reason: "Service Unavailable", Permission: permission, Cause: "call ended before it started"}, nil
	}
	if c.flow != nil {
		lm, ok := br.(LocalMedia)
		if !ok {
			c.terminate(nil, "media bridge cannot play a call flow")
			return CallInfo{}, &Refusal{Code: 500, Reason: "Server Internal Error", Cause: "media bridge cannot play a call flow"}, nil
		}
		c.flow.lm = lm
	}
	info, _ := c.info()
	s.wg.Go(func() { s.clickToCall(c, agents) })
	return info, nil, nil
}

// clickToCall drives a click-to-call from the agent's INVITE to the
// bridge (or to its end).
func (s *Engine) clickToCall(c *call, agents []sipedge.Agent) {
	ob, ok := c.bridge.(originBridge)
	if !ok {
		c.finalToA(&sipedge.Rejection{Code: 500, Reason: "Server Internal Error"})
		c.terminate(nil, "media bridge cannot originate calls")
		return
	}
	offer, err := ob.OfferA()
	if err != nil {
		c.finalToA(&sipedge.Rejection{Code: 500, Reason: "Server Internal Error"})
		c.terminate(nil, "offer to the agent: "+err.Error())
		return
	}
	res := s.ringAgents(c, agents, offer)
	if res == nil {
		return
	}
	answeredAt := time.Now()
	s.notifyProgress(c, StepAgentAnswered, res.StatusCode)
	offerB, err := ob.AnswerA(res.Body())
	if err != nil {
		r := sdpRejection(err)
		c.finalToA(r)
		c.terminate(nil, "agent answer: "+err.Error())
		return
	}
	c.bridge.Start(func(err error) {
		c.log.Warn("media timeout", "error", err)
		c.terminate(nil, "rtp timeout")
	})
	if c.flow != nil {
		c.flow.runForAgent(ob, offerB)
		return
	}
	if _, err := ob.Ringback(&media.RingbackTone{}); err != nil {
		c.log.Warn("no ringback for the agent", "error", err)
	}
	s.callUser(c, ob, offerB, answeredAt)
}

// notifyProgress reports a click-to-call step to the observers that take
// call.progress.
func (s *Engine) notifyProgress(c *call, step string, code int) {
	ci := c.callInfo()
	ci.Step, ci.SIPCode = step, code
	for _, o := range s.observers {
		if p, ok := o.(ProgressObserver); ok {
			p.CallProgress(ci)
		}
	}
}

// notifyOriginRefused records a click-to-call refused before anything
// was dialled (call.refused, a CDR with outcome refused).
func (s *Engine) notifyOriginRefused(dec *sipedge.Decision, agent sipedge.Agent, r *sipedge.Rejection, permission string) {
	if len(s.observers) == 0 {
		return
	}
	now := time.Now()
	cdr := events.CDR{
		CallID: newCallID(), Direction: events.BIC, Origin: OriginClickToCall,
		BusinessNumber: dec.Number.Number, PhoneNumberID: dec.Number.PhoneNumberID, User: dec.User,
		A: events.Leg{Endpoint: agent.EP.Name}, B: events.Leg{Endpoint: dec.BEP.Name},
		CreatedAt: now, EndedAt: now,
		SIPCode: r.Code, SIPReason: r.Reason, WABAError: r.MetaError, Cause: r.Log, Permission: permission,
	}
	for _, o := range s.observers {
		o.CallRefused(cdr)
	}
}

// agentOrder puts a hunt list's agents in its strategy's order
// (round_robin, least_recent; a parallel list's are all rung at once, in
// list order). It is decided once, here: the first is the agent the
// call's record names until one answers, whose endpoint's codecs the
// offer uses.
func (s *Engine) agentOrder(list *configs.HuntList, agents []sipedge.Agent) []sipedge.Agent {
	d := &sipedge.Decision{Hunt: list}
	for _, a := range agents {
		d.Callees = append(d.Callees, a.Callee)
	}
	byName := make(map[string][]sipedge.Agent, len(agents))
	for _, a := range agents {
		byName[a.Name()] = append(byName[a.Name()], a)
	}
	out := make([]sipedge.Agent, 0, len(agents))
	for _, c := range s.hunts.order(d) {
		if q := byName[c.Name()]; len(q) > 0 {
			out = append(out, q[0])
			byName[c.Name()] = q[1:]
		}
	}
	if len(out) != len(agents) {
		return agents
	}
	return out
}
