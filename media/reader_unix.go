//go:build unix

package media

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"
)

// readBatch bounds the datagrams one wake-up reads before the reader looks
// at its deadline again (Close ends a reader with a deadline in the past;
// a flood must not keep it from seeing that).
const readBatch = 64

// reader is a direction's read side. It waits for the RTP socket to be
// readable through the runtime's poller without holding a buffer, then
// reads every datagram waiting, each into a pooled buffer, with a
// non-blocking recvfrom that allocates nothing (net's ReadFrom needs a
// buffer held across the wait; syscall.Recvfrom allocates a Sockaddr).
type reader struct {
	d    *direction
	fn   func(fd uintptr) bool
	rsa  syscall.RawSockaddrAny
	alen uint32
	errs int
	err  error
}

func (r *reader) init(d *direction) {
	r.d = d
	r.fn = r.read
}

// run reads until the bridge closes (nil) or the socket keeps failing.
func (r *reader) run() error {
	d := r.d
	raw, err := d.in.pair.rtp.SyscallConn()
	if err != nil {
		return fmt.Errorf("media: side %s socket: %w", d.side, err)
	}
	for {
		err := raw.Read(r.fn)
		switch {
		case d.b.closing.Load():
			return nil
		case r.errs >= maxReadErrors:
			return fmt.Errorf("media: read RTP from side %s: %w", d.side, r.err)
		case err == nil, errors.Is(err, os.ErrDeadlineExceeded):
			continue
		case errors.Is(err, net.ErrClosed):
			return nil
		}
		return fmt.Errorf("media: side %s socket: %w", d.side, err)
	}
}

// read is called by the poller when the socket may be readable. It
// returns false to wait for more, true to let run look around. One
// buffer serves the datagrams of a wake-up until a playout buffer keeps
// one: a get and a put per wake-up rather than per datagram and again
// for the read that finds the socket empty, on a pool every reader
// shares.
func (r *reader) read(fd uintptr) bool {
	var buf *packetBuf
	for range readBatch {
		if r.d.b.closing.Load() {
			putBuf(buf)
			return true
		}
		if buf == nil {
			buf = getBuf()
		}
		r.alen = syscall.SizeofSockaddrAny
		n, _, e := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf.b[0])), packetBufSize,
			0, uintptr(unsafe.Pointer(&r.rsa)), uintptr(unsafe.Pointer(&r.alen)))
		switch e {
		case 0:
		case syscall.EAGAIN:
			putBuf(buf)
			return false
		case syscall.EINTR:
			continue
		default:
			r.err = e
			if r.errs++; r.errs >= maxReadErrors {
				putBuf(buf)
				return true
			}
			continue
		}
		r.errs = 0
		if r.d.handle(buf, int(n), sockaddrPort(&r.rsa), r.d.clock()) {
			buf = nil // a playout buffer holds it now
		}
	}
	putBuf(buf)
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
