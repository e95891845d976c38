package media

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// callReader reads both RTP sockets of a call on one goroutine, where a
// reader per direction (reader_unix.go) needs two.
//
// A parked goroutine keeps the stack it grew to while relaying, 4 KiB
// (the runtime halves a stack only while under a quarter of it is in use),
// and its runtime structures: 2 × 4.4 KiB a call with two readers,
// about a tenth of a relayed call's memory. The call's two sockets go
// into an epoll set of their own; the set's descriptor is itself
// pollable, so the runtime's poller wakes this goroutine when either
// socket has a datagram, as it wakes a reader for its one socket. Each
// wake-up asks the set which socket has datagrams (epoll_wait without
// waiting) and reads that one as a direction's reader does.
//
// The sockets themselves are out of the runtime's poller (rtpconn_linux.go
// says why). One goroutine a call keeps what sharing pollers among many
// calls lost (docs/performance.md, 2 December): the scheduler gives each
// call its own turn under contention, as before.
type callReader struct {
	b    *Bridge
	dirs [2]*direction
	// fds are the RTP sockets, by direction: the pairs are the bridge's
	// until Close has ended run, and the allocator closes no pair in use.
	fds  [2]uintptr
	ep   *os.File // the epoll set, registered with the runtime's poller
	raw  syscall.RawConn
	evs  [2]syscall.EpollEvent
	more [2]bool // a socket's reader stopped before its socket was empty
	fn   func(fd uintptr) bool
	werr error // epoll_wait's error that ended the reader
}

// newCallReader makes the reader of a call's two RTP sockets, pairs[SideA]
// and pairs[SideB], when the bridge is allocated: a call that cannot have
// its set (no descriptor left) is refused before it is answered, rather
// than answered and ended. Its directions come at Start (attach).
func newCallReader(b *Bridge, pairs [2]*portPair) (*callReader, error) {
	c := &callReader{b: b}
	for i, p := range pairs {
		if p == nil || p.rawRTP == nil {
			return nil, errors.New("media: call reader: a leg without an RTP socket")
		}
		if err := p.rawRTP.Control(func(fd uintptr) { c.fds[i] = fd }); err != nil {
			return nil, fmt.Errorf("media: call reader: side %s socket: %w", Side(i), err)
		}
	}
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("media: call reader: epoll_create1: %w", err)
	}
	for i, fd := range c.fds {
		// Edge-triggered (read explains), so that a socket read empty is
		// not reported again, nor wakes the poller, until a datagram comes.
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | epollET, Fd: int32(i)}
		if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev); err != nil {
			_ = syscall.Close(epfd)
			return nil, fmt.Errorf("media: call reader: epoll_ctl side %s: %w", Side(i), err)
		}
	}
	// Non-blocking, so that os.NewFile hands it to the runtime's poller.
	if err := syscall.SetNonblock(epfd, true); err != nil {
		_ = syscall.Close(epfd)
		return nil, fmt.Errorf("media: call reader: epoll set non-blocking: %w", err)
	}
	c.ep = os.NewFile(uintptr(epfd), "rtp-epoll")
	// A deadline is refused by a file the poller did not take: a read on
	// it would hold a thread, and Close could not end it.
	if err := c.ep.SetReadDeadline(time.Time{}); err != nil {
		_ = c.ep.Close()
		return nil, fmt.Errorf("media: call reader: epoll set not pollable: %w", err)
	}
	if c.raw, err = c.ep.SyscallConn(); err != nil {
		_ = c.ep.Close()
		return nil, fmt.Errorf("media: call reader: %w", err)
	}
	c.fn = c.read
	return c, nil
}

// attach gives the reader the call's directions, dirs[i] reading
// pairs[i] of newCallReader; before run.
func (c *callReader) attach(dirs [2]*direction) { c.dirs = dirs }

// epollET is EPOLLET as the uint32 of an event's mask (syscall declares it
// a negative int).
const epollET = 1 << 31

// run reads until the bridge closes (nil) or a socket keeps failing.
func (c *callReader) run() error {
	for {
		err := c.raw.Read(c.fn)
		if c.b.closing.Load() {
			return nil
		}
		for _, d := range c.dirs {
			if d.rd.errs >= maxReadErrors {
				return fmt.Errorf("media: read RTP from side %s: %w", d.side, d.rd.err)
			}
		}
		switch {
		case c.werr != nil:
			return fmt.Errorf("media: call reader: epoll_wait: %w", c.werr)
		case err == nil, errors.Is(err, os.ErrDeadlineExceeded):
			continue
		case errors.Is(err, net.ErrClosed), errors.Is(err, os.ErrClosed):
			return nil
		}
		return fmt.Errorf("media: call reader: %w", err)
	}
}

// read is called by the poller when a socket of the call may be readable.
// It returns false to wait for more, true to let run look around. The set
// is edge-triggered: it reports a socket once for the datagrams that came
// since it last did, so a socket a wake-up left datagrams on (a flood past
// readBatch) is remembered in more and read again at the next call, beside
// whatever the set reports then; neither side can starve the other.
func (c *callReader) read(ep uintptr) bool {
	ready := c.more
	for {
		n, err := syscall.EpollWait(int(ep), c.evs[:], 0)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			c.werr = err
			return true
		}
		for _, ev := range c.evs[:n] {
			if i := ev.Fd; i >= 0 && int(i) < len(ready) {
				ready[i] = true
			}
		}
		break
	}
	look := false
	for i, r := range ready {
		if r {
			c.more[i] = c.dirs[i].rd.read(c.fds[i])
			look = look || c.more[i]
		}
	}
	return look
}

// stop ends run's wait, as a read deadline in the past ends a reader's.
func (c *callReader) stop() { _ = c.ep.SetReadDeadline(pastDeadline) }

// close releases the epoll set; called once run has returned, or when the
// call never started.
func (c *callReader) close() { _ = c.ep.Close() }
