//go:build !linux

package media

import "syscall"

// setDropFilter does nothing where socket filters are not available: a
// free pair's sockets then queue what arrives (up to their receive
// buffers) and activate drains it before the pair is handed out.
func setDropFilter(syscall.RawConn, bool) {}
