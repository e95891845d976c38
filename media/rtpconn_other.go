//go:build !linux

package media

import "net"

// rtpConn is a pair's RTP socket. Here it is the net package's, waited on
// through the runtime's poller by a reader per direction; on Linux it is
// a descriptor of wagate's own (rtpconn_linux.go).
type rtpConn struct{ *net.UDPConn }

func newRTPConn(c *net.UDPConn) (*rtpConn, error) { return &rtpConn{c}, nil }
