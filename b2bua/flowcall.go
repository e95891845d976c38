package b2bua

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/callflow"
	"github.com/wagate/wagate/configs"
	"github.com/wagate/wagate/events"
	"github.com/wagate/wagate/media"
	"github.com/wagate/wagate/prompt"
	sipedge "github.com/wagate/wagate/sip"
)

// A call whose number's route is a call flow is answered by wagate
// itself: A gets our own SDP answer (media first: silence from the
// answer on, as Meta requires) and the call flow engine drives the call
// through flowCall, the callflow.Call of this package: prompts played
// toward A on the media pacer, A's keys, B-legs rung through the same
// hunt as any call's (connect.go), voicemail into the recordings store,
// hangup.

// FlowEngine runs the call flows of one call-flow route
// (*callflow.Engine).
type FlowEngine interface {
	Run(ctx context.Context, c callflow.Call) *callflow.Summary
	PostSummary(ctx context.Context, s *callflow.Summary) error
}

// CallFlows returns the engine of route r of number num (its route or
// its after-hours route) when r is a callflow or a queue, or nil (then
// its calls get 503).
type CallFlows func(num *configs.Number, r configs.Route) FlowEngine

// SetCallFlows makes call-flow routes work. Call it before Run.
func (s *Engine) SetCallFlows(f CallFlows) { s.flows = f }

// LocalMedia is what a call answered by wagate needs of its bridge beyond
// Bridge. *media.Bridge implements it.
type LocalMedia interface {
	AnswerLocal(offerA []byte) ([]byte, error)
	OfferToB() ([]byte, error)
	SetLegB(cfg media.LegConfig) error
	OnDTMF(fn func(side media.Side, key rune))
	LocalReady() <-chan struct{}
	Play(side media.Side, src media.FrameSource, at time.Time) (*media.Playback, error)
}

// errNoWhatsApp: a flow's connect to a WhatsApp user, which needs a flow
// started by the click-to-call API.
var errNoWhatsApp = errors.New("b2bua: a connect to a WhatsApp user needs a flow started by the click-to-call API (POST /v1/calls with callflow)")

// keyBuffer is how many keys a flow call holds for the engine.
const keyBuffer = 64

// flowCall is one call driven by a call flow: the callflow.Call the
// engine sees.
type flowCall struct {
	s    *Engine
	c    *call
	eng  FlowEngine
	lm   LocalMedia
	info callflow.Info
	log  *slog.Logger

	keysMu     sync.Mutex
	keys       chan rune
	keysClosed bool
	player     *player
	// ready is closed when A can hear what is played (a dtls leg once
	// keyed): prompts wait for it, so that none starts unheard.
	ready <-chan struct{}
	// attempts counts the B-legs placed (the engine's goroutine only).
	attempts int
	// ob and offerB are set on a click-to-call's flow (runForAgent):
	// its connect calls the WhatsApp user with offerB (originate_flow.go).
	ob         originBridge
	offerB     []byte
	userCalled bool

	cdrOnce  sync.Once
	cdr      events.CDR
	cdrReady chan struct{}
	started  sync.Once
}

// answerFlow answers A with our own SDP and hands the call to its
// number's call flow (in the INVITE's goroutine, which stays until A's
// ACK as for any call).
func (s *Engine) answerFlow(c *call) {
	var eng FlowEngine
	if s.flows != nil {
		eng = s.flows(c.route.Number, configs.Route{CallFlow: c.route.CallFlow, Queue: c.route.Queue})
	}
	lm, ok := c.bridge.(LocalMedia)
	if eng == nil || !ok {
		s.rejectCall(c, &sipedge.Rejection{Code: 503, Reason: "Service Unavailable", Log: "call flow route without an engine"})
		return
	}
	fc := newFlowCall(s, c, eng, lm)
	answer, err := lm.AnswerLocal(c.aInvite.Body())
	if err != nil {
		s.rejectCall(c, sdpRejection(err))
		return
	}
	c.flow = fc
	fc.ready = lm.LocalReady()
	lm.OnDTMF(fc.key)
	cancelled := make(chan struct{}, 1)
	c.aTx.OnCancel(func(*sip.Request) {
		select {
		case cancelled <- struct{}{}:
		default:
		}
	})
	// wagate is the far end: the call is connected from the answer on.
	c.connected()
	if !s.answerA(c, answer, cancelled) {
		return
	}
	c.mu.Lock()
	if c.state == stateAnswered {
		c.state = stateConfirmed
	}
	c.mu.Unlock()
}

func newFlowCall(s *Engine, c *call, eng FlowEngine, lm LocalMedia) *flowCall {
	d := c.route
	fc := &flowCall{s: s, c: c, eng: eng, lm: lm, log: c.log, keys: make(chan rune, keyBuffer), cdrReady: make(chan struct{})}
	fc.info = callflow.Info{
		CallID: c.id, WACallID: d.UIC.WACallID, Direction: string(d.Dir),
		BusinessNumber: d.Number.Number, PhoneNumberID: d.Number.PhoneNumberID,
		User: d.UIC.User, UserID: d.UIC.UserID,
		CallerName: sanitizeDisplay(c.aFacts.display),
		Payload:    d.UIC.Payload, PayloadSource: d.UIC.PayloadSource,
		SampleRate: prompt.Rate8k,
	}
	if fc.info.User == "" && fc.info.UserID == "" {
		fc.info.User = d.User
	}
	fc.player = newFlowPlayer(fc)
	return fc
}

// newFlowPlayer plays toward A through fc's media (fc.lm, which a
// click-to-call's flow gets after its call was made).
func newFlowPlayer(fc *flowCall) *player {
	return &player{start: func(src media.FrameSource) (*media.Playback, error) {
		return fc.lm.Play(media.SideA, src, time.Time{})
	}}
}

// start runs the engine, once, on a goroutine the B2BUA owns; it ends
// after the call has ended and its summary has been posted.
func (fc *flowCall) start() {
	fc.started.Do(func() { fc.s.wg.Go(fc.run) })
}

func (fc *flowCall) run() {
	c := fc.c
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		select {
		case <-c.ended:
		case <-fc.s.ctx.Done():
		case <-ctx.Done():
		}
		cancel()
		fc.closeKeys()
	}()
	start := time.Now()
	sum := fc.eng.Run(ctx, fc)
	fc.log.Info("call flow done", "outcome", sum.Outcome, "requests", sum.Requests, "actions", len(sum.Actions),
		"fallback", sum.Fallback, "flow_s", time.Since(start).Round(time.Millisecond).Seconds())
	// The engine's part is over (connected, hung up or the caller left);
	// the summary waits for the end of the call and its record.
	select {
	case <-c.ended:
	case <-fc.s.ctx.Done():
	}
	select {
	case <-fc.cdrReady:
		sum.CDR = fc.cdr
	case <-time.After(5 * time.Second):
		fc.log.Warn("call flow summary sent without the call record: none came")
	}
	cancel()
	<-watchDone
	pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer pcancel()
	if err := fc.eng.PostSummary(pctx, sum); err != nil {
		fc.log.Warn("call flow summary not delivered", "error", err)
	}
}

// ended keeps the call's record for the summary (terminate, once).
func (fc *flowCall) ended(cdr events.CDR) {
	fc.cdrOnce.Do(func() {
		fc.cdr = cdr
		close(fc.cdrReady)
	})
}

// Info implements callflow.Call.
func (fc *flowCall) Info() callflow.Info { return fc.info }

// key takes a key A pressed (media's OnDTMF: must not block).
func (fc *flowCall) key(side media.Side, k rune) {
	if side != media.SideA {
		return
	}
	fc.keysMu.Lock()
	defer fc.keysMu.Unlock()
	if fc.keysClosed {
		return
	}
	select {
	case fc.keys <- k:
	default:
		fc.log.Debug("call flow: key dropped, nobody reading", "key", string(k))
	}
}

func (fc *flowCall) closeKeys() {
	fc.keysMu.Lock()
	defer fc.keysMu.Unlock()
	if !fc.keysClosed {
		fc.keysClosed = true
		close(fc.keys)
	}
}

// Digits implements callflow.Call.
func (fc *flowCall) Digits() <-chan rune { return fc.keys }

// Play implements callflow.Call: a is queued on the call's player, which
// plays it toward A right after what is queued before it.
func (fc *flowCall) Play(ctx context.Context, a prompt.Audio) error {
	if a.Rate != prompt.Rate8k {
		a = prompt.Concat(prompt.Rate8k, a)
	}
	select {
	case <-fc.ready:
	case <-ctx.Done():
		return ctx.Err()
	case <-fc.c.ended:
		return callflow.ErrCallEnded
	}
	err := fc.player.play(ctx, fc.c.ended, a.Samples, false)
	if errors.Is(err, errPlayerEnded) {
		return callflow.ErrCallEnded
	}
	return err
}

// Hangup implements callflow.Call.
func (fc *flowCall) Hangup(reason string) {
	fc.c.terminate(nil, reason)
}

// ringback is what the caller hears while a connect rings: 425 Hz, 1 s
// on, 4 s off (ITU-T E.180's common cadence).
var ringback = prompt.Concat(prompt.Rate8k,
	prompt.Tone(prompt.Rate8k, 425, 0.2, time.Second), prompt.Silence(prompt.Rate8k, 4*time.Second))

// Connect implements callflow.Call: the target rings through a hunt, as
// every call's B-leg does (connect.go), and the callee that answers is
// bridged to A. An extension rings for t.Timeout; a hunt list's targets
// each for their own ring time, at most t.Timeout. The caller hears
// ringback meanwhile.
func (fc *flowCall) Connect(ctx context.Context, t callflow.Target) error {
	c := fc.c
	if fc.ob != nil {
		return fc.connectUser(t)
	}
	cfg := fc.s.edge.Config()
	var route configs.Route
	switch t.Kind {
	case callflow.TargetExtension:
		// The number's usual PBX is the fallback extension's endpoint.
		ep := t.Endpoint
		if ep == "" {
			ep = c.route.BEP.Name
		}
		// A queue route's configured fallback may be at another pbx.
		q := c.route.Queue
		queueFallback := q != nil && q.Fallback != nil && ep == q.Fallback.Endpoint
		if ep != c.route.BEP.Name && !queueFallback {
			return fmt.Errorf("b2bua: connect: endpoint %q is not the route's %q", ep, c.route.BEP.Name)
		}
		route = configs.Route{Endpoint: ep, User: t.Destination}
	case callflow.TargetHuntList:
		if cfg.HuntList(t.Destination) == nil {
			return fmt.Errorf("b2bua: connect: no hunt list %q under hunt_lists", t.Destination)
		}
		route = configs.Route{Hunt: t.Destination}
	case callflow.TargetWhatsApp:
		return errNoWhatsApp
	default:
		return fmt.Errorf("b2bua: connect: unknown destination type %q", t.Kind)
	}
	callees, list, rej := sipedge.Callees(cfg, route)
	if rej != nil {
		return fmt.Errorf("b2bua: connect: %s", rej.Log)
	}
	for i := range callees {
		if callees[i].EP.Kind != configs.KindPBX {
			return fmt.Errorf("b2bua: connect: endpoint %q is not a pbx", callees[i].EP.Name)
		}
		if t.Timeout > 0 && (list == nil || callees[i].RingTimeout > t.Timeout) {
			callees[i].RingTimeout = t.Timeout
		}
	}
	stopRing := fc.player.loop(ringback.Samples)
	defer stopRing()
	return fc.ring(context.Background(), callees, list, t.Record, nil)
}

// ring rings callees (of list, nil for one extension) through a hunt
// until one answers or ctx ends, and bridges the one that answers to A;
// record turns recording on then; failed, when given, is told each
// callee that failed of itself (connectHunt).
func (fc *flowCall) ring(ctx context.Context, callees []sipedge.Callee, list *configs.HuntList, record bool, failed func(sipedge.Callee)) error {
	c := fc.c
	select {
	case <-c.ended:
		return callflow.ErrCallEnded
	default:
	}
	// The call counts against no pbx until it is connected (invite.go):
	// a callee whose endpoint has its max_calls up already is not rung.
	// Checked as the ring starts; the call counts against the endpoint
	// that answers (registry.rebindB).
	var room []sipedge.Callee
	for _, ce := range callees {
		if fc.s.reg.hasRoom(ce.EP.Name, ce.EP.MaxCalls) {
			room = append(room, ce)
		}
	}
	if len(room) == 0 {
		ep := callees[0].EP
		return fmt.Errorf("b2bua: connect: endpoint %q is at its max_calls (%d)", ep.Name, ep.MaxCalls)
	}
	callees = room
	// One offer for every attempt, made for the first callee's endpoint,
	// as a call's own hunt does.
	if err := fc.lm.SetLegB(legConfig(callees[0].EP, c.route.Number)); err != nil {
		return fmt.Errorf("b2bua: connect: %w", err)
	}
	offer, err := fc.lm.OfferToB()
	if err != nil {
		return fmt.Errorf("b2bua: connect: %w", err)
	}
	// The hunt ends with the call (c.ended).
	err = fc.s.connectHunt(ctx, c, offer, callees, list, failed)
	if err == nil && record && !flowMayRecord(numberIn(fc.s.edge.Config(), c.route.Number)) {
		c.log.Info("callRecording not applied: the number is configured with recording: false")
	} else if err == nil && record {
		c.mu.Lock()
		recording := c.recorder != nil
		c.mu.Unlock()
		if !recording {
			fc.s.recordCall(c)
		}
	}
	return err
}
