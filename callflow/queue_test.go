package callflow

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/prompt"
)

// queueCall is a fake call that can wait in a queue: its ticket moves
// from place 2 to place 1, then ends with result.
type queueCall struct {
	*fakeCall
	result string
	joined []QueueRequest
	left   chan struct{}
	// until, when set, holds the result back until it is true of the
	// plays (else: until place 1 was announced, the third play).
	until func([]played) bool
}

type fakeTicket struct {
	status chan QueueStatus
	result chan QueueResult
	left   chan struct{}
}

func (t *fakeTicket) Status() <-chan QueueStatus { return t.status }
func (t *fakeTicket) Result() <-chan QueueResult { return t.result }
func (t *fakeTicket) Leave() {
	select {
	case <-t.left:
	default:
		close(t.left)
	}
}

// plays0 is the plays so far.
func (q *queueCall) plays0() []played {
	p, _, _ := q.snapshot()
	return p
}

func (q *queueCall) JoinQueue(ctx context.Context, r QueueRequest) (Ticket, error) {
	q.mu.Lock()
	q.joined = append(q.joined, r)
	q.mu.Unlock()
	t := &fakeTicket{status: make(chan QueueStatus, 1), result: make(chan QueueResult, 1), left: q.left}
	t.status <- QueueStatus{Position: 2}
	go func() {
		time.Sleep(40 * time.Millisecond)
		t.status <- QueueStatus{Position: 1}
		// The result comes once place 1 has been announced (the third
		// play), not after a fixed sleep a loaded machine can outrun.
		until := q.until
		if until == nil {
			until = func(p []played) bool { return len(p) >= 3 }
		}
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if plays, _, _ := q.snapshot(); until(plays) {
				break
			}
		}
		t.result <- QueueResult{Outcome: q.result}
		close(t.status)
	}()
	return t, nil
}

func TestQueue(t *testing.T) {
	flow := `{"callflow":[
		{"action":"queue","params":{"destination":"sales","priority":5,"limitTime":5000}},
		{"action":"say","params":{"text":"Nobody is free."}},
		{"action":"hangup"}]}`
	for _, tt := range []struct {
		result, outcome string
		playsAfter      int // plays of the say after the queue
	}{
		{QueueTimedOut, OutcomeHangup, 1},
		{QueueConnected, OutcomeConnected, 0},
	} {
		t.Run(tt.result, func(t *testing.T) {
			svc := newService(t, flows(flow))
			call := &queueCall{fakeCall: newFakeCall(prompt.Rate8k), result: tt.result, left: make(chan struct{})}
			sum := run(t, newEngine(t, svc, nil), call)
			if len(call.joined) != 1 || call.joined[0] != (QueueRequest{Queue: "sales", Priority: 5, LimitTime: 5 * time.Second}) {
				t.Fatalf("joined %+v", call.joined)
			}
			select {
			case <-call.left:
			default:
				t.Error("the engine did not leave the queue")
			}
			plays, _, _ := call.snapshot()
			// Place 2 announced, music, place 1 announced at once, then
			// the flow's own prompts (if any).
			if len(plays) < 3+tt.playsAfter {
				t.Fatalf("%d plays, want the two announcements, the music and %d more", len(plays), tt.playsAfter)
			}
			if !plays[1].interrupted {
				t.Errorf("the music was not cut for the move to place 1")
			}
			want := ConnectLog{DestinationType: "queue", Destination: "sales", Answered: tt.result == QueueConnected}
			if tt.result == QueueTimedOut {
				want.Error = "no agent free within limitTime"
			}
			if sum.Outcome != tt.outcome || len(sum.Connects) != 1 || sum.Connects[0] != want {
				t.Fatalf("outcome %s, connects %+v, want %s and %+v", sum.Outcome, sum.Connects, tt.outcome, want)
			}
		})
	}
}

// A queue on a call that cannot wait in one fails like a connect: the
// flow goes on.
func TestQueueNotAvailable(t *testing.T) {
	svc := newService(t, flows(`{"callflow":[
		{"action":"queue","params":{"destination":"sales"}},
		{"action":"hangup"}]}`))
	sum := run(t, newEngine(t, svc, nil), newFakeCall(prompt.Rate8k))
	if sum.Outcome != OutcomeHangup || len(sum.Connects) != 1 || sum.Connects[0].Answered || sum.Connects[0].Error == "" {
		t.Fatalf("outcome %s, connects %+v", sum.Outcome, sum.Connects)
	}
}

// The announcement names the place, and the estimated wait when the
// call's side has one, rounded up to whole minutes; it counts down
// between statuses and is left out once it has run out.
func TestQueueAnnouncement(t *testing.T) {
	for _, tt := range []struct {
		pos  int
		eta  time.Duration
		want string
	}{
		{2, 0, "You are number 2 in the queue."},
		{1, 20 * time.Second, "You are number 1 in the queue. Your estimated wait is less than a minute."},
		{3, time.Minute, "You are number 3 in the queue. Your estimated wait is about 1 minute."},
		{3, 61 * time.Second, "You are number 3 in the queue. Your estimated wait is about 2 minutes."},
		{7, 9*time.Minute + 30*time.Second, "You are number 7 in the queue. Your estimated wait is about 10 minutes."},
	} {
		if got := announcement(tt.pos, tt.eta); got != tt.want {
			t.Errorf("announcement(%d, %v) = %q, want %q", tt.pos, tt.eta, got, tt.want)
		}
	}
	w := &queueWait{eta: 3 * time.Minute, etaAt: time.Now().Add(-time.Minute)}
	if r := w.remaining(); r > 2*time.Minute || r < 2*time.Minute-time.Second {
		t.Errorf("3 min estimated a minute ago: %v left, want 2 min", r)
	}
	w.etaAt = time.Now().Add(-4 * time.Minute)
	if r := w.remaining(); r != 0 {
		t.Errorf("an estimate run out: %v left, want none", r)
	}
	if r := (&queueWait{}).remaining(); r != 0 {
		t.Errorf("no estimate: %v", r)
	}
}

// TestBuiltInQueueFlow: an engine with Options.Flow (a queue route) sends
// no request; a wait that times out takes the fallback, one that connects
// does not; the flow sees the call's Info (VIP priority).
func TestBuiltInQueueFlow(t *testing.T) {
	for _, tt := range []struct {
		result, outcome string
		fallback        bool
	}{
		{QueueTimedOut, OutcomeFallback, true},
		{QueueConnected, OutcomeConnected, false},
	} {
		t.Run(tt.result, func(t *testing.T) {
			svc := newService(t, flows(`{"callflow":[{"action":"hangup"}]}`))
			e := newEngine(t, svc, func(o *Options) {
				o.URL, o.Secret, o.Message = "", nil, ""
				o.Flow = func(info Info) *Flow {
					a := Enqueue{Destination: "sales", LimitTime: 5000}
					if info.User == "+16505551234" {
						a.Priority = 9
					}
					f, err := QueueFlow(a)
					if err != nil {
						t.Error(err)
					}
					return f
				}
			})
			call := &queueCall{fakeCall: newFakeCall(prompt.Rate8k), result: tt.result, left: make(chan struct{})}
			sum := run(t, e, call)
			if len(call.joined) != 1 || call.joined[0] != (QueueRequest{Queue: "sales", Priority: 9, LimitTime: 5 * time.Second}) {
				t.Fatalf("joined %+v", call.joined)
			}
			if sum.Outcome != tt.outcome {
				t.Errorf("outcome %q, want %q", sum.Outcome, tt.outcome)
			}
			_, connects, _ := call.snapshot()
			if got := len(connects) == 1 && connects[0].Destination == "1000"; got != tt.fallback {
				t.Errorf("connects %+v; fallback taken %v, want %v", connects, got, tt.fallback)
			}
			if n := len(svc.got()); n != 0 {
				t.Errorf("the service got %d requests for a built-in flow, want 0", n)
			}
			if err := e.PostSummary(context.Background(), sum); err != nil || len(svc.got()) != 0 {
				t.Errorf("PostSummary of a built-in flow: %v, %d requests", err, len(svc.got()))
			}
		})
	}
}

// blockedAnnouncements renders the queue's announcements only once
// released (a speech engine busy with other calls, a slow HTTP TTS).
type blockedAnnouncements struct {
	Prompts
	asked   chan struct{} // closed when an announcement is asked for
	release chan struct{}
	once    sync.Once
}

func (b *blockedAnnouncements) Speech(ctx context.Context, sp prompt.Speech, rate int) (prompt.Audio, error) {
	if strings.HasPrefix(sp.Text, "You are number") {
		b.once.Do(func() { close(b.asked) })
		select {
		case <-b.release:
		case <-ctx.Done():
			return prompt.Audio{}, ctx.Err()
		}
	}
	return b.Prompts.Speech(ctx, sp, rate)
}

// While the announcement of its place is rendered past the engine's
// timeout, a waiting caller hears the music, not silence; the
// announcement plays once ready.
func TestQueueMusicWhileAnnouncementRenders(t *testing.T) {
	svc := newService(t, flows(`{"callflow":[
		{"action":"queue","params":{"destination":"sales","limitTime":5000}},
		{"action":"hangup"}]}`))
	isSpeech := func(p played) bool {
		return speechFrames(p.audio) > 20 && goertzel(p.audio.Samples, prompt.Rate8k, 523.25) < 0.3
	}
	call := &queueCall{fakeCall: newFakeCall(prompt.Rate8k), result: QueueTimedOut, left: make(chan struct{}),
		until: func(plays []played) bool { return len(plays) > 0 && isSpeech(plays[len(plays)-1]) }}
	slow := &blockedAnnouncements{Prompts: library(t), asked: make(chan struct{}), release: make(chan struct{})}
	// The announcement is waited for one timeout before the music.
	e := newEngine(t, svc, func(o *Options) { o.Prompts = slow; o.Timeout = 500 * time.Millisecond })
	during := make(chan int, 1) // plays started while the announcement was blocked
	go func() {
		<-slow.asked
		// Wait for the music to start (a Play is a call on the fake: no
		// timing is asserted), at most 5 s, then let the render finish.
		deadline := time.Now().Add(5 * time.Second)
		base := len(call.plays0())
		for time.Now().Before(deadline) && len(call.plays0()) == base {
			time.Sleep(5 * time.Millisecond)
		}
		during <- len(call.plays0()) - base
		close(slow.release)
	}()
	run(t, e, call)
	plays, _, _ := call.snapshot()
	if n := <-during; n == 0 {
		t.Fatalf("nothing played while the announcement rendered (%d plays in all): the caller heard silence", len(plays))
	}
	if len(plays) == 0 || !isSpeech(plays[len(plays)-1]) {
		t.Fatalf("the announcement did not play once rendered (%d plays)", len(plays))
	}
}
