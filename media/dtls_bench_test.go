package media

import (
	"syscall"
	"testing"
	"time"
)

// BenchmarkLegPairKeying: what keying costs wagate per call leg toward
// Meta, DTLS against SDES. Each op joins two bridges by one leg of the
// keying, as two wagates would (X offers, Y answers: with DTLS, X is the
// ICE-controlling side and Y the DTLS client), and waits until both ends
// are keyed; then closes them. cpu-ms/op is the process's CPU time
// (user+system, so it holds on a shared machine where wall time does not)
// for both ends together: one DTLS client and one server, two ICE agents.
// Run with a fixed count, e.g. -benchtime 50x (each op holds ports until
// the end).
func BenchmarkLegPairKeying(b *testing.B) {
	for _, enc := range []string{EncryptionSDES, EncryptionDTLS} {
		b.Run(enc, func(b *testing.B) {
			m := newDTLSManager(b, 4*b.N+8, 10*time.Second, 30*time.Second)
			leg := LegConfig{Codecs: []string{"PCMU"}, Encryption: enc}
			p1, p2 := newPeer(b), newPeer(b)
			plain := func(p *peer) []byte { return sdpOffer(p.port(), "RTP/AVP", "0", "rtpmap:0 PCMU/8000") }
			cpu0 := cpuNow()
			b.ResetTimer()
			for i := range b.N {
				x, err := m.NewCallBridge("x", nil, pcmu, leg)
				if err != nil {
					b.Fatal(err)
				}
				y, err := m.NewCallBridge("y", nil, leg, pcmu)
				if err != nil {
					b.Fatal(err)
				}
				offer, err := x.Offer(plain(p1))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := y.Offer(offer); err != nil {
					b.Fatal(err)
				}
				answer, err := y.AnswerB(plain(p2))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := x.AnswerB(answer); err != nil {
					b.Fatal(err)
				}
				fail := make(chan error, 2)
				x.Start(func(err error) { fail <- err })
				y.Start(func(err error) { fail <- err })
				if enc == EncryptionDTLS {
					want := uint64(2 * (i + 1))
					for deadline := time.Now().Add(10 * time.Second); m.Stats().DTLS.Keyed < want; time.Sleep(200 * time.Microsecond) {
						select {
						case err := <-fail:
							b.Fatalf("op %d: %v", i, err)
						default:
						}
						if time.Now().After(deadline) {
							b.Fatalf("op %d: not keyed within 10 s: %+v", i, m.Stats().DTLS)
						}
					}
				}
				x.Close()
				y.Close()
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuNow()-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
		})
	}
}

// cpuNow is the process's user+system CPU time so far.
func cpuNow() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
