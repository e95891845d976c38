package b2bua

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/wagate/wagate/callflow"
	"github.com/wagate/wagate/configs"
	"github.com/wagate/wagate/events"
	sipedge "github.com/wagate/wagate/sip"
)

// A call flow's connect rings its target through a hunt, the B-leg
// machinery of every call (hunt.go, bleg.go): one extension or a hunt
// list's targets, each INVITE an attempt of its own (its own Call-ID,
// numbered on from the call's earlier attempts, so a second connect never
// looks like a retransmission of the first). What differs from a call's
// own hunt is only that A was answered by wagate already: nothing is
// relayed to A, a failure goes back to the flow (which goes on with its
// next action) instead of to A, and the answering callee is bridged to A
// without touching A's answer.

// connectHunt rings callees (of list, nil for one extension) with offer
// for c, answered on already, and returns nil once one answered and is
// bridged to A; else why not (callflow.ErrCallEnded when the call ended
// meanwhile, ctx's cause when ctx ended first: a queue's limit_time or
// the caller leaving it). failed, when given, is told each callee whose
// attempt failed of itself (busy, declined, no answer, unreachable,
// redirected without an answer), not one given up on; it is given for a
// queue's rings only, whose hunt a 6xx does not end (hunt.queued).
func (s *Engine) connectHunt(ctx context.Context, c *call, offer []byte, callees []sipedge.Callee, list *configs.HuntList, failed func(sipedge.Callee)) error {
	if ctx.Err() != nil {
		return fmt.Errorf("b2bua: connect: %w", context.Cause(ctx))
	}
	c.mu.Lock()
	base := c.attempts.placed
	c.mu.Unlock()
	// Only a queue's rings report failures (waitInLine): they are the
	// ones a decline does not end.
	h := &hunt{s: s, c: c, side: bSide{}, offer: offer, list: list, local: true, base: base, queued: failed != nil,
		events: make(chan attemptEvent, 16), done: make(chan struct{})}
	defer h.stopListening()
	if failed != nil {
		defer h.reportFailed(failed)
	}
	h.queue = s.hunts.order(&sipedge.Decision{Callees: callees, Hunt: list})
	cause := ""
	giveUp := func() {
		h.close()
		h.cancelAll(nil)
	}
	stop := ctx.Done()
	for {
		if h.pending == 0 {
			h.next()
		}
		if h.pending == 0 {
			// Nothing rings and nothing is left to ring. Attempts still
			// ending (a CANCEL's 487) report to nobody: their goroutines
			// are the engine's and end by themselves.
			h.close()
			r := h.best
			if !h.hasBest {
				r = result{cause: "no target answered"}
			}
			if cause == "" {
				cause = r.cause
			}
			if list != nil {
				c.log.Info("call flow connect: hunt failed", "hunt", list.Name, "attempts", len(h.attempts), "code", r.code)
			}
			if r.code != 0 {
				return fmt.Errorf("b2bua: connect: %s (%d %s)", cause, r.code, r.reason)
			}
			return fmt.Errorf("b2bua: connect: %s", cause)
		}
		select {
		case ev := <-h.events:
			if ev.kind == evAnswered {
				h.stopListening()
				return h.connected(ev)
			}
			h.handle(ev, false, &cause)
		case <-stop:
			// The wait is over while agents ring: they get CANCEL. A 2xx
			// that won just before still connects (its evAnswered is on
			// its way): the caller is there and so is the agent.
			h.close()
			h.queue = nil
			if h.hasWinner() {
				stop = nil
				continue
			}
			giveUp()
			h.givenUp()
			c.log.Info("call flow connect: ringing given up", "why", context.Cause(ctx).Error(), "attempts", len(h.attempts))
			return fmt.Errorf("b2bua: connect: %w", context.Cause(ctx))
		case <-c.ended:
			giveUp()
			h.dropWinner()
			h.givenUp()
			return callflow.ErrCallEnded
		case <-s.ctx.Done():
			giveUp()
			h.dropWinner()
			h.givenUp()
			return callflow.ErrCallEnded
		}
	}
}

// hasWinner reports whether a 2xx claimed the call.
func (h *hunt) hasWinner() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.won
}

// givenUp records the attempts the hunt gave up on as cancelled: their
// CANCEL is sent and nobody listens to their end any more.
func (h *hunt) givenUp() {
	for _, at := range h.attempts {
		if !at.resolved {
			h.resolve(at, events.AttemptCancelled, 0, nil)
		}
	}
}

// reportFailed tells failed each callee the hunt rang (not after a
// redirect) whose attempt failed of itself. A callee that redirected
// (call forwarding on its phone) failed too unless the hunt connected
// the call: the agent did not take it, and a queue must not ring it
// again every second.
func (h *hunt) reportFailed(failed func(sipedge.Callee)) {
	connected := slices.ContainsFunc(h.attempts, func(at *attempt) bool { return at.result == events.AttemptAnswered })
	for _, at := range h.attempts {
		if at.redirects > 0 || !at.resolved {
			continue
		}
		switch at.result {
		case events.AttemptBusy, events.AttemptDeclined, events.AttemptFailed, events.AttemptNoAnswer, events.AttemptUnreachable:
			failed(at.callee)
		case events.AttemptRedirected:
			if !connected {
				failed(at.callee)
			}
		}
	}
}

// connected makes the attempt whose 2xx won the call's B-leg, ACKs it and
// bridges it to A, whose answer stays as it is.
func (h *hunt) connected(ev attemptEvent) error {
	s, c := h.s, h.c
	h.adopt(ev)
	defer c.finishAnswered(ev)
	if s.ackB(c, ev.req, ev.tx, ev.res) {
		// The call ended as B answered: terminate did not know B was up.
		s.sendBye(c, c.b)
		return callflow.ErrCallEnded
	}
	if _, err := c.bridge.AnswerB(ev.res.Body()); err != nil {
		c.log.Warn("call flow connect: B's answer not usable", "leg", "b", "error", err)
		c.mu.Lock()
		up := c.bAnswered
		c.bAnswered = false
		// The agent is hung up and the flow goes on without it: free
		// once its BYE is sent.
		free := c.takeAgentLocked(c.b)
		c.mu.Unlock()
		s.byeOrFree(c, c.b, up, free)
		return fmt.Errorf("b2bua: connect: B's answer: %w", err)
	}
	s.journalUp(c)
	c.log.Info("call flow connected", "leg", "b", "target", ev.at.callee.Name(), "attempt", ev.at.n,
		"setup_ms", time.Since(ev.at.started).Milliseconds())
	return nil
}
