package b2bua

import (
	"errors"
	"fmt"
	"time"

	"github.com/wagate/wagate/callflow"
	"github.com/wagate/wagate/events"
	"github.com/wagate/wagate/media"
	"github.com/wagate/wagate/prompt"
	sipedge "github.com/wagate/wagate/sip"
)

// A click-to-call started with a call flow (POST /v1/calls with
// "callflow": true) runs the business number's call-flow route on the
// agent's leg once the agent answers: prompts go to the agent, the
// agent's keys to the flow. The flow's connect to a WhatsApp user is
// the user leg of every click-to-call (originate_user.go), asked of the
// permission gate only then: a refusal goes back to the flow as a failed
// connect (the flow goes on), a call that went out ends as a
// click-to-call's user leg ends.

// newAgentFlowCall is the flow of click-to-call c; its media (lm) is set
// once the call's bridge exists, before the call is dialled.
func newAgentFlowCall(s *Engine, c *call, eng FlowEngine) *flowCall {
	d := c.route
	fc := &flowCall{s: s, c: c, eng: eng, log: c.log, keys: make(chan rune, keyBuffer), cdrReady: make(chan struct{})}
	fc.info = callflow.Info{
		CallID: c.id, Direction: string(d.Dir),
		BusinessNumber: d.Number.Number, PhoneNumberID: d.Number.PhoneNumberID,
		SampleRate: prompt.Rate8k,
	}
	fc.player = newFlowPlayer(fc)
	return fc
}

// runForAgent starts the flow once the agent answered (AnswerA, the
// bridge started): offerB is the offer its connect sends to Meta.
func (fc *flowCall) runForAgent(ob originBridge, offerB []byte) {
	fc.ob, fc.offerB = ob, offerB
	// The agent is on plain RTP: it hears what is played at once.
	ready := make(chan struct{})
	close(ready)
	fc.ready = ready
	fc.lm.OnDTMF(fc.key)
	fc.log.Info("click-to-call: agent answered; call flow started", "leg", "a")
	// The call stays "calling" until the user answers: DELETE asks
	// whoever rings to give up, and while the flow talks to the agent
	// nobody rings. A user's INVITE under way is cancelled when the call
	// ends (callUser).
	c, s := fc.c, fc.s
	s.wg.Go(func() {
		select {
		case <-c.hangupRequests():
			c.end(nil, events.HangupAPI, c.earlyEnd().Log)
		case <-c.ended:
		case <-s.ctx.Done():
		}
	})
	fc.start()
}

// connectUser is a click-to-call flow's connect: the permission gate
// first, then the user's BIC exactly as a click-to-call places it, and
// the agent bridged to the user when the user answers.
func (fc *flowCall) connectUser(t callflow.Target) error {
	s, c := fc.s, fc.c
	if t.Kind != callflow.TargetWhatsApp {
		return fmt.Errorf("b2bua: connect: a click-to-call's flow connects the agent to a WhatsApp user only, not to a %s", t.Kind)
	}
	if fc.userCalled {
		return errors.New("b2bua: connect: this click-to-call called its WhatsApp user already")
	}
	c.mu.Lock()
	cur := c.route
	c.mu.Unlock()
	dec, ferr := sipedge.RouteFlowUser(s.edge.Config(), cur, t.Destination)
	if ferr != nil {
		return fmt.Errorf("b2bua: connect: %s", ferr.Msg)
	}
	ticket, permission, rej := s.admitBIC(dec)
	c.mu.Lock()
	c.permission = permission
	c.mu.Unlock()
	if rej != nil {
		fc.log.Info("call flow connect refused by the permission gate", "leg", "b", "user", dec.User,
			"code", rej.Code, "waba_error", rej.MetaError, "permission", permission)
		return fmt.Errorf("b2bua: connect: permission gate refused the call: %d %s, WhatsApp error %d (permission %s)",
			rej.Code, rej.Reason, rej.MetaError, permission)
	}
	fc.userCalled = true
	c.mu.Lock()
	ended := c.state == stateEnded
	if !ended {
		c.route, c.ticket = dec, ticket
	}
	c.mu.Unlock()
	if ended {
		if ticket != nil {
			ticket.Finish(OutcomeNotSent)
		}
		return callflow.ErrCallEnded
	}
	fc.log.Info("call flow connect: calling the WhatsApp user", "leg", "b", "user", dec.User, "permission", permission)
	if _, err := fc.ob.Ringback(&media.RingbackTone{}); err != nil {
		fc.log.Warn("no ringback for the agent", "error", err)
	}
	s.callUser(c, fc.ob, fc.offerB, time.Now())
	c.mu.Lock()
	up := c.bAnswered && c.state == stateConfirmed
	c.mu.Unlock()
	if !up {
		// callUser ended the call, as a click-to-call's unanswered user
		// leg ends it.
		return callflow.ErrCallEnded
	}
	return nil
}
