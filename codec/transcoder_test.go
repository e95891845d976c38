package codec

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"

	"gopkg.in/hraban/opus.v2"
)

var modes = []rateMode{rateLibopus, rateFIR}

var (
	pcmu20 = Format{Name: "PCMU", Rate: 8000, PtimeMs: 20}
	pcma20 = Format{Name: "PCMA", Rate: 8000, PtimeMs: 20}
	opus20 = Format{Name: "opus", Rate: 48000, PtimeMs: 20}
)

func newTC(t testing.TB, in, out Format, mode rateMode) *Transcoder {
	t.Helper()
	tc, err := newTranscoder(in, out, DefaultOptions(), mode)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.Close)
	return tc
}

// g711ToOpus sends 8 kHz PCM as 20 ms PCMU through the transcoder and
// returns the Opus output decoded at 8 kHz by an independent decoder.
func g711ToOpus(t testing.TB, mode rateMode, src []int16) []int16 {
	t.Helper()
	tc := newTC(t, pcmu20, opus20, mode)
	pkts, total := run(t, tc, packets(MuLaw.Encode(nil, src), 20))
	if total != len(pkts)*960 {
		t.Fatalf("opus output: %d samples for %d packets", total, len(pkts))
	}
	dec, err := opus.NewDecoder(8000, 1)
	if err != nil {
		t.Fatal(err)
	}
	var out []int16
	buf := make([]int16, 960)
	for _, p := range pkts {
		n, err := dec.Decode(p, buf)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, buf[:n]...)
	}
	return out
}

// opusToG711 encodes 48 kHz PCM like a WhatsApp client, sends it through
// the transcoder to 20 ms PCMA and returns the decoded 8 kHz output.
func opusToG711(t testing.TB, mode rateMode, src48 []int16) []int16 {
	t.Helper()
	tc := newTC(t, opus20, pcma20, mode)
	pkts, _ := run(t, tc, encodeOpus48(t, refEncoder(t, 5), src48))
	return ALaw.Decode(nil, concat(pkts))
}

// TestTranscodeFrequencyAndSNR sends a 1 kHz tone and a 300–3400 Hz sweep
// through each direction in both rate modes: the frequency must survive
// (±1 %) and the waveform must stay close to the source after delay
// alignment. Opus at 20 kbit/s is a perceptual codec (SILK models speech,
// it does not match waveforms), so the SNR floors are far below G.711's
// 38 dB; each is the lowest value measured across both modes minus about
// 3 dB of margin for other libopus builds (measured values are logged).
func TestTranscodeFrequencyAndSNR(t *testing.T) {
	const dur = 3.0
	signals := []struct {
		name  string
		s8    []int16
		s48   []int16
		sweep bool
	}{
		{"tone1k", tone(1000, 8000, int(dur*8000), 0.3), tone(1000, 48000, int(dur*48000), 0.3), false},
		{"sweep", sweep(300, 3400, 8000, dur, 0.3), sweep(300, 3400, 48000, dur, 0.3), true},
	}
	minSNR := map[string]float64{
		"G711→Opus/tone1k": 23, // measured 30.2 (libopus-8k), 26.2 (fir-48k)
		"G711→Opus/sweep":  13, // measured 16.8, 16.5
		"Opus→G711/tone1k": 27, // measured 30.8, 30.8
		"Opus→G711/sweep":  14, // measured 17.2, 17.6
	}
	for _, mode := range modes {
		for _, sig := range signals {
			for _, dir := range []string{"G711→Opus", "Opus→G711"} {
				name := dir + "/" + sig.name
				t.Run(mode.String()+"/"+name, func(t *testing.T) {
					var out []int16
					if dir == "G711→Opus" {
						out = g711ToOpus(t, mode, sig.s8)
					} else {
						out = opusToG711(t, mode, sig.s48)
					}
					snr, delay := alignedSNR(sig.s8, out, 800, 800)
					t.Logf("SNR %.1f dB, delay %.2f ms", snr, delay/8)
					if snr < minSNR[name] {
						t.Errorf("SNR %.1f dB, want ≥ %.0f", snr, minSNR[name])
					}
					if !sig.sweep {
						if f := zeroCrossFreq(out[800:], 8000); math.Abs(f-1000) > 10 {
							t.Errorf("tone came out at %.1f Hz", f)
						}
						return
					}
					// The sweep: in each 100 ms window the output's frequency
					// must match the source's at the same (aligned) time.
					aligned, _ := alignedOutput(sig.s8, out, 800)
					al := make([]int16, len(aligned))
					for i, v := range aligned {
						al[i] = int16(v)
					}
					for off := 800; off+800 <= len(sig.s8)-800; off += 800 {
						want := zeroCrossFreq(sig.s8[off:off+800], 8000)
						got := zeroCrossFreq(al[off:off+800], 8000)
						if math.Abs(got-want) > want/100 {
							t.Errorf("at %.1f s: %.1f Hz, want %.1f", float64(off)/8000, got, want)
						}
					}
				})
			}
		}
	}
}

// TestRepacketize60s runs 60 s of audio through every G.711 ptime in both
// directions. Output duration must equal input duration minus what is still
// buffered, which is less than one output frame: no gap, no duplicate, no
// drift, and the accounting is exact.
func TestRepacketize60s(t *testing.T) {
	const seconds = 60
	// A 2 s speech-like pattern repeated: cheap to make, and aperiodic
	// within the windows the drift check correlates.
	pattern := speechLike(8000, 2)
	var src []int16
	for range seconds / 2 {
		src = append(src, pattern...)
	}
	in8 := len(src)
	g711 := MuLaw.Encode(nil, src)
	var opusPkts [][]byte
	{
		pkts := encodeOpus48(t, refEncoder(t, 0), resampleOfflineFast(pattern))
		for range seconds / 2 {
			opusPkts = append(opusPkts, pkts...)
		}
	}
	for _, ptime := range []int{5, 10, 20, 30, 40, 60} {
		t.Run(fmt.Sprintf("PCMU%dms→Opus", ptime), func(t *testing.T) {
			tc := newTC(t, Format{Name: "pcmu", PtimeMs: ptime}, Format{Name: "OPUS"}, defaultRateMode)
			dec, err := opus.NewDecoder(8000, 1)
			if err != nil {
				t.Fatal(err)
			}
			var decoded []int16
			buf := make([]int16, 960)
			total, frames := 0, 0
			emit := func(frame []byte, samples int) {
				if samples != 960 {
					t.Fatalf("opus frame of %d samples", samples)
				}
				n, err := dec.Decode(frame, buf)
				if err != nil || n != 160 {
					t.Fatalf("output frame %d: %d samples, %v", frames, n, err)
				}
				decoded = append(decoded, buf[:n]...)
				total += samples
				frames++
			}
			for _, p := range packets(g711, ptime) {
				if err := tc.Write(p, 0, emit); err != nil {
					t.Fatal(err)
				}
			}
			if total+tc.Buffered() != in8*6 || tc.Buffered() >= 960 {
				t.Fatalf("out %d + buffered %d ≠ in %d (48 kHz units)", total, tc.Buffered(), in8*6)
			}
			// No drift: the codec delay at the end equals that at the start.
			d0 := bestLag(toFloat(src[8000:24000]), toFloat(decoded[8000:24000]), 400)
			end := len(decoded) - 24000
			d1 := bestLag(toFloat(src[end:end+16000]), toFloat(decoded[end:end+16000]), 400)
			if math.Abs(d1-d0) > 0.5 {
				t.Fatalf("delay drifted from %.2f to %.2f samples", d0, d1)
			}
		})
		t.Run(fmt.Sprintf("Opus→PCMA%dms", ptime), func(t *testing.T) {
			tc := newTC(t, opus20, Format{Name: "PCMA", PtimeMs: ptime}, defaultRateMode)
			pkts := opusPkts
			total, bytes := 0, 0
			emit := func(frame []byte, samples int) {
				if len(frame) != ptime*8 || samples != ptime*8 {
					t.Fatalf("G.711 frame of %d bytes, %d samples", len(frame), samples)
				}
				total += samples
				bytes += len(frame)
			}
			for _, p := range pkts {
				if err := tc.Write(p, 0, emit); err != nil {
					t.Fatal(err)
				}
			}
			in := len(pkts) * 160
			if total+tc.Buffered() != in || tc.Buffered() >= ptime*8 {
				t.Fatalf("out %d + buffered %d ≠ in %d", total, tc.Buffered(), in)
			}
		})
	}
}

// resampleOfflineFast upsamples 8 kHz to 48 kHz by the package's FIR: good
// enough to make an Opus source for counting samples.
func resampleOfflineFast(x []int16) []int16 {
	u := NewUpsampler(len(x))
	out := make([]int16, len(x)*6)
	if _, err := u.Process(out, x); err != nil {
		panic(err)
	}
	return out
}

// TestOpusLossConcealment drops Opus packets from a 1 kHz tone. The
// output must stay continuous (exactly one output frame per input frame,
// lost ones included) and the gap must carry the tone: rebuilt from the
// next packet's FEC when it arrives, by PLC when it does not.
func TestOpusLossConcealment(t *testing.T) {
	src48 := tone(1000, 48000, 48000, 0.3)
	src8 := tone(1000, 8000, 8000, 0.3)
	pkts := encodeOpus48(t, refEncoder(t, 20), src48) // 20 % loss: FEC on
	for _, tc := range []struct {
		name   string
		drop   []int // packet indexes lost
		asDTX  bool  // announce the loss as an empty Write instead of lost=N
		minRMS float64
		// maxFreqErr is the frequency tolerance in the gap: FEC is the tone
		// itself; a PLC run fades and joins the FEC frame with a phase step,
		// which biases a zero-crossing count by 1–2 %.
		maxFreqErr float64
	}{
		// Fractions of the tone's RMS in the gap: FEC rebuilds it almost
		// fully; PLC continues the tone with a fade (logged values).
		{"one lost, FEC", []int{25}, false, 0.7, 0.01},
		{"three lost, PLC+FEC", []int{20, 21, 22}, false, 0.3, 0.03},
		{"DTX gap, PLC", []int{30}, true, 0.3, 0.03},
	} {
		for _, mode := range modes {
			t.Run(mode.String()+"/"+tc.name, func(t *testing.T) {
				x := newTC(t, opus20, pcmu20, mode)
				var out []byte
				total := 0
				emit := func(frame []byte, samples int) {
					out = append(out, frame...)
					total += samples
				}
				lost := 0
				for i, p := range pkts {
					if contains(tc.drop, i) {
						if tc.asDTX {
							if err := x.Write(nil, 0, emit); err != nil {
								t.Fatal(err)
							}
						} else {
							lost++
						}
						continue
					}
					if err := x.Write(p, lost, emit); err != nil {
						t.Fatal(err)
					}
					lost = 0
				}
				if total != len(pkts)*160 {
					t.Fatalf("%d samples out for %d packets in: timing broken", total, len(pkts))
				}
				pcm := MuLaw.Decode(nil, out)
				lo, hi := tc.drop[0]*160, (tc.drop[len(tc.drop)-1]+1)*160
				gap := rms(pcm[lo:hi]) / rms(src8[lo:hi])
				t.Logf("gap RMS %.2f of the tone", gap)
				if gap < tc.minRMS {
					t.Errorf("gap RMS %.2f of the tone, want ≥ %.1f", gap, tc.minRMS)
				}
				if f := zeroCrossFreq(pcm[lo:hi], 8000); math.Abs(f-1000) > 1000*tc.maxFreqErr {
					t.Errorf("gap carries %.1f Hz", f)
				}
			})
		}
	}
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestG711LossConcealment drops 20 ms PCMU packets on the way to Opus: the
// Opus stream stays continuous and the first part of the gap is filled.
func TestG711LossConcealment(t *testing.T) {
	src := tone(500, 8000, 8000, 0.3)
	pk := packets(MuLaw.Encode(nil, src), 20)
	pk[20], pk[21], pk[22], pk[23] = nil, nil, nil, nil // 80 ms lost
	tc := newTC(t, pcmu20, opus20, defaultRateMode)
	var pcm []int16
	tc.SetPCMTap(func(p []int16) { pcm = append(pcm, p...) })
	_, total := run(t, tc, pk)
	if total != len(pk)*960 {
		t.Fatalf("%d samples out for %d packets: timing broken", total, len(pk))
	}
	if len(pcm) != len(src) {
		t.Fatalf("tap saw %d samples, want %d", len(pcm), len(src))
	}
	// First 10 ms at full level, faded out by 50 ms, silent after.
	if r := rms(pcm[20*160:20*160+80]) / rms(src[:80]); r < 0.9 {
		t.Errorf("first 10 ms of the gap at %.2f of the level", r)
	}
	if f := zeroCrossFreq(pcm[20*160:20*160+240], 8000); math.Abs(f-500) > 5 {
		t.Errorf("concealment at %.1f Hz, want 500 (pitch repetition)", f)
	}
	if r := rms(pcm[20*160+400 : 24*160]); r != 0 {
		t.Errorf("gap after 50 ms not silent: RMS %.1f", r)
	}
}

func TestSilence(t *testing.T) {
	t.Run("opus", func(t *testing.T) {
		tc := newTC(t, pcmu20, opus20, defaultRateMode)
		dec, err := opus.NewDecoder(48000, 1)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]int16, 5760)
		n := 0
		for range 5 {
			tc.Silence(func(frame []byte, samples int) {
				n++
				if samples != 960 {
					t.Errorf("silence of %d samples", samples)
				}
				got, err := dec.Decode(frame, buf)
				if err != nil || got != 960 {
					t.Fatalf("silence frame decodes to %d samples: %v", got, err)
				}
				if r := rms(buf[:got]); r > 4 {
					t.Errorf("silence decodes with RMS %.1f", r)
				}
			})
		}
		if n != 5 {
			t.Fatalf("%d frames for 5 calls", n)
		}
		// Audio after silence still encodes and decodes.
		_, total := run(t, tc, packets(MuLaw.Encode(nil, tone(1000, 8000, 1600, 0.3)), 20))
		if total != 10*960 {
			t.Fatalf("after silence: %d samples", total)
		}
	})
	t.Run("PCMA30", func(t *testing.T) {
		tc := newTC(t, opus20, Format{Name: "PCMA", PtimeMs: 30}, defaultRateMode)
		tc.Silence(func(frame []byte, samples int) {
			if len(frame) != 240 || samples != 240 {
				t.Fatalf("silence of %d bytes, %d samples", len(frame), samples)
			}
			for _, s := range ALaw.Decode(nil, frame) {
				if s > 8 || s < -8 {
					t.Fatalf("silence decodes to %d", s)
				}
			}
		})
	})
}

func TestPCMUToPCMA(t *testing.T) {
	src := tone(1017, 8000, 8000, 0.3)
	tc := newTC(t, Format{Name: "PCMU", PtimeMs: 30}, Format{Name: "pcma", PtimeMs: 20}, defaultRateMode)
	pkts, total := run(t, tc, packets(MuLaw.Encode(nil, src), 30))
	in := len(src) / 240 * 240
	if total+tc.Buffered() != in {
		t.Fatalf("out %d + buffered %d ≠ in %d", total, tc.Buffered(), in)
	}
	out := ALaw.Decode(nil, concat(pkts))
	// Two G.711 quantizations in tandem: 33 dB measured.
	if snr, d := alignedSNR(src[:len(out)], out, 0, 0); snr < 30 || d != 0 {
		t.Fatalf("SNR %.1f dB, delay %.1f", snr, d)
	}
}

func TestPCMTap(t *testing.T) {
	src48 := tone(1000, 48000, 48000, 0.3)
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			tc := newTC(t, opus20, pcmu20, mode)
			var pcm []int16
			tc.SetPCMTap(func(p []int16) { pcm = append(pcm, p...) })
			pkts := encodeOpus48(t, refEncoder(t, 0), src48)
			run(t, tc, pkts[:25])
			tc.SetPCMTap(nil)
			run(t, tc, pkts[25:])
			if len(pcm) != 25*160 {
				t.Fatalf("tap got %d samples, want %d", len(pcm), 25*160)
			}
			if f := zeroCrossFreq(pcm[800:], 8000); math.Abs(f-1000) > 10 {
				t.Fatalf("tap tone at %.1f Hz", f)
			}
		})
	}
}

// TestSetPacketLossConcurrent: the RTCP side may set the loss while the
// media side writes (the race detector is the assertion).
func TestSetPacketLossConcurrent(t *testing.T) {
	tc := newTC(t, pcmu20, opus20, defaultRateMode)
	pkts := packets(MuLaw.Encode(nil, speechLike(8000, 2)), 20)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 200 {
			tc.SetPacketLoss(i % 30)
			tc.SetPCMTap(func([]int16) {})
		}
	})
	_, total := run(t, tc, pkts)
	wg.Wait()
	if total != len(pkts)*960 {
		t.Fatalf("%d samples", total)
	}
	tc.SetPacketLoss(-5) // clamped, not an error
	tc.SetPacketLoss(500)
	if _, total := run(t, tc, pkts[:5]); total != 5*960 {
		t.Fatalf("%d samples after clamped loss", total)
	}
}

func TestCorruptOpusIsConcealed(t *testing.T) {
	tc := newTC(t, opus20, pcmu20, defaultRateMode)
	total := 0
	emit := func(_ []byte, n int) { total += n }
	// TOC code 3 (arbitrary frame count) without its count byte.
	err := tc.Write([]byte{0x03}, 0, emit)
	if err == nil {
		t.Fatal("corrupt packet accepted silently")
	}
	if total != 160 {
		t.Fatalf("corrupt packet produced %d samples, want 160 (concealed)", total)
	}
	// Corrupt after a loss: the missing packet is concealed by PLC, the
	// corrupt one too, and the error still says what happened.
	total = 0
	if err := tc.Write([]byte{0x03}, 2, emit); err == nil || total != 3*160 {
		t.Fatalf("corrupt packet after loss: %d samples, err %v", total, err)
	}
	pkts := encodeOpus48(t, refEncoder(t, 0), tone(1000, 48000, 4800, 0.3))
	if _, n := run(t, tc, pkts); n != 5*160 {
		t.Fatalf("after a corrupt packet: %d samples", n)
	}
}

func TestNewTranscoderErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in, out Format
		opt     Options
	}{
		{"unknown codec", Format{Name: "G722"}, pcmu20, DefaultOptions()},
		{"opus to opus", opus20, opus20, DefaultOptions()},
		{"opus rate", Format{Name: "opus", Rate: 16000}, pcmu20, DefaultOptions()},
		{"opus ptime", pcmu20, Format{Name: "opus", PtimeMs: 30}, DefaultOptions()},
		{"g711 rate", Format{Name: "PCMU", Rate: 16000}, opus20, DefaultOptions()},
		{"g711 ptime odd", Format{Name: "PCMU", PtimeMs: 12}, opus20, DefaultOptions()},
		{"g711 ptime long", opus20, Format{Name: "PCMA", PtimeMs: 80}, DefaultOptions()},
		{"bitrate", pcmu20, opus20, Options{OpusBitrate: 1000}},
		{"bitrate high", pcmu20, opus20, Options{OpusBitrate: 600000}},
		{"complexity", pcmu20, opus20, Options{OpusComplexity: 11}},
		{"complexity negative", pcmu20, opus20, Options{OpusComplexity: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewTranscoder(tc.in, tc.out, tc.opt); err == nil {
				t.Fatal("accepted")
			} else {
				t.Log(err)
			}
		})
	}
	// Zero values take the defaults.
	tc, err := NewTranscoder(Format{Name: "Opus"}, Format{Name: "pcmu"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if tc.In() != opus20 || tc.Out() != pcmu20 {
		t.Fatalf("defaults: in %+v out %+v", tc.In(), tc.Out())
	}
	tc.Close()
	// Complexity 0 is libopus's cheapest setting, not "default".
	enc, err := NewTranscoder(pcmu20, opus20, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, total := run(t, enc, packets(make([]byte, 1600), 20)); total != 10*960 {
		t.Fatalf("complexity 0: %d samples", total)
	}
	if err := tc.Write([]byte{1}, 0, func([]byte, int) {}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	tc.Silence(func([]byte, int) { t.Fatal("Silence after Close emitted") })
}

// TestWriteZeroAlloc: the per-packet path allocates nothing in steady
// state, both directions, both modes, with a tap set.
func TestWriteZeroAlloc(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			up := newTC(t, Format{Name: "PCMU", PtimeMs: 30}, opus20, mode)
			down := newTC(t, opus20, Format{Name: "PCMA", PtimeMs: 10}, mode)
			g := packets(MuLaw.Encode(nil, speechLike(8000, 1)), 30)
			o := encodeOpus48(t, refEncoder(t, 5), speechLike(48000, 1))
			sink := 0
			emit := func(frame []byte, samples int) { sink += len(frame) + samples }
			tap := func(pcm []int16) { sink += len(pcm) }
			up.SetPCMTap(tap)
			down.SetPCMTap(tap)
			i := 0
			allocs := testing.AllocsPerRun(200, func() {
				_ = up.Write(g[i%len(g)], 0, emit)
				_ = down.Write(o[i%len(o)], i%7/6, emit) // a loss now and then
				up.Silence(emit)
				i++
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per packet", allocs)
			}
		})
	}
}

// TestLossUnits: a lost G.711 packet is as long as the packets the peer
// really sends (not the SDP's ptime), a TOC-only Opus packet (DTX) is
// 20 ms of concealment, and a huge gap is capped at MaxConcealPackets.
func TestLossUnits(t *testing.T) {
	t.Run("G.711 30 ms packets, SDP says 20", func(t *testing.T) {
		tc := newTC(t, pcmu20, pcma20, defaultRateMode)
		pk := packets(MuLaw.Encode(nil, tone(500, 8000, 2400, 0.3)), 30)
		pk[4] = nil
		_, total := run(t, tc, pk)
		if total+tc.Buffered() != 10*240 {
			t.Fatalf("out %d + buffered %d, want %d", total, tc.Buffered(), 10*240)
		}
	})
	t.Run("Opus TOC-only packet", func(t *testing.T) {
		tc := newTC(t, opus20, pcmu20, defaultRateMode)
		pkts := encodeOpus48(t, refEncoder(t, 0), tone(1000, 48000, 4800, 0.3))
		_, total := run(t, tc, pkts[:3])
		emit := func(_ []byte, n int) { total += n }
		if err := tc.Write(pkts[3][:1], 0, emit); err != nil {
			t.Fatal(err)
		}
		if total != 4*160 {
			t.Fatalf("%d samples after a TOC-only packet, want %d", total, 4*160)
		}
	})
	t.Run("cap", func(t *testing.T) {
		tc := newTC(t, opus20, pcmu20, defaultRateMode)
		pkts := encodeOpus48(t, refEncoder(t, 0), tone(1000, 48000, 4800, 0.3))
		total := 0
		if err := tc.Write(pkts[0], 1000, func(_ []byte, n int) { total += n }); err != nil {
			t.Fatal(err)
		}
		if total != (MaxConcealPackets+1)*160 {
			t.Fatalf("%d samples for a 1000-packet gap, want %d", total, (MaxConcealPackets+1)*160)
		}
	})
}

// TestOpusSilence: the precomputed silence frame is the settled encoder's
// (the same bytes however often it is made), a 20 ms packet of the
// encoder's narrowband mode, and a decoder fed it over and over, after
// speech, outputs silence; bad options are refused.
func TestOpusSilence(t *testing.T) {
	f1, err := OpusSilence(DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	f2, _ := OpusSilence(DefaultOptions())
	if !bytes.Equal(f1, f2) || len(f1) == 0 || len(f1) > 20 {
		t.Fatalf("silence frames %x and %x", f1, f2)
	}
	dec, err := opus.NewDecoder(48000, 1)
	if err != nil {
		t.Fatal(err)
	}
	tc := newTC(t, pcmu20, opus20, defaultRateMode)
	buf := make([]int16, 5760)
	pkts, _ := run(t, tc, packets(MuLaw.Encode(nil, tone(1000, 8000, 1600, 0.3)), 20))
	for _, p := range pkts {
		if _, err := dec.Decode(p, buf); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		n, err := dec.Decode(f1, buf)
		if err != nil || n != 960 {
			t.Fatalf("silence frame decodes to %d samples: %v", n, err)
		}
		if r := rms(buf[:n]); i >= 2 && r > 4 {
			t.Errorf("silence frame %d after speech decodes with RMS %.1f", i, r)
		}
	}
	if _, err := OpusSilence(Options{OpusBitrate: 1, OpusComplexity: 5}); err == nil {
		t.Error("a 1 bit/s Opus encoder made silence")
	}
}

// TestEncoderWritePCM: an encoder takes PCM in any pieces and emits whole
// output packets at the output's ptime, Opus that decodes back to the
// tone, G.711 that is the tone's own encoding.
func TestEncoderWritePCM(t *testing.T) {
	pcm := tone(1000, 8000, 8000, 0.3)
	enc, err := NewEncoder(opus20, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := opus.NewDecoder(48000, 1)
	buf := make([]int16, 5760)
	var out []int16
	frames := 0
	for off := 0; off < len(pcm); off += 160 {
		if err := enc.WritePCM(pcm[off:off+160], func(f []byte, samples int) {
			frames++
			if samples != 960 {
				t.Errorf("Opus frame of %d samples", samples)
			}
			n, err := dec.Decode(f, buf)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, buf[:n]...)
		}); err != nil {
			t.Fatal(err)
		}
	}
	if frames != 50 {
		t.Errorf("%d Opus frames for 1 s of PCM, want 50", frames)
	}
	if f := zeroCrossFreq(out[4800:], 48000); math.Abs(f-1000) > 10 {
		t.Errorf("the Opus output decodes to %.1f Hz, want 1000", f)
	}
	g, err := NewEncoder(Format{Name: "PCMA", PtimeMs: 30}, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for off := 0; off < 2400; off += 160 {
		_ = g.WritePCM(pcm[off:off+160], func(f []byte, samples int) {
			if len(f) != 240 || samples != 240 {
				t.Errorf("PCMA packet of %d bytes, %d samples, want 30 ms", len(f), samples)
			}
			got = append(got, f...)
		})
	}
	if want := ALaw.Encode(nil, pcm[:2400]); !bytes.Equal(got, want) {
		t.Error("PCMA output differs from the tone's A-law encoding")
	}
	g.Close()
	if err := g.WritePCM(pcm[:160], func([]byte, int) {}); !errors.Is(err, ErrClosed) {
		t.Errorf("WritePCM after Close: %v", err)
	}
}

// TestSwitchLaw: an Opus ↔ G.711 transcoder moves its G.711 side to the
// other law and then reads and writes that law; anything but a change of
// law is refused and changes nothing (a new transcoder is needed then).
func TestSwitchLaw(t *testing.T) {
	dec := newTC(t, opus20, pcmu20, defaultRateMode)
	if err := dec.SwitchLaw(opus20, Format{Name: "pcma"}); err != nil {
		t.Fatal(err)
	}
	if dec.Out() != pcma20 {
		t.Fatalf("out %+v after the switch, want %+v", dec.Out(), pcma20)
	}
	enc := newTC(t, pcmu20, opus20, defaultRateMode)
	if err := enc.SwitchLaw(Format{Name: "PCMA", PtimeMs: 30}, opus20); err != nil {
		t.Fatal(err) // a G.711 input's ptime only sizes concealment
	}
	if enc.In().Name != "PCMA" {
		t.Fatalf("in %+v after the switch, want PCMA", enc.In())
	}
	// A-law in, through the kept encoder and decoder, is the tone out.
	src := tone(1017, 8000, 8000, 0.3)
	pkts, _ := run(t, enc, packets(ALaw.Encode(nil, src), 20))
	var out []byte
	for _, p := range pkts {
		if err := dec.Write(p, 0, func(f []byte, _ int) { out = append(out, f...) }); err != nil {
			t.Fatal(err)
		}
	}
	if f := zeroCrossFreq(ALaw.Decode(nil, out[len(out)/2:]), 8000); math.Abs(f-1017) > 10 {
		t.Fatalf("A-law in, A-law out through Opus: %.1f Hz, want 1017", f)
	}

	for _, c := range []struct {
		name    string
		tc      *Transcoder
		in, out Format
	}{
		{"opus side changes", dec, Format{Name: "opus", PtimeMs: 40}, pcmu20},
		{"opus to opus", dec, opus20, opus20},
		{"g711 to g711", newTC(t, pcmu20, pcma20, defaultRateMode), pcma20, pcmu20},
		{"direction turned", enc, opus20, pcmu20},
		{"unknown codec", enc, Format{Name: "G722"}, opus20},
	} {
		in, out := c.tc.In(), c.tc.Out()
		if err := c.tc.SwitchLaw(c.in, c.out); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
		if c.tc.In() != in || c.tc.Out() != out {
			t.Errorf("%s: refused, but %+v→%+v is now %+v→%+v", c.name, in, out, c.tc.In(), c.tc.Out())
		}
	}
}

// TestSwitchLawAndPtimeKeepsDecoder: WhatsApp's Opus toward a PBX whose
// re-INVITE changes both the law and the ptime (PCMU/20 to PCMA/30, a
// transfer to another phone). The transcoder keeps its Opus decoder and the
// audio waiting for a frame: what the PBX gets, decoded, is the same audio
// a transcoder that never switched gives, sample for sample but for the
// laws' quantisation, with no sample lost. Before, the switch was refused
// and the media layer built a new transcoder: a new decoder in the middle
// of the stream (its start-up heard as a click, its concealment reset).
func TestSwitchLawAndPtimeKeepsDecoder(t *testing.T) {
	src := tone(440, 8000, 8000, 0.3)
	opusPkts, _ := run(t, newTC(t, pcmu20, opus20, defaultRateMode), packets(MuLaw.Encode(nil, src), 20))
	ref := newTC(t, opus20, pcmu20, defaultRateMode)
	var want []int16
	for _, p := range opusPkts {
		if err := ref.Write(p, 0, func(f []byte, _ int) { want = append(want, MuLaw.Decode(nil, f)...) }); err != nil {
			t.Fatal(err)
		}
	}

	tc := newTC(t, opus20, pcmu20, defaultRateMode)
	dec := tc.dec
	var got []int16
	var sizes []int
	half := len(opusPkts) / 2
	for i, p := range opusPkts {
		if i == half {
			// Mid-frame for 30 ms output: 20 ms × half is not a
			// multiple of 30 ms when half is odd, so audio is waiting.
			if err := tc.SwitchLaw(opus20, Format{Name: "PCMA", PtimeMs: 30}); err != nil {
				t.Fatalf("switch to PCMA/30: %v", err)
			}
		}
		law := MuLaw
		if i >= half {
			law = ALaw
		}
		if err := tc.Write(p, 0, func(f []byte, samples int) {
			got = append(got, law.Decode(nil, f)...)
			sizes = append(sizes, samples)
		}); err != nil {
			t.Fatal(err)
		}
	}
	if tc.dec != dec {
		t.Fatal("the switch built a new Opus decoder")
	}
	if tc.Out() != (Format{Name: "PCMA", Rate: 8000, PtimeMs: 30}) {
		t.Errorf("out after the switch: %+v", tc.Out())
	}
	if last := sizes[len(sizes)-1]; last != 240 {
		t.Errorf("last packet of %d samples, want 240 (30 ms)", last)
	}
	if len(got)+tc.Buffered() != len(want) {
		t.Fatalf("%d samples out after the switch and %d waiting, %d without it: audio lost or repeated", len(got), tc.Buffered(), len(want))
	}
	// Compared 10 ms at a time: a decoder restarted at the switch differs
	// from the reference by the tone's own level around it.
	level := rms(src)
	for off := 0; off+80 <= len(got); off += 80 {
		diff := make([]int16, 80)
		for i := range diff {
			diff[i] = got[off+i] - want[off+i]
		}
		if d := rms(diff); d > 0.05*level {
			t.Errorf("at %d ms the output differs from the unswitched one by %.0f (the tone is %.0f)", off/8, d, level)
		}
	}
}

// TestSwitchLawAndPtimeKeepsWaitingAudio: a switch from PCMU/30 to
// PCMA/20 while 10 ms wait for the next 30 ms packet sends those 10 ms in
// the first PCMA packet. A resize that dropped them cut a 10–30 ms gap
// into the agent's audio at the PBX's re-INVITE (the test above switches
// with nothing waiting, so it could not tell).
func TestSwitchLawAndPtimeKeepsWaitingAudio(t *testing.T) {
	src := tone(440, 8000, 8000, 0.3)
	opusPkts, _ := run(t, newTC(t, pcmu20, opus20, defaultRateMode), packets(MuLaw.Encode(nil, src), 20))
	ref := newTC(t, opus20, pcmu20, defaultRateMode)
	var want []int16
	for _, p := range opusPkts {
		if err := ref.Write(p, 0, func(f []byte, _ int) { want = append(want, MuLaw.Decode(nil, f)...) }); err != nil {
			t.Fatal(err)
		}
	}
	tc := newTC(t, opus20, Format{Name: "PCMU", PtimeMs: 30}, defaultRateMode)
	var got []int16
	switched := false
	for i, p := range opusPkts {
		if i == 5 { // 100 ms in: three 30 ms packets out, 10 ms waiting
			if b := tc.Buffered(); b != 80 {
				t.Fatalf("buffered %d before the switch, want 80", b)
			}
			if err := tc.SwitchLaw(opus20, Format{Name: "PCMA", PtimeMs: 20}); err != nil {
				t.Fatal(err)
			}
			switched = true
		}
		law := MuLaw
		if switched {
			law = ALaw
		}
		if err := tc.Write(p, 0, func(f []byte, _ int) { got = append(got, law.Decode(nil, f)...) }); err != nil {
			t.Fatal(err)
		}
	}
	if len(got)+tc.Buffered() != len(want) {
		t.Fatalf("%d samples out and %d waiting, %d without the switch", len(got), tc.Buffered(), len(want))
	}
	level := rms(src)
	for off := 0; off+80 <= len(got); off += 80 {
		diff := make([]int16, 80)
		for i := range diff {
			diff[i] = got[off+i] - want[off+i]
		}
		if d := rms(diff); d > 0.05*level {
			t.Errorf("at %d ms the output differs from the unswitched one by %.0f (the tone is %.0f)", off/8, d, level)
		}
	}
}
