// Latching: where each side's media is accepted from and sent to, how a
// peer behind NAT is latched on its first valid packet, and how a latched
// peer that moves is followed once the new source proves itself.

package media

import (
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"
)

// remote is one side's transport as negotiated: where it sends from and
// listens, and its keys. It is immutable but for the latched addresses;
// the routes of both directions share the remote objects of one negotiation.
type remote struct {
	rtp  netip.AddrPort // from its SDP, unmapped; invalid when unusable
	rtcp netip.AddrPort // its RTCP address (rtp when mux)
	mux  bool           // RTCP multiplexed on the RTP port
	// nat: the peer is behind NAT. Its media latches onto the first
	// valid packet from a candidate source (see candidate), and moves to
	// another candidate after relatch consecutive valid packets from it
	// (0: never). signal is the IP its SIP comes from (invalid: unknown);
	// anyAddr makes every address a candidate.
	nat     bool
	anyAddr bool
	signal  netip.Addr
	relatch int
	// recvKey decrypts what the peer sends, sendKey encrypts what we send
	// it; both nil on a plain RTP leg.
	recvKey, sendKey *sdesKey
	// secure: a dtls leg, which is never sent or accepts plain RTP, even
	// before its keys are in.
	secure bool
	// far, farRTCP: rtp, rtcp is of an IP family the media sockets cannot
	// send to (checkReach let it through: a peer behind NAT, or an
	// a=rtcp address alone). Nothing is sent there, where every write
	// would fail: media waits for the latch, RTCP for the RTCP latch
	// (none, unless the peer is behind NAT).
	far, farRTCP bool

	latched     atomic.Pointer[netip.AddrPort]
	latchedRTCP atomic.Pointer[netip.AddrPort]
}

// setUp finishes a remote built from a peer's SDP, for the leg
// configured as c: its behind-NAT settings, and which of its addresses
// m's sockets cannot send to.
func (p *remote) setUp(c LegConfig, m *Manager) {
	p.nat, p.anyAddr, p.signal, p.relatch = c.BehindNAT, c.BehindNAT && c.LatchAnyAddress, c.SignalIP, m.relatch
	p.far, p.farRTCP = !m.reaches(p.rtp.Addr()), !m.reaches(p.rtcp.Addr())
}

// dst is where to send the peer RTP: the latched source, else its SDP
// address (none when the sockets cannot reach it).
func (p *remote) dst() netip.AddrPort {
	if a := p.latched.Load(); a != nil {
		return *a
	}
	if p.far {
		return netip.AddrPort{}
	}
	return p.rtp
}

// rtcpDst is where to send the peer RTCP.
func (p *remote) rtcpDst() netip.AddrPort {
	if p.mux {
		return p.dst()
	}
	if a := p.latchedRTCP.Load(); a != nil {
		return *a
	}
	if p.farRTCP {
		return netip.AddrPort{}
	}
	return p.rtcp
}

// srcCheck is the verdict on a packet's source address.
type srcCheck uint8

const (
	srcReject srcCheck = iota
	srcOK
	srcLatch // a candidate of a peer behind NAT that is not latched yet
	srcMove  // a candidate of a latched peer behind NAT, not the latched one
)

func unmapped(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

func (p *remote) check(from netip.AddrPort) srcCheck {
	from = unmapped(from)
	if a := p.latched.Load(); a != nil {
		switch {
		case from == *a:
			return srcOK
		case p.relatch > 0 && p.candidate(from):
			return srcMove
		}
		return srcReject
	}
	if p.nat {
		if p.candidate(from) {
			return srcLatch
		}
		return srcReject
	}
	if p.rtp.IsValid() && from == p.rtp {
		return srcOK
	}
	return srcReject
}

// candidate reports whether a peer behind NAT may send its media from
// from: the IP of its SDP or of its SIP, any port (a NAT keeps the
// address and changes the port, or the SDP names a private address and
// the SIP comes from the public one), or anywhere with anyAddr.
func (p *remote) candidate(from netip.AddrPort) bool {
	if p.anyAddr {
		return true
	}
	ip := from.Addr()
	return (p.rtp.IsValid() && ip == p.rtp.Addr()) || (p.signal.IsValid() && ip == p.signal)
}

// checkRTCP judges RTCP on the separate RTCP port. It is accepted from the
// peer's RTCP address, or from any port of the address its RTP comes from
// (RTCP is only read for statistics, and NATs and some PBXs pick other
// ports), behind NAT also of its SIP address; and latched likewise.
func (p *remote) checkRTCP(from netip.AddrPort) srcCheck {
	from = unmapped(from)
	if a := p.latchedRTCP.Load(); a != nil {
		switch {
		case from == *a:
			return srcOK
		case p.relatch > 0 && p.rtcpCandidate(from):
			return srcMove
		}
		return srcReject
	}
	switch {
	case !p.rtcpCandidate(from):
		return srcReject
	case p.nat:
		return srcLatch
	}
	return srcOK
}

// rtcpCandidate: RTCP follows the media, so latch_any_address does not
// widen it beyond where the media comes from.
func (p *remote) rtcpCandidate(from netip.AddrPort) bool {
	if p.rtcp.IsValid() && from == p.rtcp {
		return true
	}
	ip := from.Addr()
	if a := p.latched.Load(); a != nil && ip == a.Addr() {
		return true
	}
	return (p.rtp.IsValid() && ip == p.rtp.Addr()) || (p.nat && p.signal.IsValid() && ip == p.signal)
}

// latch fixes the peer's address once; later calls change nothing.
func latch(to *atomic.Pointer[netip.AddrPort], from netip.AddrPort) bool {
	from = unmapped(from)
	return to.CompareAndSwap(nil, &from)
}

// moveRun is a latched peer's would-be new source and its run of
// consecutive valid packets. The relay moves to it after need packets
// with none from the latched source in between (reset), and only when
// the run has lasted at least (need-1) half packet times: a run squeezed
// between two packets of a source that still sends is a burst, not a
// stream, and moves nothing.
type moveRun struct {
	rem   *remote // the peer the run is about
	from  netip.AddrPort
	n     int
	first time.Duration
}

// count adds one valid packet from from and reports whether the relay
// moves to it now.
func (r *moveRun) count(p *remote, from netip.AddrPort, now, frame time.Duration) bool {
	from = unmapped(from)
	if r.n == 0 || r.rem != p || r.from != from {
		*r = moveRun{rem: p, from: from, first: now}
	}
	r.n++
	return r.n >= p.relatch && now-r.first >= time.Duration(p.relatch-1)*frame/2
}

func (r *moveRun) reset() { r.n = 0 }

// moveFrame is the packet time a new source's run is measured in.
func moveFrame(rt *route) time.Duration {
	if rt.inFrame > 0 {
		return rt.inFrame
	}
	return silenceFrame // before the answer: the usual 20 ms
}

// moveRTP moves a latched peer's media to a new source that has proved
// itself (moveRun). RTCP follows the media: its latch is dropped, to be
// taken again by the next valid report from a candidate.
func (d *direction) moveRTP(p *remote, to netip.AddrPort) {
	to = unmapped(to)
	old := p.latched.Swap(&to)
	p.latchedRTCP.Store(nil)
	d.rtpMove.reset()
	d.rtcpMove.reset()
	d.b.log.Info("media: peer behind NAT moved to a new source", "side", d.side, "from", derefAddr(old), "to", to, "packets", p.relatch)
}

func derefAddr(a *netip.AddrPort) netip.AddrPort {
	if a == nil {
		return netip.AddrPort{}
	}
	return *a
}

func routeSrc(rt *route) slog.Value {
	switch {
	case rt == nil || rt.from == nil:
		return slog.StringValue("none yet")
	case rt.from.latched.Load() != nil:
		return slog.StringValue(rt.from.latched.Load().String())
	case rt.from.anyAddr:
		return slog.StringValue("any address (behind NAT, latch_any_address, not latched yet)")
	case rt.from.nat:
		var ips []string
		for _, ip := range []netip.Addr{rt.from.rtp.Addr(), rt.from.signal} {
			if ip.IsValid() {
				ips = append(ips, ip.String())
			}
		}
		if ips == nil {
			return slog.StringValue("none yet (behind NAT, no SDP or SIP address to latch from)")
		}
		return slog.StringValue("any port of " + strings.Join(ips, " or ") + " (behind NAT, not latched yet)")
	case !rt.from.rtp.IsValid():
		return slog.StringValue("none yet")
	}
	return slog.StringValue(rt.from.rtp.String())
}
