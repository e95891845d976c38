//go:build unix

package media

import "syscall"

// maxDrain bounds the datagrams thrown away when a kept pair is handed out
// again (a socket without a filter may have queued a receive buffer's
// worth).
const maxDrain = 4096

// drainSocket reads and discards every datagram queued on the socket,
// without waiting.
func drainSocket(raw syscall.RawConn) {
	if raw == nil {
		return
	}
	buf := getBuf()
	defer putBuf(buf)
	_ = raw.Control(func(fd uintptr) {
		for range maxDrain {
			n, _, err := syscall.Recvfrom(int(fd), buf.b[:], syscall.MSG_DONTWAIT)
			if err != nil || n < 0 {
				return
			}
		}
	})
}
