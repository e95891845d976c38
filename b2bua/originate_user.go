package b2bua

import (
	"errors"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/events"
	"github.com/wagate/wagate/media"
	sipedge "github.com/wagate/wagate/sip"
)

// userInvite builds the business-initiated INVITE of a click-to-call
// toward Meta, as placeBLeg does for a dialer's call: From the business
// number at our host, To the user at Meta, and no X-WABA header.
func (s *Engine) userInvite(c *call, offer []byte) *sip.Request {
	dec, b := c.route, c.b
	s.reg.usePeer(c, dec.BEP)
	b.mu.Lock()
	b.localURI, b.localTag = dec.BFrom, newTag()
	b.remoteURI, b.remoteTarget = dec.BTo, dec.Target
	b.transport = strings.ToUpper(dec.BEP.Transport)
	b.localCSeq, b.dest = 1, dec.Dest
	tag, transport := b.localTag, b.transport
	b.mu.Unlock()

	req := sip.NewRequest(sip.INVITE, dec.Target)
	from := &sip.FromHeader{Address: dec.BFrom, Params: sip.NewParams()}
	from.Params.Add("tag", tag)
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: dec.BTo, Params: sip.NewParams()})
	cid := sip.CallIDHeader(b.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(s.edge.Contact(transport))
	req.AppendHeader(sip.NewHeader("User-Agent", s.edge.Config().SIP.UserAgent))
	req.AppendHeader(sip.NewHeader("Allow", allowedMethods))
	ct := sip.ContentTypeHeader("application/sdp")
	req.AppendHeader(&ct)
	req.SetBody(offer)
	req.SetTransport(transport)
	if dec.Dest != "" {
		req.SetDestination(dec.Dest)
	}
	s.edge.Prepare(req)
	return req
}

// callUser places the BIC of a click-to-call whose agent has answered,
// and bridges the two when the user answers. Whatever the user's call
// ends with, the agent gets a BYE (terminate), and the call's record says
// why ("b-leg 480", "ring timeout", …).
func (s *Engine) callUser(c *call, ob originBridge, offer []byte, agentAnsweredAt time.Time) {
	select {
	case <-c.ended:
		// The agent hung up as soon as it answered: the user's phone
		// must not ring for a call that is over.
		c.log.Info("user not called: the call ended first", "leg", "b")
		return
	default:
	}
	c.mu.Lock()
	hungUp := c.apiCause != ""
	c.mu.Unlock()
	if hungUp {
		// Hung up through the API as the agent answered: the user's
		// phone must not ring for a call the business ended; the agent
		// gets its BYE.
		r := c.earlyEnd()
		c.log.Info("user not called: the call was hung up through the API", "leg", "b")
		c.finalToA(r)
		c.resetOutcome(OutcomeCancelled)
		c.terminate(nil, r.Log)
		return
	}
	req := s.userInvite(c, offer)
	unsent, live := c.invitingB()
	if !live {
		c.log.Info("user not called: the call ended first", "leg", "b")
		return
	}
	tx, err := s.edge.Client().TransactionRequest(s.ctx, req)
	if err != nil {
		unsent()
		c.log.Warn("B-leg INVITE not sent", "leg", "b", "error", err)
		c.finalToA(&sipedge.Rejection{Code: 503, Reason: "Service Unavailable"})
		c.resetOutcome(OutcomeFailed)
		c.terminate(nil, "B-leg unreachable")
		return
	}
	c.log.Info("B-leg INVITE sent", "leg", "b", "after_agent_answer_ms", time.Since(agentAnsweredAt).Milliseconds())
	// The user's phone rings until a final response: after a crash the
	// next start cancels it from the journal.
	branch := s.journalInvite(c, "b", req)
	final := false // Meta's final response came
	defer func() { s.journalInviteDone(c, branch, final) }()
	ring := time.NewTimer(s.edge.Config().SIP.RingTimeout.D())
	defer ring.Stop()
	apiHangup := c.hangupRequests()
	// The agent may transfer a caller to this user while the phone rings
	// (semi-attended, join.go): the user then answers to that caller.
	handover, closeHandover := c.openHandover()
	defer closeHandover()
	var (
		provisional, stopping, cancelSent bool
		authTries                         int
		abandon                           <-chan time.Time
		cause                             string
	)
	giveUp := func(code int, reason, why string) {
		if !stopping {
			stopping, cause = true, why
			c.finalToA(&sipedge.Rejection{Code: code, Reason: reason})
			c.resetOutcome(OutcomeCancelled)
			abandon = time.After(64 * sip.T1)
		}
		if provisional && !cancelSent {
			cancelSent = true
			s.sendCancel(c, req)
		}
	}
	defer func() { tx.Terminate() }()
	ended := c.ended
	for {
		select {
		case res := <-tx.Responses():
			final = res.StatusCode >= 200
			switch {
			case res.StatusCode < 200:
				provisional = true
				if stopping {
					giveUp(0, "", "")
				} else if res.StatusCode > 100 {
					s.notifyRinging(c, res.StatusCode)
				}
			case res.StatusCode < 300:
				s.userAnswered(c, ob, req, tx, res, stopping, cause)
				return
			default:
				if (res.StatusCode == 401 || res.StatusCode == 407) && !stopping {
					if retry := s.answerB(c, c.route.BEP, req, res, authTries, c.log.With("leg", "b")); retry != nil {
						ntx, err := s.edge.Client().TransactionRequest(s.ctx, retry)
						if err == nil {
							authTries++
							tx.Terminate()
							s.journalInviteEnded(c, branch)
							branch = s.journalInvite(c, "b", retry)
							req, tx, provisional, final = retry, ntx, false, false
							c.b.mu.Lock()
							c.b.localCSeq = retry.CSeq().SeqNo
							c.b.mu.Unlock()
							continue
						}
						c.log.Warn("B-leg INVITE with credentials not sent", "leg", "b", "error", err)
					}
				}
				if !stopping {
					code, reason := mapFinal(res)
					c.finalToA(&sipedge.Rejection{Code: code, Reason: reason})
					c.resetOutcome(outcomeFor(res.StatusCode, res.Reason))
					cause = "b-leg " + itoa(res.StatusCode)
				}
				c.log.Info("user did not answer; agent hung up", "leg", "b", "code", res.StatusCode, "cause", cause)
				c.terminate(nil, cause)
				return
			}
		case <-tx.Done():
			if !stopping {
				code, reason := 408, "Request Timeout"
				if err := tx.Err(); err != nil && !errors.Is(err, sip.ErrTransactionTimeout) {
					code, reason = 503, "Service Unavailable"
				}
				c.finalToA(&sipedge.Rejection{Code: code, Reason: reason})
				c.resetOutcome(OutcomeFailed)
				cause = "b-leg no final response"
			}
			c.terminate(nil, cause)
			return
		case <-ring.C:
			giveUp(480, "Temporarily Unavailable", "ring timeout")
		case <-apiHangup:
			apiHangup = nil
			r := c.earlyEnd()
			giveUp(r.Code, r.Reason, r.Log)
		case <-handover:
			// The agent transferred a caller to this user: it may hang up
			// now (its leg alone ends, onBye), and its silence must not
			// end the call while the user rings for the caller.
			handover = nil
			ob.ReleaseSide(media.SideA)
		case <-abandon:
			c.log.Warn("B-leg sent no final response within 64*T1 of being cancelled; call ended", "leg", "b", "cancel_sent", cancelSent)
			c.terminate(nil, cause+"; b-leg never ended its INVITE")
			return
		case <-ended:
			// The agent hung up (or shutdown): Meta's INVITE is
			// cancelled, once Meta has sent a provisional response (RFC
			// 3261 §9.1: until then the INVITE is waited on, else it
			// rang on with nobody to cancel it), and a 2xx is ACKed and
			// hung up (userAnswered).
			ended = nil
			giveUp(487, "Request Terminated", "agent hung up before the user answered")
		case <-s.ctx.Done():
			giveUp(503, "Service Unavailable", "shutdown")
			c.terminate(nil, cause)
			return
		}
	}
}

// userAnswered takes Meta's 2xx: ACK it, stop the ringback and bridge
// the agent and the user; or, when wagate had given up meanwhile, hang
// the user up.
func (s *Engine) userAnswered(c *call, ob originBridge, req *sip.Request, tx sip.ClientTransaction, res *sip.Response, late bool, cause string) {
	// Meta connected the call: it counts toward the user's daily limit
	// whatever happens next.
	c.connected()
	c.b.fromUACResponse(res)
	ack := c.b.ackOf(req)
	s.edge.Prepare(ack)
	// Up before the ACK leaves: a BYE the user sends as soon as it has
	// the ACK must find the leg up (ackB).
	c.mu.Lock()
	c.bAnswered, c.bAck = true, ack
	ended := c.state == stateEnded
	c.mu.Unlock()
	if err := s.edge.Client().WriteRequest(ack); err != nil {
		c.log.Warn("ACK not sent", "leg", "b", "error", err)
	}
	tx.OnRetransmission(s.reAck(ack, c.b.callID))
	switch {
	case ended:
		s.sendBye(c, c.b)
		return
	case late:
		c.terminate(nil, cause+"; b answered late")
		return
	}
	if err := ob.AnswerBAfterRingback(res.Body()); err != nil {
		if c.getState() == stateEnded {
			// The user hung up as soon as it had the ACK.
			return
		}
		c.finalToA(sdpRejection(err))
		c.terminate(nil, "B-leg answer: "+err.Error())
		return
	}
	if ho := s.takeAnswer(c); ho != nil {
		s.joinHandover(c, ho)
		return
	}
	// A REFER that came too late to hand the user over waits for this to
	// be through, and joins the call as answered (answeredMeanwhile).
	defer c.answerSettled()
	if f := s.ctl.userAnswerTaken.Load(); f != nil {
		(*f)()
	}
	c.mu.Lock()
	if c.state != stateCalling || c.apiCause != "" {
		c.mu.Unlock()
		c.end(nil, events.HangupAPI, c.earlyEnd().Log)
		return
	}
	c.state = stateConfirmed
	c.answeredAt = time.Now()
	c.mu.Unlock()
	s.notifyAnswered(c)
	s.journalUp(c)
	c.log.Info("call answered", "setup_ms", time.Since(c.created).Milliseconds())
	s.startRecording(c)
	// An agent that held while the user's phone rang (its re-INVITE
	// was answered then) is still holding: the user hears music.
	c.updateMOH()
}

// resetOutcome records how the user's call ended, replacing the
// "cancelled" that stood while only the agent was being called.
func (c *call) resetOutcome(o Outcome) {
	c.mu.Lock()
	c.outcome, c.outcomeSet = o, true
	c.mu.Unlock()
}
