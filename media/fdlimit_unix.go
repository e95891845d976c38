//go:build unix

package media

import "syscall"

// OpenFilesLimit is the soft RLIMIT_NOFILE in force, 0 when unknown. Go
// raises the soft limit to the hard one at start, so this is the most the
// process can open.
func OpenFilesLimit() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	return r.Cur
}
