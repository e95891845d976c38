// Package kstamp reads the arrival stamps the kernel puts on received
// datagrams (SO_TIMESTAMPNS), for the media tests and the load tools in
// test/load: a test or tool that reads a packet late on a busy machine
// would otherwise charge wagate with its own lateness. Only tests and
// tools import it.
package kstamp

import (
	"encoding/binary"
	"syscall"
	"time"
	"unsafe"
)

// Enable asks the kernel to stamp each datagram fd receives with its
// arrival. Call it from syscall.RawConn.Control.
func Enable(fd uintptr) error {
	return syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
}

// Arrival returns the arrival stamped in oob, as a time on the monotonic
// clock of now (read just after the receive), or now if oob holds no
// stamp. The kernel stamps with the wall clock, which a VM's clock sync
// may step by seconds during a run; only the packet's age at now is taken
// from the stamp, so arrivals compare on one steady clock.
func Arrival(oob []byte, now time.Time) time.Time {
	const hdr = int(unsafe.Sizeof(syscall.Cmsghdr{}))
	for len(oob) >= hdr {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdr || l > len(oob) {
			break
		}
		if h.Level == syscall.SOL_SOCKET && h.Type == syscall.SCM_TIMESTAMPNS && l >= hdr+16 {
			wall := time.Unix(int64(binary.NativeEndian.Uint64(oob[hdr:])), int64(binary.NativeEndian.Uint64(oob[hdr+8:])))
			age := now.Sub(wall)
			if age < 0 || age > time.Second {
				// The wall clock stepped between the stamp and now.
				return now
			}
			return now.Add(-age)
		}
		l = (l + 7) &^ 7
		if l > len(oob) {
			break
		}
		oob = oob[l:]
	}
	return now
}
