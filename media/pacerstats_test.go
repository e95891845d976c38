package media

import (
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
