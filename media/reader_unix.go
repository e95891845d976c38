//go:build unix

package media

import (
	"net/netip"
	"syscall"
	"unsafe"
)

// readBatch bounds the datagrams one wake-up reads before the reader lets
// others run and looks at the bridge again (Close must end a reader; a
// flood on one socket must not keep it, or the other sockets a poller
// serves, waiting).
const readBatch = 64

// reader is a direction's read side. It waits for the RTP socket to be
// readable without holding a buffer (reader_wait_*.go: how it waits),
// then reads every datagram waiting, each into a pooled buffer, with a
// non-blocking recvfrom that allocates nothing (net's ReadFrom needs a
// buffer held across the wait; syscall.Recvfrom allocates a Sockaddr).
type reader struct {
	d    *direction
	rsa  syscall.RawSockaddrAny
	alen uint32
	errs int
	err  error
	wait readerWait
}

func (r *reader) init(d *direction) {
	r.d = d
	r.wait.init(r)
}

// read is called when the socket fd may be readable. It returns false
// once the socket has nothing more (wait for the next readiness), true
// when it stopped early: the bridge is closing, a batch was read, or the
// socket keeps failing (r.errs reached maxReadErrors).
func (r *reader) read(fd uintptr) bool {
	for range readBatch {
		if r.d.b.closing.Load() {
			return true
		}
		buf := getBuf()
		r.alen = syscall.SizeofSockaddrAny
		n, _, e := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf.b[0])), packetBufSize,
			syscall.MSG_DONTWAIT, uintptr(unsafe.Pointer(&r.rsa)), uintptr(unsafe.Pointer(&r.alen)))
		switch e {
		case 0:
		case syscall.EAGAIN:
			putBuf(buf)
			return false
		case syscall.EINTR:
			putBuf(buf)
			continue
		default:
			putBuf(buf)
			r.err = e
			if r.errs++; r.errs >= maxReadErrors {
				return true
			}
			continue
		}
		r.errs = 0
		if !r.d.handle(buf, int(n), sockaddrPort(&r.rsa), r.d.clock()) {
			putBuf(buf)
		}
	}
	return true
}

// sockaddrPort converts a raw IPv4 or IPv6 socket address (IPv4-mapped
// addresses unmapped); anything else is the zero AddrPort, which no
// source check accepts.
func sockaddrPort(rsa *syscall.RawSockaddrAny) netip.AddrPort {
	switch int(rsa.Addr.Family) {
	case syscall.AF_INET:
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(rsa))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(p[0])<<8|uint16(p[1]))
	case syscall.AF_INET6:
		sa := (*syscall.RawSockaddrInet6)(unsafe.Pointer(rsa))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(p[0])<<8|uint16(p[1]))
	}
	return netip.AddrPort{}
}
