// Pacer: one goroutine that sends every stream's frames (and sender
// reports) on time, and measures how late it ran.

package main

import (
	"sync"
	"time"
)

// pacer sends every stream's frames from one goroutine.
type pacer struct {
	mu      sync.Mutex
	streams []*stream
	added   int
	eps     map[*endpoint]bool

	// Generator health, read under mu.
	maxLate  time.Duration
	late5ms  uint64 // frames sent more than 5 ms after their time
	frames   uint64
	resyncs  uint64
	stop     chan struct{}
	finished chan struct{}
}

func newPacer() *pacer {
	p := &pacer{stop: make(chan struct{}), finished: make(chan struct{}), eps: map[*endpoint]bool{}}
	go p.run()
	return p
}

// add starts sending s's loop: its first frame at the next free phase of
// the 20 ms frame, so streams are spread evenly over it.
func (p *pacer) add(s *stream, lp *loop) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s.lp = lp
	phase := time.Duration(p.added%10) * pacerTick
	p.added++
	s.next = time.Now().Truncate(frameDur).Add(frameDur + phase)
	p.streams = append(p.streams, s)
	p.eps[s.ep] = true
}

// addEndpoint has the pacer drain a polled endpoint after every tick (and
// flush what is queued on it).
func (p *pacer) addEndpoint(e *endpoint) {
	p.mu.Lock()
	p.eps[e] = true
	p.mu.Unlock()
}

// health returns and resets the pacer's lateness counters.
func (p *pacer) health() (maxLate time.Duration, late5, frames, resyncs uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	maxLate, late5, frames, resyncs = p.maxLate, p.late5ms, p.frames, p.resyncs
	p.maxLate, p.late5ms, p.frames, p.resyncs = 0, 0, 0, 0
	return
}

// sentOnsets returns a copy of the burst onsets s has sent so far.
func (p *pacer) sentOnsets(s *stream) []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), s.sentOnsets...)
}

func (p *pacer) close() {
	close(p.stop)
	<-p.finished
}

func (p *pacer) run() {
	defer close(p.finished)
	t := time.NewTicker(pacerTick)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		p.mu.Lock()
		live := p.streams[:0]
		for _, s := range p.streams {
			if s.muted.Load() {
				continue
			}
			live = append(live, s)
			if now.Sub(s.next) > time.Second {
				// More than a second behind: skip ahead rather than burst.
				p.resyncs++
				s.next = now
			}
			for !s.next.After(now) {
				late := now.Sub(s.next)
				p.frames++
				if late > p.maxLate {
					p.maxLate = late
				}
				if late > 5*time.Millisecond {
					p.late5ms++
				}
				s.queueFrame(now)
				s.next = s.next.Add(frameDur)
			}
		}
		clear(p.streams[len(live):])
		p.streams = live
		for e := range p.eps {
			if e.outN > 0 {
				e.flush()
			}
		}
		for e := range p.eps {
			if e.polled {
				e.drain()
			}
		}
		p.mu.Unlock()
	}
}
