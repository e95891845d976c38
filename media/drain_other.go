//go:build !unix

package media

import "syscall"

// drainSocket has no non-blocking read to use here; packets queued on a
// kept pair are left to the new call's source checks.
func drainSocket(syscall.RawConn) {}
