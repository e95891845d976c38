package b2bua

import (
	"errors"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/events"
	sipedge "github.com/wagate/wagate/sip"
)

// agentFailure is why one agent of a click-to-call did not answer, and
// what the call's record says if no agent does.
type agentFailure struct {
	code   int
	reason string
	cause  string
	by     string
	// weight ranks failures: the last of the highest is the call's. What
	// an agent said itself beats wagate's ring timeout, which beats no
	// answer at all.
	weight int
	// decline: a 6xx, the agent's answer for everyone; nobody else rings.
	decline bool
	// result and sipCode are the attempt's, for the call's record.
	result  string
	sipCode int
}

const (
	agentWeightUnreachable = iota
	agentWeightTimeout
	agentWeightResponse
)

// ringAgents calls the agents in turn until one answers, and returns its
// 2xx (ACKed, leg a up); or nil when none did or the call was ended
// meanwhile, and the call has then ended. No BIC is placed before an
// agent answers.
func (s *Engine) ringAgents(c *call, agents []sipedge.Agent, offer []byte) *sip.Response {
	// Whatever ends the call now is no outcome of the user's.
	c.setOutcome(OutcomeCancelled)
	var best *agentFailure
	for i, agent := range agents {
		if i > 0 {
			// Each agent's INVITE is a dialog of its own.
			s.reg.rebindA(c, newCallID()+bLegCallIDSuffix, agent.EP.Name)
		}
		started := time.Now()
		if !s.edge.Up(agent.EP.Name) {
			c.log.Info("agent skipped: its endpoint is down", "agent", agent.Name())
			c.noteAgent(agent, "", started, events.AttemptDown, 0)
			f := &agentFailure{code: 503, reason: "Service Unavailable", cause: "agent endpoint down", by: events.HangupWagate, weight: agentWeightUnreachable}
			if best == nil {
				best = f
			}
			continue
		}
		callID := c.a.id()
		res, f := s.ringAgent(c, agent, offer)
		if res != nil {
			c.noteAgent(agent, callID, started, events.AttemptAnswered, res.StatusCode)
			if c.route.Hunt != nil {
				c.mu.Lock()
				c.release = s.hunts.answered(agent.Callee)
				c.mu.Unlock()
			}
			return res
		}
		if f == nil {
			c.noteAgent(agent, callID, started, events.AttemptCancelled, 0)
			return nil
		}
		c.noteAgent(agent, callID, started, f.result, f.sipCode)
		if best == nil || f.weight >= best.weight {
			best = f
		}
		if f.decline {
			break
		}
		if i < len(agents)-1 {
			c.log.Info("agent did not answer; ringing the next", "leg", "a", "agent", agent.Name(), "cause", f.cause)
		}
	}
	c.finalToA(&sipedge.Rejection{Code: best.code, Reason: best.reason})
	c.end(nil, best.by, best.cause)
	return nil
}

// agentInvite builds the agent's INVITE and sets up leg a for it.
func (s *Engine) agentInvite(c *call, agent sipedge.Agent, offer []byte) *sip.Request {
	a := c.a
	a.mu.Lock()
	a.localURI, a.localTag = agent.From, newTag()
	a.remoteURI, a.remoteTarget, a.remoteTag = agent.To, agent.URI, ""
	a.routeSet = nil
	a.transport = strings.ToUpper(agent.EP.Transport)
	a.localCSeq, a.dest = 1, agent.Dest
	tag, transport, callID := a.localTag, a.transport, a.callID
	a.mu.Unlock()

	req := sip.NewRequest(sip.INVITE, agent.URI)
	from := &sip.FromHeader{Address: agent.From, Params: sip.NewParams()}
	from.Params.Add("tag", tag)
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: agent.To, Params: sip.NewParams()})
	cid := sip.CallIDHeader(callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(s.edge.Contact(transport))
	req.AppendHeader(sip.NewHeader("User-Agent", s.edge.Config().SIP.UserAgent))
	req.AppendHeader(sip.NewHeader("Allow", allowedMethods))
	for _, h := range sipedge.ClickToCallHeaders(c.route, c.id) {
		req.AppendHeader(h)
	}
	ct := sip.ContentTypeHeader("application/sdp")
	req.AppendHeader(&ct)
	req.SetBody(offer)
	req.SetTransport(transport)
	if agent.Dest != "" {
		req.SetDestination(agent.Dest)
	}
	s.edge.Prepare(req)
	return req
}

// ringAgent calls one agent. It returns the agent's 2xx (ACKed, leg a
// up); or why the agent did not answer (the next may be tried); or
// neither when the call is over (hung up through the API, shut down,
// ended from outside), and has then ended.
func (s *Engine) ringAgent(c *call, agent sipedge.Agent, offer []byte) (*sip.Response, *agentFailure) {
	req := s.agentInvite(c, agent, offer)
	tx, err := s.edge.Client().TransactionRequest(s.ctx, req)
	if err != nil {
		c.log.Warn("agent INVITE not sent", "leg", "a", "agent", agent.Name(), "error", err)
		return nil, &agentFailure{code: 503, reason: "Service Unavailable", cause: "agent unreachable", by: events.HangupWagate, weight: agentWeightUnreachable,
			result: events.AttemptUnreachable}
	}
	c.log.Info("agent INVITE sent", "leg", "a", "agent", agent.Name(), "sip_call_id_a", callIDOf(req), "after_ms", time.Since(c.created).Milliseconds())
	ring := time.NewTimer(agent.RingTimeout)
	defer ring.Stop()
	apiHangup := c.hangupRequests()
	var (
		provisional, rang, stopping, cancelSent bool
		abandon                                 <-chan time.Time
		// fail is why wagate gave up on the agent (its ring time);
		// over, set instead, ends the call.
		fail, over *agentFailure
	)
	giveUp := func(f *agentFailure, endsCall bool) {
		switch {
		case endsCall && over == nil:
			over = f
		case fail == nil:
			fail = f
		}
		if !stopping {
			stopping = true
			abandon = time.After(64 * sip.T1)
		}
		if provisional && !cancelSent {
			cancelSent = true
			s.sendCancel(c, req)
		}
	}
	// finish reports the end of an INVITE wagate had given up on.
	finish := func(suffix string) (*sip.Response, *agentFailure) {
		if over != nil {
			c.finalToA(&sipedge.Rejection{Code: over.code, Reason: over.reason})
			c.end(nil, over.by, over.cause+suffix)
			return nil, nil
		}
		f := *fail
		f.cause += suffix
		return nil, &f
	}
	handedOver := false
	defer func() {
		if !handedOver {
			tx.Terminate()
		}
	}()
	for {
		select {
		case res := <-tx.Responses():
			switch {
			case res.StatusCode < 200:
				provisional = true
				if stopping {
					giveUp(nil, false)
				} else if res.StatusCode > 100 && !rang {
					rang = true
					s.notifyProgress(c, StepAgentRinging, res.StatusCode)
				}
			case res.StatusCode < 300:
				if !s.agentAnswered(c, req, tx, res) {
					return nil, nil
				}
				if over != nil {
					// Answered as the call was being given up: hang up.
					c.log.Info("agent answered too late: BYE", "leg", "a")
					return finish("; agent answered late")
				}
				// A 2xx that crossed our CANCEL for the ring time: the
				// agent picked up, and the call goes on.
				handedOver = true
				return res, nil
			default:
				if stopping {
					return finish("")
				}
				code, reason := mapFinal(res)
				return nil, &agentFailure{code: code, reason: reason, cause: "agent " + itoa(res.StatusCode), by: events.HangupA,
					weight: agentWeightResponse, decline: res.StatusCode >= 600, result: finalResult(res.StatusCode), sipCode: res.StatusCode}
			}
		case <-tx.Done():
			if stopping {
				return finish("")
			}
			f := &agentFailure{code: 408, reason: "Request Timeout", cause: "agent no final response", by: events.HangupWagate, weight: agentWeightUnreachable,
				result: events.AttemptUnreachable}
			if err := tx.Err(); err != nil && !errors.Is(err, sip.ErrTransactionTimeout) {
				f.code, f.reason, f.cause = 503, "Service Unavailable", "agent unreachable"
			}
			return nil, f
		case <-ring.C:
			c.log.Info("agent did not answer within its ring time", "leg", "a", "agent", agent.Name(), "ring_timeout", agent.RingTimeout.String())
			giveUp(&agentFailure{code: 480, reason: "Temporarily Unavailable", cause: "agent no answer", by: events.HangupWagate, weight: agentWeightTimeout,
				result: events.AttemptNoAnswer}, false)
		case <-apiHangup:
			apiHangup = nil
			r := c.earlyEnd()
			giveUp(&agentFailure{code: r.Code, reason: r.Reason, cause: r.Log, by: events.HangupAPI}, true)
		case <-abandon:
			c.log.Warn("agent sent no final response within 64*T1 of being cancelled", "leg", "a", "cancel_sent", cancelSent)
			return finish("; agent never ended its INVITE")
		case <-c.ended:
			// Ended from outside (shutdown): CANCEL the agent; a late 2xx
			// is ACKed and hung up as a stray one.
			giveUp(&agentFailure{code: 503, reason: "Service Unavailable", cause: "call ended before answer", by: events.HangupWagate}, true)
			return nil, nil
		case <-s.ctx.Done():
			giveUp(&agentFailure{code: 503, reason: "Service Unavailable", cause: "shutdown", by: events.HangupWagate}, true)
			return finish("")
		}
	}
}

// agentAnswered ACKs the agent's 2xx and brings leg a up. It reports
// false when the call ended meanwhile (the agent then gets its BYE).
func (s *Engine) agentAnswered(c *call, req *sip.Request, tx sip.ClientTransaction, res *sip.Response) bool {
	c.a.fromUACResponse(res)
	ack := c.a.ack(req.CSeq().SeqNo)
	s.edge.Prepare(ack)
	if err := s.edge.Client().WriteRequest(ack); err != nil {
		c.log.Warn("ACK not sent", "leg", "a", "error", err)
	}
	// The agent resends its 2xx until our ACK arrives; the hook must not
	// capture the call (sipgo keeps it until Timer M).
	tx.OnRetransmission(s.reAck(ack, callIDOf(req)))
	c.mu.Lock()
	c.aAnswered, c.agentUp, c.aAck = true, true, ack
	ended := c.state == stateEnded
	c.mu.Unlock()
	if ended {
		s.sendBye(c, c.a)
		return false
	}
	return true
}

// rebindA moves a click-to-call's agent leg to a new Call-ID and
// endpoint, for the next agent of its list.
func (r *registry) rebindA(c *call, callID, endpoint string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c.a.mu.Lock()
	oldID := c.a.callID
	c.a.callID = callID
	c.a.mu.Unlock()
	c.mu.Lock()
	oldEP := c.aEndpoint
	c.aEndpoint = endpoint
	c.mu.Unlock()
	if ref, ok := r.byCallID[oldID]; !ok || ref.call != c {
		return // ended
	}
	delete(r.byCallID, oldID)
	r.byCallID[callID] = callRef{call: c, leg: c.a}
	if oldEP != endpoint {
		if r.perEP[oldEP]--; r.perEP[oldEP] <= 0 {
			delete(r.perEP, oldEP)
		}
		r.perEP[endpoint]++
	}
}

// id is the leg's Call-ID (a click-to-call's agent leg changes it from
// one agent to the next).
func (l *leg) id() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.callID
}

// aAnsweredOnce reports whether a click-to-call's agent answered (its BYE
// then ended a call that was never bridged).
func (c *call) aAnsweredOnce() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.agentUp
}

// noteAgent records one agent's attempt in the call's record.
func (c *call) noteAgent(a sipedge.Agent, callID string, started time.Time, result string, code int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.attempts = append(c.attempts, events.Attempt{Endpoint: a.EP.Name, User: a.User, SIPCallID: callID,
		StartedAt: started, EndedAt: time.Now(), SIPCode: code, Result: result})
}
