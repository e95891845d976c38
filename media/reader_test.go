package media

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// TestReadersManyCalls relays packets of many calls at once, both ways,
// interleaved across calls: every packet of every call must come out on
// the other side, none lost, none crossed into another call. Then the
// calls close while packets are still arriving, and no reader is left.
func TestReadersManyCalls(t *testing.T) {
	const calls = 150
	const packets = 20
	t.Cleanup(func() { checkNoRelayGoroutines(t) })
	m := newTestManager(t, 2*calls, time.Hour, time.Hour)
	metaConn, pbxConn := listenBig(t), listenBig(t)
	metaPort := metaConn.LocalAddr().(*net.UDPAddr).Port
	pbxPort := pbxConn.LocalAddr().(*net.UDPAddr).Port

	// Toward the PBX the relay sends as it arrives: count each call's
	// packets by the sequence numbers' high byte (the call) and check
	// that their low byte (the packet) came in order, each once.
	var got [calls][packets]atomic.Int32
	var stray atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, _, err := pbxConn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if n < 12+160 {
				stray.Add(1)
				continue
			}
			c, k := int(binary.BigEndian.Uint16(buf[12:])), int(binary.BigEndian.Uint16(buf[14:]))
			if c >= calls || k >= packets {
				stray.Add(1)
				continue
			}
			got[c][k].Add(1)
		}
	}()
	go func() { // Meta's side: silence and played audio, not counted here
		buf := make([]byte, 2048)
		for {
			if _, _, err := metaConn.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
		}
	}()

	offerA := sdpOffer(metaPort, "RTP/AVP", "0", "rtpmap:0 PCMU/8000", "ptime:20")
	answerB := sdpOffer(pbxPort, "RTP/AVP", "0", "rtpmap:0 PCMU/8000", "ptime:20")
	bridges := make([]*Bridge, calls)
	toA := make([]netip.AddrPort, calls)
	toB := make([]netip.AddrPort, calls)
	for i := range bridges {
		br, err := m.NewCallBridge("many", nil,
			LegConfig{Codecs: []string{"PCMU"}, WhatsApp: true}, LegConfig{Codecs: []string{"PCMU"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(br.Close)
		offerB, err := br.Offer(offerA)
		if err != nil {
			t.Fatal(err)
		}
		answerA, err := br.AnswerB(answerB)
		if err != nil {
			t.Fatal(err)
		}
		toB[i], toA[i] = mustAddr(t, offerB), mustAddr(t, answerA)
		br.Start(nil)
		bridges[i] = br
	}
	for deadline := time.Now().Add(2 * time.Second); relayGoroutines() != readersPerCall()*calls; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d readers running, want %d", relayGoroutines(), readersPerCall()*calls)
		}
	}
	payload := make([]byte, 160)
	for k := range packets {
		for i := range bridges {
			binary.BigEndian.PutUint16(payload[0:], uint16(i))
			binary.BigEndian.PutUint16(payload[2:], uint16(k))
			pkt := rtpPacket(t, 0, uint16(k+1), uint32(160*(k+1)), 0x1000+uint32(i), payload)
			if _, err := metaConn.WriteToUDPAddrPort(pkt, toA[i]); err != nil {
				t.Fatal(err)
			}
			if _, err := pbxConn.WriteToUDPAddrPort(pkt, toB[i]); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		missing, dup := 0, 0
		for i := range got {
			for k := range got[i] {
				switch n := got[i][k].Load(); {
				case n == 0:
					missing++
				case n > 1:
					dup++
				}
			}
		}
		if dup > 0 || stray.Load() > 0 {
			t.Fatalf("%d packets relayed twice, %d not of any call", dup, stray.Load())
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d packets toward the PBX never came out", missing, calls*packets)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Close every call while packets still arrive.
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for k := 0; ; k++ {
			for i := range bridges {
				select {
				case <-stop:
					return
				default:
				}
				pkt := rtpPacket(t, 0, uint16(100+k), uint32(160*(100+k)), 0x1000+uint32(i), payload)
				_, _ = metaConn.WriteToUDPAddrPort(pkt, toA[i])
			}
		}
	}()
	for _, br := range bridges {
		br.Close()
	}
	close(stop)
	<-sent
	checkNoRelayGoroutines(t)
	metaConn.Close()
	pbxConn.Close()
	<-done
}

func listenBig(t testing.TB) *net.UDPConn {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadBuffer(4 << 20)
	t.Cleanup(func() { c.Close() })
	return c
}

func mustAddr(t testing.TB, body []byte) netip.AddrPort {
	d, err := ParseSDP(body)
	if err != nil {
		t.Fatal(err)
	}
	return d.Media[0].Addr()
}
