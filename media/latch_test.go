package media

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

// Addresses of the latch tests: a PBX behind NAT signals a private
// address in its SDP, sends SIP from its public one, and its media leaves
// from NAT-mapped ports of the public one.
var (
	natSDP      = netip.MustParseAddrPort("10.0.0.5:4000")      // c= and m= of its SDP
	natSignal   = netip.MustParseAddr("198.51.100.7")           // where its SIP comes from
	natPeer     = netip.MustParseAddrPort("198.51.100.7:40002") // where its media really comes from
	natMoved    = netip.MustParseAddrPort("198.51.100.7:40780") // the same after a NAT rebinding
	natSameIP   = netip.MustParseAddrPort("198.51.100.7:41000") // another sender on its public address
	natSDPPort  = netip.MustParseAddrPort("10.0.0.5:4010")      // its SDP address, another port
	natStranger = netip.MustParseAddrPort("203.0.113.9:5004")   // anyone else on the internet
	natB        = netip.MustParseAddrPort("192.0.2.50:6000")    // the other leg, not behind NAT
)

// sdpAt is a PBX-like plain PCMU offer or answer at addr.
func sdpAt(addr netip.AddrPort, attrs ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
		addr.Addr(), addr.Addr(), addr.Port())
	for _, a := range attrs {
		b.WriteString("a=" + a + "\r\n")
	}
	return []byte(b.String())
}

// natCall is a relayed PCMU call, socketless, whose side A is configured
// as cfgA (behind NAT, at natSDP) and side B is a plain peer at natB.
// Packets are fed at times the test chooses.
type natCall struct {
	t    *testing.T
	br   *Bridge
	a, b *testDirection // read side A and side B
	now  time.Duration
	seq  uint16
}

func newNATCall(t *testing.T, cfgA LegConfig, relatch int, attrs ...string) *natCall {
	t.Helper()
	br := socketlessBridge(cfgA, LegConfig{})
	br.m.relatch = relatch
	if _, err := br.Offer(sdpAt(natSDP, attrs...)); err != nil {
		t.Fatal(err)
	}
	if _, err := br.AnswerB(sdpAt(natB)); err != nil {
		t.Fatal(err)
	}
	return &natCall{t: t, br: br, a: newTestDirection(br, SideA), b: newTestDirection(br, SideB), now: time.Second}
}

// send feeds n valid PCMU packets from from to side A's socket, gap apart
// (the first gap after the previous packet), and returns how many were
// relayed to B.
func (c *natCall) send(from netip.AddrPort, n int, gap time.Duration) int {
	before := len(c.a.dst.pkts)
	for range n {
		c.now += gap
		c.seq++
		pkt := rtpPacket(c.t, 0, c.seq, uint32(c.seq)*160, 0xA, make([]byte, 160))
		feedAt(c.a.direction, pkt, from, c.now)
	}
	return len(c.a.dst.pkts) - before
}

// toA is where media from B goes now.
func (c *natCall) toA() netip.AddrPort {
	c.t.Helper()
	c.now += time.Millisecond
	pkt := rtpPacket(c.t, 0, uint16(c.now/time.Millisecond), 0, 0xB, make([]byte, 160))
	feedAt(c.b.direction, pkt, natB, c.now)
	if len(c.b.dst.to) == 0 {
		c.t.Fatal("nothing relayed from B to A")
	}
	return c.b.dst.to[len(c.b.dst.to)-1]
}

// sentTo lists every address the call wrote anything to: RTP both ways
// and RTCP to both sides.
func (c *natCall) sentTo() map[netip.AddrPort]int {
	out := map[netip.AddrPort]int{}
	for _, w := range []*captureWriter{c.a.dst, c.a.src, c.a.srcRTCP, c.b.dst, c.b.src, c.b.srcRTCP} {
		for _, a := range w.to {
			out[a]++
		}
	}
	return out
}

// latchStep sends n packets from one source and says how many of them
// must be relayed.
type latchStep struct {
	from    netip.AddrPort
	n       int
	gap     time.Duration // before each packet; 20 ms when zero, unless burst
	burst   bool          // all at the instant of the previous packet
	forward int
}

// TestNATLatchRules: on a behind_nat leg only a packet from the SDP's IP
// or the SIP's IP (any port) latches; a latched source keeps the media
// until another candidate sends relatch_packets consecutive valid packets
// as a stream (not a burst squeezed between two of the current source's);
// nothing from or to a stranger, ever.
func TestNATLatchRules(t *testing.T) {
	nat := LegConfig{BehindNAT: true, SignalIP: natSignal}
	rep := func(n int, steps ...latchStep) []latchStep {
		var out []latchStep
		for range n {
			out = append(out, steps...)
		}
		return out
	}
	cat := func(parts ...[]latchStep) []latchStep {
		var out []latchStep
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	for _, tt := range []struct {
		name    string
		cfg     LegConfig
		relatch int
		steps   []latchStep
		latched netip.AddrPort // zero: none (media to A goes to the SDP address)
	}{
		{"stranger spraying first never latches", nat, 10, []latchStep{
			{from: natStranger, n: 5},
			{from: natPeer, n: 1, forward: 1},
			{from: natStranger, n: 30},
			{from: natPeer, n: 3, forward: 3},
		}, natPeer},
		{"the SDP's IP on another port latches", nat, 10, []latchStep{
			{from: natStranger, n: 3},
			{from: natSDPPort, n: 2, forward: 2},
		}, natSDPPort},
		{"without a signalling IP only the SDP's IP latches", LegConfig{BehindNAT: true}, 10, []latchStep{
			{from: natPeer, n: 3},
			{from: natSDPPort, n: 1, forward: 1},
		}, natSDPPort},
		{"another port of the peer's IP interleaved with the peer never moves it", nat, 10, cat(
			[]latchStep{{from: natPeer, n: 1, forward: 1}},
			rep(30, latchStep{from: natSameIP, n: 1, gap: 10 * time.Millisecond}, latchStep{from: natPeer, n: 1, gap: 10 * time.Millisecond, forward: 1}),
		), natPeer},
		{"a new source moves the latch after 10 consecutive packets", nat, 10, []latchStep{
			{from: natPeer, n: 5, forward: 5},
			{from: natMoved, n: 9},
			{from: natMoved, n: 1, forward: 1},
			{from: natMoved, n: 5, forward: 5},
			{from: natPeer, n: 3}, // the old mapping is now a stranger to the call
		}, natMoved},
		{"a packet from the latched source restarts the count", nat, 10, []latchStep{
			{from: natPeer, n: 1, forward: 1},
			{from: natMoved, n: 9},
			{from: natPeer, n: 1, forward: 1},
			{from: natMoved, n: 9},
			{from: natPeer, n: 1, forward: 1},
			{from: natMoved, n: 9},
			{from: natMoved, n: 1, forward: 1},
		}, natMoved},
		{"a burst does not move the latch, a stream does", nat, 10, []latchStep{
			{from: natPeer, n: 1, forward: 1},
			{from: natSameIP, n: 30, burst: true}, // between two of the peer's packets
			{from: natPeer, n: 1, forward: 1},
			{from: natMoved, n: 9, burst: true},
			// The peer fell silent: 90 ms after the burst began the run
			// has lasted (10-1) half packet times.
			{from: natMoved, n: 1, gap: 89 * time.Millisecond},
			{from: natMoved, n: 1, gap: time.Millisecond, forward: 1},
		}, natMoved},
		{"relatch_packets 0: the first latch holds for the call", nat, 0, []latchStep{
			{from: natPeer, n: 1, forward: 1},
			{from: natMoved, n: 50},
			{from: natPeer, n: 1, forward: 1},
		}, natPeer},
		{"relatch_packets 1 moves at once", nat, 1, []latchStep{
			{from: natPeer, n: 1, forward: 1},
			{from: natMoved, n: 1, forward: 1},
		}, natMoved},
		{"latch_any_address: any first source latches", LegConfig{BehindNAT: true, LatchAnyAddress: true, SignalIP: natSignal}, 10, []latchStep{
			{from: natStranger, n: 1, forward: 1},
			{from: natPeer, n: 9},
			{from: natPeer, n: 1, forward: 1},
		}, natPeer},
		{"not behind NAT: only the SDP address", LegConfig{SignalIP: natSignal}, 10, []latchStep{
			{from: natPeer, n: 3},
			{from: natSDPPort, n: 3},
			{from: natStranger, n: 3},
			{from: natSDP, n: 2, forward: 2},
		}, netip.AddrPort{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newNATCall(t, tt.cfg, tt.relatch)
			total, forwarded := 0, 0
			for i, st := range tt.steps {
				gap := st.gap
				if gap == 0 && !st.burst {
					gap = 20 * time.Millisecond
				}
				got := c.send(st.from, st.n, gap)
				if got != st.forward {
					t.Fatalf("step %d (%d from %s): %d relayed to B, want %d", i, st.n, st.from, got, st.forward)
				}
				total, forwarded = total+st.n, forwarded+got
			}
			if s := c.br.Stats(); s.DroppedSource != uint64(total-forwarded) || s.AtoB != uint64(forwarded) {
				t.Errorf("stats %+v: want %d dropped as wrong source and %d relayed", s, total-forwarded, forwarded)
			}
			want := tt.latched
			if !want.IsValid() {
				want = natSDP
			}
			if got := c.toA(); got != want {
				t.Errorf("media toward A goes to %s, want %s", got, want)
			}
			// Neither RTP nor our RTCP reports ever reach a stranger.
			c.a.rtcpTick(c.a.epoch.Add(c.now))
			c.b.rtcpTick(c.b.epoch.Add(c.now))
			for to := range c.sentTo() {
				if to == natStranger && !tt.cfg.LatchAnyAddress {
					t.Errorf("wagate sent to the stranger %s", to)
				}
			}
		})
	}
}

// TestNATLatchSRTP: on an SDES leg behind NAT, only authenticated packets
// latch and count toward a move; forged and plain ones, even from the
// peer's own address, never do, and a stranger with the right key (a
// leaked one) is no candidate.
func TestNATLatchSRTP(t *testing.T) {
	peer := newSRTPPeer(t, srtpSuites[0])
	br := socketlessBridge(LegConfig{Encryption: EncryptionSDES, BehindNAT: true, SignalIP: natSignal, Codecs: []string{"opus"}}, LegConfig{Codecs: []string{"opus"}})
	br.m.relatch = 10
	offer := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/SAVP 111\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-mux\r\na=crypto:%s\r\n",
		natSDP.Addr(), natSDP.Addr(), natSDP.Port(), peer.crypto(1))
	if _, err := br.Offer([]byte(offer)); err != nil {
		t.Fatal(err)
	}
	answer := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n", natB.Addr(), natB.Addr(), natB.Port())
	if _, err := br.AnswerB([]byte(answer)); err != nil {
		t.Fatal(err)
	}
	a := newTestDirection(br, SideA)
	now, seq := time.Second, uint16(0)
	feed := func(from netip.AddrPort, n int, kind string) int {
		t.Helper()
		before := len(a.dst.pkts)
		for range n {
			now += 20 * time.Millisecond
			seq++
			pkt := rtpPacket(t, 111, seq, uint32(seq)*960, 0xA, []byte("opus frame"))
			switch kind {
			case "auth":
				pkt = peer.encrypt(t, pkt)
			case "forged": // right length, wrong tag
				pkt = append(pkt, make([]byte, 10)...)
			case "tampered":
				pkt = peer.encrypt(t, pkt)
				pkt[len(pkt)-1] ^= 1
			}
			feedAt(a.direction, pkt, from, now)
		}
		return len(a.dst.pkts) - before
	}
	latched := func() netip.AddrPort { return derefAddr(br.routeAB.Load().from.latched.Load()) }

	for _, kind := range []string{"plain", "forged", "tampered"} {
		if got := feed(natPeer, 20, kind); got != 0 || latched().IsValid() {
			t.Fatalf("%s SRTP from the peer's address: %d relayed, latched %v", kind, got, latched())
		}
	}
	if got := feed(natStranger, 20, "auth"); got != 0 || latched().IsValid() {
		t.Fatalf("authenticated SRTP from a stranger: %d relayed, latched %v", got, latched())
	}
	if s := br.Stats(); s.DroppedAuth != 60 || s.DroppedSource != 20 {
		t.Fatalf("stats %+v: want 60 failing authentication, 20 from a wrong source", s)
	}
	if got := feed(natPeer, 1, "auth"); got != 1 || latched() != natPeer {
		t.Fatalf("the peer's first authenticated packet: %d relayed, latched %v", got, latched())
	}
	// Unauthenticated packets from a new candidate neither move the latch
	// nor reset nor advance the count.
	for _, kind := range []string{"plain", "forged", "tampered"} {
		if got := feed(natMoved, 30, kind); got != 0 || latched() != natPeer {
			t.Fatalf("%s SRTP from a new source: %d relayed, latched %v", kind, got, latched())
		}
	}
	if got := feed(natMoved, 9, "auth"); got != 0 || latched() != natPeer {
		t.Fatalf("9 authenticated packets from a new source: %d relayed, latched %v", got, latched())
	}
	if got := feed(natMoved, 1, "auth"); got != 1 || latched() != natMoved {
		t.Fatalf("the 10th authenticated packet from the new source: %d relayed, latched %v", got, latched())
	}
}

// TestNATLatchRTCP: RTCP on the separate port of a behind_nat leg latches
// like RTP (the SDP's RTCP address, or any port of the media's or the
// SIP's IP), moves only after relatch_packets consecutive valid reports
// from a new source, and follows the media when that moves. Our reports
// go to the latched RTCP source and never to a stranger.
func TestNATLatchRTCP(t *testing.T) {
	c := newNATCall(t, LegConfig{BehindNAT: true, SignalIP: natSignal}, 10, "rtcp:4001")
	rr, err := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 0xA}})
	if err != nil {
		t.Fatal(err)
	}
	report := func(from netip.AddrPort, n int) {
		for range n {
			c.now += 20 * time.Millisecond
			c.a.inboundRTCP(rr, from, true, c.now)
		}
	}
	peerA := c.br.routeAB.Load().from
	latchedRTCP := func() netip.AddrPort { return derefAddr(peerA.latchedRTCP.Load()) }
	reportTo := func() netip.AddrPort {
		t.Helper()
		n := len(c.a.srcRTCP.to)
		c.a.sendReport(c.a.cur, c.now)
		if len(c.a.srcRTCP.to) != n+1 {
			t.Fatal("no report sent")
		}
		return c.a.srcRTCP.to[n]
	}
	c.a.switchRoute(c.a.route.Load())

	if got := reportTo(); got != netip.AddrPortFrom(natSDP.Addr(), 4001) {
		t.Fatalf("before any RTCP our report goes to %s, want the SDP's a=rtcp", got)
	}
	report(natStranger, 5)
	if latchedRTCP().IsValid() || c.br.Stats().RTCPReceived != 0 {
		t.Fatalf("a stranger's RTCP was taken: latched %v, %+v", latchedRTCP(), c.br.Stats())
	}
	rtcpPeer := netip.AddrPortFrom(natSignal, 40003)
	report(rtcpPeer, 1)
	if latchedRTCP() != rtcpPeer || reportTo() != rtcpPeer {
		t.Fatalf("RTCP from the SIP address latched %v, want %s", latchedRTCP(), rtcpPeer)
	}
	// Interleaved with the latched source, another port never takes over.
	for range 20 {
		report(natSameIP, 1)
		report(rtcpPeer, 1)
	}
	if latchedRTCP() != rtcpPeer {
		t.Fatalf("RTCP latch moved to %v by interleaved reports", latchedRTCP())
	}
	report(natSameIP, 9)
	if latchedRTCP() != rtcpPeer {
		t.Fatalf("RTCP latch moved after 9 reports")
	}
	report(natSameIP, 1)
	if latchedRTCP() != natSameIP || reportTo() != natSameIP {
		t.Fatalf("RTCP latch %v after 10 consecutive reports, want %s", latchedRTCP(), natSameIP)
	}
	// The media moves: RTCP's latch is dropped and taken again by the next
	// report from a candidate.
	c.send(natPeer, 1, 20*time.Millisecond)
	c.send(natMoved, 10, 20*time.Millisecond)
	if got := derefAddr(peerA.latched.Load()); got != natMoved || latchedRTCP().IsValid() {
		t.Fatalf("after the media moved: RTP latched %v, RTCP %v; want %s and none", got, latchedRTCP(), natMoved)
	}
	movedRTCP := netip.AddrPortFrom(natSignal, 40781)
	report(movedRTCP, 1)
	if latchedRTCP() != movedRTCP {
		t.Fatalf("RTCP latched %v, want %s", latchedRTCP(), movedRTCP)
	}
	for to := range c.sentTo() {
		if to.Addr() != natSignal && to.Addr() != natSDP.Addr() && to != natB {
			t.Errorf("wagate sent to %s, no candidate of either leg", to)
		}
	}
}

// TestNATLatchConfig: latch_any_address means nothing without behind_nat
// and is refused; a negative relatch count is refused; the signalling IP
// is kept unmapped, so it matches packets from IPv4 sockets.
func TestNATLatchConfig(t *testing.T) {
	if _, err := (LegConfig{LatchAnyAddress: true}).normalize(SideB); err == nil || !strings.Contains(err.Error(), "BehindNAT") {
		t.Errorf("LatchAnyAddress without BehindNAT: %v, want an error", err)
	}
	c, err := LegConfig{BehindNAT: true, SignalIP: netip.MustParseAddr("::ffff:198.51.100.7")}.normalize(SideA)
	if err != nil || c.SignalIP != natSignal {
		t.Errorf("SignalIP %v (%v), want %s", c.SignalIP, err, natSignal)
	}
	cfg := configsMedia("127.0.0.1", "", 30000, 30003)
	cfg.RelatchPackets = -1
	if _, err := NewManager(cfg, nil); err == nil || !strings.Contains(err.Error(), "relatch_packets") {
		t.Errorf("negative relatch_packets: %v, want an error", err)
	}
}
