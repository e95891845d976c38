package media

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// pacerClock wakes a pacer shard's goroutine at a time to the
// microsecond through a timerfd read by the runtime's network poller.
//
// Why: the runtime's own timers wake in whole milliseconds (epoll's
// timeout), so the pacer used to wake a little early on one and sleep the
// last 1.5 ms in a blocking nanosleep. That kept packets within 0.1 ms of
// their time, but each wake-up cost two sleeps, and a thread blocked in a
// system call for longer than 20 µs has its P handed to another thread:
// with silence every 400 ms instead of 20 the wake-ups, not the packets,
// became most of a held call's CPU (18 % of a core for 500 held calls,
// 5 % without the fine sleep). A timerfd fires on the kernel's
// high-resolution timer and wakes the goroutine through epoll like any
// socket: one system call to arm it, one read per wake-up, no thread
// handed off.
type pacerClock struct {
	f   *os.File // pollable: reads park the goroutine in the poller
	fd  int      // the raw descriptor, for timerfd_settime (f.Fd would make it blocking)
	buf [8]byte
}

// newPacerClock returns a clock, or nil when no timerfd can be made (the
// shard then sleeps on a runtime timer).
func newPacerClock() *pacerClock {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil
	}
	return &pacerClock{f: os.NewFile(uintptr(fd), "pacer-timerfd"), fd: fd}
}

// arm sets the one wake-up to at, replacing any earlier setting (and any
// expiry not yet read).
func (c *pacerClock) arm(at time.Time) {
	d := time.Until(at)
	if d <= 0 {
		d = 1 // zero would disarm it
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	_ = unix.TimerfdSettime(c.fd, 0, &spec, nil)
}

// wait blocks until the armed time has passed. An error means the
// descriptor cannot be waited on (not pollable: a read would return at
// once, and the shard spin); the shard then goes back to runtime timers.
func (c *pacerClock) wait() error {
	_, err := c.f.Read(c.buf[:])
	return err
}

func (c *pacerClock) close() { _ = c.f.Close() }
