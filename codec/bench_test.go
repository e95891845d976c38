package codec

import (
	"syscall"
	"testing"
	"time"
)

// Hot-path benchmarks: one op is one 20 ms input packet through one
// direction (BenchmarkOpusToG711, BenchmarkG711ToOpus), or 20 ms of a whole
// transcoded call, both directions (BenchmarkCall). Inputs are 5 s of
// speech-like audio, cycled. Each also reports "cpu-ns/op", the process's
// user+system CPU time per op from getrusage: on a shared machine wall time
// (ns/op) includes waiting for a core, CPU time does not. BenchmarkCall
// reports "cpu-ms/call-s", the CPU one call costs per second of talk
// (cpu-ns/op × 50 packets/s each way).

// cpuNow is the process's user+system CPU time.
func cpuNow() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuPerOp runs loop (a b.Loop loop) and reports CPU time per op; it
// returns that time in nanoseconds.
func cpuPerOp(b *testing.B, loop func()) float64 {
	b.ReportAllocs()
	start := cpuNow()
	loop()
	ns := float64(cpuNow()-start) / float64(b.N)
	b.ReportMetric(ns, "cpu-ns/op")
	return ns
}

// benchPackets returns 5 s of speech-like audio as 20 ms PCMU payloads and
// as 20 ms Opus payloads from a WhatsApp-like encoder.
func benchPackets(b *testing.B) (g711, opusPkts [][]byte) {
	b.Helper()
	g711 = packets(MuLaw.Encode(nil, speechLike(8000, 5)), 20)
	opusPkts = encodeOpus48(b, refEncoder(b, 5), speechLike(48000, 5))
	return g711, opusPkts
}

// benchWrite feeds pkts, cycled, one per op.
func benchWrite(b *testing.B, tc *Transcoder, pkts [][]byte, lossEvery int) {
	sink := 0
	emit := func(frame []byte, _ int) { sink += len(frame) }
	i := 0
	cpuPerOp(b, func() {
		for b.Loop() {
			lost := 0
			if lossEvery > 0 && i%lossEvery == lossEvery-1 {
				lost = 1 // skip one packet: conceal it from this one's FEC
				i++
			}
			if err := tc.Write(pkts[i%len(pkts)], lost, emit); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

func BenchmarkOpusToG711(b *testing.B) {
	_, pkts := benchPackets(b)
	for _, mode := range modes {
		b.Run(mode.String(), func(b *testing.B) {
			benchWrite(b, newTC(b, opus20, pcmu20, mode), pkts, 0)
		})
	}
}

func BenchmarkG711ToOpus(b *testing.B) {
	pkts, _ := benchPackets(b)
	for _, mode := range modes {
		b.Run(mode.String(), func(b *testing.B) {
			benchWrite(b, newTC(b, pcmu20, opus20, mode), pkts, 0)
		})
	}
}

// BenchmarkG711ToOpus30ms is the repacketizing case: 30 ms PCMU in, 20 ms
// Opus out (one op is one 30 ms packet, so 1.5 encodes on average).
func BenchmarkG711ToOpus30ms(b *testing.B) {
	pkts := packets(MuLaw.Encode(nil, speechLike(8000, 5)), 30)
	benchWrite(b, newTC(b, Format{Name: "PCMU", PtimeMs: 30}, opus20, defaultRateMode), pkts, 0)
}

// BenchmarkOpusToG711Loss conceals every tenth packet from the next one's
// FEC (two decodes for that packet).
func BenchmarkOpusToG711Loss(b *testing.B) {
	_, pkts := benchPackets(b)
	benchWrite(b, newTC(b, opus20, pcmu20, defaultRateMode), pkts, 10)
}

// BenchmarkCall is one op = 20 ms of one transcoded call: an Opus packet
// to the PBX and a PCMU packet to WhatsApp.
func BenchmarkCall(b *testing.B) {
	g711, opusPkts := benchPackets(b)
	for _, mode := range modes {
		b.Run(mode.String(), func(b *testing.B) {
			toPBX := newTC(b, opus20, pcmu20, mode)
			toWA := newTC(b, pcmu20, opus20, mode)
			sink := 0
			emit := func(frame []byte, _ int) { sink += len(frame) }
			i := 0
			ns := cpuPerOp(b, func() {
				for b.Loop() {
					if err := toPBX.Write(opusPkts[i%len(opusPkts)], 0, emit); err != nil {
						b.Fatal(err)
					}
					if err := toWA.Write(g711[i%len(g711)], 0, emit); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
			b.ReportMetric(ns*50/1e6, "cpu-ms/call-s")
		})
	}
}
