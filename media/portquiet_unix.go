//go:build unix

package media

import (
	"syscall"
	"unsafe"
)

// setQuiet makes a free pair's socket deaf (connected to self) or hear
// again (self nil).
//
// Deaf is connected to itself: a connected UDP socket receives only from
// the address it is connected to, so the kernel matches nothing sent to
// the port by anyone else to it, queues nothing and answers ICMP port
// unreachable, as it did when free pairs were closed (a peer still
// sending to a finished call is told). The port stays bound. Disconnecting
// (AF_UNSPEC) restores it, wildcard address included. Both are a system
// call each; a socket filter, the other way to drop in the kernel, is
// compiled on every attach and cost more than binding anew.
func setQuiet(raw syscall.RawConn, self syscall.Sockaddr) {
	if raw == nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		if self == nil {
			sa := syscall.RawSockaddr{Family: syscall.AF_UNSPEC}
			_, _, _ = syscall.Syscall(syscall.SYS_CONNECT, fd, uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
			return
		}
		_ = syscall.Connect(int(fd), self)
	})
}

// selfAddr is what a socket connects to to go deaf: its own address,
// loopback for a wildcard. nil when it cannot tell.
func selfAddr(raw syscall.RawConn) syscall.Sockaddr {
	var self syscall.Sockaddr
	_ = raw.Control(func(fd uintptr) {
		local, err := syscall.Getsockname(int(fd))
		if err != nil {
			return
		}
		switch sa := local.(type) {
		case *syscall.SockaddrInet4:
			if sa.Addr == [4]byte{} {
				sa.Addr = [4]byte{127, 0, 0, 1}
			}
			self = sa
		case *syscall.SockaddrInet6:
			if sa.Addr == [16]byte{} {
				sa.Addr[15] = 1 // ::1
			}
			self = sa
		}
	})
	return self
}
