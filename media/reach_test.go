package media

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// Addresses of the reach tests: wagate's media sockets are bound to an
// IPv4 address (bind4) or an IPv6 one (bind6); peers signal an address of
// either family.
var (
	bind4    = netip.MustParseAddr("192.0.2.1")
	bind6    = netip.MustParseAddr("2001:db8::1")
	reachA   = netip.MustParseAddrPort("192.0.2.40:5000")     // side A's SDP, IPv4
	reachA6  = netip.MustParseAddrPort("[2001:db8::40]:5000") // side A's SDP, IPv6
	reachB6  = netip.MustParseAddrPort("[2001:db8::50]:6000") // side B's SDP, IPv6
	signal4  = netip.MustParseAddr("198.51.100.7")            // a NAT peer's SIP address, IPv4
	signal6  = netip.MustParseAddr("2001:db8::7")             // the same, IPv6
	rtcp6    = "rtcp:4001 IN IP6 2001:db8::5"                 // a=rtcp at an IPv6 address
	rtcp6b   = "rtcp:4001 IN IP6 2001:db8::6"                 // another
	rtcp4    = "rtcp:4001 IN IP4 192.0.2.41"                  // a=rtcp at an IPv4 address
	noAddr   = netip.AddrPort{}
	rtcp4At  = netip.MustParseAddrPort("192.0.2.41:4001")
	bRTCPAt  = netip.MustParseAddrPort("192.0.2.50:6001") // natB's RTCP, the port above
	natOther = netip.MustParseAddrPort("198.51.100.7:40002")
)

// sdpFam is a plain PCMU offer or answer at addr, of its family.
func sdpFam(addr netip.AddrPort, attrs ...string) []byte {
	fam := "IP4"
	if addr.Addr().Is6() {
		fam = "IP6"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "v=0\r\no=- 1 1 IN %s %s\r\ns=-\r\nc=IN %s %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
		fam, addr.Addr(), fam, addr.Addr(), addr.Port())
	for _, a := range attrs {
		b.WriteString("a=" + a + "\r\n")
	}
	return []byte(b.String())
}

// reachBridge is a socketless bridge whose media sockets are bound to
// bind.
func reachBridge(bind netip.Addr, a, b LegConfig) *Bridge {
	br := socketlessBridge(a, b)
	br.m.bind = bind
	return br
}

// checkRefusal checks err against want: "" for none, else an
// ErrUnreachable (so also an ErrBadSDP, answered 488) whose Warning is
// want.
func checkRefusal(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("refused: %v", err)
	case want == "":
	case err == nil:
		t.Fatalf("accepted, want refused with Warning %q", want)
	case !errors.Is(err, ErrUnreachable) || !errors.Is(err, ErrBadSDP):
		t.Fatalf("refused with %v, want an ErrUnreachable (and ErrBadSDP)", err)
	case SDPWarning(err) != want:
		t.Fatalf("Warning\n %q\nwant\n %q", SDPWarning(err), want)
	}
}

// TestReachFirstSDP: a peer's first offer or answer whose audio (c=) or
// RTCP (a=rtcp) address is of the other family than the media sockets'
// bind. Refused with 488 and a Warning naming the address and why when
// nothing could reach the peer; accepted, sending nothing to that
// address, when the leg does without it: a peer behind NAT (its media is
// latched from its SIP address), or an a=rtcp address alone (the call
// has its audio; no RTCP). Before, all of these were refused, so a phone
// behind NAT that signalled IPv6 to IPv4 sockets could not call or be
// called, and neither could one that put only its RTCP on IPv6; and the
// Warning called the SDP malformed.
func TestReachFirstSDP(t *testing.T) {
	nat := func(signal netip.Addr) LegConfig { return LegConfig{BehindNAT: true, SignalIP: signal} }
	for _, tc := range []struct {
		name     string
		bind     netip.Addr
		answer   bool // the SDP is B's answer (else A's offer)
		cfg      LegConfig
		sdp      []byte
		warning  string         // "": accepted
		dst      netip.AddrPort // where its RTP goes before any latch
		rtcpDst  netip.AddrPort
		rtcpSeen bool // dst and rtcpDst are checked
	}{
		{name: "offer, IPv6 c=", bind: bind4, sdp: sdpFam(reachA6),
			warning: "unreachable media address: audio address 2001:db8::40 (c=) is IPv6; wagate's media sockets are IPv4"},
		{name: "answer, IPv6 c=", bind: bind4, answer: true, sdp: sdpFam(reachB6),
			warning: "unreachable media address: audio address 2001:db8::50 (c=) is IPv6; wagate's media sockets are IPv4"},
		{name: "offer, IPv4 c=, IPv6 bind", bind: bind6, sdp: sdpFam(reachA),
			warning: "unreachable media address: audio address 192.0.2.40 (c=) is IPv4; wagate's media sockets are IPv6"},
		{name: "offer behind NAT, IPv6 c=", bind: bind4, cfg: nat(signal4), sdp: sdpFam(reachA6),
			dst: noAddr, rtcpDst: noAddr, rtcpSeen: true},
		{name: "answer behind NAT, IPv6 c=", bind: bind4, answer: true, cfg: nat(signal4), sdp: sdpFam(reachB6),
			dst: noAddr, rtcpDst: noAddr, rtcpSeen: true},
		{name: "answer behind NAT, IPv6 c=, rtcp-mux", bind: bind4, answer: true, cfg: nat(signal4), sdp: sdpFam(reachB6, "rtcp-mux"),
			dst: noAddr, rtcpDst: noAddr, rtcpSeen: true},
		{name: "answer behind NAT, latch_any_address, no SIP address", bind: bind4, answer: true,
			cfg: LegConfig{BehindNAT: true, LatchAnyAddress: true}, sdp: sdpFam(reachB6), dst: noAddr, rtcpDst: noAddr, rtcpSeen: true},
		{name: "offer behind NAT, IPv4 c=, IPv6 bind", bind: bind6, cfg: nat(signal6), sdp: sdpFam(reachA),
			dst: noAddr, rtcpDst: noAddr, rtcpSeen: true},
		{name: "answer behind NAT without a SIP address", bind: bind4, answer: true, cfg: nat(netip.Addr{}), sdp: sdpFam(reachB6),
			warning: "unreachable media address: audio address 2001:db8::50 (c=) is IPv6; wagate's media sockets are IPv4; behind NAT, but no IPv4 SIP address to latch from"},
		{name: "offer behind NAT whose SIP is IPv6 too", bind: bind4, cfg: nat(signal6), sdp: sdpFam(reachA6),
			warning: "unreachable media address: audio address 2001:db8::40 (c=) is IPv6; wagate's media sockets are IPv4; behind NAT, but no IPv4 SIP address to latch from"},
		{name: "offer, IPv6 a=rtcp", bind: bind4, sdp: sdpFam(reachA, rtcp6),
			dst: reachA, rtcpDst: noAddr, rtcpSeen: true},
		{name: "answer, IPv6 a=rtcp", bind: bind4, answer: true, sdp: sdpFam(natB, rtcp6),
			dst: natB, rtcpDst: noAddr, rtcpSeen: true},
		{name: "offer behind NAT, IPv6 a=rtcp", bind: bind4, cfg: nat(signal4), sdp: sdpFam(reachA, rtcp6),
			dst: reachA, rtcpDst: noAddr, rtcpSeen: true},
		{name: "offer, IPv4 a=rtcp", bind: bind4, sdp: sdpFam(reachA, rtcp4),
			dst: reachA, rtcpDst: rtcp4At, rtcpSeen: true},
		{name: "offer, IPv6 c=, dual-stack bind", bind: netip.IPv6Unspecified(), sdp: sdpFam(reachA6),
			dst: reachA6, rtcpDst: netip.MustParseAddrPort("[2001:db8::40]:5001"), rtcpSeen: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The other leg at an address the sockets reach.
			otherA, otherB := reachA, natB
			if tc.bind.Is6() && !tc.bind.IsUnspecified() {
				otherA, otherB = reachA6, reachB6
			}
			cfgA, cfgB := tc.cfg, LegConfig{}
			offer, answer := tc.sdp, sdpFam(otherB)
			if tc.answer {
				cfgA, cfgB = LegConfig{}, tc.cfg
				offer, answer = sdpFam(otherA), tc.sdp
			}
			br := reachBridge(tc.bind, cfgA, cfgB)
			_, err := br.Offer(offer)
			if tc.answer {
				if err != nil {
					t.Fatal(err)
				}
				_, err = br.AnswerB(answer)
			}
			checkRefusal(t, err, tc.warning)
			if tc.warning != "" || !tc.rtcpSeen {
				return
			}
			if !tc.answer {
				if _, err := br.AnswerB(answer); err != nil {
					t.Fatal(err)
				}
			}
			p := br.routeAB.Load().from
			if tc.answer {
				p = br.routeBA.Load().from
			}
			if p.dst() != tc.dst || p.rtcpDst() != tc.rtcpDst {
				t.Errorf("RTP to %v, RTCP to %v; want %v, %v", p.dst(), p.rtcpDst(), tc.dst, tc.rtcpDst)
			}
		})
	}
}

// TestReachReoffer: a re-offer (re-INVITE) from a side of an answered
// call, sockets bound to IPv4. One that moves the audio to IPv6 is
// refused and changes nothing, and so is one that moves RTCP there from
// where it was reaching the peer; but a peer behind NAT may move either
// (its media latches afresh from its SIP address), and a re-offer that
// keeps an IPv6 a=rtcp the first offer had (a session refresh) or moves
// it to another IPv6 address loses nothing and is accepted. Before, all
// of these were refused.
func TestReachReoffer(t *testing.T) {
	natA := LegConfig{BehindNAT: true, SignalIP: signal4}
	for _, tc := range []struct {
		name    string
		cfgA    LegConfig
		offerA  []byte // the call's first offer (A at reachA unless given)
		from    Side
		reoffer []byte
		warning string
		dst     netip.AddrPort // where the re-offerer's RTP goes after it
		rtcpDst netip.AddrPort
	}{
		{name: "B moves its audio to IPv6", from: SideB, reoffer: sdpFam(reachB6),
			warning: "unreachable media address: audio address 2001:db8::50 (c=) is IPv6; wagate's media sockets are IPv4"},
		{name: "B moves its RTCP to IPv6", from: SideB, reoffer: sdpFam(natB, rtcp6),
			warning: "unreachable media address: RTCP address 2001:db8::5 (a=rtcp) is IPv6; wagate's media sockets are IPv4; the re-offer moves it from 192.0.2.50:6001"},
		{name: "A behind NAT moves its audio to IPv6", cfgA: natA, from: SideA, reoffer: sdpFam(reachA6),
			dst: noAddr, rtcpDst: noAddr},
		{name: "A behind NAT moves its RTCP to IPv6", cfgA: natA, from: SideA, reoffer: sdpFam(reachA, rtcp6),
			dst: reachA, rtcpDst: noAddr},
		{name: "A refreshes with the IPv6 a=rtcp it had", offerA: sdpFam(reachA, rtcp6), from: SideA, reoffer: sdpFam(reachA, rtcp6),
			dst: reachA, rtcpDst: noAddr},
		{name: "A moves its IPv6 a=rtcp to another IPv6 address", offerA: sdpFam(reachA, rtcp6), from: SideA, reoffer: sdpFam(reachA, rtcp6b),
			dst: reachA, rtcpDst: noAddr},
		{name: "A moves its RTCP back to IPv4", offerA: sdpFam(reachA, rtcp6), from: SideA, reoffer: sdpFam(reachA, rtcp4),
			dst: reachA, rtcpDst: rtcp4At},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := reachBridge(bind4, tc.cfgA, LegConfig{})
			offerA := tc.offerA
			if offerA == nil {
				offerA = sdpFam(reachA)
			}
			if _, err := br.Offer(offerA); err != nil {
				t.Fatal(err)
			}
			if _, err := br.AnswerB(sdpFam(natB)); err != nil {
				t.Fatal(err)
			}
			ab, ba := br.routeAB.Load(), br.routeBA.Load()
			_, _, err := br.AcceptOffer(tc.from, tc.reoffer)
			checkRefusal(t, err, tc.warning)
			if tc.warning != "" {
				if br.routeAB.Load() != ab || br.routeBA.Load() != ba {
					t.Error("a refused re-offer changed the routes")
				}
				if p := br.routeBA.Load().from; p.dst() != natB || p.rtcpDst() != bRTCPAt {
					t.Errorf("after the refusal B's RTP goes to %v, RTCP to %v; want %v, %v as before", p.dst(), p.rtcpDst(), natB, bRTCPAt)
				}
				return
			}
			p := br.routeAB.Load().from
			if tc.from == SideB {
				p = br.routeBA.Load().from
			}
			if p.dst() != tc.dst || p.rtcpDst() != tc.rtcpDst {
				t.Errorf("RTP to %v, RTCP to %v; want %v, %v", p.dst(), p.rtcpDst(), tc.dst, tc.rtcpDst)
			}
		})
	}
}

// TestReachNATLatch: a peer behind NAT whose SDP names an IPv6 address
// while wagate's sockets are IPv4 (the caller's offer, A; the agent's
// answer, B) gets nothing until its first packet, from its SIP address:
// nothing is written toward the IPv6 address (it would only fail), no
// RTCP either. The packet latches, and from then audio flows both ways
// and RTCP follows the latch. Before, the offer or answer was refused.
func TestReachNATLatch(t *testing.T) {
	for _, natSide := range []Side{SideA, SideB} {
		t.Run("behind NAT: "+natSide.String(), func(t *testing.T) {
			nat := LegConfig{BehindNAT: true, SignalIP: signal4}
			cfgA, cfgB := nat, LegConfig{}
			offer, answer := sdpFam(reachA6), sdpFam(natB)
			other := natB
			if natSide == SideB {
				cfgA, cfgB = cfgB, cfgA
				offer, answer = sdpFam(reachA), sdpFam(reachB6)
				other = reachA
			}
			br := reachBridge(bind4, cfgA, cfgB)
			if _, err := br.Offer(offer); err != nil {
				t.Fatal(err)
			}
			if _, err := br.AnswerB(answer); err != nil {
				t.Fatal(err)
			}
			fromNAT, toNAT := newTestDirection(br, natSide), newTestDirection(br, natSide.other())
			now := time.Second
			send := func(d *testDirection, from netip.AddrPort, seq uint16) {
				now += 20 * time.Millisecond
				feedAt(d.direction, rtpPacket(t, 0, seq, uint32(seq)*160, 0xA, make([]byte, 160)), from, now)
			}
			send(toNAT, other, 1)
			fromNAT.switchRoute(fromNAT.route.Load()) // as the RTCP job does
			fromNAT.sendReport(fromNAT.cur, now)
			if n := len(toNAT.dst.to) + len(fromNAT.src.to) + len(fromNAT.srcRTCP.to); n != 0 {
				t.Fatalf("%d packets sent toward the peer behind NAT before it sent any: RTP %v, RTCP %v %v",
					n, toNAT.dst.to, fromNAT.src.to, fromNAT.srcRTCP.to)
			}
			send(fromNAT, natOther, 1)
			if got := fromNAT.dst.to; len(got) != 1 || got[0] != other {
				t.Fatalf("the NAT peer's first packet went to %v, want %v", got, other)
			}
			send(toNAT, other, 2)
			if got := toNAT.dst.to; len(got) != 1 || got[0] != natOther {
				t.Fatalf("after the latch, audio toward the NAT peer went to %v, want its source %v", got, natOther)
			}
			// Its RTCP latches too, on its first report from its SIP
			// address: reports go there from then.
			rr := []byte{0x80, 201, 0, 1, 0, 0, 0, 0xA}
			fromNAT.inboundRTCP(rr, netip.AddrPortFrom(signal4, 40003), true, now)
			fromNAT.sendReport(fromNAT.cur, now)
			if got := fromNAT.srcRTCP.to; len(got) != 1 || got[0] != netip.AddrPortFrom(signal4, 40003) {
				t.Errorf("RTCP toward the NAT peer went to %v, want where its report came from", got)
			}
		})
	}
}
