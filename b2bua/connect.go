package b2bua

import (
	"fmt"
	"time"

	"github.com/wagate/wagate/callflow"
	"github.com/wagate/wagate/configs"
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
// meanwhile).
func (s *Engine) connectHunt(c *call, offer []byte, callees []sipedge.Callee, list *configs.HuntList) error {
	c.mu.Lock()
	base := len(c.attempts)
	c.mu.Unlock()
	h := &hunt{s: s, c: c, side: bSide{}, offer: offer, list: list, local: true, base: base,
		events: make(chan attemptEvent, 16), done: make(chan struct{})}
	defer h.stopListening()
	h.queue = s.hunts.order(&sipedge.Decision{Callees: callees, Hunt: list})
	cause := ""
	giveUp := func() {
		h.close()
		h.cancelAll(nil)
	}
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
		case <-c.ended:
			giveUp()
			h.dropWinner()
			return callflow.ErrCallEnded
		case <-s.ctx.Done():
			giveUp()
			h.dropWinner()
			return callflow.ErrCallEnded
		}
	}
}

// connected makes the attempt whose 2xx won the call's B-leg, ACKs it and
// bridges it to A, whose answer stays as it is.
func (h *hunt) connected(ev attemptEvent) error {
	s, c := h.s, h.c
	h.adopt(ev)
	defer ev.tx.Terminate()
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
		// The agent is hung up and the flow goes on without it.
		c.freeAgentLocked(c.b)
		c.mu.Unlock()
		if up {
			s.sendBye(c, c.b)
		}
		return fmt.Errorf("b2bua: connect: B's answer: %w", err)
	}
	s.journalUp(c)
	c.log.Info("call flow connected", "leg", "b", "target", ev.at.callee.Name(), "attempt", ev.at.n,
		"setup_ms", time.Since(ev.at.started).Milliseconds())
	return nil
}
