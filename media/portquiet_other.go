//go:build !unix

package media

import "syscall"

// setQuiet does nothing here: a free pair's sockets queue what arrives
// (up to their receive buffers) and activate drains it before the pair
// is handed out.
func setQuiet(syscall.RawConn, syscall.Sockaddr) {}

func selfAddr(syscall.RawConn) syscall.Sockaddr { return nil }
