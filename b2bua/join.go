package b2bua

import (
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
	"github.com/wagate/wagate/events"
	"github.com/wagate/wagate/media"
	sipedge "github.com/wagate/wagate/sip"
)

// Attended transfer: an agent with two calls through wagate — the
// WhatsApp caller on hold on one, the party it consulted (another
// WhatsApp user, or another agent's call) on the other — sends a REFER on
// the first whose Refer-To carries Replaces naming its dialog of the
// second. wagate is then both the transferee and the target (RFC 3891):
// it joins the first call's WhatsApp caller to the second call's other
// party, hangs up both of the agent's legs, and signals nothing to either
// party. The media of the two calls is linked (media.Link); each call
// ends the other when it ends.
//
// A Replaces is matched against a live leg's Call-ID and tags, its
// to-tag as wagate's tag and from-tag as the agent's (either order is
// taken: both tags must match one leg). The named leg must belong to the
// same endpoint as the transferring one: an agent joins only its own
// calls. A Replaces that names no live leg is RFC 3891's 481: the REFER
// is accepted (202) and its NOTIFY says "SIP/2.0 481 Call/Transaction
// Does Not Exist" — answering the REFER itself with 481 would end the
// transferring agent's dialog (RFC 5057).

// referReplaces takes a REFER with Replaces on leg l of call c.
func (s *Engine) referReplaces(c *call, l *leg, ep *configs.Endpoint, req *sip.Request, tx sip.ServerTransaction, rp *replaces) {
	log := c.log.With("leg", l.name)
	refuse := func(code int, why string) {
		s.edge.Reject(tx, req, &sipedge.Rejection{Code: code, Reason: sipedge.DefaultReason(code), Warning: why, Log: "REFER refused: " + why}, log)
	}
	var (
		c2 *call
		l2 *leg
	)
	if ref, ok := s.reg.lookup(rp.callID); ok {
		ref.leg.mu.Lock()
		lt, rt := ref.leg.localTag, ref.leg.remoteTag
		ref.leg.mu.Unlock()
		if rp.toTag == lt && rp.fromTag == rt || rp.toTag == rt && rp.fromTag == lt {
			c2, l2 = ref.call, ref.leg
		}
	}
	switch {
	case c2 == c:
		refuse(403, "Replaces names a dialog of this same call")
		return
	case c2 != nil && l2.ep.Name != l.ep.Name:
		refuse(403, "Replaces names a call of another endpoint")
		return
	}
	early, ours, consulting := false, false, false
	if c2 != nil {
		c2.mu.Lock()
		early = c2.state != stateEnded && !(l2 == c2.a && c2.aAnswered || l2 == c2.b && c2.bAnswered)
		// A click-to-call's agent, answered, hears the ringback while
		// wagate calls the user: its dialog is confirmed (RFC 3891 lets
		// it be replaced), the call it belongs to is not up yet.
		consulting = c2.origin == OriginClickToCall && c2.flow == nil && l2 == c2.a && c2.aAnswered && c2.state == stateCalling
		c2.mu.Unlock()
		// wagate sent the INVITE of every leg but the A-leg of a call a
		// peer's INVITE started.
		ours = l2 != c2.a || c2.origin != ""
	}
	if c2 != nil && rp.earlyOnly && !early {
		refuse(486, "Replaces is early-only and the call it names is answered")
		return
	}
	now := time.Now()
	x := &transfer{kind: events.TransferAttended, by: ep.Name, from: l, asked: now}
	if err := c.beginTransfer(x); err != nil {
		refuse(491, err.Error())
		return
	}
	if early || consulting {
		// The agent transfers before the party it consulted answered
		// (semi-attended). When that party is a call the agent placed
		// through wagate, still ringing, wagate is the B2BUA of both
		// dialogs: the agent's INVITE ends (487), or the click-to-call's
		// agent leg is hung up with the join, and the caller joins the
		// consulted party when it answers, as the agent would have had
		// it joined then (handover). Otherwise the NOTIFY carries
		// what the INVITE with Replaces would have got (RFC 3891 §3):
		// an early dialog wagate did not initiate, which only its
		// initiator may replace (481); wagate does not answer a call
		// still ringing toward the agent to join it either (603).
		// The handover is taken before the 202 goes out: an agent's
		// phone that hears 202 may at once see the consulted party
		// answer or decline, and that answer must find the handover
		// (before, a decline right after the 202 beat the REFER's
		// goroutine to it, and the agent was NOTIFYed 491). The
		// NOTIFYs queued meanwhile wait for the 202.
		var startNotify func()
		x.notify, startNotify = s.heldNotifier(c, l, req, c.transferorAlive(x))
		x.notify.progress(100, "Trying")
		taken := (!ours || consulting) && l2 == c2.a && c2.takeHandover(c, x)
		var x2 *transfer
		if !taken && consulting {
			// The user answered as the REFER came: the Replaces now
			// names an answered call, and the REFER is an ordinary
			// attended transfer (taken before the 202, as that one is).
			// Before, the NOTIFY said 491 and the agent had to transfer
			// again.
			x2 = s.answeredMeanwhile(c2, l2, ep.Name, now)
		}
		s.edge.Respond(tx, req, 202, "Accepted", func(res *sip.Response) { res.AppendHeader(s.edge.Contact(l.transport)) })
		startNotify()
		if taken {
			log.Info("semi-attended transfer: the caller joins the consulted call when it answers", "joined_call", c2.id)
			c.updateMOH()
			return
		}
		if x2 != nil {
			log.Info("attended transfer accepted: the consulted call was answered as the REFER came", "joined_call", c2.id)
			s.wg.Go(func() { s.join(c, x, c2, x2) })
			return
		}
		code, reason := 481, "Call/Transaction Does Not Exist"
		switch {
		case consulting:
			// The call ended, was hung up, or is not calling the user
			// yet (the agent just answered): the agent may try again.
			code, reason = 491, "Request Pending"
		case ours:
			code, reason = 603, "Decline"
		}
		log.Info("attended transfer: Replaces names a call not answered yet", "joined_call", c2.id, "code", code)
		s.joinFailed(c, x, code, reason)
		return
	}
	var x2 *transfer
	if c2 != nil {
		// Taken now, before the 202: an agent that hangs up its second
		// call as soon as it sent the REFER leaves the join to go on.
		x2 = &transfer{kind: events.TransferAttended, by: ep.Name, from: l2, asked: now}
		if err := c2.beginTransfer(x2); err != nil {
			c.mu.Lock()
			c.cc.xfer = nil
			c.mu.Unlock()
			refuse(491, "the call Replaces names: "+err.Error())
			return
		}
	}
	s.edge.Respond(tx, req, 202, "Accepted", func(res *sip.Response) { res.AppendHeader(s.edge.Contact(l.transport)) })
	x.notify = s.newNotifier(c, l, req, c.transferorAlive(x))
	x.notify.progress(100, "Trying")
	if c2 == nil {
		log.Info("attended transfer: Replaces names no live dialog", "replaces_call_id", truncate(rp.callID, 128))
		s.joinFailed(c, x, 481, "Call/Transaction Does Not Exist")
		return
	}
	log.Info("attended transfer accepted", "joined_call", c2.id)
	s.wg.Go(func() { s.join(c, x, c2, x2) })
}

// joinFailed undoes x and tells the transferring leg.
func (s *Engine) joinFailed(c *call, x *transfer, code int, reason string) {
	c.mu.Lock()
	c.cc.xfer = nil
	rec, first := c.recordTransferLocked(x, dialResult{code: code, reason: reason})
	c.mu.Unlock()
	if first {
		s.notifyTransferred(rec)
	}
	x.notify.final(code, reason, nil)
	c.updateMOH()
}

// join links c's and c2's media so that the other parties of x's and
// x2's legs talk, then hangs those legs up.
func (s *Engine) join(c *call, x *transfer, c2 *call, x2 *transfer) {
	if err := s.ctl.link(c.bridge, x.from.side, c2.bridge, x2.from.side); err != nil {
		c.log.Warn("attended transfer: the calls' media could not be joined", "joined_call", c2.id, "error", err)
		c2.mu.Lock()
		c2.cc.xfer = nil
		c2.mu.Unlock()
		s.joinFailed(c, x, 500, "Server Internal Error")
		return
	}
	up1, free1, rec1 := c.leaveForJoin(x, c2)
	up2, free2, rec2 := c2.leaveForJoin(x2, c)
	s.reg.moveEndpoint(c, int(x.from.side), "", 0)
	s.reg.moveEndpoint(c2, int(x2.from.side), "", 0)
	c.updateMOH()
	c2.updateMOH()
	// Either may have ended while they were being joined: the other ends
	// with it (endControl only sees a join made before the end).
	if c.getState() == stateEnded {
		c2.terminate(nil, "the call it was joined to ended")
	} else if c2.getState() == stateEnded {
		c.terminate(nil, "the call it was joined to ended")
	}
	s.journalUp(c)
	s.journalUp(c2)
	c.log.Info("call joined to another (attended transfer)", "joined_call", c2.id, "latency_ms", rec1.LatencyMS)
	c2.log.Info("call joined to another (attended transfer)", "joined_call", c.id)
	s.notifyTransferred(rec1)
	s.notifyTransferred(rec2)
	x.notify.final(200, "OK", func() {
		s.byeOrFree(c, x.from, up1, free1)
		s.byeOrFree(c2, x2.from, up2, free2)
	})
}

// leaveForJoin takes x's leg out of c, now joined to other; it reports
// whether the leg still needs a BYE, what frees its agent once that BYE
// is sent, and the transfer's record.
func (c *call) leaveForJoin(x *transfer, other *call) (bool, func(), events.Transfer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := x.from
	up := !x.fromGone && ((l == c.a && c.aAnswered) || (l == c.b && c.bAnswered))
	if l == c.a {
		c.aAnswered = false
	} else if l == c.b {
		c.bAnswered = false
	}
	l.retired, x.connected = true, true
	// The agent leaves this call: free once the final NOTIFY and its BYE
	// are sent.
	free := c.takeAgentLocked(l)
	c.cc.xfer, c.cc.joined = nil, other
	x.recorded = true
	rec := x.record(c, dialResult{code: 200, reason: "OK"})
	rec.Connected, rec.JoinedCallID = true, other.id
	c.cc.transfers = append(c.cc.transfers, rec)
	return up, free, rec
}

// handover is a semi-attended transfer under way: call c's transfer x
// joins c's caller to the call whose ringing INVITE the agent's Replaces
// named, once that call's B answers.
type handover struct {
	c *call
	x *transfer
	// closed, under c.mu, is set once B's answer or end settled the
	// handover (joinHandover, handoverFailed): c no longer waits on it.
	closed bool
}

// openHandover lets a REFER hand over the B that c's ring loop rings
// (takeHandover) until the returned func, which the loop defers, closes
// it again. The channel tells the loop a handover was taken.
func (c *call) openHandover() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	c.mu.Lock()
	c.cc.handoverCh = ch
	c.mu.Unlock()
	return ch, func() {
		c.mu.Lock()
		c.cc.handoverCh = nil
		c.mu.Unlock()
	}
}

// takeHandover makes c2, whose ring loop rings B for its agent (A: a
// dialer's or PBX's INVITE not answered yet, or the answered agent of a
// click-to-call), hand B over to c's transfer x when B answers. It
// reports false, changing nothing, when c2 cannot (answered, ended, no
// ring loop, transferring); true once x's NOTIFY 180 is queued.
func (c2 *call) takeHandover(c *call, x *transfer) bool {
	c2.mu.Lock()
	agentWaits := !c2.aAnswered || c2.origin == OriginClickToCall
	ok := c2.state == stateCalling && agentWaits && c2.apiCause == "" && c2.cc.handoverCh != nil &&
		c2.cc.handover == nil && c2.cc.handoverTo == nil && c2.cc.xfer == nil && c2.cc.joined == nil
	if ok {
		// Queued before the handover is visible: B's answer or end,
		// which may come at once on c2's goroutine, ends x's NOTIFYs
		// with the final (closing its queue).
		x.notify.progress(180, "Ringing")
		c2.cc.handover = &handover{c: c, x: x}
		select {
		case c2.cc.handoverCh <- struct{}{}:
		default:
		}
	}
	ho := c2.cc.handover
	c2.mu.Unlock()
	if !ok {
		return false
	}
	if f := c.srv.ctl.handoverPublished.Load(); f != nil {
		(*f)()
	}
	c.mu.Lock()
	// B may have answered or failed already, on c2's goroutine, and
	// settled the handover: a handoverTo set after that (before, it was
	// set unconditionally) would stay, naming a call c no longer waits
	// on.
	if !ho.closed {
		c.cc.handoverTo = c2
	}
	ended := c.state == stateEnded
	c.mu.Unlock()
	if ended {
		// c ended as it was taken: its end did not see handoverTo.
		c2.terminate(nil, "the caller it was to be joined to ended")
	}
	return true
}

// handoverAgentGoneLocked takes a BYE from a click-to-call's agent that
// handed its ringing user over to a semi-attended transfer's caller:
// only its leg ends (the agent is free), and the user rings on for the
// caller. It reports whether l was that leg. Called with c.mu held.
func (c *call) handoverAgentGoneLocked(l *leg) bool {
	// Also once B answered for the handover and before joinHandover set
	// the join up (its transfer then takes the BYE: transferorGoneLocked):
	// before, a BYE in that moment ended the whole call, the user just
	// answered included.
	if (c.cc.handover == nil && !c.cc.handoverAnswered) || l != c.a || !c.aAnswered || c.origin != OriginClickToCall {
		return false
	}
	c.aAnswered, l.retired = false, true
	c.freeAgentLocked(l)
	return true
}

// takeAnswer decides, as c's B answered, whether B goes to a
// semi-attended transfer's caller (the handover) or to A: from here on
// no REFER can take B over. Called by the ring loop (onBAnswer,
// userAnswered); a dialer's or PBX's INVITE whose loop had not seen the
// handover yet still owes A its 487 (a click-to-call's agent, answered,
// keeps its dialog until the join hangs it up).
func (s *Engine) takeAnswer(c *call) *handover {
	c.mu.Lock()
	ho, ch := c.cc.handover, c.cc.handoverCh
	c.cc.handover, c.cc.handoverCh = nil, nil
	c.cc.handoverAnswered = ho != nil
	if ho == nil && c.origin == OriginClickToCall && c.cc.answering == nil {
		// In the same hold of mu as the handover closes: a REFER that
		// finds no handover now finds this (answeredMeanwhile).
		c.cc.answering = make(chan struct{})
	}
	c.mu.Unlock()
	if ho != nil && ch != nil && len(ch) > 0 && c.origin == "" {
		s.releaseAgentInvite(c)
	}
	return ho
}

// answerSettled closes c's answering (userAnswered is through: the
// call is up, or ended).
func (c *call) answerSettled() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch := c.cc.answering; ch != nil {
		select {
		case <-ch:
		default:
			close(ch)
		}
	}
}

// answeredMeanwhile takes the click-to-call c2, whose user answered as a
// REFER came to hand it over (takeHandover found the answer had gone to
// the agent), for an ordinary attended transfer from l2: it waits until
// userAnswered is through, then begins that transfer on c2 (x2). Nil
// when c2 cannot be joined (its user's answer not taken yet, ended, hung
// up through the API, transferring).
func (s *Engine) answeredMeanwhile(c2 *call, l2 *leg, by string, asked time.Time) *transfer {
	c2.mu.Lock()
	ch := c2.cc.answering
	c2.mu.Unlock()
	if ch == nil {
		return nil
	}
	// userAnswered has only local work left (its state, events, journal):
	// this is short, and no lock is held.
	select {
	case <-ch:
	case <-c2.ended:
	case <-s.ctx.Done():
	}
	x2 := &transfer{kind: events.TransferAttended, by: by, from: l2, asked: asked}
	if err := c2.beginTransfer(x2); err != nil {
		return nil
	}
	return x2
}

// releaseAgentInvite ends the INVITE of c's agent (a dialer's or PBX's
// consultation) with 487 once a semi-attended transfer took its B, and
// journals that A has its final response: a crash from here on must not
// send A a second one (503) at the restart.
func (s *Engine) releaseAgentInvite(c *call) {
	c.mu.Lock()
	c.cc.aReleased = true
	c.mu.Unlock()
	// Journaled first: a crash between the two must not leave the
	// restart a 503 to send after the 487.
	s.journalUp(c)
	s.edge.Reject(c.aTx, c.aInvite, &sipedge.Rejection{Code: 487, Reason: "Request Terminated",
		Log: "the agent transferred a caller to this call (semi-attended)"}, c.log)
}

// joinHandover joins c2, whose B answered, to the caller of the
// semi-attended transfer ho: c2's media starts, and the two calls are
// joined as an attended transfer joins them. A c2 hung up through the
// API meanwhile (its DELETE answered 202) is not joined: it ends as the
// API asked, B with a BYE, and the transfer fails with 487.
func (s *Engine) joinHandover(c2 *call, ho *handover) {
	c, x := ho.c, ho.x
	c2.bridge.Start(func(err error) {
		c2.log.Warn("media ended", "error", err)
		c2.terminate(nil, media.HangupCause(err))
	})
	c2.mu.Lock()
	c2.cc.handoverAnswered = false
	live, apiCause := c2.state == stateCalling, c2.apiCause
	x2 := &transfer{kind: events.TransferAttended, by: x.by, from: c2.a, asked: x.asked}
	if live && apiCause == "" {
		c2.state = stateConfirmed
		c2.answeredAt = time.Now()
		c2.cc.xfer = x2
		c2.cc.count++
		// The agent's click-to-call leg, hung up since B answered, has
		// left already: the join has no BYE for it.
		x2.fromGone = c2.a.retired
	}
	c2.mu.Unlock()
	c.mu.Lock()
	c.cc.handoverTo, ho.closed = nil, true
	c.mu.Unlock()
	switch {
	case !live:
		s.handoverFailed(ho, 487, "Request Terminated")
		return
	case apiCause != "":
		// Before, the answer went on to the join whatever the API had
		// said: the DELETE got 202 and the user talked to the caller.
		c2.log.Info("call answered as it was hung up through the API: not joined to the caller of a semi-attended transfer", "joined_call", c.id, "cause", apiCause)
		c2.end(nil, events.HangupAPI, apiCause)
		s.handoverFailed(ho, 487, "Request Terminated")
		return
	}
	s.notifyAnswered(c2)
	c2.log.Info("call answered; joined to the caller of a semi-attended transfer", "joined_call", c.id)
	s.join(c, x, c2, x2)
	c2.mu.Lock()
	joined := c2.cc.joined != nil
	c2.mu.Unlock()
	if !joined {
		// The caller could not be joined (it ended as B answered): B,
		// answered for it, has nobody to talk to.
		c2.terminate(nil, "the caller it was to be joined to ended")
	}
}

// handoverFailed ends the semi-attended transfer ho whose consulted call
// ended unanswered (code and reason its final): the agent, if still
// there, is told and has its caller back; a caller whose agent left
// meanwhile has nobody left, and its call ends.
func (s *Engine) handoverFailed(ho *handover, code int, reason string) {
	c, x := ho.c, ho.x
	if code < 300 {
		code, reason = 487, "Request Terminated"
	}
	c.mu.Lock()
	c.cc.handoverTo, ho.closed = nil, true
	gone, ended := x.fromGone, c.state == stateEnded
	c.mu.Unlock()
	if ended {
		// Its end cut the transfer short; the REFER's subscription ends
		// (nobody is left to NOTIFY).
		x.notify.final(code, reason, nil)
		return
	}
	s.joinFailed(c, x, code, reason)
	c.log.Info("semi-attended transfer failed: the consulted call was not answered", "code", code, "agent_left", gone)
	if gone {
		c.terminate(nil, "semi-attended transfer failed ("+itoa(code)+"); the agent had left")
	}
}
