package b2bua

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/callflow"
	"github.com/wagate/wagate/configs"
	"github.com/wagate/wagate/media"
)

// localBridge is fakeBridge with the LocalMedia a call answered by
// wagate needs (a call flow's): no media either.
type localBridge struct{ fakeBridge }

func (localBridge) AnswerLocal([]byte) ([]byte, error)  { return []byte(testSDP), nil }
func (localBridge) OfferToB() ([]byte, error)           { return []byte(testSDP), nil }
func (localBridge) SetLegB(media.LegConfig) error       { return nil }
func (localBridge) OnDTMF(func(media.Side, rune))       {}
func (localBridge) LocalReady() <-chan struct{}         { return closedChan }
func (localBridge) SetTap(media.PCMTap)                 {}
func (localBridge) Held(media.Side) bool                { return false }
func (localBridge) AnswerSide(media.Side, []byte) error { return nil }

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// queueOnly is a FlowEngine whose every call waits in line "team" and
// ends its part once connected or out of line.
type queueOnly struct{ t *testing.T }

func (q queueOnly) Run(ctx context.Context, c callflow.Call) *callflow.Summary {
	tk, err := c.(callflow.Queuer).JoinQueue(ctx, callflow.QueueRequest{Queue: "team", LimitTime: time.Minute})
	if err != nil {
		q.t.Errorf("join queue: %v", err)
		return &callflow.Summary{}
	}
	select {
	case <-tk.Result():
	case <-ctx.Done():
		tk.Leave()
	}
	return &callflow.Summary{}
}

func (queueOnly) PostSummary(context.Context, *callflow.Summary) error { return nil }

// TestQueueWakesOnAgentLeaving: a call waiting in a queue whose only
// agent is busy rings that agent as soon as it leaves its call, whether
// the call was through this node or, as the agent board tells
// (AgentsElsewhere), through another. The queue's poll is set to an hour,
// so only the wake can ring it: without it the caller waits out the
// queue's limit with the agent idle.
func TestQueueWakesOnAgentLeaving(t *testing.T) {
	newBridge := func(string, *slog.Logger, media.LegConfig, media.LegConfig) (Bridge, error) {
		return localBridge{}, nil
	}
	h := startHuntFlowSetup(t, "{queue: {hunt: team, limit_time: 60s, announce_every: 30s}}",
		`  - {name: team, targets: [{endpoint: pbx, user: "1"}]}`, "", newBridge, func(s *Engine) {
			s.queueRetry = time.Hour
			s.SetCallFlows(func(*configs.Number, configs.Route) FlowEngine { return queueOnly{t} })
		})
	noRing := func(why string) {
		t.Helper()
		select {
		case m := <-h.pbx.in:
			t.Fatalf("%s: the agent got %s", why, startLine(m))
		case <-time.After(300 * time.Millisecond):
		}
	}

	// The agent is on a call through another node: the caller waits.
	h.srv.AgentsElsewhere("1@pbx", AgentMark{Active: 1})
	inv1, ok1 := h.queuedCall()
	noRing("agent on a call elsewhere")
	// That call ends: the agent rings for the waiting caller at once.
	h.srv.AgentsElsewhere("1@pbx", AgentMark{LastEnd: time.Now()})
	b1 := h.pbx.request(sip.INVITE)
	h.answer(h.pbx, b1, "a1")

	// A second caller waits while the agent is on the first call, here.
	inv2, ok2 := h.queuedCall()
	noRing("agent on a call here")
	h.hangUp(inv1, ok1, h.pbx)
	b2 := h.pbx.request(sip.INVITE)
	if callIDOf(b2) == callIDOf(b1) {
		t.Fatal("the agent was rung again for the first call")
	}
	h.answer(h.pbx, b2, "a2")
	h.hangUp(inv2, ok2, h.pbx)
}

// TestQueueWaitsForRingElsewhere: a call waiting in a queue whose only
// agent an INVITE through another node rings (the agent board's
// Ringing) does not ring it too, and rings it as soon as that ring ends
// unanswered. The queue's poll is set to an hour, so only the wake can
// ring it. This node's queue ring goes to the board as it starts and,
// once the agent answers, ends only after the agent is on the call: the
// other nodes never see it free between the two (a ring's end wakes
// their waiting calls, which would ring it on top of the call). Before,
// the waiting call rang the agent at once: its phone got a second INVITE
// (call waiting, or 486 and the queue's back-off).
func TestQueueWaitsForRingElsewhere(t *testing.T) {
	newBridge := func(string, *slog.Logger, media.LegConfig, media.LegConfig) (Bridge, error) {
		return localBridge{}, nil
	}
	board := &markLog{}
	h := startHuntFlowSetup(t, "{queue: {hunt: team, limit_time: 60s, announce_every: 30s}}",
		`  - {name: team, targets: [{endpoint: pbx, user: "1"}]}`, "", newBridge, func(s *Engine) {
			s.queueRetry = time.Hour
			s.SetAgentBoard(board)
			s.SetCallFlows(func(*configs.Number, configs.Route) FlowEngine { return queueOnly{t} })
		})
	h.srv.AgentsElsewhere("1@pbx", AgentMark{Ringing: 1})
	inv := h.metaCall()
	ok := h.meta.response(200)
	h.meta.send(h.addr, ackFor(inv, ok))
	select {
	case m := <-h.pbx.in:
		t.Fatalf("the agent, ringing through another node, got %s from the waiting call", startLine(m))
	case <-time.After(500 * time.Millisecond):
	}
	// That ring ends unanswered: the waiting call rings the agent at once.
	h.srv.AgentsElsewhere("1@pbx", AgentMark{})
	b := h.pbx.request(sip.INVITE)
	if got := board.told(&board.both); got != "1@pbx:a0/r1" {
		t.Errorf("board told %q while the queue rang the agent, want 1@pbx:a0/r1", got)
	}
	h.answer(h.pbx, b, "a1")
	if got, want := board.told(&board.both), "1@pbx:a0/r1 1@pbx:a1/r1 1@pbx:a1/r0"; got != want {
		t.Errorf("board told %q as the agent answered, want %q (never free in between)", got, want)
	}
	h.hangUp(inv, ok, h.pbx)
}

// TestQueueRingsTransferorAfterItsBye: an agent that blind-transfers
// its caller (REFER) while another caller waits in its queue is rung for
// that caller only after the transfer's final NOTIFY and the BYE of the
// dialog it transferred: rung sooner, its phone, still in the transfer,
// answers 486 and the queue backs off the agent.
func TestQueueRingsTransferorAfterItsBye(t *testing.T) {
	newBridge := func(string, *slog.Logger, media.LegConfig, media.LegConfig) (Bridge, error) {
		return localBridge{}, nil
	}
	h := startHuntFlowSetup(t, "{queue: {hunt: team, limit_time: 60s, announce_every: 30s}}",
		`  - {name: team, targets: [{endpoint: pbx, user: "1"}]}`, `, transfer: {allow: [{endpoint: pbx2}]}`, newBridge, func(s *Engine) {
			s.queueRetry = time.Hour
			s.SetCallFlows(func(*configs.Number, configs.Route) FlowEngine { return queueOnly{t} })
		})
	inv1, ok1 := h.queuedCall()
	b1 := h.pbx.request(sip.INVITE)
	h.answer(h.pbx, b1, "a1")
	inv2, ok2 := h.queuedCall()
	h.pbx.send(h.addr, fromCallee(t, h.pbx, b1, "a1", sip.REFER, 2,
		"Refer-To: <sip:2@127.0.0.5>", "Referred-By: <sip:1@127.0.0.3>"))
	x := h.pbx2.request(sip.INVITE)
	h.answer(h.pbx2, x, "x")
	var notified, byed bool
	for !byed {
		switch m := h.pbx.next("the REFER's progress").(type) {
		case *sip.Response:
			if m.StatusCode != 202 {
				t.Fatalf("REFER answered %s", startLine(m))
			}
		case *sip.Request:
			switch {
			case m.Method == sip.INVITE:
				t.Fatalf("the agent was rung for the waiting caller before the transfer was over (final NOTIFY %v, BYE %v)", notified, byed)
			case m.Method == sip.NOTIFY && strings.Contains(string(m.Body()), "200"):
				notified = true
			case m.Method == sip.BYE:
				if callIDOf(m) != callIDOf(b1) {
					t.Fatalf("BYE for %s, want the transferred dialog %s", callIDOf(m), callIDOf(b1))
				}
				byed = true
			}
			h.pbx.reply(m, 200, "OK", "", nil)
		}
	}
	if !notified {
		t.Error("BYE before the final NOTIFY")
	}
	b2 := h.pbx.request(sip.INVITE)
	if callIDOf(b2) == callIDOf(b1) || requestUser(b2) != "1" {
		t.Fatalf("rang %s (%s), want 1 for the waiting caller", requestUser(b2), callIDOf(b2))
	}
	h.answer(h.pbx, b2, "a2")
	h.hangUp(inv1, ok1, h.pbx2)
	h.hangUp(inv2, ok2, h.pbx)
}

// queuedCall places a call from Meta, which wagate answers itself (a call
// flow's queue) and puts in line.
func (h *huntFlow) queuedCall() (*sip.Request, *sip.Response) {
	h.t.Helper()
	inv := h.metaCall()
	ok := h.meta.response(200)
	h.meta.send(h.addr, ackFor(inv, ok))
	return inv, ok
}
