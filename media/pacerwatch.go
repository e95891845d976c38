package media

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// The pacer tells the log when it runs late, so that an operator without
// a Prometheus alert learns that paced audio (silence, playout toward
// WhatsApp, prompts) leaves late before callers complain. One line per
// window at most, with the window's figures, from whichever shard looks
// first; nothing while it keeps time.
var (
	// pacerWarnEvery is the window: at most one warning per window.
	pacerWarnEvery = 10 * time.Second
	// pacerWarnMinJobs: a window with fewer jobs says nothing (a few
	// late RTCP reports on an idle node are no news).
	pacerWarnMinJobs uint64 = 500
)

// pacerWarnShare is the share of a window's jobs begun more than 5 ms
// late above which it warns: past that a listener starts to hear it.
const pacerWarnShare = 0.01

// pacerWatch is the pacer's check of its own lateness.
type pacerWatch struct {
	log  atomic.Pointer[slog.Logger] // nil: no warnings
	next atomic.Int64                // the next check, ns after Pacer.epoch

	mu      sync.Mutex
	last    PacerStats // at the last check
	every   time.Duration
	minJobs uint64
}

// WarnWhenLate makes the pacer log a warning, at most once per window of
// 10 s, when more than 1 % of a window's jobs began over 5 ms late. Call
// it before scheduling jobs.
func (p *Pacer) WarnWhenLate(log *slog.Logger) {
	w := &p.watch
	w.mu.Lock()
	w.every, w.minJobs = pacerWarnEvery, pacerWarnMinJobs
	w.mu.Unlock()
	w.log.Store(log)
}

// checkLate runs on a shard's goroutine after each batch: one atomic load
// unless a window has passed.
func (p *Pacer) checkLate(now time.Time) {
	w := &p.watch
	ns := int64(now.Sub(p.epoch)) // monotonic: a wall-clock step moves no window
	if ns < w.next.Load() {
		return
	}
	log := w.log.Load()
	if log == nil || !w.mu.TryLock() {
		return
	}
	if ns < w.next.Load() { // another shard checked meanwhile
		w.mu.Unlock()
		return
	}
	first := w.next.Load() == 0
	every, minJobs := w.every, w.minJobs
	w.next.Store(ns + int64(every))
	cur := p.Stats()
	prev := w.last
	w.last = cur
	w.mu.Unlock()
	if first {
		return // the window starts now
	}
	jobs, late := cur.Runs()-prev.Runs(), cur.Over5ms()-prev.Over5ms()
	if jobs < minJobs || float64(late) <= pacerWarnShare*float64(jobs) {
		return
	}
	log.Warn("media: pacer running late: paced audio (silence, playout toward WhatsApp, prompts) leaves late; the node is short of CPU, or its host wakes it late (test/load/timerprobe)",
		"jobs", jobs, "over_5ms", late, "over_5ms_percent", 100*float64(late)/float64(jobs),
		"mean_late_ms", float64((cur.Late-prev.Late)/time.Microsecond)/1000/float64(jobs), "window", every.String())
}
