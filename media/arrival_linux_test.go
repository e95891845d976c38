package media

import (
	"net"
	"syscall"
	"time"
	"unsafe"
)

// stampArrivals asks the kernel to stamp each datagram c receives with
// its arrival (SO_TIMESTAMPNS), which recvAt reads: a test goroutine that
// waits for a core on a busy machine reads a packet late, and time.Now()
// then says the packet came late.
func stampArrivals(c *net.UDPConn) {
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	})
}

// arrivalOf returns the kernel's arrival stamp in oob, if there is one.
func arrivalOf(oob []byte) (time.Time, bool) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}, false
	}
	for _, m := range msgs {
		if m.Header.Level == syscall.SOL_SOCKET && m.Header.Type == syscall.SCM_TIMESTAMPNS && len(m.Data) >= int(unsafe.Sizeof(syscall.Timespec{})) {
			ts := (*syscall.Timespec)(unsafe.Pointer(&m.Data[0]))
			return time.Unix(int64(ts.Sec), int64(ts.Nsec)), true
		}
	}
	return time.Time{}, false
}
