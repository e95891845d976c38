package media

import (
	"sync/atomic"
	"time"
)

// PacerLatenessBuckets are the upper bounds of PacerStats.Counts, in
// seconds. Up to 1 ms late is what the pacer promises a busy node; past
// 20 ms a listener hears it (a frame later than the next one's time).
var PacerLatenessBuckets = [...]float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1}

// PacerStats says how late the pacer ran its jobs: each job is a packet
// (or a few) that wagate originates on a clock, so this is how late
// silence, playout toward a leg, prompts, music and RTCP went out. It is
// measured from the start of the millisecond each job was due in (the
// pacer's resolution) to when the job began, so it includes the jobs run
// before it in the same wake-up.
//
// Operators watch it because it moves before the audio does: jobs
// running late mean the node is short of CPU, or its host (a virtual
// machine's hypervisor) wakes it late, and paced audio then leaves late or
// in bursts.
type PacerStats struct {
	// Counts[i] is the jobs that ran at most PacerLatenessBuckets[i]
	// late and more than the bound before it; the last element counts
	// those later than every bound.
	Counts [pacerBuckets]uint64
	// Late is the sum of every job's lateness.
	Late time.Duration
}

const pacerBuckets = len(PacerLatenessBuckets) + 1

// Runs is how many jobs the pacer has run.
func (s PacerStats) Runs() uint64 {
	var n uint64
	for _, c := range s.Counts {
		n += c
	}
	return n
}

// Over5ms is how many jobs began more than 5 ms late: past that a
// listener starts to hear it (the pacer's warning and the b2bua's
// sip.max_late_media_percent count these).
func (s PacerStats) Over5ms() uint64 {
	var n uint64
	for _, c := range s.Counts[pacerOver5ms:] {
		n += c
	}
	return n
}

// pacerOver5ms is the first bucket of jobs begun more than 5 ms late.
var pacerOver5ms = func() int {
	for i, le := range PacerLatenessBuckets {
		if le > 0.005 {
			return i
		}
	}
	return len(PacerLatenessBuckets)
}()

// pacerLateness is a shard's histogram. Only the shard's goroutine
// writes it (jobs run nowhere else), so an increment is a load and a
// store rather than a locked add; scrapes read it with atomic loads.
type pacerLateness struct {
	counts [pacerBuckets]atomic.Uint64
	late   atomic.Int64
}

// pacerBucketBounds are PacerLatenessBuckets as durations, compared on
// every job.
var pacerBucketBounds = func() (b [len(PacerLatenessBuckets)]time.Duration) {
	for i, s := range PacerLatenessBuckets {
		b[i] = time.Duration(s * float64(time.Second))
	}
	return b
}()

func (h *pacerLateness) observe(late time.Duration) {
	late = max(late, 0)
	i := 0
	for i < len(pacerBucketBounds) && late > pacerBucketBounds[i] {
		i++
	}
	c := &h.counts[i]
	c.Store(c.Load() + 1)
	h.late.Store(h.late.Load() + int64(late))
}

func (h *pacerLateness) addTo(s *PacerStats) {
	for i := range h.counts {
		s.Counts[i] += h.counts[i].Load()
	}
	s.Late += time.Duration(h.late.Load())
}

// Stats sums the shards' lateness histograms.
func (p *Pacer) Stats() PacerStats {
	var s PacerStats
	for _, sh := range p.shards {
		sh.late.addTo(&s)
	}
	return s
}
