package events

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wagate/wagate/internal/staleconn"
)

// TestEventsDeliveredSignedInOrder: every event of interleaved calls
// reaches the receiver once, signed, each call's events in order, while
// several attempts run at once.
func TestEventsDeliveredSignedInOrder(t *testing.T) {
	r := newReceiver(t)
	r.setAnswer(func(*delivery) int {
		time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond) // let attempts overlap
		return 200
	})
	s := openSink(t, func(o *Options) {
		o.Subscribers = []Subscriber{{Name: "crm", URL: r.url(), Secret: testSecret, Concurrency: 8}}
	})
	const calls = 40
	// Interleave the calls: each step of every call before the next step.
	cs := make([]Call, calls)
	for i := range cs {
		cs[i] = testCall(fmt.Sprintf("c%02d", i))
		s.CallStarted(cs[i])
	}
	for i := range cs {
		s.CallRinging(cs[i])
	}
	for i := range cs {
		s.CallAnswered(cs[i])
	}
	for i := range cs {
		s.CallEnded(testCDR(cs[i].CallID, t0))
	}
	s.PermissionChanged(PermissionChange{PhoneNumberID: "100000000000001", User: "+16505551234", Status: "temporary", Source: "uic",
		ExpiresAt: t0.Add(168 * time.Hour)})
	waitFor(t, "all events taken", func() bool { return r.distinct() == calls*4+1 })
	r.checkClean(t)

	var ended *delivery
	for _, d := range r.requests() {
		if d.attempt != 1 {
			t.Errorf("event %s needed attempt %d against a healthy receiver", d.env.ID, d.attempt)
		}
		if d.env.NodeID != "node-a" || d.env.Timestamp.IsZero() || len(d.env.ID) != 36 {
			t.Errorf("envelope: %+v", d.env)
		}
		if d.env.Type == CallEnded && ended == nil {
			ended = &d
		}
	}
	if ended == nil || !strings.Contains(string(ended.raw), `"data":{"call_id":"`+ended.env.CallID+`"`) ||
		!strings.Contains(string(ended.raw), `"talk_ms":60000`) {
		t.Errorf("call.ended does not carry the CDR: %s", ended.raw)
	}
	waitFor(t, "results written", func() bool { return s.Stats().Subscribers[0].Delivered == calls*4+1 })
	if st := s.Stats(); st.EventsWritten != calls*4+1 || st.CDRsWritten != calls || st.Subscribers[0].Failed != 0 {
		t.Errorf("stats: %+v", st)
	}
}

// TestSubscriberTypes: a subscriber gets only the types it lists.
func TestSubscriberTypes(t *testing.T) {
	all, ends := newReceiver(t), newReceiver(t)
	ends.noOrder = true // it gets only the ends of calls
	s := openSink(t, func(o *Options) {
		o.Subscribers = []Subscriber{
			{Name: "all", URL: all.url(), Secret: testSecret},
			{Name: "ends", URL: ends.url(), Secret: testSecret, Types: []Type{CallEnded, CallRefused}},
		}
	})
	emitCall(s, "c1", t0)
	s.CallRefused(CDR{CallID: "c2", SIPCode: 403})
	waitFor(t, "deliveries", func() bool { return all.distinct() == 5 && ends.distinct() == 2 })
	for _, d := range ends.requests() {
		if d.env.Type != CallEnded && d.env.Type != CallRefused {
			t.Errorf("ends got %s", d.env.Type)
		}
	}
	all.checkClean(t)
	ends.checkClean(t)
}

// TestReceiverDownThenBack: the receiver's port refuses connections for a
// while, then answers 503, then comes back; nothing is lost and each
// call's order holds.
func TestReceiverDownThenBack(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // down: connection refused

	r := newReceiver(t) // its handler, served on addr once back
	s := openSink(t, func(o *Options) {
		o.Subscribers = []Subscriber{{Name: "crm", URL: "http://" + addr + "/hook", Secret: testSecret, Concurrency: 4}}
	})
	const calls = 30
	for i := range calls / 2 {
		emitCall(s, fmt.Sprintf("early-%02d", i), t0)
	}
	waitFor(t, "failed attempts while down", func() bool { return s.Stats().Subscribers[0].Failed >= 20 })

	// Up, but unavailable.
	var unavailable atomic.Bool
	unavailable.Store(true)
	r.setAnswer(func(*delivery) int {
		if unavailable.Load() {
			return 503
		}
		return 204
	})
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(r.serve)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	for i := range calls / 2 {
		emitCall(s, fmt.Sprintf("late-%02d", i), t0)
	}
	waitFor(t, "503s", func() bool { return len(r.requests()) >= 10 })
	if r.distinct() != 0 {
		t.Fatal("an event was taken while the receiver answered 503")
	}
	unavailable.Store(false)
	waitFor(t, "every event", func() bool { return r.distinct() == calls*4 })
	r.checkClean(t)
	for id, n := range r.takenIDs {
		if n != 1 {
			t.Errorf("event %s taken %d times", id, n)
		}
	}
}

// TestBadSubscribersDoNotHoldUpOthers: receivers that answer slowly, 500,
// redirect or send 10 MB back neither block the call path nor keep a good
// receiver from getting every event.
func TestBadSubscribersDoNotHoldUpOthers(t *testing.T) {
	good := newReceiver(t)
	release := make(chan struct{})
	var slowHits, redirectTargetHits, bigHits, bigSentAll atomic.Int64
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slowHits.Add(1)
		select { // longer than the subscriber's timeout, until the test ends
		case <-release:
		case <-r.Context().Done():
		}
	}))
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "internal error", 500)
	}))
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		redirectTargetHits.Add(1)
	}))
	redirecting := httptest.NewServer(http.RedirectHandler(target.URL+"/elsewhere", http.StatusFound))
	chunk := make([]byte, 64<<10)
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bigHits.Add(1)
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(200)
		for sent := 0; sent < 10<<20; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return // wagate hung up after reading its share
			}
		}
		bigSentAll.Add(1)
	}))
	for _, srv := range []*httptest.Server{slow, failing, target, redirecting, big} {
		t.Cleanup(srv.Close)
	}
	t.Cleanup(func() { close(release) })

	s := openSink(t, func(o *Options) {
		// Slower retries than the other tests': the failing receivers
		// would otherwise retry hundreds of times a second.
		o.BackoffBase, o.BackoffMax = 20*time.Millisecond, 200*time.Millisecond
		sub := func(name, url string) Subscriber {
			return Subscriber{Name: name, URL: url, Secret: testSecret, Timeout: 300 * time.Millisecond, Concurrency: 2}
		}
		o.Subscribers = []Subscriber{sub("slow", slow.URL), sub("failing", failing.URL), sub("redirecting", redirecting.URL),
			sub("big", big.URL), sub("good", good.url())}
	})
	const calls = 50
	for i := range calls {
		emitCall(s, fmt.Sprintf("c%02d", i), t0)
	}
	waitFor(t, "the good receiver has every event", func() bool { return good.distinct() == calls*4 })
	good.checkClean(t)
	if st := s.Stats(); st.Dropped != 0 || st.EventsWritten != calls*4 {
		t.Errorf("the call path lost records: %+v", st)
	}
	waitFor(t, "the bad receivers' attempts", func() bool {
		st := s.Stats()
		byName := map[string]SubscriberStats{}
		for _, x := range st.Subscribers {
			byName[x.Name] = x
		}
		return byName["slow"].Failed >= 2 && byName["failing"].Failed >= 2 && byName["redirecting"].Failed >= 2 && byName["big"].Delivered >= 4
	})
	if n := redirectTargetHits.Load(); n != 0 {
		t.Errorf("a redirect was followed %d times", n)
	}
	// wagate reads 64 KiB of an answer and hangs up: the 10 MB never all
	// leave the receiver (the kernel buffers a few MB at most).
	if n := bigSentAll.Load(); n != 0 {
		t.Errorf("%d of %d 10 MB answers were read to the end", n, bigHits.Load())
	}
	// At most Concurrency attempts at once per subscriber: the slow one
	// holds its 2 until they time out.
	for _, x := range s.Stats().Subscribers {
		if x.InFlight > 2 {
			t.Errorf("%s: %d attempts in flight, concurrency is 2", x.Name, x.InFlight)
		}
	}
}

// TestDeadLetterAndReplay: after MaxAttempts an event is a dead letter,
// later events of its call go on, and a replay delivers it.
func TestDeadLetterAndReplay(t *testing.T) {
	r, other := newReceiver(t), newReceiver(t)
	r.noOrder, other.noOrder = true, true
	var refuseRinging atomic.Bool
	refuseRinging.Store(true)
	r.setAnswer(func(d *delivery) int {
		if d.env.Type == CallRinging && refuseRinging.Load() {
			return 500
		}
		return 200
	})
	s := openSink(t, func(o *Options) {
		o.MaxAttempts = 3
		o.Subscribers = []Subscriber{{Name: "crm", URL: r.url(), Secret: testSecret}, {Name: "other", URL: other.url(), Secret: testSecret, Types: []Type{CallEnded}}}
	})
	emitCall(s, "c1", t0)
	emitCall(s, "c2", t0)
	waitFor(t, "the rest delivered", func() bool { return r.distinct() == 6 && other.distinct() == 2 }) // started, answered, ended of each
	ctx := context.Background()
	var page DeadLetterPage
	waitFor(t, "dead letters", func() bool {
		var err error
		page, err = s.DeadLetters(ctx, DeadLetterQuery{})
		return err == nil && len(page.DeadLetters) == 2
	})
	attempts := 0
	for _, d := range r.requests() {
		if d.env.Type == CallRinging {
			attempts++
		}
	}
	if attempts != 6 {
		t.Errorf("%d attempts of the two ringing events, want 3 each", attempts)
	}
	dl := page.DeadLetters[0]
	if dl.Type != CallRinging || dl.Subscriber != "crm" || dl.Attempts != 3 || dl.LastStatus != 500 ||
		!strings.Contains(dl.LastError, "HTTP 500") || !strings.Contains(string(dl.Event), `"type":"call.ringing"`) {
		t.Errorf("dead letter: %+v", dl)
	}
	if p, _ := s.DeadLetters(ctx, DeadLetterQuery{Subscriber: "other"}); len(p.DeadLetters) != 0 {
		t.Errorf("dead letters of other: %+v", p.DeadLetters)
	}
	p1, err := s.DeadLetters(ctx, DeadLetterQuery{Limit: 1})
	if err != nil || len(p1.DeadLetters) != 1 || p1.NextCursor == "" {
		t.Fatalf("page of 1: %+v %v", p1, err)
	}
	cur, err := ParseDeadLetterCursor(p1.NextCursor)
	if err != nil {
		t.Fatal(err)
	}
	if p2, _ := s.DeadLetters(ctx, DeadLetterQuery{Limit: 1, After: cur}); len(p2.DeadLetters) != 1 || p2.NextCursor != "" ||
		p2.DeadLetters[0].EventID == p1.DeadLetters[0].EventID {
		t.Errorf("page 2: %+v", p2)
	}

	refuseRinging.Store(false)
	if n, err := s.Replay(ctx, dl.EventID, ""); n != 1 || err != nil {
		t.Fatalf("Replay: %d %v", n, err)
	}
	waitFor(t, "the replayed event", func() bool { return r.taken(dl.EventID) == 1 })
	waitFor(t, "dead letter gone", func() bool { p, _ := s.DeadLetters(ctx, DeadLetterQuery{}); return len(p.DeadLetters) == 1 })
	if _, err := s.Replay(ctx, dl.EventID, ""); !errors.Is(err, ErrNothingToReplay) {
		t.Errorf("second replay: %v", err)
	}
	// Naming the subscriber resends a delivered event (once its delivery
	// is recorded: the writer commits results in groups).
	waitFor(t, "a resend of the delivered event", func() bool {
		n, err := s.Replay(ctx, dl.EventID, "crm")
		return err == nil && n == 1
	})
	waitFor(t, "the resent event", func() bool { return r.taken(dl.EventID) == 2 })
	// …and sends an event to a subscriber whose types left it out.
	if n, err := s.Replay(ctx, dl.EventID, "other"); n != 1 || err != nil {
		t.Errorf("replay to other: %d %v", n, err)
	}
	waitFor(t, "the event at other", func() bool { return other.taken(dl.EventID) == 1 })
	if _, err := s.Replay(ctx, "no-such-event", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown event: %v", err)
	}
	if _, err := s.Replay(ctx, dl.EventID, "nobody"); !errors.Is(err, ErrUnknownSubscriber) {
		t.Errorf("unknown subscriber: %v", err)
	}
	r.checkClean(t)
	other.checkClean(t)
}

// TestBackoff: full jitter under an exponential cap, Retry-After honoured
// within BackoffMax.
func TestBackoff(t *testing.T) {
	s := &Sink{opts: Options{BackoffBase: 100 * time.Millisecond, BackoffMax: 2 * time.Second}}
	for n := 1; n <= 80; n++ {
		ceil := s.opts.BackoffMax
		if n <= 20 {
			ceil = min(s.opts.BackoffBase<<(n-1), s.opts.BackoffMax)
		}
		var maxSeen time.Duration
		for range 200 {
			d := s.backoff(n, 0)
			if d < 0 || d > ceil {
				t.Fatalf("attempt %d: %v outside [0, %v]", n, d, ceil)
			}
			maxSeen = max(maxSeen, d)
		}
		if maxSeen < ceil/2 {
			t.Errorf("attempt %d: 200 draws stayed below %v, half the cap %v: no jitter over the whole range", n, maxSeen, ceil)
		}
	}
	if d := s.backoff(1, time.Second); d < time.Second {
		t.Errorf("Retry-After 1s gave %v", d)
	}
	if d := s.backoff(1, time.Hour); d != 2*time.Second {
		t.Errorf("Retry-After 1h gave %v, want BackoffMax", d)
	}
}

// TestBreakerBoundsAttemptsWhileDown: while a receiver is down, the
// attempts it gets do not grow with the backlog (five, then one probe per
// pause); once it is back, the first probe that gets through resumes
// delivery of everything.
func TestBreakerBoundsAttemptsWhileDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r := newReceiver(t)
	s := openSink(t, func(o *Options) {
		o.Subscribers = []Subscriber{{Name: "crm", URL: "http://" + addr + "/hook", Secret: testSecret, Concurrency: 4}}
		o.BackoffBase = 20 * time.Millisecond
		o.BackoffMax = 200 * time.Millisecond
	})
	const calls = 100
	for i := range calls {
		emitCall(s, fmt.Sprintf("down-%03d", i), t0)
	}
	time.Sleep(1500 * time.Millisecond)
	failed := s.Stats().Subscribers[0].Failed
	// 5 to open, then probes at most every 20, 40, 80, 160, 200 ms:
	// about a dozen in 1.5 s, however many events wait (400 here).
	if failed > 25 {
		t.Errorf("%d failed attempts in 1.5 s with the receiver down and 400 events waiting, want the breaker to hold them to a few", failed)
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(r.serve)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	waitFor(t, "every event after the receiver came back", func() bool { return r.distinct() == calls*4 })
	r.checkClean(t)
}

// TestRetryAfterHoldsTheSubscriber: a receiver answering 429 or 503 with
// Retry-After gets no request at all, of any event, until that time has
// passed, in either form of the header (seconds, HTTP date). Before, only
// the refused event waited: the next pending events were posted at once,
// into the receiver's rate limit, and an HTTP date was ignored.
func TestRetryAfterHoldsTheSubscriber(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		header func(now time.Time) string
		// least is the least gap to the next request the header asks
		// for (an HTTP date has whole seconds).
		least time.Duration
	}{
		{"429 seconds", http.StatusTooManyRequests, func(time.Time) string { return "1" }, time.Second},
		{"503 http date", http.StatusServiceUnavailable, func(now time.Time) string {
			return now.Add(2 * time.Second).UTC().Format(http.TimeFormat)
		}, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var (
				mu       sync.Mutex
				refused  time.Time // when the refusal was written
				arrivals []time.Time
			)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				mu.Lock()
				defer mu.Unlock()
				arrivals = append(arrivals, time.Now())
				if len(arrivals) == 1 {
					w.Header().Set("Retry-After", tc.header(time.Now()))
					w.WriteHeader(tc.status)
					refused = time.Now()
					return
				}
				w.WriteHeader(http.StatusNoContent)
			}))
			t.Cleanup(srv.Close)
			s := openSink(t, func(o *Options) {
				o.Subscribers = []Subscriber{{Name: "crm", URL: srv.URL, Secret: testSecret, Concurrency: 1}}
				o.BackoffBase = 5 * time.Millisecond
				o.BackoffMax = 10 * time.Second
			})
			// Events without a call: no order holds them back.
			for i := range 5 {
				s.PermissionChanged(PermissionChange{PhoneNumberID: "100000000000001", User: fmt.Sprintf("+1650555%04d", i), Status: "permanent", Source: "api"})
			}
			waitFor(t, "every event delivered", func() bool { return s.Stats().Subscribers[0].Delivered == 5 })
			mu.Lock()
			defer mu.Unlock()
			if len(arrivals) != 6 {
				t.Fatalf("%d requests, want 6 (one refused)", len(arrivals))
			}
			// A lower bound only: a slow machine can make it longer, never
			// shorter.
			if gap := arrivals[1].Sub(refused); gap < tc.least-50*time.Millisecond {
				t.Errorf("next request %v after the %d with Retry-After %q, want none for %v", gap, tc.status, tc.header(refused), tc.least)
			}
		})
	}
}

// TestStaleKeepAliveIsNotAFailure: a receiver closes an idle keep-alive
// connection just as wagate sends the next event on it (Node.js closes
// them after 5 s by default, so this race is common). The request never
// got an answer; it is sent again at once on a new connection, not
// counted as a failed attempt and put back for a backoff. Before, every
// such race was a failed attempt, logged, and five in a row opened the
// circuit breaker.
func TestStaleKeepAliveIsNotAFailure(t *testing.T) {
	// Each connection answers its first request and closes under the
	// second, unanswered.
	rx := staleconn.Start(t, func(int) []byte { return []byte("HTTP/1.1 204 No Content\r\n\r\n") })
	s := openSink(t, func(o *Options) {
		o.Subscribers = []Subscriber{{Name: "crm", URL: "http://" + rx.Addr + "/hook", Secret: testSecret, Concurrency: 1}}
		o.BackoffBase = time.Second // a failed attempt would show as a delay too
		o.BackoffMax = time.Second
	})
	const n = 6
	for i := range n {
		s.PermissionChanged(PermissionChange{PhoneNumberID: "100000000000001", User: fmt.Sprintf("+1650555%04d", i), Status: "permanent", Source: "api"})
		want := uint64(i + 1)
		waitFor(t, "the event delivered", func() bool { return s.Stats().Subscribers[0].Delivered == want })
	}
	if st := s.Stats().Subscribers[0]; st.Failed != 0 {
		t.Errorf("%d failed attempts for %d events, each of which the receiver took on the next connection", st.Failed, n)
	}
}

// TestBacklogIsBounded: while a receiver is down, its undelivered events
// stop growing at MaxPending: the next are not queued for it (counted,
// logged once per 10 s), the CDRs are still stored, and another
// subscriber still gets every event. When the receiver is back it gets
// what was kept, and room is made for new events. Before, the outbox grew
// without bound (6.6 kB a call, 2.4 GB an hour at 100 calls/s) until the
// disk was full and every CDR was lost with it.
func TestBacklogIsBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // down: connections refused
	other := newReceiver(t)
	var logs logBuf
	s := openSink(t, func(o *Options) {
		o.MaxPending = 10
		o.Log = logs.logger()
		o.Subscribers = []Subscriber{
			{Name: "crm", URL: "http://" + addr + "/hook", Secret: testSecret},
			{Name: "bi", URL: other.url(), Secret: testSecret},
		}
	})
	const calls = 6 // 24 events
	for i := range calls {
		// One call at a time: "bi" takes each before the next, and
		// never holds 10.
		emitCall(s, fmt.Sprintf("c-%d", i), t0)
		waitFor(t, "the other subscriber served", func() bool { return other.distinct() == (i+1)*4 })
	}
	if n := s.Stats().CDRsWritten; n != calls {
		t.Errorf("%d CDRs stored, want %d", n, calls)
	}
	st := s.Stats().Subscribers[0]
	if st.Pending != 10 || st.BacklogFull != calls*4-10 {
		t.Errorf("crm: %d pending and %d not queued, want 10 and %d", st.Pending, st.BacklogFull, calls*4-10)
	}
	waitFor(t, "bi's results written", func() bool { return s.Stats().Subscribers[1].Delivered == calls*4 })
	if st := s.Stats().Subscribers[1]; st.BacklogFull != 0 {
		t.Errorf("bi: %d events not queued, want 0", st.BacklogFull)
	}
	if n := strings.Count(logs.String(), "backlog is full"); n != 1 {
		t.Errorf("%d log lines about the full backlog, want 1:\n%s", n, logs.String())
	}

	r := newReceiver(t)
	r.noOrder = true // the calls past the bound lost their later events
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(r.serve)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	waitFor(t, "the kept events delivered", func() bool { return s.Stats().Subscribers[0].Pending == 0 })
	if r.distinct() != 10 {
		t.Errorf("%d events delivered, want the 10 kept", r.distinct())
	}
	emitCall(s, "after", t0)
	waitFor(t, "a new call's events", func() bool { return r.distinct() == 14 })
}

// TestLateCallEventAfterEndIsDropped: the call path reports a call's
// steps from more than one goroutine (the B-leg's 180 is handled while the
// caller's CANCEL ends the call), so a call.ringing can be reported after
// the call.ended. It went out after call.ended, and a CRM following the
// events left the call ringing for ever. A call.started, call.ringing,
// call.answered or call.progress reported after the call's end is now
// dropped, counted and logged; what belongs after the end
// (recording.ready) still goes.
func TestLateCallEventAfterEndIsDropped(t *testing.T) {
	r := newReceiver(t)
	var logs logBuf
	s := openSink(t, func(o *Options) {
		o.Log = logs.logger()
		o.Subscribers = []Subscriber{{Name: "crm", URL: r.url(), Secret: testSecret}}
	})
	c := testCall("c1")
	s.CallStarted(c)
	s.CallEnded(testCDR("c1", t0))
	s.CallRinging(c) // late
	s.CallAnswered(c)
	s.RecordingReady(Recording{CallID: "c1", RecordingID: "r1"})
	emitCall(s, "c2", t0) // another call, whole
	waitFor(t, "the events", func() bool { return r.distinct() >= 7 })
	time.Sleep(100 * time.Millisecond) // anything late would have come by now
	var got []string
	for _, d := range r.requests() {
		if d.env.CallID == "c1" {
			got = append(got, string(d.env.Type))
		}
	}
	if strings.Join(got, " ") != "call.started call.ended recording.ready" || r.distinct() != 7 {
		t.Errorf("call c1 got %v (%d events in all), want call.started call.ended recording.ready (7)", got, r.distinct())
	}
	if n := s.Stats().LateEvents; n != 2 {
		t.Errorf("%d late events counted, want 2", n)
	}
	if !strings.Contains(logs.String(), "after the call ended") {
		t.Errorf("not logged:\n%s", logs.String())
	}
}
