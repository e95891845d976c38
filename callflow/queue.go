package callflow

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wagate/wagate/prompt"
)

// A CloudIVR-style queue (ACD): the action "queue" puts the call in line
// for a hunt list's agents (Queuer.JoinQueue). While the Ticket waits,
// the engine plays music (musicUrl, or a built-in tune) and, every
// announceEvery, the caller's place in line and, when the call's side
// has an estimate, the wait ("You are number 2 in the queue. Your
// estimated wait is about 3 minutes."). The call's side, not the engine, decides when an agent is
// free and connects the call itself (QueueConnected); after limitTime it
// gives up (QueueTimedOut) and the flow goes on with its next action, as
// after a connect nobody answered. Higher Priority (VIP) callers are
// served first, first come first served within one.

// Enqueue waits for a free agent of a hunt list (action "queue"). Times
// are milliseconds.
type Enqueue struct {
	Destination      string `json:"destination"`      // a hunt list's name
	Priority         int    `json:"priority"`         // 0–9, higher first; default 0
	LimitTime        int    `json:"limitTime"`        // 5000–3600000, default 300000
	MusicURL         string `json:"musicUrl"`         // WAV or MP3; default a built-in tune
	AnnouncePosition *bool  `json:"announcePosition"` // default true
	AnnounceEvery    int    `json:"announceEvery"`    // 5000–600000, default 30000
	VoiceProfile     string `json:"voiceProfile"`
}

// Name implements Action.
func (*Enqueue) Name() string { return "queue" }

func checkEnqueue(a *Enqueue) error {
	switch {
	case a.Destination == "":
		return errors.New("destination: required (a hunt list)")
	case !huntList.MatchString(a.Destination):
		return fmt.Errorf("destination: %q is not a valid huntList", clip(a.Destination))
	case a.Priority < 0 || a.Priority > 9:
		return fmt.Errorf("priority: %d is outside 0–9", a.Priority)
	}
	if a.MusicURL != "" {
		if err := checkURL("musicUrl", a.MusicURL); err != nil {
			return err
		}
	}
	if a.AnnouncePosition == nil {
		on := true
		a.AnnouncePosition = &on
	}
	if len(a.VoiceProfile) > 64 || hasControl(a.VoiceProfile) {
		return errors.New("voiceProfile: longer than 64 bytes or holds control characters")
	}
	if err := rangeMs("limitTime", &a.LimitTime, 300000, 5000, 3600000); err != nil {
		return err
	}
	return rangeMs("announceEvery", &a.AnnounceEvery, 30000, 5000, 600000)
}

// Queuer is a Call that can wait in line for a hunt list's agents.
type Queuer interface {
	// JoinQueue puts the call in line; the call's side connects it when
	// an agent of the hunt list is free.
	JoinQueue(ctx context.Context, r QueueRequest) (Ticket, error)
}

// holdTune is the built-in music: three soft notes and a rest, 2 s.
func holdTune(rate int) prompt.Audio {
	return prompt.Concat(rate,
		prompt.Tone(rate, 523.25, 0.12, 400*time.Millisecond), prompt.Tone(rate, 659.25, 0.12, 400*time.Millisecond),
		prompt.Tone(rate, 783.99, 0.12, 600*time.Millisecond), prompt.Silence(rate, 600*time.Millisecond))
}

// queue runs an Enqueue: true once an agent was connected, false when the
// wait timed out (the flow goes on).
func (s *session) queue(ctx context.Context, a *Enqueue, music prompt.Audio) (bool, error) {
	q, ok := s.call.(Queuer)
	if !ok {
		return false, errors.New("callflow: queue: this call cannot wait in a queue")
	}
	t, err := q.JoinQueue(ctx, QueueRequest{Queue: a.Destination, Priority: a.Priority,
		LimitTime: time.Duration(a.LimitTime) * time.Millisecond})
	if err != nil {
		return false, fmt.Errorf("callflow: queue: %w", err)
	}
	defer t.Leave()
	w := &queueWait{t: t, status: t.Status(), announceAt: time.Now()}
	every := time.Duration(a.AnnounceEvery) * time.Millisecond
	// The announcement comes first when it is ready within the engine's
	// timeout (it usually is: cached, or one render); else the music
	// plays while it is rendered — a render that waits for a free speech
	// engine, or a slow HTTP text-to-speech service, must not leave the
	// caller in silence — and it follows once ready.
	var pending *rendering
	for {
		if pending != nil && pending.pos != w.pos {
			// Moved while its place was rendered: say the new one (the
			// old render goes on into the cache).
			pending, w.announceAt = nil, time.Now()
		}
		if *a.AnnouncePosition && w.pos > 0 && pending == nil && !time.Now().Before(w.announceAt) {
			pending = s.renderAsync(ctx, w.pos, speech(announcement(w.pos, w.remaining()), a.VoiceProfile, 0))
			w.announceAt = time.Now().Add(every)
		}
		clip, announcing := music, false
		var ready <-chan struct{}
		if pending != nil {
			if grace := s.e.o.Timeout - time.Since(pending.started); grace > 0 {
				t := time.NewTimer(grace)
				select {
				case <-pending.done:
				case <-t.C:
				case <-ctx.Done():
				}
				t.Stop()
			}
			select {
			case <-pending.done:
				if pending.err != nil {
					s.log.Warn("callflow: queue announcement not rendered", "err", pending.err)
				} else {
					clip, announcing = pending.audio, true
				}
				pending = nil
			default:
				ready = pending.done
			}
		}
		var next <-chan time.Time
		if !announcing && pending == nil && *a.AnnouncePosition && w.pos > 0 {
			next = time.After(max(time.Until(w.announceAt), 0))
		}
		pctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- s.call.Play(pctx, clip) }()
		r, over, err := w.wait(ctx, done, next, ready)
		stop()
		<-done
		switch {
		case err != nil:
			return false, err
		case !over:
		case r.Outcome == QueueConnected:
			return true, nil
		case r.Outcome == QueueTimedOut:
			return false, nil
		case r.Err != nil:
			return false, r.Err
		default:
			return false, ErrCallEnded
		}
	}
}

// rendering is speech being rendered on its own goroutine: audio and err
// are set when done is closed.
type rendering struct {
	pos     int // the place in line it says
	started time.Time
	done    chan struct{}
	audio   prompt.Audio
	err     error
}

// renderAsync renders sp (saying place pos) for the call; the render ends
// with ctx (the call) at the latest.
func (s *session) renderAsync(ctx context.Context, pos int, sp prompt.Speech) *rendering {
	r := &rendering{pos: pos, started: time.Now(), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.audio, r.err = s.e.o.Prompts.Speech(ctx, sp, s.info.SampleRate)
	}()
	return r
}

// queueWait is what a waiting call knows of its place in line.
type queueWait struct {
	t          Ticket
	status     <-chan QueueStatus
	pos        int
	announceAt time.Time
	// eta is the estimated wait the call's side gave at etaAt (0: none).
	eta   time.Duration
	etaAt time.Time
}

// remaining is the estimated wait left now, 0 when there is none.
func (w *queueWait) remaining() time.Duration {
	if w.eta <= 0 {
		return 0
	}
	return max(w.eta-time.Since(w.etaAt), 0)
}

// announcement is what a waiting caller hears: its place in line, and
// the estimated wait when there is one, in whole minutes rounded up
// ("less than a minute" under one). A wait already longer than the
// estimate says nothing of it rather than a number that is wrong.
func announcement(pos int, eta time.Duration) string {
	text := fmt.Sprintf("You are number %d in the queue.", pos)
	switch {
	case eta <= 0:
	case eta < time.Minute:
		text += " Your estimated wait is less than a minute."
	default:
		m := int((eta + time.Minute - 1) / time.Minute)
		unit := "minutes"
		if m == 1 {
			unit = "minute"
		}
		text += fmt.Sprintf(" Your estimated wait is about %d %s.", m, unit)
	}
	return text
}

// wait waits for the clip playing to end (done, which it leaves for the
// caller to read), the next announcement to be due (next) or rendered
// (ready), a better place in line, or the end of the wait (over).
func (w *queueWait) wait(ctx context.Context, done chan error, next <-chan time.Time, ready <-chan struct{}) (QueueResult, bool, error) {
	for {
		select {
		case err := <-done:
			done <- err
			if errors.Is(err, ErrCallEnded) {
				return QueueResult{}, true, ErrCallEnded
			}
			return QueueResult{}, false, nil
		case st, ok := <-w.status:
			if !ok {
				w.status = nil
				continue
			}
			moved := w.pos == 0 || st.Position < w.pos
			w.pos = st.Position
			w.eta, w.etaAt = st.ETA, time.Now()
			if moved {
				// First known, or moved up: say so at once.
				w.announceAt = time.Now()
				return QueueResult{}, false, nil
			}
		case <-next:
			return QueueResult{}, false, nil
		case <-ready:
			return QueueResult{}, false, nil
		case r := <-w.t.Result():
			return r, true, nil
		case <-ctx.Done():
			return QueueResult{}, true, ErrCallEnded
		}
	}
}

// QueueRequest is one call joining a queue.
type QueueRequest struct {
	// Queue names the hunt list.
	Queue string
	// Priority orders callers: higher first (VIP), then by arrival.
	Priority int
	// LimitTime bounds the wait; then Result reports QueueTimedOut.
	LimitTime time.Duration
}

// Ticket is a call's place in a queue.
type Ticket interface {
	// Status delivers the position (1 = next) and the estimated wait
	// whenever either changes; closed when the wait is over.
	Status() <-chan QueueStatus
	// Result delivers one QueueResult when the wait is over.
	Result() <-chan QueueResult
	// Leave takes the call out of line (the caller hung up, or the engine
	// gave up); Result then reports QueueLeft.
	Leave()
}

// QueueStatus is a waiting call's place.
type QueueStatus struct {
	Position int
	// ETA is the estimated wait from now (0: no estimate, e.g. no call
	// of the queue has been connected yet); the engine counts it down
	// until the next status.
	ETA time.Duration
}

// QueueResult is how a wait ended.
type QueueResult struct {
	Outcome string // QueueConnected, QueueTimedOut, QueueLeft
	Err     error
}

// Outcomes of QueueResult.
const (
	QueueConnected = "connected"
	QueueTimedOut  = "timedOut"
	QueueLeft      = "left"
)

// QueueFlow is the built-in flow of a queue route (Options.Flow): the one
// queue action a, checked and with its defaults filled in.
func QueueFlow(a Enqueue) (*Flow, error) {
	if err := checkEnqueue(&a); err != nil {
		return nil, fmt.Errorf("callflow: queue route: %w", err)
	}
	return &Flow{ClientActionID: "queue", Actions: []Action{&a}}, nil
}
