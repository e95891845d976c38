package b2bua

import (
	"context"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wagate/wagate/configs"
	"github.com/wagate/wagate/media"
	sipedge "github.com/wagate/wagate/sip"
)

// Overload is why wagate refuses a new call with 503: the operator must be
// able to tell a full port range from a concurrency cap, a drain, a busy
// CPU or a dialer over its call rate (before, the reason was only in the
// info-level line of each refusal).
type overloadReason uint8

const (
	overPorts       overloadReason = iota // no free RTP port pair
	overConcurrency                       // sip.max_calls or an endpoint's max_calls
	overDraining                          // SIGTERM: no new calls
	overCPU                               // sip.max_cpu_percent
	overCPS                               // an endpoint's max_cps
	overMediaLate                         // sip.max_late_media_percent
	numOverload
)

var overloadNames = [numOverload]string{"ports", "concurrency", "draining", "cpu", "cps", "media_late"}

// overloadWarnEvery bounds the warn lines: one per reason per interval,
// with the count since the last one.
const overloadWarnEvery = 10 * time.Second

// overload counts 503s by reason and warns about them, rate-limited.
type overload struct {
	log    *slog.Logger
	counts [numOverload]atomic.Uint64
	mu     sync.Mutex
	warned [numOverload]time.Time
	since  [numOverload]uint64 // counts[r] at the last warning

	// cpu is the process's CPU use over the last sample, in percent of
	// all cores (0 until sampled).
	cpu atomic.Int64
	// pacer reads the media pacer's lateness (SetPacerStats; nil: none).
	pacer func() media.PacerStats
	// lateBP is the share of the pacer's jobs that began over 5 ms late
	// in the last sample, in hundredths of a percent; 0 until sampled and
	// when the sample ran too few jobs to tell.
	lateBP atomic.Int64
}

// minLateJobs: a sample with fewer paced jobs says nothing about the
// audio (a few late RTCP reports on a quiet node must not refuse calls).
// One call with audio toward WhatsApp runs 50 a second.
const minLateJobs = 100

// note counts one refusal and warns if this reason has not warned lately.
func (o *overload) note(r overloadReason, detail string) {
	n := o.counts[r].Add(1)
	now := time.Now()
	o.mu.Lock()
	if now.Sub(o.warned[r]) < overloadWarnEvery {
		o.mu.Unlock()
		return
	}
	prev := o.since[r]
	o.warned[r], o.since[r] = now, n
	o.mu.Unlock()
	o.log.Warn("overload: new calls refused with 503", "reason", overloadNames[r], "detail", detail,
		"refused_since_last_warning", n-prev, "refused_total", n)
}

// OverloadStats counts the 503s wagate gave new calls, by reason: ports,
// concurrency, draining, cpu, cps.
type OverloadStats map[string]uint64

func (o *overload) snapshot() OverloadStats {
	s := make(OverloadStats, numOverload)
	for r := range numOverload {
		s[overloadNames[r]] = o.counts[r].Load()
	}
	return s
}

// sample measures the process's CPU use and the media pacer's lateness
// every interval until ctx ends, for sip.max_cpu_percent and
// sip.max_late_media_percent.
func (o *overload) sample(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	last, lastAt := cpuTime(), time.Now()
	var lastPacer media.PacerStats
	if o.pacer != nil {
		lastPacer = o.pacer()
	}
	cores := float64(runtime.NumCPU())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cur := cpuTime()
			if wall := now.Sub(lastAt); wall > 0 {
				o.cpu.Store(int64(100 * float64(cur-last) / float64(wall) / cores))
			}
			last, lastAt = cur, now
			if o.pacer != nil {
				p := o.pacer()
				o.lateBP.Store(lateShareBP(lastPacer, p))
				lastPacer = p
			}
		}
	}
}

// lateShareBP is the share of the jobs run between two pacer snapshots
// that began over 5 ms late, in hundredths of a percent (0 for fewer than
// minLateJobs).
func lateShareBP(prev, cur media.PacerStats) int64 {
	jobs := cur.Runs() - prev.Runs()
	if jobs < minLateJobs {
		return 0
	}
	return int64((cur.Over5ms() - prev.Over5ms()) * 10000 / jobs)
}

// loadRefusal is the 503 a new call gets while the node is too loaded to
// carry it well (sip.max_cpu_percent, sip.max_late_media_percent), or nil.
// The calls already up go on: refusing new ones is what keeps their
// audio whole.
func (o *overload) loadRefusal(sip configs.SIP) *sipedge.Rejection {
	if limit := sip.MaxCPUPercent; limit > 0 {
		if cpu := o.cpu.Load(); cpu >= int64(limit) {
			o.note(overCPU, itoa(int(cpu))+"% of all cores")
			return &sipedge.Rejection{Code: 503, Reason: "Service Unavailable", Log: "overload: cpu", RetryAfter: 5 * time.Second,
				NodeUnavailable: sipedge.NodeOverloaded}
		}
	}
	if limit := sip.MaxLateMediaPercent; limit > 0 {
		if bp := o.lateBP.Load(); bp > int64(limit)*100 {
			o.note(overMediaLate, itoa(int(bp/100))+"% of paced media over 5 ms late in the last second")
			return &sipedge.Rejection{Code: 503, Reason: "Service Unavailable", Log: "overload: media late", RetryAfter: 5 * time.Second,
				NodeUnavailable: sipedge.NodeOverloaded}
		}
	}
	return nil
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpsGuard limits the rate of new calls per endpoint (max_cps): a token
// bucket of one second's worth, so a dialer's burst is answered 503 with
// Retry-After at once instead of failing mid-setup.
type cpsGuard struct {
	mu      sync.Mutex
	buckets map[string]*cpsBucket
	now     func() time.Time
}

type cpsBucket struct {
	tokens float64
	last   time.Time
}

func newCPSGuard() *cpsGuard {
	return &cpsGuard{buckets: make(map[string]*cpsBucket), now: time.Now}
}

// allow takes one new call of endpoint at rate calls/s (0: no limit).
func (g *cpsGuard) allow(endpoint string, rate int) bool {
	if rate <= 0 {
		return true
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	b := g.buckets[endpoint]
	if b == nil {
		b = &cpsBucket{tokens: float64(rate), last: now}
		g.buckets[endpoint] = b
	}
	b.tokens = min(float64(rate), b.tokens+now.Sub(b.last).Seconds()*float64(rate))
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
