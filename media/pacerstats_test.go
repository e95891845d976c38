package media

import (
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// TestPacerLateness: every job run is counted once, and jobs held up by a
// job before them on the same shard are counted as late as they were: an
// operator's histogram shows a starved pacer, not a healthy one.
func TestPacerLateness(t *testing.T) {
	p := NewPacer(1)
	const block = 8 * time.Millisecond
	const held = 5 // jobs due 1 ms after the blocker starts
	start := time.Now().Add(5 * time.Millisecond)
	var wg sync.WaitGroup
	wg.Add(1 + held + 1)
	p.Schedule(start, func(time.Time) time.Time {
		time.Sleep(block) // a job that overruns: the shard does nothing else meanwhile
		wg.Done()
		return time.Time{}
	})
	for range held {
		p.Schedule(start.Add(time.Millisecond), func(time.Time) time.Time {
			wg.Done()
			return time.Time{}
		})
	}
	// A repeating job: each run is counted, not each job.
	runs := 0
	p.Schedule(start.Add(50*time.Millisecond), func(now time.Time) time.Time {
		if runs++; runs == 3 {
			wg.Done()
			return time.Time{}
		}
		return now.Add(20 * time.Millisecond)
	})
	wg.Wait()

	// The last run's count lands just after it returns.
	deadline := time.Now().Add(5 * time.Second)
	var s PacerStats
	for {
		s = p.Stats()
		if s.Runs() == 1+held+3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if got, want := s.Runs(), uint64(1+held+3); got != want {
		t.Fatalf("pacer counted %d runs, want %d (%+v)", got, want, s)
	}
	// The held jobs began at least block-1ms after their tick: all in
	// buckets above 5 ms.
	var over5ms uint64
	for i, le := range PacerLatenessBuckets {
		if le > 0.005 {
			over5ms += s.Counts[i]
		}
	}
	over5ms += s.Counts[len(PacerLatenessBuckets)]
	if over5ms < held {
		t.Errorf("%d runs counted more than 5 ms late, want at least the %d held behind an 8 ms job: %+v", over5ms, held, s.Counts)
	}
	if s.Late < held*(block-time.Millisecond-time.Millisecond) {
		t.Errorf("summed lateness %v, want at least %v", s.Late, held*(block-2*time.Millisecond))
	}
}

// TestPacerWarnsWhenLate: a pacer whose jobs keep beginning more than
// 5 ms late says so in the log, once per window at most, with the
// window's figures.
func TestPacerWarnsWhenLate(t *testing.T) {
	defer func(every time.Duration, min uint64) { pacerWarnEvery, pacerWarnMinJobs = every, min }(pacerWarnEvery, pacerWarnMinJobs)
	pacerWarnEvery, pacerWarnMinJobs = 100*time.Millisecond, 5

	var mu sync.Mutex
	var lines []map[string]any
	log := slog.New(slog.NewJSONHandler(writerFunc(func(b []byte) {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err == nil {
			mu.Lock()
			lines = append(lines, m)
			mu.Unlock()
		}
	}), nil))

	p := NewPacer(1)
	p.WarnWhenLate(log)
	// A job that overruns its turn: each run takes 7 ms and asks to run
	// again 1 ms after it began, so every run begins about 6 ms late.
	overrun := func(runs *int, done chan<- struct{}) func(time.Time) time.Time {
		return func(now time.Time) time.Time {
			time.Sleep(7 * time.Millisecond)
			if *runs++; *runs == 100 {
				close(done)
				return time.Time{}
			}
			return now.Add(time.Millisecond)
		}
	}
	var runs int
	done := make(chan struct{})
	start := time.Now()
	p.Schedule(start, overrun(&runs, done))
	<-done
	took := time.Since(start)

	mu.Lock()
	defer mu.Unlock()
	if len(lines) == 0 {
		t.Fatalf("no warning in %v of jobs beginning 6 ms late", took)
	}
	if most := int(took/pacerWarnEvery) + 1; len(lines) > most {
		t.Errorf("%d warnings in %v, want at most one per %v window", len(lines), took, pacerWarnEvery)
	}
	w := lines[0]
	if w["level"] != "WARN" || w["over_5ms"] == nil || w["jobs"] == nil || w["over_5ms"].(float64) < pacerWarnShare*w["jobs"].(float64) {
		t.Errorf("warning %v: want WARN with the window's jobs and those over 5 ms late", w)
	}
}

type writerFunc func([]byte)

func (f writerFunc) Write(b []byte) (int, error) {
	f(b)
	return len(b), nil
}

// TestPacerWakeNowIsNotLate: a job woken to run at once (Wake with the
// zero Time: new audio after a DTX gap, a re-INVITE's new route) and run
// at once is not counted late, however long its shard slept before. The
// count feeds sip.max_late_media_percent: a quiet shard's wake-ups
// counted as late as its sleep refused calls on a node keeping time.
func TestPacerWakeNowIsNotLate(t *testing.T) {
	defer pacerTimersOnly.Store(false)
	for _, timersOnly := range []bool{false, true} {
		pacerTimersOnly.Store(timersOnly)
		p := NewPacer(1)
		// Keeps the shard's goroutine alive and asleep meanwhile (due
		// within one turn of the wheel, so nothing wakes it before).
		keeper := p.Schedule(time.Now().Add(900*time.Millisecond), func(time.Time) time.Time { return time.Time{} })
		runs := make(chan struct{}, 2)
		j := p.Schedule(time.Now(), func(time.Time) time.Time {
			runs <- struct{}{}
			return time.Time{} // idle until woken
		})
		wait := func(what string) {
			select {
			case <-runs:
			case <-time.After(5 * time.Second):
				t.Fatalf("timers only %v: %s did not run within 5 s", timersOnly, what)
			}
		}
		wait("the job")
		time.Sleep(150 * time.Millisecond) // the shard sleeps: nothing is due
		j.Wake(time.Time{})
		wait("the woken job")
		keeper.Cancel()
		pacerTimersOnly.Store(false)
		// Woken after 150 ms of sleep and run at once: nowhere near
		// 100 ms late (a loaded test machine may still make it a few ms).
		if s := p.Stats(); s.Runs() != 2 || s.Counts[len(s.Counts)-1] != 0 {
			t.Errorf("timers only %v: lateness counts %v after one run at its time and one woken run at once; want 2 runs, none over 100 ms late",
				timersOnly, s.Counts)
		}
		waitIdle(t, p)
	}
}
