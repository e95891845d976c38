package media

import (
	"net"
	"syscall"
	"testing"
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

// arrivalOf returns the kernel's arrival stamp in oob, if there is one,
// on the monotonic clock of now (read just after the datagram): the
// kernel stamps with the wall clock, which a VM's clock sync may step by
// seconds between two packets (CI saw 24 s), so only the packet's age at
// now is taken from it.
func arrivalOf(oob []byte, now time.Time) (time.Time, bool) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}, false
	}
	for _, m := range msgs {
		if m.Header.Level == syscall.SOL_SOCKET && m.Header.Type == syscall.SCM_TIMESTAMPNS && len(m.Data) >= int(unsafe.Sizeof(syscall.Timespec{})) {
			ts := (*syscall.Timespec)(unsafe.Pointer(&m.Data[0]))
			age := now.Sub(time.Unix(int64(ts.Sec), int64(ts.Nsec)))
			if age < 0 || age > time.Second {
				// The wall clock stepped between the stamp and now.
				return now, true
			}
			return now.Add(-age), true
		}
	}
	return time.Time{}, false
}

// TestArrivalOfSurvivesClockStep: the DTX tests compare arrivals of
// packets seconds apart; a wall-clock step between them (a VM's clock
// sync) must not read as a gap of that size.
func TestArrivalOfSurvivesClockStep(t *testing.T) {
	now := time.Now()
	stamp := func(wall time.Time) []byte {
		oob := make([]byte, syscall.CmsgSpace(int(unsafe.Sizeof(syscall.Timespec{}))))
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
		h.Level, h.Type = syscall.SOL_SOCKET, syscall.SCM_TIMESTAMPNS
		h.SetLen(syscall.CmsgLen(int(unsafe.Sizeof(syscall.Timespec{}))))
		ts := syscall.NsecToTimespec(wall.UnixNano())
		*(*syscall.Timespec)(unsafe.Pointer(&oob[syscall.CmsgLen(0)])) = ts
		return oob
	}
	for _, tc := range []struct {
		name string
		wall time.Time // the kernel's stamp
		want time.Duration
	}{
		{"3 ms before the read", now.Add(-3 * time.Millisecond), 3 * time.Millisecond},
		{"clock stepped back 24 s", now.Add(24 * time.Second), 0},
		{"clock stepped forward 24 s", now.Add(-24 * time.Second), 0},
	} {
		at, ok := arrivalOf(stamp(tc.wall), now)
		if !ok {
			t.Fatalf("%s: no stamp found", tc.name)
		}
		// Subtracting the monotonic readings: at must carry now's clock.
		if got := now.Sub(at); got < tc.want-time.Microsecond || got > tc.want+time.Microsecond {
			t.Errorf("%s: arrival %v before the read, want %v", tc.name, got, tc.want)
		}
	}
}
