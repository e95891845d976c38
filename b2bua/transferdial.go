package b2bua

import (
	"slices"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
	sipedge "github.com/wagate/wagate/sip"
)

// A transfer rings its target through a hunt (hunt.go, bleg.go), the
// machinery of every B-leg: one extension, or a hunt list's targets in
// the strategy's order — one at a time, or all at once for a parallel
// list (the first 2xx wins, the others get CANCEL, a 2xx that crosses it
// is ACKed and hung up) — each for its own ring time, down endpoints
// skipped, 6xx and 3xx as for any hunt. What differs is the side
// (transferSide): each attempt is a new leg for the side of the call the
// transfer replaces, offered the call's media (Bridge.OfferSide), with
// the transfer's X-WABA headers; its ringing goes to the transferring
// agent as NOTIFY; and targets whose endpoint is at max_calls are
// skipped too (a transfer adds a call to the target's endpoint, a hunt's
// first INVITE was admitted against its cap). A transfer's attempts are
// not the call's B-leg attempts: they stay out of the CDR's attempts.

// dialResult is how placing a new leg ended: answered (leg and its ACKed
// 2xx), or the final code and reason it failed with.
type dialResult struct {
	leg    *leg
	answer *sip.Response
	code   int
	reason string
	// unring ends the answering agent's ring, once it is seated
	// (hunt.ringEnded); nil when not answered.
	unring func()
}

func (r dialResult) ok() bool { return r.answer != nil }

// transferSide rings a transfer's target.
type transferSide struct{ x *transfer }

// newLeg is a dialog of its own (a fresh Call-ID in the form of every
// leg wagate places, so that a stray 2xx is ACKed and hung up) for the
// side the transfer replaces.
func (ts transferSide) newLeg(*call, int) *leg {
	return &leg{name: ts.x.from.name, side: ts.x.from.side, callID: newCallID() + bLegCallIDSuffix}
}

func (ts transferSide) invite(s *Engine, c *call, at *attempt, offer []byte) *sip.Request {
	return s.transferInvite(c, ts.x, at, offer)
}

// ringing tells the transferring agent, once, that the target rings.
func (ts transferSide) ringing(*hunt, *attempt, *sip.Response) {
	ts.x.notify.progress(180, "Ringing")
}

// lateAnswer: a target that answered after the transfer gave up on it
// was ACKed and hung up; the call is not told.
func (transferSide) lateAnswer(*call) {}

func (transferSide) kind() string { return "transfer" }

// dialTransfer rings x's callees (in their order already) and returns
// the leg that answered, its 2xx ACKed and its answer applied to the
// bridge; else how the target failed: the most meaningful failure of the
// hunt (hunt.resolve's weights), 480 when nothing was rung, 487 when the
// call ended, 503 at shutdown.
func (s *Engine) dialTransfer(c *call, x *transfer) dialResult {
	if c.getState() == stateEnded {
		return dialResult{code: 487, reason: "Request Terminated"}
	}
	// One offer for every target, as for any hunt: a list's endpoints
	// share their media settings (checked at load).
	offer, err := c.bridge.OfferSide(x.from.side, legConfig(x.callees[0].EP, c.route.Number))
	if err != nil {
		c.log.Warn("transfer target cannot take the call's media", "target", x.target.String(), "error", err)
		return dialResult{code: 488, reason: "Not Acceptable Here"}
	}
	h := &hunt{s: s, c: c, side: transferSide{x: x}, offer: offer, list: x.list, xfer: x,
		events: make(chan attemptEvent, 16), done: make(chan struct{})}
	defer h.stopListening()
	h.queue = slices.Clone(x.callees)
	var cause string
	gone := func(code int, reason string) dialResult {
		h.close()
		h.cancelAll(nil)
		h.dropWinner()
		c.bridge.CancelOffer(x.from.side)
		return dialResult{code: code, reason: reason}
	}
	for {
		if h.pending == 0 {
			h.next()
		}
		if h.pending == 0 {
			// Nothing rings and nothing is left to ring. Attempts still
			// ending (a CANCEL's 487) report to nobody.
			h.close()
			c.bridge.CancelOffer(x.from.side)
			r := dialResult{code: 480, reason: "Temporarily Unavailable"}
			if h.hasBest {
				r.code, r.reason = h.best.code, h.best.reason
			}
			if x.list != nil {
				c.log.Info("transfer hunt failed", "hunt", x.list.Name, "attempts", len(h.attempts), "code", r.code)
			}
			return r
		}
		select {
		case ev := <-h.events:
			if ev.kind == evAnswered {
				h.stopListening()
				return h.transferAnswered(ev)
			}
			h.handle(ev, false, &cause)
		case <-c.ended:
			return gone(487, "Request Terminated")
		case <-s.ctx.Done():
			return gone(503, "Service Unavailable")
		}
	}
}

// transferAnswered gives up on the other targets, makes the winner's
// dialog findable, ACKs its 2xx and applies its answer to the bridge.
func (h *hunt) transferAnswered(ev attemptEvent) dialResult {
	s, c, x, at := h.s, h.c, h.xfer, ev.at
	defer ev.tx.Terminate()
	h.settle(ev)
	l := at.leg
	l.fromUACResponse(ev.res)
	// Findable before the ACK: the target may hang up at once, or
	// re-INVITE (onReinvite answers 491 until the leg is the call's).
	if !s.reg.addLeg(c, l) {
		// The caller hung up as the target answered (the call left the
		// registry): the target gets ACK and BYE, as any late answer.
		s.hangUpLate(c, at, ev.req, ev.tx, ev.res, c.log.With("leg", l.name, "target", at.callee.Name()))
		return dialResult{code: 487, reason: "Request Terminated"}
	}
	c.mu.Lock()
	x.ep, x.user, x.leg, x.redirected = at.callee.EP, at.callee.User, l, at.redirects > 0
	c.mu.Unlock()
	ack := l.ackOf(ev.req)
	s.edge.Prepare(ack)
	if err := s.edge.Client().WriteRequest(ack); err != nil {
		c.log.Warn("ACK not sent", "leg", l.name, "sip_call_id", l.callID, "error", err)
	}
	l.mu.Lock()
	l.sentAck = ack
	l.mu.Unlock()
	// Retransmitted 2xx are ACKed again (onStrayResponse, once the
	// transaction is gone).
	ev.tx.OnRetransmission(s.reAck(ack, l.callID))
	if x.list != nil {
		c.log.Info("transfer hunt answered", "hunt", x.list.Name, "target", at.callee.Name())
	}
	if err := c.bridge.AnswerSide(x.from.side, ev.res.Body()); err != nil {
		c.log.Warn("transfer target's answer refused", "target", at.callee.Name(), "error", err)
		s.sendBye(c, l)
		s.reg.removeLeg(c, l)
		at.endRing()
		return dialResult{code: 488, reason: "Not Acceptable Here"}
	}
	return dialResult{leg: l, answer: ev.res, code: ev.res.StatusCode, reason: ev.res.Reason, unring: at.ring.end}
}

// skipFull resolves callee's turn without an INVITE when the hunt is a
// transfer's and callee's endpoint is at max_calls; it reports whether
// it did.
func (h *hunt) skipFull(callee sipedge.Callee) bool {
	if h.xfer == nil || h.s.reg.hasRoom(callee.EP.Name, callee.EP.MaxCalls) {
		return false
	}
	h.skipUnavailable(callee, "transfer target skipped: its endpoint is at max_calls", "endpoint at max_calls")
	return true
}

// transferInvite builds attempt at's INVITE of transfer x, with offer
// (from Bridge.OfferSide), and sets up the attempt's leg.
func (s *Engine) transferInvite(c *call, x *transfer, at *attempt, offer []byte) *sip.Request {
	cfg := s.edge.Config()
	callee, l := at.callee, at.leg
	s.reg.usePeer(c, callee.EP)
	// Before anything reads it: the leg is findable only once it won.
	l.ep = callee.EP
	l.mu.Lock()
	l.localURI, l.localTag, l.localCSeq = c.newLegFrom(cfg), newTag(), 1
	l.remoteURI, l.remoteTarget = callee.To, callee.URI
	l.transport = strings.ToUpper(callee.EP.Transport)
	l.dest = callee.Dest
	localURI, tag, callID, transport := l.localURI, l.localTag, l.callID, l.transport
	l.mu.Unlock()
	c.mu.Lock()
	if x.leg == nil {
		// The callee rung last, until one answered (a parallel list's
		// loser may get here after the winner's 2xx).
		x.ep, x.user = callee.EP, callee.User
	}
	c.mu.Unlock()

	req := sip.NewRequest(sip.INVITE, callee.URI)
	from := &sip.FromHeader{Address: localURI, Params: sip.NewParams()}
	from.Params.Add("tag", tag)
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: callee.To, Params: sip.NewParams()})
	cid := sip.CallIDHeader(callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(s.edge.Contact(transport))
	req.AppendHeader(sip.NewHeader("User-Agent", cfg.SIP.UserAgent))
	req.AppendHeader(sip.NewHeader("Allow", allowFor(callee.EP)))
	for _, h := range c.route.TransferHeaders(c.id) {
		req.AppendHeader(h)
	}
	ct := sip.ContentTypeHeader("application/sdp")
	req.AppendHeader(&ct)
	req.SetBody(offer)
	req.SetTransport(transport)
	if callee.Dest != "" {
		req.SetDestination(callee.Dest)
	}
	s.edge.Prepare(req)
	c.log.Info("transfer target called", "target", callee.Name(), "attempt", at.n, "sip_call_id_new", callID)
	return req
}

// newLegFrom is the From of a new agent leg: the WhatsApp user, as the
// first agent of a UIC saw it; on a BIC the user's number (or id) at our
// host.
func (c *call) newLegFrom(cfg *configs.Config) sip.Uri {
	if c.route.Dir == sipedge.UIC {
		return *c.route.BFrom.Clone()
	}
	return sip.Uri{Scheme: "sip", User: c.route.User, Host: cfg.SIP.Host}
}
