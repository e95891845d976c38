package events

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// clock is a time source tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestRetentionSweep: CDRs go after the CDR retention; delivered events and
// dead letters after the event retention, pending ones never.
func TestRetentionSweep(t *testing.T) {
	clk := &clock{t: t0}
	r := newReceiver(t)
	r.noOrder = true
	r.setAnswer(func(d *delivery) int {
		if d.env.CallID == "c2" {
			return 500
		}
		return 200
	})
	s := openSink(t, func(o *Options) {
		o.now = clk.now
		o.noSweepLoop = true // the test sweeps by hand
		o.CDRRetention = 90 * 24 * time.Hour
		o.EventRetention = 7 * 24 * time.Hour
		o.MaxAttempts = 2
		o.Subscribers = []Subscriber{{Name: "crm", URL: r.url(), Secret: testSecret}, {Name: "ends", URL: r.url(), Secret: testSecret, Types: []Type{CallEnded}}}
	})
	ctx := context.Background()
	// Old CDRs (created long before now), and calls with events now.
	for i := range 5 {
		s.CallEnded(CDR{CallID: fmt.Sprintf("old-%d", i), CreatedAt: t0.Add(-100 * 24 * time.Hour), Outcome: Answered})
	}
	s.CallEnded(CDR{CallID: "recent", CreatedAt: t0.Add(-89 * 24 * time.Hour), Outcome: Answered})
	emitCall(s, "c1", t0)
	waitFor(t, "c1 delivered", func() bool { return r.distinct() >= 4+6 })
	emitCall(s, "c2", t0) // its events die (2 attempts of 500 each)
	waitFor(t, "c2 dead", func() bool {
		clk.advance(time.Second) // past the next attempt's backoff
		for _, sub := range s.subs {
			sub.poke()
		}
		p, _ := s.DeadLetters(ctx, DeadLetterQuery{})
		return len(p.DeadLetters) == 5
	})

	cdrs, events, err := s.sweep(ctx)
	if err != nil || cdrs != 5 || events != 0 {
		t.Fatalf("first sweep: %d CDRs, %d events, %v; want the 5 old CDRs only", cdrs, events, err)
	}
	if _, err := s.CDR(ctx, "old-0"); err == nil {
		t.Error("old CDR still there")
	}
	if _, err := s.CDR(ctx, "recent"); err != nil {
		t.Errorf("CDR within retention swept: %v", err)
	}

	var total int
	s.rdb.QueryRow(`SELECT COUNT(*) FROM events`).Scan(&total)
	clk.advance(8 * 24 * time.Hour)
	// A delivery still being retried must survive however old it is:
	// make one of the dead letters one that has been pending since t0,
	// its next attempt an hour ahead.
	p, _ := s.DeadLetters(ctx, DeadLetterQuery{})
	keep := p.DeadLetters[0].EventID
	if _, err := s.wdb.Exec(`UPDATE deliveries SET state = ?, next_at = ?, updated_at = ? WHERE event_seq = (SELECT seq FROM events WHERE id = ?) AND subscriber = 'crm'`,
		statePending, clk.now().Add(time.Hour).UnixNano(), t0.UnixNano(), keep); err != nil {
		t.Fatal(err)
	}
	cdrs, events, err = s.sweep(ctx)
	if err != nil || cdrs != 1 || events != int64(total-1) {
		t.Fatalf("second sweep: %d CDRs, %d events, %v; want 1 CDR and all %d events but the pending one", cdrs, events, err, total-1)
	}
	var left string
	if err := s.rdb.QueryRow(`SELECT id FROM events`).Scan(&left); err != nil || left != keep {
		t.Errorf("left %q (%v), want the pending event %s", left, err, keep)
	}
	if p, _ := s.DeadLetters(ctx, DeadLetterQuery{}); len(p.DeadLetters) != 0 {
		t.Errorf("dead letters after their retention: %+v", p.DeadLetters)
	}
	if st := s.Stats(); st.CDRsSwept != 6 || st.EventsPruned != uint64(total-1) {
		t.Errorf("stats: %+v", st)
	}
}

// TestSweepAtStart: the sweep also runs when the Sink opens, so a node
// that restarts daily still applies its retention.
func TestSweepAtStart(t *testing.T) {
	s := openSink(t, func(o *Options) { o.noSweepLoop = true })
	s.CallEnded(CDR{CallID: "old", CreatedAt: time.Now().Add(-48 * time.Hour)})
	s.CallEnded(CDR{CallID: "new"})
	waitFor(t, "CDRs", func() bool { return s.Stats().CDRsWritten == 2 })
	path := s.opts.Path
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	s2 := openSink(t, func(o *Options) { o.Path = path; o.CDRRetention = 24 * time.Hour })
	waitFor(t, "the sweep at start", func() bool { return s2.Stats().CDRsSwept == 1 })
	if _, err := s2.CDR(context.Background(), "new"); err != nil {
		t.Errorf("new CDR: %v", err)
	}
}
