//go:build unix

package media

import (
	"net"
	"net/netip"
	"syscall"
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
	for range maxRTCPDrain {
		var (
			n    int
			sa   syscall.Sockaddr
			rerr error
		)
		// Returning true ends RawConn.Read at once: this is one
		// non-blocking recvfrom, not a wait for readiness.
		err := s.raw.Read(func(fd uintptr) bool {
			n, sa, rerr = syscall.Recvfrom(int(fd), buf, syscall.MSG_DONTWAIT)
			return true
		})
		if err != nil || rerr != nil || n <= 0 {
			return
		}
		var from netip.AddrPort
		switch sa := sa.(type) {
		case *syscall.SockaddrInet4:
			from = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
		case *syscall.SockaddrInet6:
			from = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
		default:
			continue
		}
		fn(buf[:n], from)
	}
}
