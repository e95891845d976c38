package media

import (
	"bytes"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/wagate/wagate/configs"
)

func TestRxStats(t *testing.T) {
	var s rxStats
	ms := time.Millisecond
	// 20 ms packets of 160 ticks at 8 kHz; 105 and 106 lost, 103/104
	// swapped, 101 duplicated; then a sequence wrap.
	arrivals := []struct {
		seq uint16
		at  time.Duration
	}{{100, 0}, {101, 20 * ms}, {101, 21 * ms}, {102, 40 * ms}, {104, 80 * ms}, {103, 81 * ms}, {107, 140 * ms}}
	for _, a := range arrivals {
		s.update(7, a.seq, uint32(a.seq-100)*160, a.at, 8000)
	}
	r := s.report(time.Now())
	if r.SSRC != 7 || r.LastSequenceNumber != 107 || r.TotalLost != 1 || r.FractionLost != 1*256/8 {
		// expected 8 (100..107), received 7 (the duplicate counts, as in
		// RFC 3550 A.3), so 1 lost net.
		t.Fatalf("report %+v", r)
	}
	if r.Jitter == 0 || r.Jitter > 80 {
		t.Fatalf("jitter %d ticks", r.Jitter)
	}
	// Next interval: no loss.
	for i, seq := range []uint16{108, 109, 110} {
		s.update(7, seq, uint32(seq-100)*160, 160*ms+time.Duration(i)*20*ms, 8000)
	}
	if r := s.report(time.Now()); r.FractionLost != 0 || s.lossPct != 0 {
		t.Fatalf("second interval %+v", r)
	}
	// Wrap: cycles count.
	var w rxStats
	for i, seq := range []uint16{65534, 65535, 0, 1} {
		w.update(9, seq, uint32(i)*160, time.Duration(i)*20*ms, 8000)
	}
	if r := w.report(time.Now()); r.LastSequenceNumber != 1<<16+1 || r.TotalLost != 0 {
		t.Fatalf("after wrap %+v", r)
	}
	// A new SSRC starts over.
	w.update(10, 500, 0, time.Second, 8000)
	if r := w.report(time.Now()); r.SSRC != 10 || r.LastSequenceNumber != 500 {
		t.Fatalf("new SSRC %+v", r)
	}
}

func TestBuildAndReadReport(t *testing.T) {
	var tx txStats
	var rx rxStats
	rx.update(0xbeef, 1, 0, 0, 8000)
	rx.lastSR, rx.lastSRAt = 0x12345678, time.Now().Add(-500*time.Millisecond)
	// Nothing sent yet: RR.
	pkt := appendReport(nil, 0xcafe, "wagate-x", &tx, &rx, time.Second, 5*time.Second, time.Now())
	pkts, err := rtcp.Unmarshal(pkt)
	if err != nil || len(pkts) != 2 {
		t.Fatalf("%v %v", pkts, err)
	}
	rr, ok := pkts[0].(*rtcp.ReceiverReport)
	if !ok || rr.SSRC != 0xcafe || len(rr.Reports) != 1 || rr.Reports[0].SSRC != 0xbeef || rr.Reports[0].LastSenderReport != 0x12345678 {
		t.Fatalf("RR %+v", pkts[0])
	}
	if d := rr.Reports[0].Delay; d < 65536/4 || d > 65536 {
		t.Fatalf("DLSR %d, want about half a second in 1/65536 s", d)
	}
	if sd, ok := pkts[1].(*rtcp.SourceDescription); !ok || sd.Chunks[0].Items[0].Text != "wagate-x" {
		t.Fatalf("SDES %+v", pkts[1])
	}
	// After sending: SR with our counts, RTP time moved on from the last packet.
	tx.clock.Store(48000)
	for range 10 {
		tx.sent(60, 96000, 900*time.Millisecond)
	}
	pkt = appendReport(nil, 0xcafe, "wagate-x", &tx, &rx, time.Second, 5*time.Second, time.Now())
	pkts, _ = rtcp.Unmarshal(pkt)
	sr, ok := pkts[0].(*rtcp.SenderReport)
	if !ok || sr.PacketCount != 10 || sr.OctetCount != 600 || sr.RTPTime != 96000+4800 {
		t.Fatalf("SR %+v", pkts[0])
	}
	info, ok := readReport(pkt, 0xbeef)
	if !ok || info.sr != uint32(sr.NTPTime>>16) || info.lossPct != 0 {
		t.Fatalf("read back %+v %v", info, ok)
	}
	if info, ok := readReport([]byte{0x80, 200, 0, 0}, 1); ok || info.lossPct != -1 {
		t.Fatal("garbage parsed")
	}
}

// TestReportMatchesPion: our hand-written compound packet is, octet for
// octet, what pion/rtcp marshals for the same SR or RR and SDES, with
// and without a report block, for every CNAME length (each SDES padding
// case) and at the 255-octet limit, where a longer CNAME is cut.
func TestReportMatchesPion(t *testing.T) {
	wall := time.Unix(1_780_000_000, 123_456_789)
	for _, sent := range []bool{false, true} {
		for _, received := range []bool{false, true} {
			for _, n := range []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 23, 254, 255, 300} {
				var tx txStats
				var rx, rxRef rxStats
				if sent {
					tx.clock.Store(48000)
					tx.sent(60, 0xfffff000, 900*time.Millisecond)
					tx.sent(61, 0xfffff3c0, 920*time.Millisecond)
				}
				if received {
					for i, seq := range []uint16{65530, 65531, 65534, 2} {
						rx.update(0xbeef, seq, uint32(i)*160, time.Duration(i)*23*time.Millisecond, 8000)
					}
					rx.lastSR, rx.lastSRAt = 0x12345678, wall.Add(-700*time.Millisecond)
				}
				rxRef = rx
				cname := strings.Repeat("w", n)
				got := appendReport([]byte{0xaa}, 0xcafe, cname, &tx, &rx, time.Second, 5*time.Second, wall)
				want := pionReport(t, 0xcafe, cname[:min(n, 255)], &tx, &rxRef, time.Second, 5*time.Second, wall)
				if got[0] != 0xaa || !bytes.Equal(got[1:], want) {
					t.Fatalf("sent %v received %v cname %d octets:\n got %x\nwant %x", sent, received, n, got[1:], want)
				}
				if rx != rxRef {
					t.Fatalf("the report left rxStats %+v, pion's %+v", rx, rxRef)
				}
			}
		}
	}
}

// pionReport is the compound packet as pion/rtcp marshals it: the
// reference for appendReport.
func pionReport(t testing.TB, ssrc uint32, cname string, tx *txStats, rx *rxStats, since, interval time.Duration, wall time.Time) []byte {
	var blocks []rtcp.ReceptionReport
	if rx.started {
		blocks = []rtcp.ReceptionReport{rx.report(wall)}
	}
	var first rtcp.Packet = &rtcp.ReceiverReport{SSRC: ssrc, Reports: blocks}
	lastAt := time.Duration(tx.lastAt.Load())
	if n := tx.packets.Load(); n > 0 && since-lastAt < 2*interval {
		ts := tx.lastTS.Load() + uint32(int64(since-lastAt)*int64(tx.clock.Load())/int64(time.Second))
		first = &rtcp.SenderReport{SSRC: ssrc, NTPTime: ntpTime(wall), RTPTime: ts,
			PacketCount: n, OctetCount: tx.octets.Load(), Reports: blocks}
	}
	sdes := &rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{Source: ssrc,
		Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: cname}}}}}
	pkt, err := rtcp.Marshal([]rtcp.Packet{first, sdes})
	if err != nil {
		t.Fatal(err)
	}
	return pkt
}

// BenchmarkAppendReport: a leg's report every interval allocates nothing
// (pion's Marshal allocated about 0.5 KB each).
func BenchmarkAppendReport(b *testing.B) {
	tx, rx := benchReportStats()
	buf := make([]byte, 0, packetBufSize)
	wall := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		buf = appendReport(buf[:0], 0xcafe, "wagate-0123456789abcdef01234567", tx, rx, time.Second, 5*time.Second, wall)
	}
}

// BenchmarkPionReport is the same report through pion/rtcp, for comparison.
func BenchmarkPionReport(b *testing.B) {
	tx, rx := benchReportStats()
	wall := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		pionReport(b, 0xcafe, "wagate-0123456789abcdef01234567", tx, rx, time.Second, 5*time.Second, wall)
	}
}

// benchReportStats is a leg that has sent and received a packet.
func benchReportStats() (*txStats, *rxStats) {
	tx, rx := &txStats{}, &rxStats{}
	tx.clock.Store(48000)
	tx.sent(60, 96000, 900*time.Millisecond)
	rx.update(0xbeef, 1, 0, 0, 8000)
	return tx, rx
}

// newTestManagerWith is newTestManager with media settings changed by fn.
func newTestManagerWith(t testing.TB, pairs int, fn func(*configs.Media)) *Manager {
	t.Helper()
	base := freePortRange(t, 2*pairs)
	cfg := configs.Media{BindIP: "127.0.0.1", PortMin: base, PortMax: base + 2*pairs - 1}
	fn(&cfg)
	m, err := NewManager(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRTCPBothLegs: with a short interval, Meta gets SRTCP sender reports
// on its RTP port (rtcp-mux) and the PBX plain reports on its RTCP port,
// each with our SSRC on that leg and a block on the peer's stream; reports
// from both peers are read and counted, and Meta's loss figure is kept for
// the Opus encoder.
func TestRTCPBothLegs(t *testing.T) {
	m := newTestManagerWith(t, 2, func(c *configs.Media) { c.RTCPInterval = configs.Duration(60 * time.Millisecond) })
	var pbxRTCP *net.UDPConn
	c := newWhatsAppCall(t, m, func(port int) []byte {
		var err error
		pbxRTCP, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pbxRTCP.Close() })
		return sdpOffer(port, "RTP/AVP", "0", "rtpmap:0 PCMU/8000", "rtcp:"+strconv.Itoa(pbxRTCP.LocalAddr().(*net.UDPAddr).Port))
	})
	c.b.Start(nil)
	for i := range 5 {
		c.pbx.send(c.toB, rtpPacket(t, 0, uint16(i), uint32(160*i), 0x9b, make([]byte, 160)))
		c.meta.send(c.toA, c.meta.encrypt(t, rtpPacket(t, 111, uint16(i), uint32(960*i), 0x3e7a, opusSilence)))
	}

	// Meta's side: SRTCP on the RTP port.
	var metaSSRC uint32 // our SSRC toward Meta, from its RTP
	var sr *rtcp.SenderReport
	for deadline := time.Now().Add(3 * time.Second); sr == nil && time.Now().Before(deadline); {
		pkt := c.meta.recv(time.Until(deadline))
		if pkt == nil {
			break
		}
		if !isRTCP(pkt) {
			metaSSRC = readHdr(pkt).ssrc
			continue
		}
		plain, err := c.meta.dec.DecryptRTCP(nil, pkt, nil)
		if err != nil {
			t.Fatalf("SRTCP from wagate: %v", err)
		}
		pkts, err := rtcp.Unmarshal(plain)
		if err != nil {
			t.Fatal(err)
		}
		if s, ok := pkts[0].(*rtcp.SenderReport); ok && len(s.Reports) == 1 {
			sr = s
		}
	}
	if sr == nil || sr.SSRC != metaSSRC || sr.Reports[0].SSRC != 0x3e7a || sr.PacketCount == 0 {
		t.Fatalf("SR to Meta %+v, our SSRC %x", sr, metaSSRC)
	}

	// The PBX's side: plain RTCP on the port its a=rtcp named.
	var pbxSR *rtcp.SenderReport
	buf := make([]byte, 1500)
	for deadline := time.Now().Add(3 * time.Second); pbxSR == nil && time.Now().Before(deadline); {
		_ = pbxRTCP.SetReadDeadline(deadline)
		n, _, err := pbxRTCP.ReadFromUDPAddrPort(buf)
		if err != nil {
			break
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		if s, ok := pkts[0].(*rtcp.SenderReport); ok && len(s.Reports) == 1 {
			pbxSR = s
		}
	}
	if pbxSR == nil || pbxSR.SSRC != c.b.legs[SideB].ssrc || pbxSR.Reports[0].SSRC != 0x9b {
		t.Fatalf("SR to PBX %+v", pbxSR)
	}

	// Reports from the peers: Meta's over SRTCP on the RTP port, saying
	// it loses a quarter of our stream; the PBX's on our RTCP port.
	rr, _ := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 0x3e7a, Reports: []rtcp.ReceptionReport{{SSRC: metaSSRC, FractionLost: 64}}}})
	enc, err := c.meta.enc.EncryptRTCP(nil, rr, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.meta.send(c.toA, enc)
	pbrr, _ := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 0x9b}})
	if _, err := pbxRTCP.WriteToUDPAddrPort(pbrr, netip.AddrPortFrom(c.toB.Addr(), c.toB.Port()+1)); err != nil {
		t.Fatal(err)
	}
	waitStats(t, c.b, "RTCP in", func(s BridgeStats) bool { return s.RTCPReceived >= 2 && s.RTCPSent >= 4 })
	if loss := c.b.legs[SideA].peerLoss.Load(); loss != 25 {
		t.Fatalf("Meta's loss %d%%, want 25", loss)
	}
}
