package media

import (
	"math/bits"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// A Pacer runs the timed work of many streams on a few goroutines: every
// packet wagate originates on a clock (silence and playout toward a leg,
// RTCP reports, RTP timeouts, and prompts or music on hold) is a job on
// it, not a goroutine or a timer of its own.
//
// Why: a held call used to cost one goroutine wake-up, one runtime timer
// and one system call per direction every 20 ms (15.7 µs per packet,
// 0.78 ms of CPU per held call-second). The pacer wakes once per
// millisecond at most, whatever the number of streams, and runs every job
// due in that millisecond in one go.
//
// It has shardsPerProc shards per CPU (GOMAXPROCS), each a goroutine and
// a timer wheel of 1 ms slots; jobs are spread over the shards. A shard's
// goroutine exists only while it has jobs: an idle pacer has no goroutine
// and costs nothing, and nothing needs closing.
//
// Timing: a job due at t runs in the shard's pass for the millisecond
// nearest t, so within ±0.5 ms of t plus however late the goroutine wakes
// (the Go runtime sleeps in whole milliseconds on Linux, so up to about
// 1 ms more on an idle machine, less on a busy one). Jobs that compute
// their next due time from the previous one, not from now, do not drift.
type Pacer struct {
	epoch  time.Time
	shards []*pacerShard
	next   atomic.Uint32
	watch  pacerWatch
}

const (
	// fineSleep is the last stretch of a wait slept precisely (a short
	// blocking nanosleep) rather than on a runtime timer.
	fineSleep  = 1500 * time.Microsecond
	pacerTick  = time.Millisecond
	wheelSlots = 1024 // a power of two; ≈ 1 s of 1 ms slots
	wheelMask  = wheelSlots - 1
	wheelWords = wheelSlots / 64
)

// coarseGrid is the grid of jobs that need no millisecond (RTCP reports,
// silence with DTX, timeouts): rounded up to it, the jobs of many
// streams fall due in the same tick and share the shard's wake-up, which
// costs more than the job itself.
const coarseGrid = 10 * time.Millisecond

// Coarse returns at rounded up to the pacer's coarse grid: a due time for
// a job that may run up to 10 ms late in exchange for sharing a wake-up.
func (p *Pacer) Coarse(at time.Time) time.Time {
	d := at.Sub(p.epoch)
	if r := d % coarseGrid; r > 0 {
		d += coarseGrid - r
	}
	return p.epoch.Add(d)
}

// shardsPerProc is how many shards a pacer has per GOMAXPROCS. A shard
// runs its due jobs one after another, and a transcoded call's play job
// is an Opus encode in libopus (about 150 µs on a slow host): with one
// shard per CPU, 45 transcoded calls per shard, the shard's goroutine,
// sharing its CPU with the readers and descheduled in every cgo call,
// fell 15 ms behind on average, and the playout toward WhatsApp dropped a
// fifth to a third of the frames to catch up, with a third of the
// machine idle. Four per CPU let the runtime run another shard's jobs
// meanwhile: at 90 transcoded calls on 2 CPUs, 99.9 % of the frames
// toward WhatsApp delivered instead of 74–92 %; held calls, whose jobs
// are tiny, cost the same (docs/performance.md, "More pacer shards").
const shardsPerProc = 4

// pacerTimersOnly makes shards sleep on runtime timers as where no
// timerfd exists (tests of that path).
var pacerTimersOnly atomic.Bool

// NewPacer returns a pacer with n shards (n <= 0: shardsPerProc per
// GOMAXPROCS).
func NewPacer(n int) *Pacer {
	if n <= 0 {
		n = shardsPerProc * runtime.GOMAXPROCS(0)
	}
	p := &Pacer{epoch: time.Now()}
	p.shards = make([]*pacerShard, n)
	for i := range p.shards {
		s := &pacerShard{p: p, wake: make(chan struct{}, 1)}
		p.shards[i] = s
	}
	return p
}

// PacerJob is one scheduled job. Its function runs on a pacer goroutine,
// never concurrently with itself; it must not block (it may send a few
// packets) and returns when the job should run next, or the zero Time to
// go idle until Wake.
type PacerJob struct {
	shard *pacerShard
	fn    func(now time.Time) time.Time

	// Guarded by shard.mu.
	at         int64 // due tick while queued
	prev, next *PacerJob
	queued     bool
	running    bool
	cancelled  bool
	wakeAt     int64 // a Wake that came while running; noWake if none
}

const noWake = int64(1<<63 - 1)

// Schedule adds a job that first runs at at (at once if at is past), or
// an idle job, to be started by Wake, when at is the zero Time.
func (p *Pacer) Schedule(at time.Time, fn func(now time.Time) time.Time) *PacerJob {
	s := p.shards[int(p.next.Add(1))%len(p.shards)]
	j := &PacerJob{shard: s, fn: fn, wakeAt: noWake}
	if at.IsZero() {
		return j
	}
	s.mu.Lock()
	s.insertLocked(j, s.tickOf(at))
	s.mu.Unlock()
	return j
}

// Wake makes the job run no later than at (the zero Time: at once):
// sooner than it was due, or at all when it had gone idle. A job
// cancelled stays cancelled.
func (j *PacerJob) Wake(at time.Time) {
	s := j.shard
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tickOf(at)
	switch {
	case j.cancelled:
	case j.running:
		j.wakeAt = min(j.wakeAt, t)
	case j.queued:
		if t < j.at {
			s.unlinkLocked(j)
			s.insertLocked(j, t)
		}
	default:
		s.insertLocked(j, t)
	}
}

// Cancel stops the job: it is not run again. A run already under way on
// the pacer goroutine may still finish; callers that must know it has
// (before reusing what the job writes to) serialise with the job through
// a lock of their own, as the relay does.
func (j *PacerJob) Cancel() {
	s := j.shard
	s.mu.Lock()
	j.cancelled = true
	if j.queued {
		s.unlinkLocked(j)
	}
	s.mu.Unlock()
}

// pacerShard is one goroutine's timer wheel.
type pacerShard struct {
	p    *Pacer
	wake chan struct{} // a job was added before the goroutine's next wake-up

	mu      sync.Mutex
	slots   [wheelSlots]*PacerJob // per slot, a doubly linked list
	used    [wheelWords]uint64    // bitmap of non-empty slots
	cur     int64                 // the next tick to process
	queued  int                   // jobs in the wheel
	alive   bool                  // the goroutine is running
	sleepTo int64                 // the tick the goroutine sleeps until
	// clock wakes the goroutine while it is alive (nil: runtime timers
	// and wake).
	clock *pacerClock
	batch []*PacerJob
	late  pacerLateness
}

// tickOf converts a time to the nearest tick; past times become the next
// tick to process, and the zero Time (at once) now's tick.
//
// Why now's tick for the zero Time and not s.cur: s.cur is the tick after
// the shard's last pass, as old as the shard's sleep (up to 400 ms in a
// DTX gap). A job woken to run at once and run at once was counted as
// late as that, and sip.max_late_media_percent refused calls on a node
// keeping time.
func (s *pacerShard) tickOf(at time.Time) int64 {
	if at.IsZero() {
		return max(s.cur, int64(time.Since(s.p.epoch)/pacerTick))
	}
	d := at.Sub(s.p.epoch)
	return max(s.cur, int64((d+pacerTick/2)/pacerTick))
}

func (s *pacerShard) insertLocked(j *PacerJob, t int64) {
	if j.cancelled {
		return
	}
	t = max(t, s.cur)
	i := t & wheelMask
	j.at, j.queued = t, true
	j.prev, j.next = nil, s.slots[i]
	if j.next != nil {
		j.next.prev = j
	}
	s.slots[i] = j
	s.used[i>>6] |= 1 << (i & 63)
	s.queued++
	switch {
	case !s.alive:
		s.alive = true
		s.sleepTo = t
		if !pacerTimersOnly.Load() {
			s.clock = newPacerClock()
		}
		go s.loop()
	case t < s.sleepTo:
		s.sleepTo = t
		if s.clock != nil {
			s.clock.arm(s.timeOf(t))
			return
		}
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

func (s *pacerShard) unlinkLocked(j *PacerJob) {
	i := j.at & wheelMask
	if j.prev != nil {
		j.prev.next = j.next
	} else {
		s.slots[i] = j.next
	}
	if j.next != nil {
		j.next.prev = j.prev
	}
	if s.slots[i] == nil {
		s.used[i>>6] &^= 1 << (i & 63)
	}
	j.prev, j.next, j.queued = nil, nil, false
	s.queued--
}

// nextTickLocked is the first tick at or after s.cur whose slot holds a
// job (which may still be a turn of the wheel away), or -1.
func (s *pacerShard) nextTickLocked() int64 {
	if s.queued == 0 {
		return -1
	}
	start := s.cur & wheelMask
	for k := int64(0); k <= wheelWords; k++ {
		w := (start>>6 + k) % wheelWords
		bitsW := s.used[w]
		if k == 0 {
			bitsW &= ^uint64(0) << (start & 63)
		}
		if bitsW == 0 {
			continue
		}
		slot := w<<6 + int64(bits.TrailingZeros64(bitsW))
		return s.cur + (slot-start)&wheelMask
	}
	return s.cur // unreachable with queued > 0
}

// loop is the shard's goroutine. It ends when the shard has no job left.
func (s *pacerShard) loop() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		next := s.nextTickLocked()
		if next < 0 {
			// Jobs only run inside runDue, on this goroutine: none is
			// running now, and none is queued.
			s.alive = false
			if s.clock != nil {
				s.clock.close()
				s.clock = nil
			}
			s.mu.Unlock()
			return
		}
		s.sleepTo = next
		target := s.timeOf(next)
		if c := s.clock; c != nil {
			// Armed under mu, so an earlier job's insert, which re-arms
			// it, cannot be overwritten by this later time.
			c.arm(target)
			s.mu.Unlock()
			if err := c.wait(); err != nil {
				s.mu.Lock()
				if s.clock == c {
					c.close()
					s.clock = nil
				}
				s.mu.Unlock()
			}
			s.runDue(time.Now())
			continue
		}
		s.mu.Unlock()

		if d := time.Until(target); d > fineSleep {
			// The runtime's timers wake in whole milliseconds (epoll's
			// timeout), up to a millisecond late: wake a little early
			// and sleep the rest precisely.
			timer.Reset(d - fineSleep)
			select {
			case <-timer.C:
			case <-s.wake:
				// Since Go 1.23 a stopped timer delivers no stale tick.
				timer.Stop()
				continue
			}
		}
		if d := time.Until(target); d > 0 {
			preciseSleep(d)
		}
		s.runDue(time.Now())
	}
}

// timeOf is when tick t begins.
func (s *pacerShard) timeOf(t int64) time.Time {
	return s.p.epoch.Add(time.Duration(t) * pacerTick)
}

// runDue runs every job due up to now.
func (s *pacerShard) runDue(now time.Time) {
	nowTick := int64(now.Sub(s.p.epoch) / pacerTick)
	s.mu.Lock()
	batch := s.batch[:0]
	for s.cur <= nowTick {
		i := s.cur & wheelMask
		from := len(batch)
		for j := s.slots[i]; j != nil; {
			nx := j.next
			if j.at <= nowTick {
				s.unlinkLocked(j)
				j.running = true
				batch = append(batch, j)
			}
			j = nx
		}
		// A slot's list is newest first (jobs go in at its head): run
		// it oldest first, so that jobs run and put back in this order
		// come out in it again next pass. A tick's jobs are sent one
		// after another; a stable order keeps each stream's offset into
		// that burst the same, where a list reversed every pass moved
		// half the streams by the whole burst every other packet.
		slices.Reverse(batch[from:])
		if s.queued == 0 {
			s.cur = nowTick + 1
			break
		}
		s.cur++
	}
	s.mu.Unlock()

	for k, j := range batch {
		// j.at is not written while the job runs (Wake only notes
		// wakeAt then).
		start := time.Now()
		s.late.observe(start.Sub(s.timeOf(j.at)))
		next := j.fn(start)
		s.mu.Lock()
		j.running = false
		t := noWake
		if !next.IsZero() {
			t = s.tickOf(next)
		}
		t = min(t, j.wakeAt)
		j.wakeAt = noWake
		if t != noWake {
			s.insertLocked(j, t)
		}
		s.mu.Unlock()
		batch[k] = nil
	}
	s.batch = batch[:0]
	s.p.checkLate(now)
}
