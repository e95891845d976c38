package media

import (
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// early is how much sooner than its due time a job may run: the pacer
// rounds due times to the nearest millisecond.
const early = pacerTick/2 + 100*time.Microsecond

// TestPacerOrder: one-shot jobs scheduled out of order run in order of
// their due times, none before it. A job can only be put before the ones
// the pacer knew of when it ran: on a loaded machine the scheduling loop
// may not be done by the time the first jobs are due, and then a job
// scheduled too late rightly runs after one due later.
func TestPacerOrder(t *testing.T) {
	p := NewPacer(1)
	start := time.Now().Add(20 * time.Millisecond)
	offsets := []int{35, 5, 20, 0, 50, 12, 27, 3}
	type run struct {
		off int
		at  time.Time
	}
	var mu sync.Mutex
	var ran []run
	known := map[int]time.Time{} // when Schedule returned
	var wg sync.WaitGroup
	for _, off := range offsets {
		due := start.Add(time.Duration(off) * time.Millisecond)
		wg.Add(1)
		p.Schedule(due, func(now time.Time) time.Time {
			if now.Before(due.Add(-early)) {
				t.Errorf("job due at +%d ms ran %v early", off, due.Sub(now))
			}
			mu.Lock()
			ran = append(ran, run{off, time.Now()})
			mu.Unlock()
			wg.Done()
			return time.Time{}
		})
		mu.Lock()
		known[off] = time.Now()
		mu.Unlock()
	}
	wg.Wait()
	order := make([]int, len(ran))
	for i, r := range ran {
		order[i] = r.off
		for _, later := range ran[i+1:] {
			if later.off < r.off && known[later.off].Before(r.at) {
				t.Errorf("job due at +%d ms ran before job due at +%d ms, scheduled %v before it (order %v)",
					r.off, later.off, r.at.Sub(known[later.off]), order[:i+1])
			}
		}
	}
	if !sort.IntsAreSorted(order) {
		t.Logf("jobs ran in the order %v: the scheduling loop overran the first due times", order)
	}
	waitIdle(t, p)
}

// TestPacerCancel: a cancelled job never runs again; a job cancelling
// itself from inside its run stops; Wake does not revive either.
func TestPacerCancel(t *testing.T) {
	p := NewPacer(2)
	var never atomic.Int32
	created := time.Now()
	j := p.Schedule(created.Add(30*time.Millisecond), func(time.Time) time.Time {
		never.Add(1)
		return time.Now().Add(time.Millisecond)
	})
	j.Cancel()
	j.Wake(time.Now())

	var self atomic.Int32
	var sj *PacerJob
	ready := make(chan struct{})
	sj = p.Schedule(time.Now(), func(now time.Time) time.Time {
		<-ready
		if self.Add(1) == 3 {
			sj.Cancel()
		}
		return now.Add(2 * time.Millisecond)
	})
	close(ready)

	// A repeating job cancelled from outside while it runs.
	var outside atomic.Int32
	oj := p.Schedule(time.Now(), func(now time.Time) time.Time {
		outside.Add(1)
		return now.Add(time.Millisecond)
	})
	// Wait for what must happen (a loaded machine may take a while), then
	// leave time for what must not.
	waitCount(t, "the repeating job's first run", &outside, 1)
	oj.Cancel()
	after := outside.Load()
	waitCount(t, "the self-cancelling job's third run", &self, 3)
	if wait := time.Until(created.Add(30 * time.Millisecond)); wait > 0 {
		time.Sleep(wait) // the cancelled job's due time
	}
	time.Sleep(60 * time.Millisecond)
	if n := never.Load(); n != 0 {
		t.Errorf("a job cancelled before its time ran %d times", n)
	}
	if n := self.Load(); n != 3 {
		t.Errorf("a job that cancelled itself on its third run ran %d times", n)
	}
	// At most the run that was under way when Cancel was called.
	if n := outside.Load(); n > after+1 || after == 0 {
		t.Errorf("a repeating job ran %d times before Cancel and %d in all", after, n)
	}
	waitIdle(t, p)
}

// TestPacerWake: Wake brings a job due later forward, and re-arms an idle
// one; waking for a later time changes nothing.
func TestPacerWake(t *testing.T) {
	p := NewPacer(1)
	runs := make(chan time.Time, 4)
	j := p.Schedule(time.Now().Add(time.Hour), func(now time.Time) time.Time {
		runs <- now
		return time.Time{} // idle until woken
	})
	j.Wake(time.Now().Add(2 * time.Hour)) // later: no change
	asked := time.Now()
	j.Wake(asked.Add(5 * time.Millisecond))
	select {
	case at := <-runs:
		if d := at.Sub(asked); d < 5*time.Millisecond-early || d > time.Second {
			t.Errorf("woken for +5 ms, ran after %v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a job woken for +5 ms did not run within 5 s")
	}
	select {
	case <-runs:
		t.Fatal("an idle job ran again without Wake")
	case <-time.After(30 * time.Millisecond):
	}
	j.Wake(time.Time{})
	select {
	case <-runs:
	case <-time.After(5 * time.Second):
		t.Fatal("an idle job did not run after Wake")
	}
	waitIdle(t, p)
}

// TestPacerRuntimeTimers: the pacer keeps its promises where shards
// sleep on runtime timers and a nanosleep (no timerfd).
func TestPacerRuntimeTimers(t *testing.T) {
	pacerTimersOnly.Store(true)
	defer pacerTimersOnly.Store(false)
	t.Run("order", TestPacerOrder)
	t.Run("cancel", TestPacerCancel)
	t.Run("wake", TestPacerWake)
}

// TestPacerManyStreams: 2,000 streams of 20 ms frames, each with its own
// phase, for 300 ms: every stream gets every frame, in order, never
// before it is due, and the pacer runs them on a few goroutines (its
// shards), not one per stream. Lateness is logged, not asserted.
func TestPacerManyStreams(t *testing.T) {
	const (
		streams = 2000
		frame   = 20 * time.Millisecond
		frames  = 15
	)
	p := NewPacer(2)
	start := time.Now().Add(50 * time.Millisecond)
	var wg sync.WaitGroup
	var maxLate atomic.Int64
	var sumLate atomic.Int64
	var earlyRuns, disorder atomic.Int32
	counts := make([]int32, streams)
	for i := range streams {
		due := start.Add(time.Duration(i%20) * time.Millisecond)
		wg.Add(1)
		n := 0
		var last time.Time
		p.Schedule(due, func(now time.Time) time.Time {
			if now.Before(due.Add(-early)) {
				earlyRuns.Add(1)
			}
			if !last.IsZero() && !now.After(last) {
				disorder.Add(1)
			}
			late := int64(now.Sub(due))
			sumLate.Add(late)
			for {
				m := maxLate.Load()
				if late <= m || maxLate.CompareAndSwap(m, late) {
					break
				}
			}
			last = now
			n++
			counts[i] = int32(n)
			if n == frames {
				wg.Done()
				return time.Time{}
			}
			due = due.Add(frame)
			return due
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the streams did not finish within 30 s")
	}
	for i, n := range counts {
		if n != frames {
			t.Fatalf("stream %d ran %d times, want %d", i, n, frames)
		}
	}
	if n := earlyRuns.Load(); n > 0 {
		t.Errorf("%d runs came before their due time", n)
	}
	if n := disorder.Load(); n > 0 {
		t.Errorf("%d runs of a stream were not after its previous run", n)
	}
	t.Logf("%d streams × %d frames: mean lateness %v, max %v", streams, frames,
		time.Duration(sumLate.Load()/(streams*frames)), time.Duration(maxLate.Load()))
	waitIdle(t, p)
}

// waitCount waits up to 10 s for n to reach want.
func waitCount(t *testing.T, what string, n *atomic.Int32, want int32) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); n.Load() < want; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %d after 10 s, want %d", what, n.Load(), want)
		}
	}
}

// waitIdle asserts that the pacer's goroutines end once no job is left.
func waitIdle(t *testing.T, p *Pacer) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		alive := 0
		for _, s := range p.shards {
			s.mu.Lock()
			if s.alive {
				alive++
			} else if s.clock != nil {
				t.Error("an idle shard kept its timerfd open")
			}
			s.mu.Unlock()
		}
		if alive == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d pacer goroutines still running 5 s after the last job ended", alive)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkPacer2000 runs 2,000 streams of 20 ms frames that do nothing
// for 2 s per op: what pacing alone costs per frame (CPU in the report)
// and how late frames run.
func BenchmarkPacer2000(b *testing.B) {
	const streams = 2000
	for b.Loop() {
		p := NewPacer(0)
		var wg sync.WaitGroup
		var lateSum, lateMax atomic.Int64
		var runs atomic.Int64
		start := time.Now().Add(10 * time.Millisecond)
		end := start.Add(2 * time.Second)
		for i := range streams {
			due := start.Add(time.Duration(i%20) * time.Millisecond)
			wg.Add(1)
			p.Schedule(due, func(now time.Time) time.Time {
				late := int64(now.Sub(due))
				lateSum.Add(late)
				if late > lateMax.Load() {
					lateMax.Store(late)
				}
				runs.Add(1)
				due = due.Add(20 * time.Millisecond)
				if due.After(end) {
					wg.Done()
					return time.Time{}
				}
				return due
			})
		}
		wg.Wait()
		b.ReportMetric(float64(lateSum.Load())/float64(runs.Load())/1e6, "ms-late-mean")
		b.ReportMetric(float64(lateMax.Load())/1e6, "ms-late-max")
	}
}

// TestPacerSameTickOrderStable: jobs that fall due in the same tick run
// in the same order pass after pass. Why it matters: the streams of a
// tick are sent one after another, so the order is each stream's offset
// into the burst; an order that flips each pass (the slot's list used to
// reverse) moves half the streams by the burst's whole length every
// other packet, jitter the receiver sees on top of the wake-up's.
func TestPacerSameTickOrderStable(t *testing.T) {
	p := NewPacer(1)
	const jobs, passes = 8, 6
	period := 20 * time.Millisecond
	var mu sync.Mutex
	var order [][]int // per pass, the jobs in the order they ran
	var wg sync.WaitGroup
	wg.Add(jobs * passes)
	first := p.Coarse(time.Now().Add(30 * time.Millisecond))
	for i := range jobs {
		due, n := first, 0
		p.Schedule(due, func(now time.Time) time.Time {
			mu.Lock()
			for len(order) <= n {
				order = append(order, nil)
			}
			order[n] = append(order[n], i)
			mu.Unlock()
			n++
			wg.Done()
			if n == passes {
				return time.Time{}
			}
			due = due.Add(period)
			return due
		})
	}
	wg.Wait()
	for n := 1; n < passes; n++ {
		if len(order[n]) != jobs {
			// A pass split over two wake-ups (a slow machine): the
			// order across them says nothing.
			continue
		}
		if !slices.Equal(order[n], order[0]) {
			t.Errorf("pass %d ran the tick's jobs in order %v, pass 0 in %v", n, order[n], order[0])
		}
	}
}

// BenchmarkPacerStreamJitter: 200 streams fall due in the same tick every
// 20 ms, each job busy for 5 µs (about a send), so a tick's jobs run as a
// 1 ms burst. It reports how much each stream's lateness varies from one
// packet to the next (its jitter as a receiver sees it): the median and
// the worst stream's largest step. A stream keeping its place in the
// burst steps by the wake-up's variation only; a place that changes each
// pass adds up to the burst's length.
func BenchmarkPacerStreamJitter(b *testing.B) {
	const streams, passes = 200, 50
	const work = 5 * time.Microsecond
	for b.Loop() {
		p := NewPacer(1)
		var wg sync.WaitGroup
		steps := make([][]time.Duration, streams)
		first := p.Coarse(time.Now().Add(20 * time.Millisecond))
		for i := range streams {
			due, n, prev := first, 0, time.Duration(-1)
			wg.Add(1)
			p.Schedule(due, func(now time.Time) time.Time {
				late := now.Sub(due)
				for t0 := time.Now(); time.Since(t0) < work; {
				}
				if prev >= 0 {
					steps[i] = append(steps[i], (late - prev).Abs())
				}
				prev = late
				if n++; n == passes {
					wg.Done()
					return time.Time{}
				}
				due = due.Add(20 * time.Millisecond)
				return due
			})
		}
		wg.Wait()
		var all []time.Duration
		var worst time.Duration
		for _, s := range steps {
			all = append(all, s...)
			for _, d := range s {
				worst = max(worst, d)
			}
		}
		slices.Sort(all)
		b.ReportMetric(float64(all[len(all)/2])/1e3, "µs-step-p50")
		b.ReportMetric(float64(all[len(all)*99/100])/1e3, "µs-step-p99")
		b.ReportMetric(float64(worst)/1e3, "µs-step-max")
	}
}
