package b2bua

import (
	"errors"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
	"github.com/wagate/wagate/events"
	"github.com/wagate/wagate/media"
	sipedge "github.com/wagate/wagate/sip"
)

// Transfer: the PBX (or dialer) leg of an answered call hands the call on
// — with REFER (blind to an extension, or attended: Replaces naming a
// second call through wagate, join.go) or through the API. The WhatsApp
// leg is never told: Meta refuses re-INVITE, UPDATE and REFER. Its media
// keeps flowing from the same port; only the other side of the bridge
// moves to the new leg (Bridge.OfferSide, AnswerSide). While the target
// rings the caller hears music on hold. The old leg is hung up once the
// new one answered; if the target fails the caller goes back to the
// transferring agent, or, if that agent has hung up, to the number's
// fallback route.

// Errors of Engine.Transfer.
var (
	ErrNotAnswered      = errors.New("b2bua: the call is not answered")
	ErrNoAgent          = errors.New("b2bua: the call has no agent to transfer (its call flow has not connected one)")
	ErrTransferring     = errors.New("b2bua: a transfer of the call is under way")
	ErrJoined           = errors.New("b2bua: the call was joined to another by an attended transfer")
	ErrTooManyTransfers = errors.New("b2bua: the call was transferred too many times")
	ErrBadTarget        = errors.New("b2bua: the target is not a user at a pbx endpoint")
)

// maxTransfers bounds the transfers of one call: two agents transferring
// it back and forth, by mistake or by a script, would never stop.
const maxTransfers = 10

// transfer is one transfer under way.
type transfer struct {
	kind string // events.TransferBlind, …
	by   string // who asked: the REFER's endpoint, "api", "wagate"
	// from is the leg being replaced; fromGone is set when it hung up
	// meanwhile (under the call's mu).
	from     *leg
	fromGone bool
	// target is what was asked for; callees what it rings, in order
	// (one extension, or a hunt list's targets), list the hunt list.
	target  Target
	callees []sipedge.Callee
	list    *configs.HuntList
	// ep and user are the callee rung last: the one that answered.
	ep     *configs.Endpoint
	user   string
	notify *notifier
	asked  time.Time
	// leg is the new leg once answered; connected once it took over
	// (under the call's mu). redirected: it answered through a 3xx, so
	// ep and user name no configured agent.
	leg        *leg
	connected  bool
	redirected bool
	// legGone: leg sent BYE before it took the call's place (under the
	// call's mu); the call ends as soon as it does.
	legGone bool
	// recorded: the transfer's entry is in the call's transfers (under
	// the call's mu); the call's end records one still ringing.
	recorded bool
}

// Transfer blind-transfers answered call callID (wagate's id) to target:
// its PBX or dialer leg is replaced by a call to target, as a REFER
// would, but without the endpoint's transfer.allow (the API is the
// operator's). It returns the call as it was when asked, once the
// transfer is under way; the outcome is in the call.transferred event
// and the call's record. Errors: ErrNoSuchCall, ErrBadTarget, and
// ErrNotAnswered, ErrNoAgent, ErrTransferring, ErrJoined or
// ErrTooManyTransfers.
func (s *Engine) Transfer(callID string, target Target) (CallInfo, error) {
	c := s.reg.find(callID)
	if c == nil {
		return CallInfo{}, ErrNoSuchCall
	}
	callees, list, err := s.transferCallees(s.edge.Config(), target)
	if err != nil {
		return CallInfo{}, err
	}
	info, ok := c.info()
	if !ok {
		return CallInfo{}, ErrNoSuchCall
	}
	x := &transfer{kind: events.TransferAPI, by: "api", from: c.legOf(c.pbxSide()), target: target,
		callees: callees, list: list, asked: time.Now()}
	if err := c.beginTransfer(x); err != nil {
		return CallInfo{}, err
	}
	c.log.Info("transfer asked by the API", "target", target.String())
	s.wg.Go(func() { s.runTransfer(c, x) })
	return info, nil
}

// beginTransfer makes x the call's transfer under way, or says why not.
func (c *call) beginTransfer(x *transfer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.state == stateEnded:
		return ErrNoSuchCall
	case c.state != stateConfirmed && c.state != stateAnswered:
		// Answered: both legs are up, only A's ACK is on its way.
		return ErrNotAnswered
	case c.cc.joined != nil:
		return ErrJoined
	case c.cc.xfer != nil:
		return ErrTransferring
	case c.cc.count >= maxTransfers:
		return ErrTooManyTransfers
	case x.from.retired || (x.from != c.a && x.from != c.b):
		return ErrNoSuchCall
	case !(x.from == c.a && c.aAnswered || x.from == c.b && c.bAnswered):
		// A call answered by its call flow has no agent leg until a
		// connect reaches one: there is nothing to replace, and the
		// flow's own connect would be the one to ring an agent.
		return ErrNoAgent
	}
	c.cc.xfer = x
	c.cc.count++
	return nil
}

// transferorGoneLocked takes a BYE from the leg a transfer is replacing:
// the transfer goes on without it, and it no longer ends the call. It
// reports whether l was that leg. Called with c.mu held.
func (c *call) transferorGoneLocked(l *leg) bool {
	x := c.cc.xfer
	if x == nil || x.from != l || x.fromGone || x.connected {
		return false
	}
	x.fromGone, l.retired = true, true
	// The agent hung up: it is free, whatever becomes of the transfer.
	c.freeAgentLocked(l)
	if l == c.a {
		c.aAnswered = false
	} else if l == c.b {
		c.bAnswered = false
	}
	return true
}

// onRefer takes a REFER on a leg of a call. Only a PBX or dialer leg with
// `transfer` in its endpoint's configuration may transfer; a blind
// target must be allowed there. Refusals are final answers to the REFER
// (400 malformed, 403 not allowed, 491 not now); an accepted REFER gets
// 202 and its progress in NOTIFYs.
func (s *Engine) onRefer(req *sip.Request, tx sip.ServerTransaction) {
	ref, ok := s.dialogOr481(req, tx)
	if !ok {
		return
	}
	c, l := ref.call, ref.leg
	log := c.log.With("leg", l.name)
	refuse := func(code int, why string) {
		s.edge.Reject(tx, req, &sipedge.Rejection{Code: code, Reason: sipedge.DefaultReason(code), Warning: why, Log: "REFER refused: " + why}, log)
	}
	rt, err := parseReferTo(req)
	if err != nil {
		refuse(400, err.Error())
		return
	}
	c.mu.Lock()
	current := (l == c.a || l == c.b) && !l.retired
	st, busy, joined := c.state, c.cc.xfer != nil, c.cc.joined != nil
	c.mu.Unlock()
	answered := st == stateConfirmed || st == stateAnswered
	if !current {
		s.edge.Respond(tx, req, 481, "Call/Transaction Does Not Exist", nil)
		return
	}
	if !answered {
		refuse(491, "the call is not answered yet")
		return
	}
	// l.ep is final once the call is answered (a hunt's answer sets it).
	cfg := s.edge.Config()
	ep := cfg.Endpoint(l.ep.Name) // the rules in force now
	if ep == nil {
		ep = l.ep
	}
	switch {
	case ep.Kind == configs.KindWhatsApp:
		refuse(403, "the WhatsApp leg cannot transfer")
		return
	case ep.Transfer == nil:
		refuse(403, "endpoint "+ep.Name+" may not transfer calls (no transfer.allow)")
		return
	case busy || joined:
		refuse(491, "a transfer of this call is under way or done")
		return
	}
	if rt.replaces != nil {
		s.referReplaces(c, l, ep, req, tx, rt.replaces)
		return
	}
	target, why := resolveTarget(cfg, ep, rt.uri)
	if why != "" {
		refuse(403, why)
		return
	}
	if target.Endpoint == l.ep.Name && strings.EqualFold(target.User, l.remoteURI.User) {
		refuse(403, "transfer to the transferring agent itself")
		return
	}
	callees, list, err := s.transferCallees(cfg, target)
	if err != nil {
		refuse(403, strings.TrimPrefix(err.Error(), ErrBadTarget.Error()+": "))
		return
	}
	x := &transfer{kind: events.TransferBlind, by: ep.Name, from: l, target: target, callees: callees, list: list, asked: time.Now()}
	if err := c.beginTransfer(x); err != nil {
		refuse(491, err.Error())
		return
	}
	s.edge.Respond(tx, req, 202, "Accepted", func(res *sip.Response) { res.AppendHeader(s.edge.Contact(l.transport)) })
	log.Info("transfer accepted", "target", target.String(), "refer_to", rt.uri.String())
	x.notify = s.newNotifier(c, l, req, c.transferorAlive(x))
	x.notify.progress(100, "Trying")
	s.wg.Go(func() { s.runTransfer(c, x) })
}

// transferorAlive reports, for the NOTIFYs, whether x's transferring leg
// is still there to be told.
func (c *call) transferorAlive(x *transfer) func() bool {
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return !x.fromGone && c.state != stateEnded
	}
}

// runTransfer places the transfer's call and completes or undoes it.
func (s *Engine) runTransfer(c *call, x *transfer) {
	c.updateMOH()
	r := s.dialTransfer(c, x)
	if r.ok() {
		s.completeTransfer(c, x, r)
		return
	}
	s.transferFailed(c, x, r)
	c.mu.Lock()
	gone, ended := x.fromGone, c.state == stateEnded
	if !gone || ended {
		c.cc.xfer = nil
		c.mu.Unlock()
		if !ended {
			c.log.Info("transfer failed; the caller is back with the transferring agent", "target", x.target.String(), "code", r.code)
			c.updateMOH()
		}
		return
	}
	c.mu.Unlock()
	// The transferring agent hung up: the caller needs an agent.
	cfg := s.edge.Config()
	var fb *configs.Route
	if n := cfg.NumberByE164(c.route.Number.Number); n != nil {
		fb = n.Fallback
	}
	var (
		fx  *transfer
		err error = ErrBadTarget
	)
	if fb != nil {
		fx = &transfer{kind: events.TransferFallback, by: "wagate", from: x.from, fromGone: true,
			target: Target{Endpoint: fb.Endpoint, User: fb.User, Hunt: fb.Hunt}, asked: time.Now()}
		fx.callees, fx.list, err = s.transferCallees(cfg, fx.target)
	}
	if err != nil {
		c.mu.Lock()
		c.cc.xfer = nil
		c.mu.Unlock()
		c.terminate(nil, "transfer failed ("+itoa(r.code)+") after the transferring agent hung up; no fallback route")
		return
	}
	c.mu.Lock()
	if c.state == stateEnded {
		// The caller hung up meanwhile: no fallback to call, and none to
		// record after the call's record was written.
		c.cc.xfer = nil
		c.mu.Unlock()
		return
	}
	c.cc.xfer = fx
	c.mu.Unlock()
	c.log.Info("transfer failed after the transferring agent hung up; calling the fallback route", "target", fx.target.String())
	if r := s.dialTransfer(c, fx); r.ok() {
		s.completeTransfer(c, fx, r)
		return
	} else {
		s.transferFailed(c, fx, r)
	}
	c.mu.Lock()
	c.cc.xfer = nil
	c.mu.Unlock()
	c.terminate(nil, "transfer and fallback route failed")
}

// completeTransfer puts the answered leg in the place of the old one and
// hangs the old one up (after the final NOTIFY, when a REFER asked).
func (s *Engine) completeTransfer(c *call, x *transfer, r dialResult) {
	nl := r.leg
	// After the seat below, or the BYE of a call that ended: the target
	// goes from ringing to on the call with no moment free in between.
	if r.unring != nil {
		defer r.unring()
	}
	c.mu.Lock()
	if c.state == stateEnded {
		c.mu.Unlock()
		s.sendBye(c, nl)
		// The final NOTIFY also ends the notifier's goroutine, which
		// would otherwise wait for it until shutdown.
		x.notify.final(487, "Request Terminated", nil)
		return
	}
	old := x.from
	oldUp := !x.fromGone && ((old == c.a && c.aAnswered) || (old == c.b && c.bAnswered))
	if old == c.a {
		c.a, c.aAnswered, c.aEndpoint = nl, true, x.ep.Name
	} else {
		c.b, c.bAnswered, c.bEndpoint, c.bUser = nl, true, x.ep.Name, x.user
	}
	old.retired = true
	x.connected = true
	// The transferring agent is free once the final NOTIFY and its BYE
	// are sent: a queue call ringing it sooner reaches a phone still in
	// the transfer. The one that answered is busy while its leg is the
	// call's.
	freeOld := c.takeAgentLocked(old)
	if !x.redirected {
		c.seatAgentLocked(nl, sipedge.Callee{EP: x.ep, User: x.user}, x.list)
	}
	c.cc.xfer = nil
	rec, _ := c.recordTransferLocked(x, r)
	gone := x.legGone
	if gone {
		// It hung up already: it needs no BYE.
		if nl == c.a {
			c.aAnswered = false
		} else {
			c.bAnswered = false
		}
	}
	c.mu.Unlock()
	s.reg.moveEndpoint(c, int(old.side), x.ep.Name, 0)
	c.updateMOH()
	s.journalUp(c)
	c.log.Info("call transferred", "kind", x.kind, "target", x.target.String(), "sip_call_id_new", nl.callID,
		"latency_ms", rec.LatencyMS)
	s.notifyTransferred(rec)
	x.notify.final(200, "OK", func() {
		s.byeOrFree(c, old, oldUp, freeOld)
	})
	if gone {
		c.terminate(nl, "bye")
	}
}

// transferFailed records a failed transfer and tells the transferring leg.
func (s *Engine) transferFailed(c *call, x *transfer, r dialResult) {
	c.mu.Lock()
	rec, first := c.recordTransferLocked(x, r)
	c.mu.Unlock()
	c.log.Info("transfer target failed", "kind", x.kind, "target", x.target.String(), "code", r.code, "reason", r.reason)
	if first {
		s.notifyTransferred(rec)
	}
	x.notify.final(r.code, r.reason, nil)
}

// recordTransferLocked adds x's entry, for outcome r, to the call's
// transfers, unless it is there already (first false). Called with c.mu
// held.
func (c *call) recordTransferLocked(x *transfer, r dialResult) (rec events.Transfer, first bool) {
	if x.recorded {
		return events.Transfer{}, false
	}
	x.recorded = true
	rec = x.record(c, r)
	c.cc.transfers = append(c.cc.transfers, rec)
	return rec, true
}

// endTransferLocked records, as the call ends, a transfer that is still
// ringing its target: the call's record is written now, and the
// transfer's goroutine sees the end only afterwards. It fails 487, as
// its INVITEs do. Attended transfers complete (or fail) in one step and
// record themselves. Called with c.mu held.
func (c *call) endTransferLocked() (events.Transfer, bool) {
	x := c.cc.xfer
	if x == nil || x.connected || x.kind == events.TransferAttended {
		return events.Transfer{}, false
	}
	return c.recordTransferLocked(x, dialResult{code: 487, reason: "Request Terminated"})
}

// record is x as the call's record and event keep it. Called with c.mu
// held.
func (x *transfer) record(c *call, r dialResult) events.Transfer {
	t := events.Transfer{
		CallID: c.id, Kind: x.kind, By: x.by, Target: x.rung(), Hunt: x.target.Hunt,
		From:      events.Leg{Endpoint: x.from.ep.Name, SIPCallID: x.from.callID},
		Connected: r.ok(), SIPCode: r.code, Reason: r.reason,
		RequestedAt: x.asked, LatencyMS: time.Since(x.asked).Milliseconds(),
	}
	if r.leg != nil {
		t.To = events.Leg{Endpoint: x.ep.Name, SIPCallID: r.leg.callID, User: x.user}
	}
	return t
}

// TransferObserver is told about every transfer, connected or failed
// (the events sink implements it). Observers that are not are skipped.
type TransferObserver interface {
	CallTransferred(events.Transfer)
}

func (s *Engine) notifyTransferred(t events.Transfer) {
	for _, o := range s.observers {
		if to, ok := o.(TransferObserver); ok {
			to.CallTransferred(t)
		}
	}
}

// linkBridges joins two real bridges (media.Link).
func linkBridges(b1 Bridge, s1 media.Side, b2 Bridge, s2 media.Side) error {
	m1, ok1 := b1.(*media.Bridge)
	m2, ok2 := b2.(*media.Bridge)
	if !ok1 || !ok2 {
		return errors.New("b2bua: these bridges cannot be joined")
	}
	return media.Link(m1, s1, m2, s2)
}

// endControl runs when the call ends: a call joined to this one ends
// with it (a transfer under way sees the end by itself).
func (c *call) endControl() {
	c.mu.Lock()
	j, ho, to := c.cc.joined, c.cc.handover, c.cc.handoverTo
	c.cc.handover, c.cc.handoverTo = nil, nil
	code, reason := c.finalCode, c.finalReason
	c.mu.Unlock()
	if j != nil {
		j.terminate(nil, "the call it was joined to ended")
	}
	if to != nil {
		// The caller of a semi-attended transfer is gone: the call it
		// was to join stops ringing.
		to.terminate(nil, "the caller it was to be joined to ended")
	}
	if ho != nil {
		c.srv.handoverFailed(ho, code, reason)
	}
}
