//go:build unix

package media

import (
	"syscall"
	"time"
)

// preciseSleep sleeps d (at most fineSleep) in one nanosleep: to the
// microsecond, where a runtime timer could be a millisecond late. The
// pacer's goroutine blocks its thread meanwhile; the runtime runs other
// goroutines on the other threads.
func preciseSleep(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	_ = syscall.Nanosleep(&ts, nil)
}
