package callflow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/wagate/wagate/prompt"
)

// session is one call's run of the engine.
type session struct {
	e    *Engine
	call Call
	info Info
	log  *slog.Logger
	sum  *Summary
	vars map[string]string
	// hashTail: until then a '#' that comes first to a capture is the
	// caller finishing the previous input, which ended at its maxDigits
	// (capture.go), not an answer to the new question.
	hashTail time.Time
}

func newSession(e *Engine, c Call) *session {
	info := c.Info()
	if info.SampleRate == 0 {
		info.SampleRate = prompt.Rate8k
	}
	caller := info.User
	if caller == "" {
		caller = info.UserID
	}
	s := &session{e: e, call: c, info: info,
		log:  e.log.With("call_id", info.CallID, "wa_call_id", info.WACallID),
		vars: map[string]string{VarCaller: caller, VarCallID: info.CallID, VarBusinessNumber: info.BusinessNumber, VarKeypress: ""},
	}
	s.sum = &Summary{Request: s.request(EventSummary), StartedAt: e.now(), Actions: []ActionLog{}, Captures: []CaptureResult{}}
	s.sum.vars = s.vars
	return s
}

func (s *session) request(event string) Request {
	i := s.info
	return Request{Event: event, Timestamp: s.e.now(), CallID: i.CallID, WACallID: i.WACallID, Direction: i.Direction,
		BusinessNumber: i.BusinessNumber, PhoneNumberID: i.PhoneNumberID, User: i.User, UserID: i.UserID,
		CallerName: i.CallerName, Payload: i.Payload, PayloadSource: i.PayloadSource}
}

// exchange asks the service for the next flow.
func (s *session) exchange(ctx context.Context, event string, capture *CaptureResult) (*Flow, error) {
	req := s.request(event)
	req.ClientActionID = s.sum.ClientActionID
	req.Capture = capture
	body, ct, err := s.e.requestBody(&req, s.vars)
	if err != nil {
		return nil, err
	}
	s.sum.Requests++
	start := time.Now()
	key := fmt.Sprintf("%s-%s-%d", s.info.CallID, event, s.sum.Requests)
	data, err := s.e.post(ctx, event, key, s.e.url.Expand(s.vars), body, ct)
	if err != nil {
		return nil, err
	}
	flow, err := ParseFlow(data)
	if err != nil {
		return nil, err
	}
	s.log.Debug("callflow: flow received", "event", event, "actions", len(flow.Actions), "took", time.Since(start))
	s.sum.ClientActionID = flow.ClientActionID
	return flow, nil
}

// ready is one action's audio, rendered ahead of its turn.
type ready struct {
	done  chan struct{}
	audio []prompt.Audio // by the action's needs: say [text]; capture [prompt, success, failure]
	err   error
}

// prepare renders the audio of every action of flow, in order, in one
// goroutine, so that the first prompt starts as soon as it is ready and
// the next ones are ready before the previous ones end: no gap between
// prompts. The goroutine ends when it is done or ctx is; stop waits for it.
func (s *session) prepare(ctx context.Context, flow *Flow) (slots []*ready, stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	slots = make([]*ready, len(flow.Actions))
	for i := range slots {
		slots[i] = &ready{done: make(chan struct{})}
	}
	rate := s.info.SampleRate
	var wg sync.WaitGroup
	wg.Go(func() {
		for i, a := range flow.Actions {
			r := slots[i]
			r.audio, r.err = s.render(ctx, a, rate)
			close(r.done)
		}
	})
	return slots, func() { cancel(); wg.Wait() }
}

func (s *session) render(ctx context.Context, a Action, rate int) ([]prompt.Audio, error) {
	p := s.e.o.Prompts
	say := func(text, voice string, speed float64) (prompt.Audio, error) {
		if text == "" {
			return prompt.Audio{}, nil
		}
		x, err := p.Speech(ctx, speech(text, voice, speed), rate)
		return x, s.promptFailed(ctx, a.Name(), ReasonSpeechFailed, err)
	}
	switch a := a.(type) {
	case *Say:
		x, err := say(a.Text, a.VoiceProfile, a.Speed)
		return []prompt.Audio{x}, err
	case *PlayFile:
		x, err := p.File(ctx, a.FileURL, rate)
		return []prompt.Audio{x}, s.fileFailed(ctx, a.Name(), err)
	case *SayAndCapture:
		out := make([]prompt.Audio, 3)
		for i, text := range []string{a.PromptMessage, a.SuccessMessage, a.FailureMessage} {
			var err error
			if out[i], err = say(text, a.VoiceProfile, a.Speed); err != nil {
				return nil, err
			}
		}
		return out, nil
	case *Record:
		if *a.Beep {
			return []prompt.Audio{prompt.Tone(rate, 1000, 0.3, 400*time.Millisecond)}, nil
		}
	case *Enqueue:
		if a.MusicURL == "" {
			return []prompt.Audio{holdTune(rate)}, nil
		}
		x, err := p.File(ctx, a.MusicURL, rate)
		return []prompt.Audio{x}, s.fileFailed(ctx, a.Name(), err)
	}
	return nil, nil
}

// await returns an action's audio, waiting at most the engine's timeout:
// a prompt that is not ready by then is a failure like a silent service.
func (s *session) await(ctx context.Context, r *ready) ([]prompt.Audio, error) {
	t := time.NewTimer(s.e.o.Timeout)
	defer t.Stop()
	select {
	case <-r.done:
		return r.audio, r.err
	case <-t.C:
		return nil, fmt.Errorf("callflow: prompt not ready within %s", s.e.o.Timeout)
	case <-ctx.Done():
		return nil, ErrCallEnded
	}
}

// runFlow runs the actions of flow in order. It returns the next flow
// (after a sayAndCapture), nil when the engine's part is over, or an error
// for the fallback (or ErrCallEnded).
func (s *session) runFlow(ctx context.Context, flow *Flow) (*Flow, error) {
	slots, stop := s.prepare(ctx, flow)
	defer stop()
	for i, a := range flow.Actions {
		log := ActionLog{Action: a.Name(), StartedAt: s.e.now(), Result: "done"}
		start := time.Now()
		next, end, err := s.runAction(ctx, a, slots[i])
		log.DurationMs = time.Since(start).Milliseconds()
		// An action that ended the engine's part (hangup, a connect) is
		// done even though the call, and so ctx, may end with it.
		finished := err == nil && end
		switch {
		case finished:
		case errors.Is(err, ErrCallEnded) || ctx.Err() != nil:
			log.Result = "interrupted"
		case err != nil:
			log.Result, log.Error = "failed", err.Error()
			s.log.Warn("callflow: action failed", "action", a.Name(), "index", i, "err", err)
		}
		s.sum.Actions = append(s.sum.Actions, log)
		if finished {
			return next, nil
		}
		if ctx.Err() != nil {
			return nil, ErrCallEnded
		}
		var soft errSoft
		if errors.As(err, &soft) {
			continue // logged; the flow goes on
		}
		if err != nil || end {
			return next, err
		}
	}
	if s.e.o.Flow != nil {
		// A built-in flow (a queue route) that did not connect the call
		// goes on to its fallback.
		return nil, errFlowOver
	}
	s.call.Hangup("callflow: the call flow ended")
	s.sum.Outcome = OutcomeFlowEnded
	return nil, nil
}

// runAction runs one action; end says the engine's part is over (or, with
// next set, this flow is).
func (s *session) runAction(ctx context.Context, a Action, r *ready) (next *Flow, end bool, err error) {
	switch a := a.(type) {
	case *Say:
		audio, err := s.await(ctx, r)
		if err != nil {
			return nil, true, err
		}
		return nil, false, s.play(ctx, audio[0], a.Repetition)
	case *PlayFile:
		audio, err := s.await(ctx, r)
		if err != nil {
			return nil, true, err
		}
		return nil, false, s.play(ctx, audio[0], a.Repetition)
	case *SayAndCapture:
		audio, err := s.await(ctx, r)
		if err != nil {
			return nil, true, err
		}
		res, err := s.capture(ctx, a, audio[0], audio[1], audio[2])
		if err != nil {
			return nil, true, err
		}
		s.sum.Captures = append(s.sum.Captures, res)
		s.vars[VarKeypress] = res.Digits
		next, err := s.exchange(ctx, EventDigits, &res)
		return next, true, err
	case *Connect:
		t := a.Target()
		err := s.call.Connect(ctx, t)
		cl := ConnectLog{DestinationType: t.Kind, Destination: t.Destination, Answered: err == nil}
		if err != nil {
			cl.Error = err.Error()
		}
		s.sum.Connects = append(s.sum.Connects, cl)
		if err == nil {
			s.sum.Outcome = OutcomeConnected
			return nil, true, nil
		}
		if errors.Is(err, ErrCallEnded) {
			return nil, true, err
		}
		// Not reached: the flow goes on ("all agents are busy…").
		s.log.Info("callflow: connect failed", "destination", t.Destination, "err", err)
		return nil, false, nil
	case *Enqueue:
		audio, err := s.await(ctx, r)
		if err != nil {
			return nil, true, err
		}
		connected, err := s.queue(ctx, a, audio[0])
		cl := ConnectLog{DestinationType: "queue", Destination: a.Destination, Answered: connected}
		switch {
		case connected:
			s.sum.Connects = append(s.sum.Connects, cl)
			s.sum.Outcome = OutcomeConnected
			return nil, true, nil
		case errors.Is(err, ErrCallEnded):
			return nil, true, err
		case err != nil:
			cl.Error = err.Error()
		default:
			cl.Error = "no agent free within limitTime"
		}
		s.sum.Connects = append(s.sum.Connects, cl)
		// Not connected: the flow goes on ("leave a message…").
		s.log.Info("callflow: queue left without an agent", "queue", a.Destination, "err", cl.Error)
		return nil, false, nil
	case *Record:
		audio, err := s.await(ctx, r)
		if err != nil {
			return nil, true, err
		}
		if len(audio) > 0 {
			if err := s.play(ctx, audio[0], 1); err != nil {
				return nil, true, err
			}
		}
		// Keys pressed before the recording starts (a "#" typed after the
		// digits of an earlier capture, a key during the beep) are not
		// the key that ends it: the message would end before it began.
		drain(s.call.Digits())
		o := a.options()
		if time.Now().Before(s.hashTail) {
			o.HashTail, s.hashTail = s.hashTail, time.Time{}
		}
		rec, err := s.call.Record(ctx, o)
		if err != nil {
			if errors.Is(err, ErrCallEnded) {
				return nil, true, err
			}
			// A recording that failed is reported, and the flow goes on.
			return nil, false, fmt.Errorf("callflow: record: %w", errSoft{err})
		}
		rec.DurationMs = rec.Duration.Milliseconds()
		s.sum.Recordings = append(s.sum.Recordings, rec)
		if s.e.o.Events != nil {
			s.e.o.Events.Recorded(s.info, rec)
		}
		return nil, false, nil
	case *Hangup:
		s.call.Hangup("callflow: hangup action")
		s.sum.Outcome = OutcomeHangup
		return nil, true, nil
	}
	return nil, true, fmt.Errorf("callflow: action %s not implemented", a.Name())
}

// errFlowOver: a built-in flow's actions are over and the call is not
// connected.
var errFlowOver = errors.New("callflow: the call was not connected (no agent free within the queue's limit time)")

// errSoft marks an action error after which the flow goes on.
type errSoft struct{ error }

func (e errSoft) Unwrap() error { return e.error }

// play plays a rep times back to back.
func (s *session) play(ctx context.Context, a prompt.Audio, rep int) error {
	for range rep {
		if err := s.call.Play(ctx, a); err != nil {
			return ErrCallEnded
		}
	}
	return nil
}

// fallback says the message and connects the call to the fallback route;
// if there is none or it fails, it hangs up. The message must already be
// rendered (Warm) or come within a second: the caller has waited enough.
func (s *session) fallback(ctx context.Context, cause error) {
	s.sum.Fallback = cause.Error()
	s.log.Warn("callflow: taking the fallback route", "cause", cause)
	if msg := s.e.o.Message; msg != "" {
		mctx, cancel := context.WithTimeout(ctx, time.Second)
		a, err := s.e.o.Prompts.Speech(mctx, prompt.Speech{Text: msg, Voice: s.e.o.Voice}, s.info.SampleRate)
		cancel()
		if err != nil {
			s.log.Warn("callflow: fallback message not ready; connecting without it", "err", err)
		} else if err := s.call.Play(ctx, a); err != nil {
			s.sum.Outcome = OutcomeCallerHungUp
			return
		}
	}
	t := s.e.o.Fallback
	if t.Destination == "" {
		s.call.Hangup("callflow: service failed, no fallback")
		s.sum.Outcome = OutcomeFailed
		return
	}
	err := s.call.Connect(ctx, t)
	cl := ConnectLog{DestinationType: t.Kind, Destination: t.Destination, Answered: err == nil, Fallback: true}
	if err != nil {
		cl.Error = err.Error()
	}
	s.sum.Connects = append(s.sum.Connects, cl)
	switch {
	case err == nil:
		s.sum.Outcome = OutcomeFallback
	case errors.Is(err, ErrCallEnded) || ctx.Err() != nil:
		s.sum.Outcome = OutcomeCallerHungUp
	default:
		s.log.Warn("callflow: fallback route failed; hanging up", "err", err)
		s.call.Hangup("callflow: fallback route failed")
		s.sum.Outcome = OutcomeFailed
	}
}
