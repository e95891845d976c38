package media

import (
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// BenchmarkBridgeLoopback sends one RTP packet A→B through a started
// bridge per op and waits for it at B: socket read, checks, rewrite and
// socket write, as on a live call. allocs/op counts the whole process
// (bridge goroutine included) and must be 0.
func BenchmarkBridgeLoopback(b *testing.B) {
	m := newTestManager(b, 2, 0, 0)
	a, bp := newPeer(b), newPeer(b)
	br, err := m.NewBridge("bench", testLogger(b))
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	if _, err := br.OfferB(sdpOffer(a.port(), "RTP/AVP", "0"), []string{"PCMU"}); err != nil {
		b.Fatal(err)
	}
	answerA, err := br.AnswerB(sdpOffer(bp.port(), "RTP/AVP", "0"))
	if err != nil {
		b.Fatal(err)
	}
	toA := mustParseB(b, answerA)
	br.Start(nil)

	pkt := rtpPacket(b, 0, 1, 160, 42, make([]byte, 160))
	buf := make([]byte, 2048)
	_ = bp.conn.SetReadDeadline(time.Time{})
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		if _, err := a.conn.WriteToUDPAddrPort(pkt, toA); err != nil {
			b.Fatal(err)
		}
		if _, _, err := bp.conn.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func mustParseB(b *testing.B, body []byte) netip.AddrPort {
	d, err := ParseSDP(body)
	if err != nil {
		b.Fatal(err)
	}
	return d.Media[0].Addr()
}

// BenchmarkBridgeMemory reports what a started, idle bridge costs in Go
// heap and stacks (buffers, sockets' poll descriptors, two goroutines).
// Kernel socket buffers are not process memory and not counted; RSS is not
// reported because in-process RSS deltas are dominated by heap reuse.
func BenchmarkBridgeMemory(b *testing.B) {
	const n = 1000
	m := newTestManager(b, 2*n, time.Hour, time.Hour)
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		bridges := make([]*Bridge, n)
		for i := range bridges {
			br, err := m.NewBridge("mem", nil)
			if err != nil {
				b.Fatal(err)
			}
			br.Start(nil)
			bridges[i] = br
		}
		time.Sleep(100 * time.Millisecond) // let every relay goroutine block in its read
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapInuse+after.StackInuse-before.HeapInuse-before.StackInuse)/n, "heap+stack-B/bridge")
		for _, br := range bridges {
			br.Close()
		}
	}
}

// BenchmarkParseSDP parses Meta's offer.
func BenchmarkParseSDP(b *testing.B) {
	body := []byte(metaOffer)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseSDP(body); err != nil {
			b.Fatal(err)
		}
	}
}
