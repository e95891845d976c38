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
		refuse(&sipedge.Rejection{Code: 503, Reason: "Service Unavailable", Log: "draining"})
		return
	}
	if limit := s.edge.Config().SIP.MaxCPUPercent; limit > 0 {
		if cpu := s.over.cpu.Load(); cpu >= int64(limit) {
			s.over.note(overCPU, itoa(int(cpu))+"% of all cores")
			refuse(&sipedge.Rejection{Code: 503, Reason: "Service Unavailable", Log: "overload: cpu", RetryAfter: 5 * time.Second})
			return
		}
	}
	if !s.cps.allow(ep.Name, ep.MaxCPS) {
		s.over.note(overCPS, "endpoint "+ep.Name+" over "+itoa(ep.MaxCPS)+" calls/s")
		refuse(&sipedge.Rejection{Code: 503, Reason: "Service Unavailable", Log: "overload: endpoint call rate", RetryAfter: time.Second})
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
	dec, rej := sipedge.Route(cfg, ep, req)
	if rej != nil {
		refuse(rej)
		return
	}
	// The permission gate decides before any media or call state exists,
	// so a refused call costs nothing and nothing leaves toward Meta.
	var ticket CallTicket
	if dec.Dir == sipedge.BIC {
		ticket, permission, rej = s.admitBIC(dec)
		if rej != nil {
			refuse(rej)
			return
		}
	}

	c := &call{
		srv:        s,
		id:         newCallID(),
		dir:        dec.Dir,
		aEndpoint:  ep.Name,
		bEndpoint:  dec.BEP.Name,
		aSource:    req.Source(),
		route:      dec,
		aInvite:    req,
		aTx:        tx,
		created:    time.Now(),
		ackA:       make(chan struct{}),
		ended:      make(chan struct{}),
		a:          &leg{name: "a"},
		b:          &leg{name: "b"},
		ticket:     ticket,
		permission: permission,
	}
	c.a.fromUAS(req, newTag())
	c.b.callID = c.id + bLegCallIDSuffix
	c.log = s.log.With("call", c.id, "dir", string(dec.Dir), "a_endpoint", ep.Name, "b_endpoint", dec.BEP.Name, "sip_call_id", c.a.callID)

	switch s.reg.admit(c, cfg.SIP.MaxCalls, ep.MaxCalls, dec.BEP.MaxCalls) {
	case admitDuplicate:
		if ticket != nil {
			ticket.Finish(OutcomeFailed)
		}
		refuse(&sipedge.Rejection{Code: 482, Reason: "Loop Detected", Log: "Call-ID already in a live call"})
		return
	case admitFull:
		if ticket != nil {
			ticket.Finish(OutcomeFailed)
		}
		s.over.note(overConcurrency, "")
		refuse(&sipedge.Rejection{Code: 503, Reason: "Service Unavailable", Log: "concurrent call limit"})
		return
	}
	attrs := []any{"user", dec.User, "business", dec.Number.Number}
	if dec.BIC != nil && dec.BIC.CampaignID != "" {
		attrs = append(attrs, "campaign", dec.BIC.CampaignID)
	}
	c.log.Info("call started", attrs...)
	s.notifyStarted(c)
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
	if dec.CallFlow != nil {
		s.answerFlow(c) // flowcall.go
		return
	}
	s.placeBLeg(c)
}

// isRetransmission reports whether req is a retransmission of the INVITE
// that started a live call: same Call-ID, From tag and CSeq.
func (s *Engine) isRetransmission(req *sip.Request) bool {
	ref, ok := s.reg.lookup(callIDOf(req))
	if !ok || ref.leg != ref.call.a {
		return false
	}
	orig := ref.call.aInvite
	tag, _ := req.From().Params.Get("tag")
	otag, _ := orig.From().Params.Get("tag")
	return tag == otag && req.CSeq().SeqNo == orig.CSeq().SeqNo
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
		ticket.Finish(OutcomeFailed)
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
	a := legConfig(c.route.AEP)
	a.SignalIP = sourceIP(c.aInvite)
	br, err := s.newBridge(c.id, c.log, a, legConfig(c.route.BEP))
	if err != nil {
		if errors.Is(err, media.ErrNoPorts) {
			s.over.note(overPorts, err.Error())
			return &sipedge.Rejection{Code: 503, Reason: "Service Unavailable", Log: "no free RTP ports"}
		}
		return &sipedge.Rejection{Code: 500, Reason: "Server Internal Error", Log: err.Error()}
	}
	c.bridge = br
	return nil
}

// placeBLeg sends the B-leg INVITE and drives both legs until A has its
// answer (or its final error) and, after a 2xx, A's ACK.
func (s *Engine) placeBLeg(c *call) {
	offer, err := c.bridge.Offer(c.aInvite.Body())
	if err != nil {
		s.rejectCall(c, sdpRejection(err))
		return
	}
	req, btx, err := s.inviteB(c, offer)
	if err != nil {
		c.log.Warn("B-leg INVITE not sent", "leg", "b", "error", err)
		c.setOutcome(OutcomeFailed)
		s.rejectCall(c, &sipedge.Rejection{Code: 503, Reason: "Service Unavailable", Log: "B-leg unreachable"})
		return
	}
	s.driveInvite(c, req, btx, nil)
}

// inviteB sets the B-leg's dialog up toward c.route's target and sends it
// the INVITE carrying offer.
func (s *Engine) inviteB(c *call, offer []byte) (*sip.Request, sip.ClientTransaction, error) {
	dec := c.route
	b := c.b
	b.mu.Lock()
	b.localURI = dec.BFrom
	b.localTag = newTag()
	b.remoteURI = dec.BTo
	b.remoteTag = ""
	b.remoteTarget = dec.Target
	b.routeSet = nil
	b.transport = strings.ToUpper(dec.BEP.Transport)
	b.localCSeq = 1
	b.dest = dec.Dest
	b.mu.Unlock()

	req := sip.NewRequest(sip.INVITE, dec.Target)
	from := &sip.FromHeader{Address: dec.BFrom, Params: sip.NewParams()}
	from.Params.Add("tag", b.localTag)
	if dn := c.aInvite.From().DisplayName; dn != "" && dec.Dir == sipedge.UIC {
		from.DisplayName = sanitizeDisplay(dn)
	}
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: dec.BTo, Params: sip.NewParams()})
	cid := sip.CallIDHeader(b.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	mf := sip.MaxForwardsHeader(70)
	if amf := c.aInvite.MaxForwards(); amf != nil {
		mf = sip.MaxForwardsHeader(amf.Val() - 1)
	}
	req.AppendHeader(&mf)
	req.AppendHeader(s.edge.Contact(b.transport))
	req.AppendHeader(sip.NewHeader("User-Agent", s.edge.Config().SIP.UserAgent))
	req.AppendHeader(sip.NewHeader("Allow", allowedMethods))
	if dec.Dir == sipedge.UIC {
		// The PBX learns about the WhatsApp call only through these;
		// toward Meta (BIC) nothing X-WABA is ever written.
		for _, h := range dec.UIC.Headers(dec.Number, c.id) {
			req.AppendHeader(h)
		}
	}
	ct := sip.ContentTypeHeader("application/sdp")
	req.AppendHeader(&ct)
	req.SetBody(offer)
	req.SetTransport(b.transport)
	if dec.Dest != "" {
		req.SetDestination(dec.Dest)
	}
	s.edge.Prepare(req)

	btx, err := s.edge.Client().TransactionRequest(s.ctx, req)
	if err != nil {
		return nil, nil, err
	}
	c.log.Debug("B-leg INVITE sent", "leg", "b", "target", dec.Target.String())
	return req, btx, nil
}

// driveInvite is the early phase of a call. Everything about the INVITE
// transactions of both legs happens in this one goroutine, so no lock
// guards the early-phase flags. bReq and btx are replaced when B's
// challenge is answered (a new INVITE transaction, CSeq+1): CANCEL, ACK and
// the in-dialog CSeq always follow the latest INVITE.
//
// att is nil for a call's B-leg, or the attempt of a call A has already
// been answered on (a call flow's connect): nothing then goes to A, and
// the outcome goes to att instead of ending the call.
func (s *Engine) driveInvite(c *call, bReq *sip.Request, btx sip.ClientTransaction, att *bAttempt) {
	cancelled := make(chan struct{}, 1)
	ringFor := s.edge.Config().SIP.RingTimeout.D()
	if att == nil {
		c.aTx.OnCancel(func(*sip.Request) {
			select {
			case cancelled <- struct{}{}:
			default:
			}
		})
	} else {
		ringFor = att.ring
	}
	ring := time.NewTimer(ringFor)
	defer ring.Stop()
	// Once wagate gives up on B (CANCEL, ring timeout, A gone), B has
	// 64·T1 to end its INVITE transaction (RFC 3261 §9.1): a PBX that
	// answers the CANCEL but never sends 487, or never answers at all,
	// must not hold the call, its ports and its slot for ever.
	var abandon <-chan time.Time

	var (
		provisional bool // B sent a 1xx, so CANCEL may be sent
		wantCancel  bool // A is gone or we gave up on B
		cancelSent  bool
		aFinal      = att != nil // A already has its final response
		authTried   bool         // B's challenge was answered once
		cause       string
	)
	sendCancel := func() {
		if wantCancel && provisional && !cancelSent {
			cancelSent = true
			s.sendCancel(c, bReq)
		}
	}
	stopWaiting := func() {
		wantCancel = true
		if abandon == nil {
			abandon = time.After(64 * sip.T1)
		}
	}
	giveUp := func(code int, reason, why string) {
		if !aFinal {
			aFinal = true
			s.rejectA(c, &sipedge.Rejection{Code: code, Reason: reason, Log: why})
		}
		cause = why
		stopWaiting()
		c.setOutcome(OutcomeCancelled)
		sendCancel()
	}
	defer func() { btx.Terminate() }()

	for {
		select {
		case res := <-btx.Responses():
			switch {
			case res.StatusCode < 200:
				provisional = true
				sendCancel()
				if !aFinal && res.StatusCode > 100 {
					s.relayProvisional(c, res)
				}
			case res.StatusCode < 300:
				s.onBAnswer(c, bReq, btx, res, wantCancel || (aFinal && att == nil), cause, cancelled, att)
				return
			default:
				if (res.StatusCode == 401 || res.StatusCode == 407) && !(aFinal && att == nil) && !wantCancel {
					if retry := s.answerB(c, bReq, res, authTried); retry != nil {
						ntx, err := s.edge.Client().TransactionRequest(s.ctx, retry)
						if err != nil {
							c.log.Warn("B-leg INVITE with credentials not sent", "leg", "b", "error", err)
						} else {
							// The old transaction ACKs the challenge
							// (and its retransmissions) by itself.
							authTried = true
							bReq, btx, provisional = retry, ntx, false
							c.b.mu.Lock()
							c.b.localCSeq = retry.CSeq().SeqNo
							c.b.mu.Unlock()
							continue
						}
					}
				}
				if !aFinal {
					code, reason := mapFinal(res)
					s.rejectA(c, &sipedge.Rejection{Code: code, Reason: reason, Relayed: code == res.StatusCode,
						Log: "B-leg answered " + itoa(res.StatusCode)})
				}
				if cause == "" {
					cause = "b-leg " + itoa(res.StatusCode)
				}
				if att != nil {
					att.failed(c, cause, res)
					return
				}
				if !wantCancel {
					c.setOutcome(outcomeFor(res.StatusCode, res.Reason))
				}
				c.terminate(nil, cause)
				return
			}
		case <-btx.Done():
			if !aFinal {
				code, reason := 408, "Request Timeout"
				if err := btx.Err(); err != nil && !errors.Is(err, sip.ErrTransactionTimeout) {
					code, reason = 503, "Service Unavailable"
				}
				s.rejectA(c, &sipedge.Rejection{Code: code, Reason: reason, Log: "B-leg INVITE failed: " + errString(btx.Err())})
			}
			if cause == "" {
				cause = "b-leg no final response"
			}
			if att != nil {
				att.failed(c, cause, nil)
				return
			}
			if !wantCancel {
				c.setOutcome(OutcomeFailed)
			}
			c.terminate(nil, cause)
			return
		case <-cancelled:
			// sipgo has already answered the CANCEL with 200 and A's
			// INVITE with 487.
			aFinal = true
			cause = causeCancelledByA
			c.finalToA(&sipedge.Rejection{Code: 487, Reason: "Request Terminated"})
			stopWaiting()
			c.setOutcome(OutcomeCancelled)
			sendCancel()
		case <-abandon:
			if att != nil {
				c.log.Warn("B-leg sent no final response within 64*T1 of being cancelled", "leg", "b", "cancel_sent", cancelSent)
				att.failed(c, cause+"; b-leg never ended its INVITE", nil)
				return
			}
			c.log.Warn("B-leg sent no final response within 64*T1 of being cancelled; call ended", "leg", "b", "cancel_sent", cancelSent)
			c.terminate(nil, cause+"; b-leg never ended its INVITE")
			return
		case <-ring.C:
			giveUp(480, "Temporarily Unavailable", "ring timeout")
		case <-c.ended:
			// Ended from outside (shutdown, or B hung up its early
			// dialog): A still needs a final response, B a CANCEL. A late
			// 2xx from B is then handled as a stray one (ACK and BYE).
			giveUp(503, "Service Unavailable", "call ended before answer")
			att.ended()
			return
		case <-s.ctx.Done():
			giveUp(503, "Service Unavailable", "shutdown")
			c.terminate(nil, cause)
			att.ended()
			return
		}
	}
}

// answerB returns the INVITE that answers B's challenge res to bReq, or nil
// when wagate must not answer it: only a whatsapp B-leg's challenge, in its
// digest_realm, from its addresses, and once per call (a second challenge
// means the credentials were refused; it becomes a 503 to A).
func (s *Engine) answerB(c *call, bReq *sip.Request, res *sip.Response, authTried bool) *sip.Request {
	if authTried {
		c.log.Warn("B-leg challenged the INVITE with credentials again; not answering twice", "leg", "b", "code", res.StatusCode)
		return nil
	}
	cfg := s.edge.Config()
	retry, err := sipedge.AnswerChallenge(cfg, c.route.BEP, c.route.Number, bReq, res)
	if err != nil {
		c.log.Warn("B-leg challenge not answered", "leg", "b", "code", res.StatusCode, "why", err.Error())
		return nil
	}
	s.edge.Prepare(retry)
	c.log.Debug("B-leg challenge answered", "leg", "b", "code", res.StatusCode)
	return retry
}

// onBAnswer handles B's 2xx: ACK it, answer A (unless A is gone, in which
// case B is hung up at once), then wait for A's ACK. With att (A answered
// already) it connects B to A instead.
func (s *Engine) onBAnswer(c *call, bReq *sip.Request, btx sip.ClientTransaction, res *sip.Response, aGone bool, cause string, cancelled <-chan struct{}, att *bAttempt) {
	// Meta connected the call (the user answered), whatever happens to
	// A now: it counts toward the user's daily limit.
	c.connected()
	c.b.fromUACResponse(res)
	ack := c.b.ack(bReq.CSeq().SeqNo)
	s.edge.Prepare(ack)
	if err := s.edge.Client().WriteRequest(ack); err != nil {
		c.log.Warn("ACK not sent", "leg", "b", "error", err)
	}
	// B resends its 2xx until our ACK arrives; each one gets the ACK again.
	// Once this transaction ends, onStrayResponse takes over. The hook must
	// not capture the call: sipgo keeps the transaction (and so the hook)
	// until Timer M fires, 32 s after the call may have ended.
	btx.OnRetransmission(s.reAck(ack, c.b.callID))
	c.mu.Lock()
	c.bAnswered = true
	c.bAck = ack
	c.mu.Unlock()

	if att != nil {
		att.answered(c, res, aGone, cause)
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
		s.rejectA(c, r)
		c.terminate(nil, "B-leg answer: "+err.Error())
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
	res.AppendHeader(sip.NewHeader("Allow", allowedMethods))
	ct := sip.ContentTypeHeader("application/sdp")
	res.AppendHeader(&ct)

	c.mu.Lock()
	if c.state != stateCalling {
		c.mu.Unlock()
		return false
	}
	c.state = stateAnswered
	c.aAnswered = true
	c.answeredAt = time.Now()
	c.mu.Unlock()
	// Before the 200 leaves: A may hang up as soon as it has it, and
	// call.ended must not overtake call.answered.
	s.notifyAnswered(c)

	if err := c.aTx.Respond(res); err != nil {
		c.log.Warn("200 to A not sent", "leg", "a", "error", err)
		c.terminate(nil, "A-leg transport error")
		return false
	}
	s.journalUp(c)
	// A CANCEL processed just before our 200 means sipgo sent 487 and
	// dropped the 200: A is gone, so B must go too.
	select {
	case <-cancelled:
		c.mu.Lock()
		c.aAnswered = false
		c.mu.Unlock()
		c.terminate(nil, "cancelled by a; b answered late")
		return false
	default:
	}
	c.bridge.Start(func(err error) {
		c.log.Warn("media timeout", "error", err)
		c.terminate(nil, "rtp timeout")
	})
	c.log.Info("call answered", "setup_ms", time.Since(c.created).Milliseconds())
	s.startRecording(c)
	if c.flow != nil {
		c.flow.start() // the engine asks the service while A's ACK comes
	}
	if !c.awaitAck(s.ctx, c.aTx, res, c.ackA, !isUnreliable(c.a.transport)) {
		if c.getState() != stateEnded {
			c.log.Warn("no ACK from A for 200", "leg", "a")
			c.terminate(nil, errNoAck.Error())
		}
		return false
	}
	return true
}

func (s *Engine) setLocalTag(c *call, res *sip.Response) {
	if to := res.To(); to != nil {
		to.Params.Add("tag", c.a.localTag)
	}
}

// relayProvisional passes B's ringing on to A. B's SDP is never forwarded:
// a 183 carries our own SDP, and toward WhatsApp it becomes a 180 because
// the WhatsApp client takes the first media as the answer.
func (s *Engine) relayProvisional(c *call, res *sip.Response) {
	code, reason := res.StatusCode, res.Reason
	var body []byte
	// Early media never involves a WhatsApp leg: starting the bridge would
	// send it media (silence first) before the answer.
	noEarly := c.route.AEP.Kind == configs.KindWhatsApp || c.route.BEP.Kind == configs.KindWhatsApp
	if code == 183 && len(res.Body()) > 0 && !noEarly {
		answer, err := c.bridge.AnswerB(res.Body())
		if err != nil {
			c.log.Info("early media SDP ignored", "leg", "b", "error", err)
			code, reason = 180, "Ringing"
		} else {
			body = answer
			c.bridge.Start(func(err error) {
				c.log.Warn("media timeout", "error", err)
				c.terminate(nil, "rtp timeout")
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

// sendCancel cancels the B-leg INVITE (RFC 3261 §9.1: same Request-URI,
// Call-ID, From, To, CSeq number and top Via as the INVITE).
func (s *Engine) sendCancel(c *call, inv *sip.Request) {
	req := sip.NewRequest(sip.CANCEL, inv.Recipient)
	if v := inv.Via(); v != nil {
		req.AppendHeader(v.Clone())
	}
	for _, h := range inv.GetHeaders("Route") {
		req.AppendHeader(sip.HeaderClone(h))
	}
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(sip.HeaderClone(inv.From()))
	req.AppendHeader(sip.HeaderClone(inv.To()))
	req.AppendHeader(sip.HeaderClone(inv.CallID()))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	req.SetTransport(inv.Transport())
	req.SetDestination(inv.Destination())
	req.Laddr = inv.Laddr
	s.wg.Go(func() {
		ctx, cancel := contextWithTimeout(64 * sip.T1)
		defer cancel()
		if _, err := s.edge.Client().Do(ctx, req); err != nil {
			c.log.Warn("CANCEL failed", "leg", "b", "error", err)
		}
	})
	c.log.Debug("B-leg cancelled", "leg", "b")
}

// mapFinal chooses A's final response for B's final error. Codes pass
// through, except those that would make A act on B's behalf: a challenge
// for B's realm, or a redirect around wagate.
func mapFinal(res *sip.Response) (int, string) {
	switch {
	case res.StatusCode == 401 || res.StatusCode == 407:
		return 503, "Service Unavailable"
	case res.StatusCode >= 300 && res.StatusCode < 400:
		return 480, "Temporarily Unavailable"
	}
	reason := res.Reason
	if reason == "" || !sipedge.ValidHeaderValue(reason) {
		reason = sipedge.DefaultReason(res.StatusCode)
	}
	return res.StatusCode, reason
}

func sdpRejection(err error) *sipedge.Rejection {
	switch {
	case errors.Is(err, media.ErrNoCommonCodec):
		return &sipedge.Rejection{Code: 488, Reason: "Not Acceptable Here", Warning: "no common codec", Log: err.Error()}
	case errors.Is(err, media.ErrBadSDP):
		return &sipedge.Rejection{Code: 488, Reason: "Not Acceptable Here", Warning: "malformed SDP", Log: err.Error()}
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
