//go:build linux

package media

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// On Linux the readers of every call share a few goroutines, one per CPU,
// each blocked in epoll_wait on its own epoll set, instead of a goroutine
// per direction parked in the runtime's poller. A parked reader goroutine
// cost its stack (4 KiB once it had relayed a packet) and its descriptor,
// about 9 KiB of a relayed call's memory for its two directions; a poller
// costs that once for thousands of sockets. The sockets stay the net
// package's (their deadlines, close and the runtime's own registration
// are untouched); a poller only learns that one is readable and calls its
// reader, which reads with non-blocking recvfrom as before.
//
// Readiness is level-triggered: a reader that stops after a batch is
// called again on the next round, after the other sockets that were
// ready, so one flooded socket cannot starve the others.

// pollWakeSlot is the event data of a poller's wake-up eventfd.
const pollWakeSlot = -1

// pollEvents is how many readiness events one epoll_wait returns at most.
const pollEvents = 128

// pollShard is one poller: an epoll set, the readers registered in it and
// the goroutine that waits on it. The goroutine runs while any reader is
// registered and ends when the last one is removed.
type pollShard struct {
	epfd, wakefd int

	mu      sync.Mutex
	slots   []pollSlot // indexed by the events' slot number
	free    []int32
	n       int  // readers registered
	running bool // the goroutine is running (or about to)
}

// pollSlot is a registered reader. gen tells a stale event (of a reader
// removed after epoll_wait returned it) from one of the slot's new owner.
type pollSlot struct {
	r   *reader
	gen uint32
}

var pollers struct {
	once   sync.Once
	shards []*pollShard
	err    error
	next   atomic.Uint32
}

// pollShardFor returns the next poller, round robin, creating them (one
// per GOMAXPROCS) on first use.
func pollShardFor() (*pollShard, error) {
	pollers.once.Do(func() {
		n := min(max(runtime.GOMAXPROCS(0), 1), 16)
		for range n {
			s, err := newPollShard()
			if err != nil {
				pollers.err = err
				return
			}
			pollers.shards = append(pollers.shards, s)
		}
	})
	if pollers.err != nil {
		return nil, pollers.err
	}
	return pollers.shards[int(pollers.next.Add(1))%len(pollers.shards)], nil
}

func newPollShard() (*pollShard, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("media: epoll_create1: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("media: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: pollWakeSlot}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wakefd)
		return nil, fmt.Errorf("media: epoll_ctl eventfd: %w", err)
	}
	return &pollShard{epfd: epfd, wakefd: wakefd}, nil
}

// readerWait is a reader's registration in a poller.
type readerWait struct {
	// mu is held while the poller reads for this reader; stop takes it
	// to wait for a read under way.
	mu      sync.Mutex
	stopped bool // guarded by mu: no read after stop
	shard   *pollShard
	fd      int
	slot    int32 // guarded by shard.mu
	gen     uint32
	added   bool
}

func (w *readerWait) init(*reader) {}

// start begins reading (Bridge.Start). A socket that keeps failing ends
// the call's media through Bridge.fail.
func (r *reader) start() {
	raw := r.d.in.pair.rawRTP
	if raw == nil {
		return
	}
	s, err := pollShardFor()
	if err == nil {
		fd := -1
		if cerr := raw.Control(func(f uintptr) { fd = int(f) }); cerr != nil {
			err = cerr
		} else {
			r.wait.fd = fd
			err = s.add(r)
		}
	}
	if err != nil {
		r.d.b.fail(fmt.Errorf("media: side %s socket: %w", r.d.side, err))
	}
}

// stop ends reading and returns once no packet is being handled
// (Bridge.Close, after closing is set). The socket stays open.
func (r *reader) stop() {
	if s := r.wait.shard; s != nil {
		s.remove(r)
	}
	r.wait.mu.Lock()
	r.wait.stopped = true
	r.wait.mu.Unlock()
}

// ready is the poller's call when r's socket is readable.
func (r *reader) ready(s *pollShard) {
	w := &r.wait
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return
	}
	r.read(uintptr(w.fd))
	failed := r.errs >= maxReadErrors
	closing := r.d.b.closing.Load()
	w.mu.Unlock()
	switch {
	case failed:
		s.remove(r)
		r.d.b.fail(fmt.Errorf("media: read RTP from side %s: %w", r.d.side, r.err))
	case closing:
		// Close removes it too, in a moment; until then a readable
		// socket would be reported on every round.
		s.remove(r)
	}
}

func (s *pollShard) add(r *reader) error {
	w := &r.wait
	s.mu.Lock()
	defer s.mu.Unlock()
	var slot int32
	if n := len(s.free); n > 0 {
		slot = s.free[n-1]
		s.free = s.free[:n-1]
	} else {
		slot = int32(len(s.slots))
		s.slots = append(s.slots, pollSlot{})
	}
	gen := s.slots[slot].gen
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: slot, Pad: int32(gen)}
	if err := unix.EpollCtl(s.epfd, unix.EPOLL_CTL_ADD, w.fd, &ev); err != nil {
		s.free = append(s.free, slot)
		return fmt.Errorf("epoll_ctl add: %w", err)
	}
	s.slots[slot].r = r
	w.shard, w.slot, w.gen, w.added = s, slot, gen, true
	s.n++
	relayReaders.Add(1)
	if !s.running {
		s.running = true
		go s.loop()
	}
	return nil
}

// remove takes r out of the poller; removing twice is harmless. A read
// under way may still finish: stop waits for it.
func (s *pollShard) remove(r *reader) {
	w := &r.wait
	s.mu.Lock()
	defer s.mu.Unlock()
	if !w.added {
		return
	}
	w.added = false
	_ = unix.EpollCtl(s.epfd, unix.EPOLL_CTL_DEL, w.fd, nil)
	s.slots[w.slot] = pollSlot{gen: w.gen + 1}
	s.free = append(s.free, w.slot)
	s.n--
	relayReaders.Add(-1)
	if s.n == 0 {
		// Wake the goroutine so that it ends.
		var one [8]byte
		binary.NativeEndian.PutUint64(one[:], 1)
		_, _ = unix.Write(s.wakefd, one[:])
	}
}

// loop is the poller's goroutine: it waits for readable sockets and calls
// their readers, until no reader is left.
func (s *pollShard) loop() {
	events := make([]unix.EpollEvent, pollEvents)
	var drain [8]byte
	for {
		n, err := unix.EpollWait(s.epfd, events, -1)
		if err != nil {
			n = 0 // EINTR; nothing else is expected of a valid epoll set
		}
		for i := range events[:n] {
			ev := &events[i]
			if ev.Fd == pollWakeSlot {
				_, _ = unix.Read(s.wakefd, drain[:])
				continue
			}
			var r *reader
			s.mu.Lock()
			if sl := s.slots[ev.Fd]; sl.gen == uint32(ev.Pad) {
				r = sl.r
			}
			s.mu.Unlock()
			if r != nil {
				r.ready(s)
			}
		}
		s.mu.Lock()
		if s.n == 0 {
			s.running = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
	}
}
