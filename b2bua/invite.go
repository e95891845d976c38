package b2bua

import (
	"errors"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
	"github.com/wagate/wagate/media"
	sipedge "github.com/wagate/wagate/sip"
)

// Invite takes a dialog-creating INVITE from endpoint ep (which the edge
// identified and authenticated). It runs in sipgo's goroutine for the
// INVITE and stays until A has a final response and, for 2xx, until A's
// ACK: the server transaction ends when it returns.
func (s *Engine) Invite(req *sip.Request, tx sip.ServerTransaction, ep *configs.Endpoint) {
	s.invite(req, tx, ep)
	// A has its final response (and, after a 2xx, wagate has A's ACK or
	// gave up on it): nothing reads the INVITE again (what the call needs
	// later was copied into it, aInviteFacts), and its transaction keeps
	// it only to match retransmissions by key (release.go). Not deferred:
	// after a panic the guard answers 500 from req.
	sipedge.Release(req)
}

func (s *Engine) invite(req *sip.Request, tx sip.ServerTransaction, ep *configs.Endpoint) {
	log := s.log.With("sip_call_id", callIDOf(req), "leg", "a", "endpoint", ep.Name)
	// refuse answers an INVITE refused before any call exists, and
	// records it (a CDR with outcome refused).
	var dec *sipedge.Decision
	permission := ""
	refuse := func(r *sipedge.Rejection) {
		s.edge.Reject(tx, req, r, log)
		s.notifyRefused(req, ep, dec, r, permission)
	}
	if s.edge.Draining() {
		s.over.note(overDraining, "")
		refuse(&sipedge.Rejection{Code: 503, Reason: "Service Unavailable", Log: "draining", NodeUnavailable: sipedge.NodeDraining})
		return
	}
	if rej := s.over.loadRefusal(s.edge.Config().SIP); rej != nil {
		refuse(rej)
		return
	}
	if !s.cps.allow(ep.Name, ep.MaxCPS) {
		s.over.note(overCPS, "endpoint "+ep.Name+" over "+itoa(ep.MaxCPS)+" calls/s")
		refuse(&sipedge.Rejection{Code: 503, Reason: "Service Unavailable", Log: "overload: endpoint call rate", RetryAfter: time.Second,
			NodeUnavailable: sipedge.NodeOverloaded})
		return
	}
	if mf := req.MaxForwards(); mf != nil && mf.Val() <= 1 {
		refuse(&sipedge.Rejection{Code: 483, Reason: "Too Many Hops", Log: "Max-Forwards exhausted"})
		return
	}
	if len(req.Body()) == 0 {
		refuse(&sipedge.Rejection{Code: 488, Reason: "Not Acceptable Here", Warning: "INVITE without SDP offer is not supported", Log: "offerless INVITE"})
		return
	}
	if ct := req.ContentType(); ct != nil && !isSDPType(ct.Value()) {
		refuse(&sipedge.Rejection{Code: 415, Reason: "Unsupported Media Type", Warning: "the offer must be application/sdp",
			Log: "INVITE body is " + truncate(ct.Value(), 64), Accept: "application/sdp"})
		return
	}
	cfg := s.edge.Config()
	dec, rej := sipedge.RouteAt(cfg, ep, req, s.edge.Now())
	if rej != nil {
		refuse(rej)
		return
	}
	if !s.anyUp(dec) {
		// The probes say no callee can answer: the caller hears so now
		// rather than after a timeout, and nothing is allocated.
		refuse(&sipedge.Rejection{Code: 503, Reason: "Service Unavailable", Log: "route endpoints down"})
		return
	}
	// The permission gate decides before any media or call state exists,
	// so a refused call costs nothing and nothing leaves toward Meta.
	var ticket CallTicket
	if dec.Dir == sipedge.BIC {
		if rej := s.checkKeying(dec, log); rej != nil {
			refuse(rej)
			return
		}
		ticket, permission, rej = s.admitBIC(dec)
		if rej != nil {
			refuse(rej)
			return
		}
	}

	// A call wagate answers itself (a call flow or queue route) uses no
	// PBX until a connect answers: its B endpoint is nobody's yet, so the
	// callers in the menu or the line count against no pbx's max_calls
	// (a connect checks it: flowCall.ring), and its record names no
	// extension it never reached.
	bEndpoint, bUser, maxB := dec.BEP.Name, dec.Callees[0].User, dec.BEP.MaxCalls
	if dec.CallFlow != nil || dec.Queue != nil {
		bEndpoint, bUser, maxB = "", "", 0
	}
	c := &call{
		srv:        s,
		id:         newCallID(),
		dir:        dec.Dir,
		aEndpoint:  ep.Name,
		bEndpoint:  bEndpoint,
		bUser:      bUser,
		aSource:    req.Source(),
		route:      dec,
		aInvite:    req,
		aIncoming:  incomingOf(req),
		aTx:        tx,
		created:    time.Now(),
		ackA:       make(chan struct{}),
		ended:      make(chan struct{}),
		a:          &leg{name: "a", ep: ep, side: media.SideA},
		b:          &leg{name: "b", ep: dec.BEP, side: media.SideB},
		ticket:     ticket,
		permission: permission,
	}
	c.a.fromUAS(req, newTag())
	c.aFacts = aInviteFactsOf(req)
	defer c.forgetAInvite()
	c.b.callID = c.id + bLegCallIDSuffix
	c.log = s.log.With("call", c.id, "dir", string(dec.Dir), "a_endpoint", ep.Name, "b_endpoint", dec.BEP.Name, "sip_call_id", c.a.callID)

	// refuseGated refuses a call the permission gate admitted, releasing
	// its reservation; Meta never saw the call, so it gives back its
	// count toward the number's calls of the day.
	refuseGated := func(r *sipedge.Rejection) {
		if ticket != nil {
			ticket.Finish(OutcomeNotSent)
		}
		refuse(r)
	}
	switch s.reg.admit(c, cfg.SIP.MaxCalls, ep.MaxCalls, maxB) {
	case admitDuplicate:
		refuseGated(&sipedge.Rejection{Code: 482, Reason: "Loop Detected", Log: "Call-ID already in a live call"})
		return
	case admitFull:
		s.over.note(overConcurrency, "")
		refuseGated(&sipedge.Rejection{Code: 503, Reason: "Service Unavailable", Log: "concurrent call limit", NodeUnavailable: sipedge.NodeFull})
		return
	}
	if s.edge.Draining() {
		// The stop signal came while the permission gate waited on its
		// store: the INVITE is refused like any after it, and the proxy
		// retries another node, instead of a call starting on a node
		// that is going away.
		s.reg.withdraw(c)
		s.over.note(overDraining, "")
		refuseGated(&sipedge.Rejection{Code: 503, Reason: "Service Unavailable", Log: "draining", NodeUnavailable: sipedge.NodeDraining})
		return
	}
	attrs := []any{"user", dec.User, "business", dec.Number.Number}
	if dec.BIC != nil && dec.BIC.CampaignID != "" {
		attrs = append(attrs, "campaign", dec.BIC.CampaignID)
	}
	c.log.Info("call started", attrs...)
	s.notifyStarted(c)
	// Journaled from its start, so that a crash before the answer still
	// leaves the call a record (no BYE: nothing was answered).
	s.journalUp(c)
	s.edge.Respond(tx, req, 100, "Trying", nil)
	if len(dec.UIC.Dropped) > 0 {
		c.log.Warn("x-wa-meta headers not used", "headers", strings.Join(dec.UIC.Dropped, ", "))
	}
	if dec.Dir == sipedge.UIC && dec.Number.CallbackPermission && dec.User != "" {
		if g := s.permissionGate(); g != nil {
			g.GrantFromUIC(dec.Number.PhoneNumberID, dec.User)
		}
	}

	if rej := s.setupMedia(c); rej != nil {
		s.rejectCall(c, rej)
		return
	}
	if dec.CallFlow != nil || dec.Queue != nil {
		s.answerFlow(c) // flowcall.go
		return
	}
	s.placeBLeg(c)
}

// isRetransmission reports whether req is a retransmission of the INVITE
// that started a live call: same Call-ID, From tag and CSeq.
func (s *Engine) isRetransmission(req *sip.Request) bool {
	ref, ok := s.reg.lookup(callIDOf(req))
	if !ok {
		return false
	}
	orig := ref.call.aFacts
	if a, _ := ref.call.legs(); ref.leg != a || !orig.set {
		// (A click-to-call's agent leg is wagate's own INVITE.)
		return false
	}
	tag, _ := req.From().Params.Get("tag")
	return tag == orig.fromTag && req.CSeq().SeqNo == orig.cseq
}

// admitBIC asks the permission gate about a business-initiated call, and
// names its verdict for the call's record. No gate (permissions disabled)
// admits every call without a ticket.
func (s *Engine) admitBIC(dec *sipedge.Decision) (CallTicket, string, *sipedge.Rejection) {
	g := s.permissionGate()
	if g == nil {
		return nil, "", nil
	}
	adm, ticket := g.AdmitBIC(dec.Number.PhoneNumberID, dec.User)
	verdict := permissionVerdict(adm)
	if adm.Code == 0 && ticket != nil {
		return ticket, verdict, nil
	}
	if ticket != nil {
		// A refusal with a ticket would leak the reservation.
		ticket.Finish(OutcomeNotSent)
	}
	r := &sipedge.Rejection{Code: adm.Code, Reason: adm.Reason, MetaError: adm.MetaError, RetryAfter: adm.RetryAfter,
		Log: "permission gate refused the call"}
	if r.Code < 400 || r.Code > 699 {
		// An allowing answer without a ticket is a gate bug; refuse
		// rather than place an unaccounted call.
		r.Code, r.Reason, r.Log = 500, "Server Internal Error", "permission gate answered without a ticket"
	}
	if r.Reason == "" || !sipedge.ValidHeaderValue(r.Reason) {
		r.Reason = sipedge.DefaultReason(r.Code)
	}
	return nil, verdict, r
}

// rejectCall answers A with a final error and ends a call that never got a
// B-leg answer.
func (s *Engine) rejectCall(c *call, r *sipedge.Rejection) {
	s.rejectA(c, r)
	c.terminate(nil, r.Log)
}

// rejectA sends A its final error response and records it for the call's
// record.
func (s *Engine) rejectA(c *call, r *sipedge.Rejection) {
	c.finalToA(r)
	s.edge.Reject(c.aTx, c.aInvite, r, c.log)
}

func (s *Engine) setupMedia(c *call) *sipedge.Rejection {
	a := legConfig(c.route.AEP, c.route.Number)
	a.SignalIP = sourceIP(c.aInvite)
	br, err := s.newBridge(c.id, c.log, a, legConfig(c.route.BEP, c.route.Number))
	if err != nil {
		if errors.Is(err, media.ErrNoPorts) {
			s.over.note(overPorts, err.Error())
			return &sipedge.Rejection{Code: 503, Reason: "Service Unavailable", Log: "no free RTP ports", NodeUnavailable: sipedge.NodeFull}
		}
		return &sipedge.Rejection{Code: 500, Reason: "Server Internal Error", Log: err.Error()}
	}
	// Under the call's lock: the call is already live (Hangup, Drain),
	// and if it was ended meanwhile nobody else will close the bridge.
	c.mu.Lock()
	ended := c.state == stateEnded
	if !ended {
		c.bridge = br
	}
	c.mu.Unlock()
	if ended {
		br.Close()
		return c.earlyEnd()
	}
	return nil
}

// placeBLeg makes the offer toward B and rings the call's callees (ring)
// until A has its answer (or its final error) and, after a 2xx, A's ACK.
func (s *Engine) placeBLeg(c *call) {
	offer, err := c.bridge.Offer(c.aInvite.Body())
	if err != nil {
		s.rejectCall(c, sdpRejection(err))
		return
	}
	s.ring(c, offer)
}

// onBAnswer handles B's 2xx: ACK it, answer A (unless A is gone, in which
// case B is hung up at once), then wait for A's ACK.
func (s *Engine) onBAnswer(c *call, bReq *sip.Request, btx sip.ClientTransaction, res *sip.Response, aGone bool, cause string, cancelled <-chan struct{}) {
	// A released to a semi-attended transfer's handover has its 487.
	c.mu.Lock()
	released := c.cc.aReleased
	c.mu.Unlock()
	if s.ackB(c, bReq, btx, res) {
		// Ended from outside (Hangup, Drain) as B answered: terminate did
		// not know B was up.
		if !aGone && !released {
			s.rejectA(c, c.earlyEnd())
		}
		s.sendBye(c, c.b)
		return
	}
	if aGone {
		// The CANCEL/200 race: B answered as we gave up on it.
		c.terminate(nil, cause+"; b answered late")
		return
	}
	answer, err := c.bridge.AnswerB(res.Body())
	if err != nil {
		r := sdpRejection(err)
		if c.getState() == stateEnded {
			// B hung up as soon as it had the ACK (its media is
			// closed): A hears the call ended, not a media error.
			r = c.earlyEnd()
		}
		if released {
			c.finalToA(r)
		} else {
			s.rejectA(c, r)
		}
		c.terminate(nil, "B-leg answer: "+err.Error())
		return
	}
	if ho := s.takeAnswer(c); ho != nil {
		s.joinHandover(c, ho)
		return
	}
	ok := s.answerA(c, answer, cancelled)
	if !ok {
		return
	}
	c.mu.Lock()
	if c.state == stateAnswered {
		c.state = stateConfirmed
	}
	c.mu.Unlock()
	c.log.Debug("call confirmed", "setup_ms", time.Since(c.created).Milliseconds())
}

// ackB ACKs B's winning 2xx and marks B up. It reports whether the call
// had ended from outside first (then terminate did not know B was up,
// and B must get its BYE).
func (s *Engine) ackB(c *call, bReq *sip.Request, btx sip.ClientTransaction, res *sip.Response) (endedFirst bool) {
	// Meta connected the call (the user answered), whatever happens to
	// A now: it counts toward the user's daily limit.
	c.connected()
	c.b.fromUACResponse(res)
	ack := c.b.ackOf(bReq)
	s.edge.Prepare(ack)
	// B resends its 2xx until our ACK arrives; each one gets the ACK again.
	// Once this transaction ends, onStrayResponse takes over. The hook must
	// not capture the call: sipgo keeps the transaction (and so the hook)
	// until Timer M fires, sip.transaction_linger after the 2xx, whether
	// or not the transaction was terminated (finishAnswered drops the ACK
	// from the hook then).
	r := &reAcker{s: s, callID: c.b.callID}
	r.ack.Store(ack)
	// B is up before the ACK leaves: a peer may hang up as soon as it has
	// the ACK, and its BYE, handled on its own goroutine, must find B up
	// (else it got 481 and the call stayed up without B).
	c.mu.Lock()
	c.bAnswered = true
	c.bAck = ack
	c.bReAck = r
	endedFirst = c.state == stateEnded
	c.mu.Unlock()
	if err := s.edge.Client().WriteRequest(ack); err != nil {
		c.log.Warn("ACK not sent", "leg", "b", "error", err)
	}
	btx.OnRetransmission(r.resend)
	return endedFirst
}

// reAck returns a hook that resends ack for each retransmitted 2xx.
func (s *Engine) reAck(ack *sip.Request, callID string) func(*sip.Response) {
	return func(*sip.Response) {
		if err := s.edge.Client().WriteRequest(ack.Clone()); err != nil {
			s.log.Debug("ACK resend failed", "leg", "b", "sip_call_id", callID, "error", err)
		}
	}
}

// answerA sends our 2xx to A, starts media and waits for A's ACK.
func (s *Engine) answerA(c *call, answer []byte, cancelled <-chan struct{}) bool {
	res := sip.NewResponseFromRequest(c.aInvite, 200, "OK", answer)
	s.setLocalTag(c, res)
	res.AppendHeader(s.edge.Contact(c.a.transport))
	res.AppendHeader(sip.NewHeader("Server", s.edge.Config().SIP.UserAgent))
	res.AppendHeader(sip.NewHeader("Allow", allowFor(c.route.AEP)))
	ct := sip.ContentTypeHeader("application/sdp")
	res.AppendHeader(&ct)

	c.mu.Lock()
	if c.state != stateCalling || c.apiCause != "" {
		// Ended from outside, or hung up through the API, since B
		// answered: A still waits for a final response, and B (up now)
		// for its BYE, which terminate sends unless it already has.
		c.mu.Unlock()
		r := c.earlyEnd()
		s.rejectA(c, r)
		c.terminate(nil, r.Log)
		return false
	}
	c.state = stateAnswered
	c.aAnswered, c.aAwaitingAck = true, true
	c.answeredAt = time.Now()
	c.mu.Unlock()
	// Before the 200 leaves: A may hang up as soon as it has it, and
	// call.ended must not overtake call.answered.
	s.notifyAnswered(c)

	if err := c.aTx.Respond(res); err != nil {
		// sipgo tells of A's CANCEL (OnCancel) before it ends the
		// transaction with 487, so a CANCEL that made the 200 fail has
		// been told by now: that is the CANCEL/200 race, not a fault.
		select {
		case <-cancelled:
			c.answerCrossedCancel()
			return false
		default:
		}
		c.log.Warn("200 to A not sent", "leg", "a", "error", err)
		c.stopAwaitingAck() // no 2xx: no ACK to wait for, no BYE
		c.terminate(nil, "A-leg transport error")
		return false
	}
	s.journalUp(c)
	// A CANCEL processed just before our 200 means sipgo sent 487 and
	// dropped the 200: A is gone, so B must go too.
	select {
	case <-cancelled:
		c.answerCrossedCancel()
		return false
	default:
	}
	c.bridge.Start(func(err error) {
		c.log.Warn("media ended", "error", err)
		c.terminate(nil, media.HangupCause(err))
	})
	c.log.Info("call answered", "setup_ms", time.Since(c.created).Milliseconds())
	s.startRecording(c)
	if c.flow != nil {
		c.flow.start() // the engine asks the service while A's ACK comes
	}
	acked := c.awaitAck(s.ctx, c.aTx, res, c.ackA, !isUnreliable(c.a.transport))
	if c.stopAwaitingAck() {
		// The call ended before A's ACK: its BYE waited for it (or for
		// 64·T1, or the shutdown).
		s.sendBye(c, c.a)
		acked = false
	}
	// The 2xx is not resent from here on; A's transaction keeps it until
	// Timer L without sending it again (it absorbs INVITE retransmissions).
	sipedge.Release(res)
	if !acked {
		if c.getState() != stateEnded {
			c.log.Warn("no ACK from A for 200", "leg", "a")
			c.terminate(nil, errNoAck.Error())
		}
		return false
	}
	return true
}

// answerCrossedCancel ends a call whose answer to A crossed A's CANCEL
// (sipgo answered A's INVITE with 487). When it was B's answer, B, up,
// gets its BYE, as any 2xx that comes after A gave up; its attempt is
// recorded late, and its agent, who was never in a call, is free without
// after-call work. (A call flow's answer is wagate's own.)
func (c *call) answerCrossedCancel() {
	cause := causeCancelledByA
	c.mu.Lock()
	c.aAnswered = false
	if c.bAnswered {
		cause += "; b answered late"
		c.dropAgentLocked(c.b)
		c.attempts.late(c.b.id())
	}
	c.mu.Unlock()
	c.stopAwaitingAck() // A has no dialog: no BYE to hold for its ACK
	c.terminate(nil, cause)
}

func (s *Engine) setLocalTag(c *call, res *sip.Response) {
	if to := res.To(); to != nil {
		to.Params.Add("tag", c.a.localTag)
	}
}

// relayProvisional passes B's ringing on to A. B's SDP is never forwarded:
// a 183 carries our own SDP, and toward WhatsApp it becomes a 180 because
// the WhatsApp client takes the first media as the answer. Without early
// (a hunt list, whose ringing target may not be the one that answers) a
// 183 becomes a 180 too.
func (s *Engine) relayProvisional(c *call, res *sip.Response, early bool) {
	code, reason := res.StatusCode, res.Reason
	var body []byte
	// Early media never involves a WhatsApp leg: starting the bridge would
	// send it media (silence first) before the answer.
	noEarly := !early || c.route.AEP.Kind == configs.KindWhatsApp || c.route.BEP.Kind == configs.KindWhatsApp
	if code == 183 && len(res.Body()) > 0 && !noEarly {
		answer, err := c.bridge.AnswerB(res.Body())
		if err != nil {
			c.log.Info("early media SDP ignored", "leg", "b", "error", err)
			code, reason = 180, "Ringing"
		} else {
			body = answer
			c.bridge.Start(func(err error) {
				c.log.Warn("media ended", "error", err)
				c.terminate(nil, media.HangupCause(err))
			})
		}
	} else if code != 180 {
		code, reason = 180, "Ringing"
	}
	s.notifyRinging(c, res.StatusCode)
	s.edge.Respond(c.aTx, c.aInvite, code, reason, func(r *sip.Response) {
		s.setLocalTag(c, r)
		r.AppendHeader(s.edge.Contact(c.a.transport))
		if body != nil {
			ct := sip.ContentTypeHeader("application/sdp")
			r.AppendHeader(&ct)
			r.SetBody(body)
		}
	})
}

func sdpRejection(err error) *sipedge.Rejection {
	switch {
	case errors.Is(err, media.ErrNoCommonCodec):
		return &sipedge.Rejection{Code: 488, Reason: "Not Acceptable Here", Warning: "no common codec", Log: err.Error()}
	case errors.Is(err, media.ErrBadSDP):
		return &sipedge.Rejection{Code: 488, Reason: "Not Acceptable Here", Warning: media.SDPWarning(err), Log: err.Error()}
	}
	return &sipedge.Rejection{Code: 500, Reason: "Server Internal Error", Log: err.Error()}
}

func isUnreliable(transport string) bool { return strings.EqualFold(transport, "udp") }

// isSDPType reports whether a Content-Type value is application/sdp
// (parameters and case aside).
func isSDPType(v string) bool {
	mt, _, _ := strings.Cut(v, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "application/sdp")
}

func errString(err error) string {
	if err == nil {
		return "terminated"
	}
	return err.Error()
}

// sanitizeDisplay keeps a display name printable and quote-free.
func sanitizeDisplay(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '"' || r == '\\' {
			continue
		}
		b.WriteRune(r)
		if b.Len() >= 64 {
			break
		}
	}
	return b.String()
}
