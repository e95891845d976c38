package media

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
)

// linkMu serialises Link: it locks two bridges, and two Links taking the
// same pair in opposite orders must not wait for each other.
var linkMu sync.Mutex

// Link joins two calls' media: side s1 of b1 and side s2 of b2 become
// each other's peer, over plain RTP between their own sockets on this
// host, so that the other parties of the two calls (b1's side s1.other()
// and b2's side s2.other()) hear each other. Neither of them is sent any
// signalling or sees its stream change: each bridge goes on with what it
// agreed with its party. An attended transfer joins two calls so.
//
// The link carries the codec of b1's other party; when b2's other party
// has the same codec, both bridges relay, else b2 transcodes. The linked
// sides have no RTP timeout: a silent party must not end the link (its
// own side's timeout still ends its call). Both bridges must be started;
// closing either leaves the other's linked side without a peer (the SIP
// layer ends both calls together).
func Link(b1 *Bridge, s1 Side, b2 *Bridge, s2 Side) error {
	if b1 == b2 {
		return errors.New("media: a bridge cannot be linked to itself")
	}
	linkMu.Lock()
	defer linkMu.Unlock()
	b1.mu.Lock()
	defer b1.mu.Unlock()
	b2.mu.Lock()
	defer b2.mu.Unlock()
	if b1.closed || b2.closed {
		return errClosed
	}
	o1, o2 := b1.neg.sides[s1.other()], b2.neg.sides[s2.other()]
	if o1 == nil || o2 == nil || b1.neg.sides[s1] == nil || b2.neg.sides[s2] == nil {
		return errors.New("media: link before both calls' media was agreed")
	}
	addr1, err := localAddr(b1.legs[s1].pair)
	if err != nil {
		return err
	}
	addr2, err := localAddr(b2.legs[s2].pair)
	if err != nil {
		return err
	}
	name := o1.name()
	codec := newPeerCodec(name, o1.codec.Fmtp, b1.m.opus.OpusFEC)
	event := Codec{PT: 101, Name: telephoneEvent, ClockRate: 8000, Fmtp: "0-16"}
	side := func(to netip.AddrPort) *sideMedia {
		peer := &remote{rtp: to, rtcp: netip.AddrPortFrom(to.Addr(), to.Port()+1)}
		return &sideMedia{peer: peer, codec: codec, recvAudio: []uint8{codec.PT}, event: event, recvEvent: []uint8{event.PT},
			ptime: 20, askPtime: 20, quiet: true, linked: true}
	}
	l1, l2 := side(addr2), side(addr1)
	cfg := LegConfig{Codecs: []string{name}, Encryption: EncryptionNone}
	if _, _, err := buildRoutes(o1, l1); err != nil {
		return err
	}
	if _, _, err := buildRoutes(o2, l2); err != nil {
		return err
	}
	b1.neg.sides[s1], b1.neg.pending[s1], b1.neg.leaving[s1], b1.legs[s1].cfg = l1, nil, false, cfg
	b2.neg.sides[s2], b2.neg.pending[s2], b2.neg.leaving[s2], b2.legs[s2].cfg = l2, nil, false, cfg
	if err := b1.installLocked(); err != nil {
		return err
	}
	if err := b2.installLocked(); err != nil {
		return err
	}
	b1.log.Info("media: linked to another call", "side", s1, "peer", addr2, "codec", name)
	b2.log.Info("media: linked to another call", "side", s2, "peer", addr1, "codec", name)
	return nil
}

// localAddr is where a port pair's RTP socket receives on this host: its
// bound address, or loopback for a wildcard bind.
func localAddr(p *portPair) (netip.AddrPort, error) {
	if p == nil || p.rtp == nil {
		return netip.AddrPort{}, errors.New("media: link needs the bridge's sockets")
	}
	ua, ok := p.rtp.LocalAddr().(*net.UDPAddr)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("media: socket address %v", p.rtp.LocalAddr())
	}
	ap := ua.AddrPort()
	ip := ap.Addr().Unmap()
	if ip.IsUnspecified() {
		if ip.Is4() {
			ip = netip.MustParseAddr("127.0.0.1")
		} else {
			ip = netip.IPv6Loopback()
		}
	}
	return netip.AddrPortFrom(ip, ap.Port()), nil
}
