package media

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// dropAll is a classic BPF program of one instruction: accept 0 bytes,
// i.e. drop the datagram before it is queued on the socket.
var dropAll = [1]unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}

// setDropFilter attaches (on) or detaches the drop-everything filter.
// Detaching a socket that has none is harmless.
func setDropFilter(raw syscall.RawConn, on bool) {
	if raw == nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		if on {
			prog := unix.SockFprog{Len: uint16(len(dropAll)), Filter: &dropAll[0]}
			_ = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog)
			return
		}
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0)
	})
}
