//go:build !unix

package media

// OpenFilesLimit is 0 (unknown) where there is no RLIMIT_NOFILE: no
// bound-pair budget is derived.
func OpenFilesLimit() uint64 { return 0 }
