package media

import (
	"net"
	"net/netip"
)

// effectiveBind is the address RTP sockets bind to: bind, except that a
// wildcard bind whose advertised address belongs to this host binds that
// address instead.
//
// Why: a socket bound to every address sends from whichever address the
// routing table picks for each peer. On a host with more than one, that
// need not be the address SDP gave the peer, and a peer that checks where
// RTP comes from (symmetric RTP, an SBC's latch) drops it: one-way audio.
// With one advertised address, peers send only to it, so binding it loses
// nothing. Behind NAT the advertised address is not local and the
// wildcard stays; the NAT rewrites the source.
func effectiveBind(bind, advertise netip.Addr, addrs func() ([]net.Addr, error)) netip.Addr {
	if bind.IsValid() && !bind.IsUnspecified() {
		return bind
	}
	if addrs == nil {
		addrs = net.InterfaceAddrs
	}
	if localAddress(advertise, addrs) {
		return advertise
	}
	return bind
}

// localAddress tells whether ip is assigned to one of this host's
// interfaces. An address merely inside an interface's network is not
// (a neighbour's), except on loopback, where Linux answers for the whole
// network (127.0.0.0/8).
func localAddress(ip netip.Addr, addrs func() ([]net.Addr, error)) bool {
	list, err := addrs()
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, a := range list {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		pfx, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		pfx = pfx.Unmap()
		if pfx == ip {
			return true
		}
		if !pfx.IsLoopback() {
			continue
		}
		ones, _ := n.Mask.Size()
		if p, err := pfx.Prefix(ones); err == nil && p.Contains(ip) {
			return true
		}
	}
	return false
}
