//go:build unix

package media

import (
	"net"
	"net/netip"
	"sync"
	"syscall"
	"unsafe"
)

// rtcpSocket reads a separate (non-multiplexed) RTCP socket without
// blocking. A bridge runs at most two goroutines of its own, each blocked
// on its leg's RTP socket; the RTCP sockets carry about one packet every
// few seconds, so instead of a goroutine each they are drained from the RTP
// goroutine at every reporting interval.
type rtcpSocket struct {
	raw syscall.RawConn
}

func newRTCPSocket(c *net.UDPConn) rtcpSocket {
	if c == nil {
		return rtcpSocket{}
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return rtcpSocket{}
	}
	return rtcpSocket{raw: raw}
}

// drain calls fn for each packet waiting on the socket, at most
// maxRTCPDrain of them, and never waits.
func (s rtcpSocket) drain(buf []byte, fn func(pkt []byte, from netip.AddrPort)) {
	if s.raw == nil {
		return
	}
	r := rtcpReaders.Get().(*rtcpReader)
	r.buf = buf
	defer func() {
		r.buf = nil
		rtcpReaders.Put(r)
	}()
	for range maxRTCPDrain {
		r.n, r.errno = 0, 0
		// Returning true ends RawConn.Read at once: this is one
		// non-blocking recvfrom, not a wait for readiness.
		if err := s.raw.Read(r.fn); err != nil || r.errno != 0 || r.n <= 0 {
			return
		}
		from := sockaddrPort(&r.rsa)
		if !from.IsValid() {
			continue
		}
		fn(buf[:r.n], from)
	}
}

// rtcpReader is the state of one non-blocking recvfrom, pooled with its
// bound method value: a closure over locals and syscall.Recvfrom's
// Sockaddr would be garbage at every drain of every call's RTCP sockets.
type rtcpReader struct {
	buf   []byte
	rsa   syscall.RawSockaddrAny
	alen  uint32
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

var rtcpReaders = sync.Pool{New: func() any {
	r := &rtcpReader{}
	r.fn = r.recv
	return r
}}

func (r *rtcpReader) recv(fd uintptr) bool {
	r.alen = syscall.SizeofSockaddrAny
	n, _, e := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&r.buf[0])), uintptr(len(r.buf)),
		syscall.MSG_DONTWAIT, uintptr(unsafe.Pointer(&r.rsa)), uintptr(unsafe.Pointer(&r.alen)))
	r.n, r.errno = int(n), e
	return true
}
