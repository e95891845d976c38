package media

import (
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// BenchmarkRelayedCallMemory reports what a relayed call's media costs in
// process memory once audio has flowed: 1,000 bridges set up as on a
// UIC between a WhatsApp leg (plain PCMU, media_encryption none, as in
// the SIPp load runs) and a PBX leg (PCMU), started, and each sent
// packets both ways (so every reader goroutine has run the relay path,
// and the paced direction toward WhatsApp has played them out). Heap,
// goroutine stacks and goroutines per call are reported separately:
// stacks are not heap, and a reader whose stack grew while relaying
// keeps the larger stack while it waits. Kernel socket memory is not
// process memory and not counted.
func BenchmarkRelayedCallMemory(b *testing.B) {
	const n = 1000
	const packets = 10 // per direction per call
	m := newTestManager(b, 2*n, time.Hour, time.Hour)
	metaConn := listenLoopback(b)
	pbxConn := listenLoopback(b)
	metaPort := metaConn.LocalAddr().(*net.UDPAddr).Port
	pbxPort := pbxConn.LocalAddr().(*net.UDPAddr).Port
	drained := make(chan int, 2)
	for _, c := range []*net.UDPConn{metaConn, pbxConn} {
		go func() {
			buf := make([]byte, 2048)
			got := 0
			for {
				if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
					drained <- got
					return
				}
				got++
			}
		}()
	}
	offerA := sdpOffer(metaPort, "RTP/AVP", "0 101", "rtpmap:0 PCMU/8000", "rtpmap:101 telephone-event/8000", "ptime:20")
	answerB := sdpOffer(pbxPort, "RTP/AVP", "0", "rtpmap:0 PCMU/8000", "ptime:20")
	payload := make([]byte, 160)
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		g0 := runtime.NumGoroutine()
		bridges := make([]*Bridge, n)
		toA := make([]netip.AddrPort, n) // wagate's port facing Meta
		toB := make([]netip.AddrPort, n) // facing the PBX
		for i := range bridges {
			br, err := m.NewCallBridge("mem", nil,
				LegConfig{Codecs: []string{"PCMU"}, Encryption: EncryptionNone, WhatsApp: true},
				LegConfig{Codecs: []string{"PCMU"}})
			if err != nil {
				b.Fatal(err)
			}
			offerB, err := br.Offer(offerA)
			if err != nil {
				b.Fatal(err)
			}
			answerA, err := br.AnswerB(answerB)
			if err != nil {
				b.Fatal(err)
			}
			toB[i] = mustParseB(b, offerB)
			toA[i] = mustParseB(b, answerA)
			br.Start(nil)
			bridges[i] = br
		}
		for k := range packets {
			for i := range bridges {
				pkt := rtpPacket(b, 0, uint16(k+1), uint32(160*(k+1)), 0x1000+uint32(i), payload)
				if _, err := metaConn.WriteToUDPAddrPort(pkt, toA[i]); err != nil {
					b.Fatal(err)
				}
				pkt = rtpPacket(b, 0, uint16(k+1), uint32(160*(k+1)), 0x2000+uint32(i), payload)
				if _, err := pbxConn.WriteToUDPAddrPort(pkt, toB[i]); err != nil {
					b.Fatal(err)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond) // the playout buffers toward Meta drain
		runtime.GC()
		runtime.ReadMemStats(&after)
		g1 := runtime.NumGoroutine()
		// HeapAlloc after a collection: the live objects, not whole spans.
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/n, "heap-B/call")
		b.ReportMetric(float64(int64(after.StackInuse)-int64(before.StackInuse))/n, "stack-B/call")
		b.ReportMetric(float64(g1-g0)/n, "goroutines/call")
		for _, br := range bridges {
			br.Close()
		}
	}
	metaConn.Close()
	pbxConn.Close()
	<-drained
	<-drained
}

func listenLoopback(b *testing.B) *net.UDPConn {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	_ = c.SetReadBuffer(4 << 20)
	return c
}
