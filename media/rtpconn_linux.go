package media

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// rtpConn is a pair's RTP socket on Linux: the net package's socket,
// taken out of the Go runtime's poller.
//
// The call's reader waits for both RTP sockets of a call through an epoll
// set of its own (callreader_linux.go). A socket the runtime's poller
// also watched would post every datagram twice, once to the runtime's
// epoll and once through the call's set: measured, that cost 10 % more
// CPU per relayed packet than a reader per socket, where without it the
// call reader costs the same (docs/performance.md, 3 December). So the
// socket is bound with the net package (the allocator's listen, which
// tests replace), its descriptor duplicated, and the net.UDPConn closed:
// closing removes it from the runtime's poller, and the duplicate keeps
// the socket. Writes are non-blocking sendto calls; a full send buffer
// drops the packet (late audio is no use), where the net package would
// wait.
type rtpConn struct {
	// mu guards fd: held shared for each use, exclusively to close, so
	// that no write or control lands on a descriptor number reused
	// after Close.
	mu     sync.RWMutex
	fd     int // -1 once closed
	family int
	laddr  *net.UDPAddr
}

// newRTPConn takes c's socket: c is closed whatever the outcome.
func newRTPConn(c *net.UDPConn) (*rtpConn, error) {
	defer c.Close()
	laddr, _ := c.LocalAddr().(*net.UDPAddr)
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("media: RTP socket: %w", err)
	}
	fd, family := -1, syscall.AF_INET
	var derr error
	if err := raw.Control(func(s uintptr) {
		// F_DUPFD_CLOEXEC: the duplicate is not inherited by children
		// (the events store's helpers, a hook).
		r, _, e := syscall.Syscall(syscall.SYS_FCNTL, s, syscall.F_DUPFD_CLOEXEC, 0)
		if e != 0 {
			derr = e
			return
		}
		fd = int(r)
		if sa, err := syscall.Getsockname(fd); err == nil {
			if _, ok := sa.(*syscall.SockaddrInet6); ok {
				family = syscall.AF_INET6
			}
		}
	}); err != nil {
		return nil, fmt.Errorf("media: RTP socket: %w", err)
	}
	if derr != nil {
		return nil, fmt.Errorf("media: RTP socket: duplicate descriptor: %w", derr)
	}
	// The duplicate shares the socket's O_NONBLOCK, which the net package
	// set: reads and writes never wait.
	return &rtpConn{fd: fd, family: family, laddr: laddr}, nil
}

// WriteToUDPAddrPort sends b to addr without waiting and without
// allocating.
func (s *rtpConn) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	var sa4 syscall.RawSockaddrInet4
	var sa6 syscall.RawSockaddrInet6
	var sa unsafe.Pointer
	var salen uintptr
	ip := addr.Addr()
	port := addr.Port()
	switch {
	case s.family == syscall.AF_INET && ip.Is4():
		sa4.Family = syscall.AF_INET
		sa4.Addr = ip.As4()
		p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		sa, salen = unsafe.Pointer(&sa4), unsafe.Sizeof(sa4)
	case s.family == syscall.AF_INET6 && ip.IsValid():
		sa6.Family = syscall.AF_INET6
		sa6.Addr = ip.As16() // an IPv4 address as IPv4-mapped
		p := (*[2]byte)(unsafe.Pointer(&sa6.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		sa, salen = unsafe.Pointer(&sa6), unsafe.Sizeof(sa6)
	default:
		return 0, &net.OpError{Op: "write", Net: "udp", Source: s.laddr, Addr: net.UDPAddrFromAddrPort(addr), Err: syscall.EAFNOSUPPORT}
	}
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.fd < 0 {
		return 0, net.ErrClosed
	}
	for {
		n, _, e := syscall.Syscall6(syscall.SYS_SENDTO, uintptr(s.fd), uintptr(p), uintptr(len(b)), 0, uintptr(sa), salen)
		switch e {
		case 0:
			return int(n), nil
		case syscall.EINTR:
			continue
		}
		return 0, &net.OpError{Op: "write", Net: "udp", Source: s.laddr, Addr: net.UDPAddrFromAddrPort(addr), Err: e}
	}
}

// LocalAddr is the address the socket is bound to.
func (s *rtpConn) LocalAddr() net.Addr { return s.laddr }

// SetReadDeadline does nothing: no read waits on the socket itself (the
// call's reader waits on its epoll set, and stops by that set's
// deadline).
func (s *rtpConn) SetReadDeadline(time.Time) error { return nil }

// SyscallConn gives the descriptor to Control (the allocator's filters and
// drains); Read and Write through it are not supported.
func (s *rtpConn) SyscallConn() (syscall.RawConn, error) { return rtpRaw{s}, nil }

// Close closes the socket; closing twice is harmless.
func (s *rtpConn) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		return nil
	}
	err := syscall.Close(s.fd)
	s.fd = -1
	return err
}

// errWaitUnsupported: a wait on a socket the runtime's poller does not
// watch.
var errWaitUnsupported = errors.New("waiting on the socket is not supported")

// rtpRaw is an rtpConn's syscall.RawConn.
type rtpRaw struct{ s *rtpConn }

func (r rtpRaw) Control(f func(fd uintptr)) error {
	r.s.mu.RLock()
	defer r.s.mu.RUnlock()
	if r.s.fd < 0 {
		return net.ErrClosed
	}
	f(uintptr(r.s.fd))
	return nil
}

func (rtpRaw) Read(func(fd uintptr) bool) error {
	return fmt.Errorf("media: RTP socket: %w", errWaitUnsupported)
}

func (rtpRaw) Write(func(fd uintptr) bool) error {
	return fmt.Errorf("media: RTP socket: %w", errWaitUnsupported)
}
