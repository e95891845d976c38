package b2bua

import (
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
	"github.com/wagate/wagate/events"
	sipedge "github.com/wagate/wagate/sip"
)

// A click-to-call rings its agents through a hunt (hunt.go, bleg.go),
// as a UIC rings its callees: one extension, or a hunt list's targets in
// its strategy's order, a parallel list forked (the first 2xx wins, the
// others are cancelled, a 2xx after the winner's is ACKed and hung up),
// failover, down endpoints skipped, 3xx followed where config allows.
// What differs is the side (agentSide): each attempt is an agent's
// dialog for leg a, and no INVITE of anyone waits for the outcome: the
// winner's 2xx is ACKed here and starts the user's call, and when no
// agent answers the call ends without one.

// agentEnd is why a click-to-call ends before any agent answered.
type agentEnd struct {
	code   int
	reason string
	cause  string
	by     string
}

// ringAgents rings the agents (already in their list's order) until one
// answers, and returns its 2xx (ACKed, leg a up); or nil when none did
// or the call was ended meanwhile, and the call has then ended. No BIC
// is placed before an agent answers.
func (s *Engine) ringAgents(c *call, agents []sipedge.Agent, offer []byte) *sip.Response {
	// Whatever ends the call now is no outcome of the user's.
	c.setOutcome(OutcomeCancelled)
	list := c.route.Hunt
	h := &hunt{s: s, c: c, side: newAgentSide(agents, list), offer: offer, list: list,
		events: make(chan attemptEvent, 16), done: make(chan struct{})}
	defer h.stopListening()
	for _, a := range agents {
		h.queue = append(h.queue, a.Callee)
	}
	var (
		// end, once set, is how the call ends: no agent may answer any
		// more, and it ends when every attempt has.
		end    *agentEnd
		suffix string
	)
	giveUp := func(e agentEnd) {
		if end == nil {
			end = &e
		}
		h.close()
		h.cancelAll(nil)
	}
	apiHangup := c.hangupRequests()
	for {
		if end == nil && h.pending == 0 {
			h.next()
		}
		if end == nil && h.pending == 0 {
			// Nobody rings and nobody is left to ring.
			e := h.agentFailure()
			end = &e
			h.close()
			if list != nil {
				c.log.Info("hunt failed", "hunt", list.Name, "attempts", len(h.attempts), "code", e.code)
			}
		}
		if end != nil && h.live == 0 {
			if h.abandoned {
				suffix += "; agent never ended its INVITE"
			}
			c.finalToA(&sipedge.Rejection{Code: end.code, Reason: end.reason})
			c.end(nil, end.by, end.cause+suffix)
			return nil
		}
		select {
		case ev := <-h.events:
			if ev.kind == evAnswered && end != nil {
				// The 2xx won just before the call was given up (the
				// API's hangup crossed it): as late as one after.
				h.lateWinner(ev, &suffix)
				continue
			}
			if ev.kind == evAnswered {
				h.stopListening()
				return h.agentAnswered(ev)
			}
			h.handle(ev, end != nil, &suffix)
		case <-apiHangup:
			// Every agent ringing gets its CANCEL; the call ends with
			// their finals.
			apiHangup = nil
			r := c.earlyEnd()
			giveUp(agentEnd{code: r.Code, reason: r.Reason, cause: r.Log, by: events.HangupAPI})
		case <-c.ended:
			// Ended from outside (shutdown): CANCEL the agents; a late
			// 2xx is ACKed and hung up by its attempt.
			giveUp(agentEnd{code: 503, reason: "Service Unavailable", cause: "call ended before answer", by: events.HangupWagate})
			h.dropWinner()
			return nil
		case <-s.ctx.Done():
			giveUp(agentEnd{code: 503, reason: "Service Unavailable", cause: "shutdown", by: events.HangupWagate})
			h.dropWinner()
			c.finalToA(&sipedge.Rejection{Code: end.code, Reason: end.reason})
			c.end(nil, end.by, end.cause)
			return nil
		}
	}
}

// agentFailure is how a click-to-call ends when no agent answered: with
// the most meaningful failure of all (hunt.resolve's weights), in the
// words of docs/api.md ("agent 486", "agent no answer", …).
func (h *hunt) agentFailure() agentEnd {
	r := h.best
	e := agentEnd{code: r.code, reason: r.reason, by: events.HangupWagate}
	switch {
	case !h.hasBest:
		e.code, e.reason, e.cause = 503, "Service Unavailable", "agent unreachable"
	case r.weight == weightResponse:
		e.cause, e.by = strings.Replace(r.cause, "b-leg", "agent", 1), events.HangupA
	case r.weight == weightTimeout:
		e.cause = "agent no answer"
	case r.weight == weightDown:
		e.cause = "agent endpoint down"
	case r.code == 408:
		e.cause = "agent no final response"
	default:
		e.cause = "agent unreachable"
	}
	return e
}

// agentAnswered makes the attempt whose 2xx won the call's leg a, ACKs
// it and returns it; nil when the call ended meanwhile.
func (h *hunt) agentAnswered(ev attemptEvent) *sip.Response {
	s, c, at := h.s, h.c, ev.at
	h.settle(ev)
	s.adoptA(c, at)
	h.noteAnswered(c.a, at)
	if !s.ackAgent(c, ev.req, ev.tx, ev.res) {
		ev.tx.Terminate()
		return nil
	}
	// The transaction is left to end by itself (Timer M): the agent's
	// retransmitted 2xx is ACKed again through it.
	return ev.res
}

// adoptA makes the winning agent's dialog the call's leg a, under the
// Call-ID the registry finds it by.
func (s *Engine) adoptA(c *call, at *attempt) {
	w := at.leg
	w.mu.Lock()
	callID, localURI, localTag, remoteURI := w.callID, w.localURI, w.localTag, w.remoteURI
	remoteTarget, transport, cseq, dest := w.remoteTarget, w.transport, w.localCSeq, w.dest
	w.mu.Unlock()
	s.reg.rebindA(c, callID, at.callee.EP)
	a := c.a
	a.mu.Lock()
	a.localURI, a.localTag, a.remoteURI, a.remoteTag = localURI, localTag, remoteURI, ""
	a.remoteTarget, a.routeSet, a.transport, a.localCSeq, a.dest = remoteTarget, nil, transport, cseq, dest
	a.mu.Unlock()
}

// agentInvite builds attempt at's INVITE to an agent, From the WhatsApp
// user at wagate's host, and sets up the attempt's leg.
func (s *Engine) agentInvite(c *call, at *attempt, fromURI sip.Uri, offer []byte) *sip.Request {
	agent, a := at.callee, at.leg
	s.reg.usePeer(c, agent.EP)
	a.mu.Lock()
	a.localURI, a.localTag = fromURI, newTag()
	a.remoteURI, a.remoteTarget, a.remoteTag = agent.To, agent.URI, ""
	a.routeSet = nil
	a.transport = strings.ToUpper(agent.EP.Transport)
	a.localCSeq, a.dest = 1, agent.Dest
	tag, transport, callID := a.localTag, a.transport, a.callID
	a.mu.Unlock()

	req := sip.NewRequest(sip.INVITE, agent.URI)
	from := &sip.FromHeader{Address: fromURI, Params: sip.NewParams()}
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
	c.log.Info("agent INVITE", "leg", "a", "agent", agent.Name(), "attempt", at.n, "sip_call_id_a", callID,
		"after_ms", time.Since(c.created).Milliseconds())
	return req
}

// ackAgent ACKs the agent's 2xx and brings leg a up. It reports false
// when the call ended meanwhile (the agent then gets its BYE).
func (s *Engine) ackAgent(c *call, req *sip.Request, tx sip.ClientTransaction, res *sip.Response) bool {
	c.a.fromUACResponse(res)
	ack := c.a.ack(req.CSeq().SeqNo)
	s.edge.Prepare(ack)
	// Up before the ACK leaves: a BYE the agent sends as soon as it has
	// the ACK must find the leg up (ackB).
	c.mu.Lock()
	c.aAnswered, c.agentUp, c.aAck = true, true, ack
	ended := c.state == stateEnded
	c.mu.Unlock()
	if err := s.edge.Client().WriteRequest(ack); err != nil {
		c.log.Warn("ACK not sent", "leg", "a", "error", err)
	}
	// The agent resends its 2xx until our ACK arrives; the hook must not
	// capture the call (sipgo keeps it until Timer M).
	tx.OnRetransmission(s.reAck(ack, callIDOf(req)))
	if ended {
		s.sendBye(c, c.a)
		return false
	}
	s.journalUp(c) // a crash from here on hangs the agent up at the restart
	return true
}

// rebindA moves a click-to-call's agent leg to a new Call-ID and
// endpoint, for the next agent of its list.
func (r *registry) rebindA(c *call, callID string, ep *configs.Endpoint) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c.a.mu.Lock()
	oldID := c.a.callID
	c.a.callID = callID
	c.a.mu.Unlock()
	c.mu.Lock()
	c.aEndpoint = ep.Name
	// Before the agent answers, so before any in-dialog request of A
	// reads it.
	c.a.ep = ep
	c.mu.Unlock()
	cur, ok := r.counted[c]
	if ref, live := r.byCallID[oldID]; !ok || !live || ref.call != c {
		return // ended
	}
	delete(r.byCallID, oldID)
	r.byCallID[callID] = callRef{call: c, leg: c.a}
	r.extra[c] = append(r.extra[c], callID)
	if cur[0] != ep.Name {
		r.uncountLocked(cur[0])
		r.perEP[ep.Name]++
		cur[0] = ep.Name
		r.counted[c] = cur
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
