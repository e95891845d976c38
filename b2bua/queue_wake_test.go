package b2bua

import (
	"context"
	"log/slog"
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
	// queued places a call from Meta, which wagate answers itself and
	// puts in line.
	queued := func() (*sip.Request, *sip.Response) {
		t.Helper()
		inv := h.metaCall()
		ok := h.meta.response(200)
		h.meta.send(h.addr, ackFor(inv, ok))
		return inv, ok
	}

	// The agent is on a call through another node: the caller waits.
	h.srv.AgentsElsewhere("1@pbx", AgentMark{Active: 1})
	inv1, ok1 := queued()
	noRing("agent on a call elsewhere")
	// That call ends: the agent rings for the waiting caller at once.
	h.srv.AgentsElsewhere("1@pbx", AgentMark{LastEnd: time.Now()})
	b1 := h.pbx.request(sip.INVITE)
	h.answer(h.pbx, b1, "a1")

	// A second caller waits while the agent is on the first call, here.
	inv2, ok2 := queued()
	noRing("agent on a call here")
	h.hangUp(inv1, ok1, h.pbx)
	b2 := h.pbx.request(sip.INVITE)
	if callIDOf(b2) == callIDOf(b1) {
		t.Fatal("the agent was rung again for the first call")
	}
	h.answer(h.pbx, b2, "a2")
	h.hangUp(inv2, ok2, h.pbx)
}
