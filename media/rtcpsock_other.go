//go:build !unix

package media

import (
	"net"
	"net/netip"
)

// rtcpSocket is a stub where non-blocking reads are not wired up: RTCP on
// a separate port is neither read nor counted there (wagate runs on Linux;
// RTCP multiplexed on the RTP port is still read).
type rtcpSocket struct{}

func newRTCPSocket(*net.UDPConn) rtcpSocket { return rtcpSocket{} }

func (rtcpSocket) drain([]byte, func([]byte, netip.AddrPort)) {}
