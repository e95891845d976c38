package b2bua

import (
	"cmp"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
	"github.com/wagate/wagate/events"
	sipedge "github.com/wagate/wagate/sip"
)

// A call rings its callees through a hunt: the one extension of a route
// or the WhatsApp user of a BIC (a hunt of one), or a hunt list's
// targets. Each INVITE is an attempt with its own goroutine and dialog
// (its own Call-ID); the hunt goroutine, the one that took A's INVITE,
// decides: which callee rings next, which 2xx wins, what A hears. The
// rules are in docs/sip.md "Hunt lists".
type hunt struct {
	s     *Engine
	c     *call
	side  huntSide
	offer []byte
	// list is the hunt list rung (nil: one callee).
	list *configs.HuntList
	// local: A was answered by wagate itself (a call flow's connect):
	// nothing is relayed to A, and the outcome goes to the flow.
	local bool
	// queued: the hunt is a queue's ring round. An agent's 6xx is then
	// that agent's answer, not the caller's: the agent rests
	// (reject_backoff) and the others ring on, whatever on_decline says.
	queued bool
	// xfer is the transfer whose target the hunt rings (transferdial.go);
	// nil for the call's own B-leg.
	xfer *transfer
	// base is how many attempts the call had placed before this hunt (a
	// call flow may connect more than once): attempt numbers, and so
	// B-leg Call-IDs, go on from there.
	base int
	// queue holds the callees not rung yet, in the strategy's order.
	queue []sipedge.Callee
	// events carries the attempts' reports; done is closed when the hunt
	// stops listening, so that no attempt ever blocks on a report.
	events   chan attemptEvent
	done     chan struct{}
	doneOnce sync.Once

	mu sync.Mutex
	// closed: no 2xx may win any more (one did, or A is gone).
	closed bool
	// won: a 2xx claimed the call; its evAnswered is on its way.
	won bool

	// The rest belongs to the hunt goroutine.
	attempts  []*attempt
	live      int  // attempts whose goroutine runs
	pending   int  // attempts whose result is not known yet
	stopped   bool // a 6xx ended the hunt: ring no one else
	rang      bool // A had its ringing (a hunt relays one)
	abandoned bool // an attempt never ended its INVITE
	best      result
	hasBest   bool
}

// result is what an attempt that failed would make A hear.
type result struct {
	code    int
	reason  string
	relayed bool // B's own code and phrase, passed on
	weight  int
	cause   string
	outcome Outcome
}

// Which failure A hears when nobody answers: the last of the highest
// weight. What a target said itself beats wagate's ring timeout, which
// beats no answer at all, which beats agents skipped in wrap-up, which
// beats an endpoint skipped as down.
const (
	weightDown = iota
	weightWrapUp
	weightNoAnswer
	weightTimeout
	weightResponse
)

// send reports ev to the hunt, or drops it once the hunt stopped listening.
func (h *hunt) send(ev attemptEvent) {
	select {
	case h.events <- ev:
	case <-h.done:
	}
}

// claim lets at's 2xx win the call: only the first, only while A waits,
// and only for an attempt the hunt has not given up on.
func (h *hunt) claim(at *attempt) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || at.cancelled() {
		return false
	}
	h.closed, h.won, at.won = true, true, true
	return true
}

// winnerRingGrace bounds how long a winning attempt's agent stays
// ringing when nothing seats it (hunt.ringEnded): every path that drops a
// winner ends its ring itself, so this only guards one missed.
const winnerRingGrace = 5 * time.Second

// ringEnded ends at's ring as its goroutine ends, except the winner's:
// that one ends once its agent is seated (noteAnswered, completeTransfer)
// or hung up (hangUpLate). The agent then goes from ringing to on a call
// with no moment free in between, which the other nodes would otherwise
// see: a ring's end wakes their waiting queue calls (AgentsElsewhere),
// which would ring the agent on top of the call it just took.
func (h *hunt) ringEnded(at *attempt) {
	h.mu.Lock()
	won := at.won
	h.mu.Unlock()
	if !won {
		at.endRing()
		return
	}
	if r := at.ring; r != nil && !r.done.Load() {
		time.AfterFunc(winnerRingGrace, r.end)
	}
}

// dropWinner is for a hunt that stops listening without reading its
// events (the call ended): a 2xx that won just before is in events or
// about to be, and its callee must get ACK and BYE, not a dialog nobody
// answers until its transaction gives up.
func (h *hunt) dropWinner() {
	h.mu.Lock()
	won := h.won
	h.mu.Unlock()
	if !won {
		return
	}
	// The winner sends at once after its claim; the wait only bounds a
	// report that never comes.
	limit := time.NewTimer(2 * time.Second)
	defer limit.Stop()
	for {
		select {
		case ev := <-h.events:
			if ev.kind == evAnswered {
				h.s.hangUpLate(h.c, ev.at, ev.req, ev.tx, ev.res, h.c.log)
				ev.tx.Terminate()
				return
			}
		case <-limit.C:
			return
		}
	}
}

func (h *hunt) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
}

func (h *hunt) stopListening() { h.doneOnce.Do(func() { close(h.done) }) }

// cancelAll gives up on every attempt but except (nil: all).
func (h *hunt) cancelAll(except *attempt) {
	for _, at := range h.attempts {
		if at != except {
			at.cancel()
		}
	}
}

// anyUp reports whether some callee of dec is at an endpoint not marked
// down by its probes.
func (s *Engine) anyUp(dec *sipedge.Decision) bool {
	for _, c := range dec.Callees {
		if s.edge.Up(c.EP.Name) {
			return true
		}
	}
	return false
}

// ring places the call's B-legs with offer and drives the call until A
// has its answer (or final error) and, after a 2xx, A's ACK.
func (s *Engine) ring(c *call, offer []byte) {
	h := &hunt{s: s, c: c, side: bSide{}, offer: offer, list: c.route.Hunt,
		events: make(chan attemptEvent, 16), done: make(chan struct{})}
	defer h.stopListening()
	h.queue = s.hunts.order(c.route)

	cancelled := make(chan struct{}, 1)
	c.aTx.OnCancel(func(*sip.Request) {
		select {
		case cancelled <- struct{}{}:
		default:
		}
	})
	var (
		aFinal bool // A already has its final response
		cause  string
		// released: A's INVITE was ended (487) by a semi-attended
		// transfer that took B over (join.go); B rings on for it, and
		// A's CANCEL or closed connection no longer stop it.
		released bool
	)
	var handover <-chan struct{}
	if c.route.Dir == sipedge.BIC && c.flow == nil {
		var closeHandover func()
		handover, closeHandover = c.openHandover()
		defer closeHandover()
	}
	giveUpWith := func(r *sipedge.Rejection) {
		if !aFinal {
			aFinal = true
			if released {
				c.finalToA(r)
			} else {
				s.rejectA(c, r)
			}
		}
		cause = r.Log
		h.close()
		h.cancelAll(nil)
		c.setOutcome(OutcomeCancelled)
	}
	giveUp := func(code int, reason, why string) {
		giveUpWith(&sipedge.Rejection{Code: code, Reason: reason, Log: why})
	}
	// stopped: the node ended the call before its answer because it is
	// stopping (the drain's deadline, shutdown). The 503 names the node's
	// state, so that a dispatcher in front (Kamailio) places the caller
	// on another node, where the agents ring again, instead of the caller
	// being dropped by a rolling restart.
	//
	// Only for a WhatsApp user's call to agents: a business's call still
	// ringing the user would ring the user's phone a second time from the
	// next node, after a CANCEL Meta may count against the business; the
	// dialer gets the 503 and decides.
	stopped := func(why string) {
		r := &sipedge.Rejection{Code: 503, Reason: "Service Unavailable", Log: why}
		if s.edge.Draining() && c.route.Dir == sipedge.UIC {
			r.NodeUnavailable = sipedge.NodeDraining
		}
		giveUpWith(r)
	}
	// aCancelled: sipgo has already answered A's CANCEL with 200 and its
	// INVITE with 487.
	aCancelled := func() {
		aFinal = true
		cause = causeCancelledByA
		c.finalToA(&sipedge.Rejection{Code: 487, Reason: "Request Terminated"})
		h.close()
		h.cancelAll(nil)
		c.setOutcome(OutcomeCancelled)
	}
	apiHangup := c.hangupRequests()
	// A's INVITE transaction ends before A has a final response only when
	// the TCP/TLS connection it came on closed (sipgo's transport error):
	// no answer can reach A any more, so the callees are cancelled now
	// rather than ringing on until an agent answers a caller who is gone.
	aDone := c.aTx.Done()

	for {
		if !aFinal && h.pending == 0 {
			h.next()
		}
		if !aFinal && h.pending == 0 {
			// Nothing rings and nothing is left to ring.
			r := h.best
			if !h.hasBest {
				r = result{code: 503, reason: "Service Unavailable", cause: "no target answered", outcome: OutcomeFailed}
			}
			aFinal = true
			h.close()
			if rej := (&sipedge.Rejection{Code: r.code, Reason: r.reason, Relayed: r.relayed, Log: r.cause}); released {
				c.finalToA(rej)
			} else {
				s.rejectA(c, rej)
			}
			if cause == "" {
				cause = r.cause
			}
			c.setOutcome(r.outcome)
			if h.list != nil {
				c.log.Info("hunt failed", "hunt", h.list.Name, "attempts", len(h.attempts), "code", r.code)
			}
		}
		if aFinal && h.live == 0 {
			if h.abandoned {
				cause += "; " + errAbandoned.Error()
			}
			c.terminate(nil, cause)
			return
		}
		select {
		case ev := <-h.events:
			if ev.kind == evAnswered && !aFinal && !released {
				// A's CANCEL told together with the 2xx came first: the
				// 2xx crossed it.
				select {
				case <-cancelled:
					aCancelled()
				default:
				}
			}
			if ev.kind == evAnswered && aFinal {
				// A has its final response already: the 2xx is as late
				// as one that came after the hunt closed (evLate), and
				// is recorded so.
				h.lateWinner(ev, &cause)
				continue
			}
			if ev.kind == evAnswered {
				h.stopListening()
				h.win(ev, aFinal, cause, cancelled)
				return
			}
			h.handle(ev, aFinal, &cause)
		case <-cancelled:
			if !released {
				aCancelled()
			}
		case <-handover:
			if aFinal {
				continue // the call ends, and the transfer with it
			}
			// The agent transferred its caller to this call while it
			// rings: its INVITE ends, and B rings on for the caller.
			released = true
			s.releaseAgentInvite(c)
		case <-aDone:
			aDone = nil
			if aFinal || released || !errors.Is(c.aTx.Err(), sip.ErrTransactionTransport) {
				continue
			}
			select {
			case <-cancelled:
				aCancelled()
				continue
			default:
			}
			c.log.Info("A-leg connection closed before the answer; cancelling the callees", "leg", "a")
			aFinal = true
			cause = causeAConnectionClosed
			h.close()
			h.cancelAll(nil)
			c.setOutcome(OutcomeCancelled)
		case <-apiHangup:
			// Hung up through the API before the answer: A gets 487, every
			// attempt its CANCEL, and the call ends with their finals.
			apiHangup = nil
			r := c.earlyEnd()
			giveUp(r.Code, r.Reason, r.Log)
		case <-c.ended:
			// Ended from outside (shutdown): A still needs a final
			// response, B a CANCEL. A late 2xx from B is then ACKed and
			// hung up by its attempt.
			stopped("call ended before answer")
			h.dropWinner()
			return
		case <-s.ctx.Done():
			stopped("shutdown")
			h.dropWinner()
			c.terminate(nil, cause)
			return
		}
	}
}

// next rings the next callee (sequential strategies) or all of them
// (parallel), skipping those at endpoints marked down, a list's agents
// in wrap-up (and, for a transfer, those at max_calls).
func (h *hunt) next() {
	parallel := h.list != nil && h.list.Strategy == configs.HuntParallel
	for len(h.queue) > 0 && !h.stopped {
		callee := h.queue[0]
		h.queue = h.queue[1:]
		if !h.s.edge.Up(callee.EP.Name) {
			h.skipUnavailable(callee, "target skipped: its endpoint is down", "b-leg endpoint down")
			continue
		}
		if h.skipFull(callee) || h.skipWrapUp(callee) {
			continue
		}
		var rang func()
		if h.queued {
			// A queue's ring takes only an agent no other call rings or
			// holds: the waiting calls share out the free agents.
			var ok bool
			if rang, ok = h.s.hunts.reserve(callee.Name()); !ok {
				h.c.log.Info("target skipped: ringing for another call or on one", "target", callee.Name())
				continue
			}
		}
		h.start(callee, 0, rang)
		if !parallel {
			return
		}
	}
}

// start rings callee in a new attempt; rang, when given, is what
// reserved the agent (hunt.next), else it is marked ringing here.
func (h *hunt) start(callee sipedge.Callee, redirects int, rang func()) {
	at := h.newAttempt(callee, redirects)
	at.started = time.Now()
	h.attempts = append(h.attempts, at)
	h.live++
	h.pending++
	h.note(at)
	if rang == nil {
		rang = h.ringsAgent(at)
	}
	at.ring = &ringHold{release: rang}
	h.s.wg.Go(func() {
		h.s.runAttempt(h, at, h.offer)
		h.ringEnded(at)
	})
}

// ringsAgent marks at's callee, an agent at a pbx endpoint, as ringing
// until the returned func is called (when the attempt's goroutine ends),
// for least_recent's order. A redirect's target is no configured agent.
func (h *hunt) ringsAgent(at *attempt) func() {
	if at.redirects > 0 || at.callee.EP == nil || at.callee.EP.Kind != configs.KindPBX {
		return func() {}
	}
	return h.s.hunts.rings(at.callee.Name())
}

// resolve records at's result; r, when given, is what A hears if nobody
// answers. (Once no attempt is pending the hunt loop rings the next.)
func (h *hunt) resolve(at *attempt, name string, code int, r *result) {
	if at.resolved {
		return
	}
	at.resolved, at.result, at.code, at.endedAt = true, name, code, time.Now()
	h.pending--
	h.note(at)
	if r != nil && (!h.hasBest || r.weight >= h.best.weight) {
		h.best, h.hasBest = *r, true
	}
}

// handle applies one attempt report other than a winning 2xx.
func (h *hunt) handle(ev attemptEvent, aFinal bool, cause *string) {
	c, at := h.c, ev.at
	// Reports of an attempt the hunt gave up on say nothing about what A
	// should hear (B's 487 to our CANCEL, above all).
	given := ev.afterStop || at.cancelled()
	switch ev.kind {
	case evRinging:
		if !aFinal && !given {
			h.side.ringing(h, at, ev.res)
		}
	case evTimeout:
		if given {
			return
		}
		c.log.Info("target did not answer within its ring time", "target", at.callee.Name(), "ring_timeout", at.callee.RingTimeout.String())
		h.resolve(at, events.AttemptNoAnswer, 0, &result{code: 480, reason: "Temporarily Unavailable", weight: weightTimeout,
			cause: "ring timeout", outcome: OutcomeCancelled})
	case evFailed:
		if given {
			h.resolve(at, events.AttemptCancelled, 0, nil)
			return
		}
		r := &result{code: 408, reason: "Request Timeout", weight: weightNoAnswer, cause: "b-leg no final response", outcome: OutcomeFailed}
		if ev.err != nil && !errors.Is(ev.err, sip.ErrTransactionTimeout) {
			r.code, r.reason = 503, "Service Unavailable"
		}
		if ev.unsent {
			r.cause = "B-leg unreachable"
		}
		c.log.Info("target unreachable", "target", at.callee.Name(), "error", errString(ev.err))
		h.resolve(at, events.AttemptUnreachable, 0, r)
	case evFinal:
		res := ev.res
		if given {
			h.resolve(at, events.AttemptCancelled, res.StatusCode, nil)
			return
		}
		if res.StatusCode < 400 && !aFinal && h.redirect(at, res) {
			return
		}
		code, reason := mapFinal(res)
		h.resolve(at, finalResult(res.StatusCode), res.StatusCode, &result{code: code, reason: reason, relayed: code == res.StatusCode,
			weight: weightResponse, cause: "b-leg " + itoa(res.StatusCode), outcome: outcomeFor(res.StatusCode, res.Reason)})
		if res.StatusCode >= 600 && !h.queued && (h.list == nil || h.list.OnDecline == configs.DeclineStop) && !h.stopped {
			// A 6xx is the callee's answer for everyone (RFC 3261
			// §16.7): the hunt ends with it.
			h.stopped = true
			h.queue = nil
			h.cancelAll(nil)
			if h.list != nil {
				c.log.Info("hunt ended by a decline", "hunt", h.list.Name, "target", at.callee.Name(), "code", res.StatusCode)
			}
		}
	case evLate:
		h.resolve(at, events.AttemptLate, 200, nil)
		if aFinal {
			// The CANCEL/200 race: B answered as A gave up.
			h.side.lateAnswer(c)
			*cause += "; " + at.leg.name + " answered late"
		}
	case evDone:
		h.live--
		if errors.Is(ev.err, errAbandoned) {
			h.abandoned = true
		}
		h.resolve(at, events.AttemptCancelled, 0, nil)
	}
}

// redirect follows a 3xx of at when the configuration allows it, and
// reports whether it did.
func (h *hunt) redirect(at *attempt, res *sip.Response) bool {
	c := h.c
	to, why := sipedge.Redirect(h.s.edge.Config(), at.callee, res)
	switch {
	case why != "":
	case at.redirects >= sipedge.MaxRedirects:
		why = "already followed " + itoa(at.redirects) + " redirects"
	case !h.s.edge.Up(to.EP.Name):
		why = "endpoint " + to.EP.Name + " is down"
	}
	if why != "" {
		c.log.Info("redirect not followed", "target", at.callee.Name(), "code", res.StatusCode, "why", why)
		return false
	}
	c.log.Info("redirect followed", "target", at.callee.Name(), "code", res.StatusCode, "to", to.Name())
	h.start(to, at.redirects+1, nil)
	h.resolve(at, events.AttemptRedirected, res.StatusCode, nil)
	return true
}

// lateWinner ACKs and hangs up a 2xx that won the hunt when A had its
// final response already (its CANCEL crossed the 2xx, or the API hung it
// up), and records it as any 2xx that came after A gave up (evLate).
func (h *hunt) lateWinner(ev attemptEvent, cause *string) {
	h.s.hangUpLate(h.c, ev.at, ev.req, ev.tx, ev.res, h.c.log)
	ev.tx.Terminate()
	h.handle(attemptEvent{at: ev.at, kind: evLate, res: ev.res}, true, cause)
}

// win makes the attempt whose 2xx won the call's B-leg and answers A.
func (h *hunt) win(ev attemptEvent, aGone bool, cause string, cancelled <-chan struct{}) {
	h.adopt(ev)
	defer h.c.finishAnswered(ev)
	h.s.onBAnswer(h.c, ev.req, ev.tx, ev.res, aGone, cause, cancelled)
}

// adopt makes the attempt whose 2xx won the call's B-leg and gives up on
// the others.
func (h *hunt) adopt(ev attemptEvent) {
	h.settle(ev)
	h.s.adoptB(h.c, ev.at)
	h.noteAnswered(h.c.b, ev.at)
}

// settle records that ev's attempt won and gives up on the others.
func (h *hunt) settle(ev attemptEvent) {
	at := ev.at
	h.cancelAll(at)
	h.resolve(at, events.AttemptAnswered, ev.res.StatusCode, nil)
	for _, o := range h.attempts {
		if !o.resolved {
			h.resolve(o, events.AttemptCancelled, 0, nil)
		}
	}
}

// noteAnswered logs a hunt list's answer and marks the agent who took
// the call on l (the leg the attempt became) busy.
func (h *hunt) noteAnswered(l *leg, at *attempt) {
	if h.list != nil {
		h.c.log.Info("hunt answered", "hunt", h.list.Name, "target", at.callee.Name(), "attempt", at.n)
	}
	// A redirect's target is whatever the Contact said, not an agent of
	// the configuration.
	if at.redirects == 0 {
		h.c.seatAgent(l, at.callee, h.list)
	}
	// Seated first: the agent is never free between its ring and its
	// call (ringEnded).
	at.endRing()
}

// adoptB makes the winning attempt's dialog the call's B-leg, under the
// Call-ID the registry finds it by.
func (s *Engine) adoptB(c *call, at *attempt) {
	w := at.leg
	w.mu.Lock()
	callID, localURI, localTag, remoteURI := w.callID, w.localURI, w.localTag, w.remoteURI
	remoteTarget, transport, cseq, dest := w.remoteTarget, w.transport, w.localCSeq, w.dest
	w.mu.Unlock()
	s.reg.rebindB(c, callID, at.callee.EP.Name, func() {
		b := c.b
		b.mu.Lock()
		b.callID, b.localURI, b.localTag, b.remoteURI = callID, localURI, localTag, remoteURI
		b.remoteTarget, b.transport, b.localCSeq, b.dest = remoteTarget, transport, cseq, dest
		b.mu.Unlock()
		// Before the answer, so before any in-dialog request of B reads it.
		b.ep = at.callee.EP
		c.mu.Lock()
		c.bEndpoint, c.bUser = at.callee.EP.Name, at.callee.User
		c.mu.Unlock()
	})
}

// note records at in the call's live view and, for the call's own
// B-leg (not a transfer's), in its record.
func (h *hunt) note(at *attempt) {
	h.c.noteRinging(h.side.kind(), at)
	if h.xfer == nil {
		h.c.noteAttempt(at)
	}
}

// ringingAttempt is an attempt whose INVITE waits for its final
// response, as the call's live view shows it.
type ringingAttempt struct {
	at *attempt
	RingingLeg
}

// noteRinging adds at to the call's ringing INVITEs while it is not
// resolved, and takes it out once it is.
func (c *call) noteRinging(kind string, at *attempt) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.IndexFunc(c.ringing, func(r ringingAttempt) bool { return r.at == at })
	switch {
	case at.resolved && i >= 0:
		c.ringing = slices.Delete(c.ringing, i, i+1)
	case !at.resolved && i < 0:
		c.ringing = append(c.ringing, ringingAttempt{at: at, RingingLeg: RingingLeg{Leg: kind,
			Endpoint: at.callee.EP.Name, User: at.callee.User, SIPCallID: at.leg.callID, StartedAt: at.started}})
	}
}

// noteAttempt records at in the call's record.
func (c *call) noteAttempt(at *attempt) {
	a := events.Attempt{Endpoint: at.callee.EP.Name, User: at.callee.User, SIPCallID: at.leg.callID,
		StartedAt: at.started, EndedAt: at.endedAt, SIPCode: at.code, Result: at.result}
	switch {
	case !at.resolved:
		a.Result = events.AttemptRinging
	case at.result == events.AttemptDown:
		a.SIPCallID = "" // never sent
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.attempts.note(at.n, a)
}

// finalResult names a target's final error for the call's record.
func finalResult(code int) string {
	switch {
	case code == 486 || code == 600:
		return events.AttemptBusy
	case code >= 600:
		return events.AttemptDeclined
	case code >= 300 && code < 400:
		return events.AttemptRedirected
	}
	return events.AttemptFailed
}

// huntState is what the round_robin and least_recent strategies remember,
// in memory, per node: it is lost on restart. Agents' calls, rings and
// wrap-up are shared with the other nodes through the agent board when
// there is one (agents.go); round_robin's turns are not.
type huntState struct {
	mu sync.Mutex
	// turns counts the calls each hunt list started (round_robin).
	turns map[string]uint64
	// agents tracks each agent's calls (least_recent, queues), by
	// "user@endpoint", across lists (agents.go).
	agents map[string]*agentState
	// sweptAt is when agents was last swept of the agents past keeping
	// (agents.go, sweepLocked).
	sweptAt time.Time
	// elsewhere is what the other nodes hold of agents (AgentsElsewhere),
	// and board where this node's go (nil: per node).
	elsewhere map[string]AgentMark
	board     AgentBoard
	// freed is closed (and forgotten) when an agent leaves a call, here
	// or elsewhere, or its ring elsewhere ends: the waiting queue calls
	// look again at once.
	freed chan struct{}
}

// freedC is closed when an agent next leaves a call.
func (hs *huntState) freedC() <-chan struct{} {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.freed == nil {
		hs.freed = make(chan struct{})
	}
	return hs.freed
}

// wakeLocked closes freed. Called with hs.mu held.
func (hs *huntState) wakeLocked() {
	if hs.freed != nil {
		close(hs.freed)
		hs.freed = nil
	}
}

// order returns d's callees in the order its strategy rings them.
func (hs *huntState) order(d *sipedge.Decision) []sipedge.Callee {
	callees := slices.Clone(d.Callees)
	if d.Hunt == nil || len(callees) < 2 {
		return callees
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	switch d.Hunt.Strategy {
	case configs.HuntRoundRobin:
		if hs.turns == nil {
			hs.turns = make(map[string]uint64)
		}
		k := int(hs.turns[d.Hunt.Name] % uint64(len(callees)))
		hs.turns[d.Hunt.Name]++
		return append(callees[k:], callees[:k]...)
	case configs.HuntLeastRecent:
		// Free agents first, the longest idle (never answered: idle
		// forever) first; then agents ringing for another call (calls
		// that arrive together spread over the free agents instead of
		// all ringing the idlest); agents on a call last. Ties keep list
		// order.
		// Another node's calls, rings and ends count as this one's.
		key := func(c sipedge.Callee) (int, time.Time) {
			o := hs.elsewhere[c.Name()]
			active, ringing, last := o.Active, o.Ringing, o.LastEnd
			if a := hs.agents[c.Name()]; a != nil {
				active += a.active
				ringing += a.ringing
				if a.lastEnd.After(last) {
					last = a.lastEnd
				}
			}
			switch {
			case active > 0:
				return 2, last
			case ringing > 0:
				return 1, last
			}
			return 0, last
		}
		slices.SortStableFunc(callees, func(x, y sipedge.Callee) int {
			bx, tx := key(x)
			by, ty := key(y)
			if bx != by {
				return cmp.Compare(bx, by)
			}
			return cmp.Compare(tx.UnixNano(), ty.UnixNano())
		})
	}
	return callees
}

// skipUnavailable resolves callee's turn without an INVITE, recorded as
// down (503 to A if nothing better comes): its endpoint cannot take the
// call now. msg is the log line, cause the record's.
func (h *hunt) skipUnavailable(callee sipedge.Callee, msg, cause string) {
	at := h.newAttempt(callee, 0)
	h.attempts = append(h.attempts, at)
	at.started = time.Now()
	h.pending++
	h.c.log.Info(msg, "target", callee.Name())
	h.resolve(at, events.AttemptDown, 0, &result{code: 503, reason: "Service Unavailable", weight: weightDown,
		cause: cause, outcome: OutcomeFailed})
}
