package codec

import (
	"math"
	"testing"
)

func TestG711RoundTrip(t *testing.T) {
	for _, tc := range []struct {
		law     G711Law
		silence byte
		// maxRelErr bounds |decode(encode(x)) − x| / |x| for |x| ≥ 256:
		// both laws keep 4 mantissa bits, so half a step is about 1/32 of
		// the segment's base; μ-law's bias makes it worse at the bottom of
		// a segment (380 sits half a 32-step from its code: 4.2 %).
		maxRelErr float64
	}{
		{MuLaw, 0xFF, 0.045},
		{ALaw, 0xD5, 0.04},
	} {
		t.Run(tc.law.String(), func(t *testing.T) {
			if got := tc.law.Silence(); got != tc.silence {
				t.Errorf("Silence() = %#x, want %#x", got, tc.silence)
			}
			if s := tc.law.Decode(nil, []byte{tc.silence}); math.Abs(float64(s[0])) > 8 {
				t.Errorf("silence decodes to %d", s[0])
			}
			// Every code decodes to a value that encodes back to it (μ-law
			// has two zeros, 0x7F and 0xFF: both decode to 0 and 0 encodes
			// to 0xFF).
			all := make([]byte, 256)
			for i := range all {
				all[i] = byte(i)
			}
			pcm := tc.law.Decode(nil, all)
			back := tc.law.Encode(nil, pcm)
			for i := range all {
				if back[i] != all[i] && pcm[i] != 0 {
					t.Errorf("code %#x → %d → %#x", all[i], pcm[i], back[i])
				}
			}
			// Every linear value survives with the companding error only.
			lin := make([]int16, 0, 65536)
			for v := math.MinInt16; v <= math.MaxInt16; v++ {
				lin = append(lin, int16(v))
			}
			dec := tc.law.Decode(nil, tc.law.Encode(nil, lin))
			for i, x := range lin {
				if math.Abs(float64(x)) < 256 {
					if d := math.Abs(float64(dec[i]) - float64(x)); d > 16 {
						t.Fatalf("%d → %d", x, dec[i])
					}
					continue
				}
				if e := math.Abs(float64(dec[i])-float64(x)) / math.Abs(float64(x)); e > tc.maxRelErr {
					t.Fatalf("%d → %d: relative error %.3f", x, dec[i], e)
				}
			}
		})
	}
}

func TestG711Append(t *testing.T) {
	pcm := tone(1000, 8000, 160, 0.5)
	dst := make([]byte, 3, 200)
	got := MuLaw.Encode(dst, pcm)
	if len(got) != 163 || &got[0] != &dst[0] {
		t.Fatalf("Encode did not append in place: len %d", len(got))
	}
	dec := DecodeG711("pcmu", got[3:], []int16{7})
	if len(dec) != 161 || dec[0] != 7 {
		t.Fatalf("DecodeG711 did not append: len %d first %d", len(dec), dec[0])
	}
	if out := DecodeG711("G722", got, nil); len(out) != 0 {
		t.Fatalf("unknown law decoded %d samples", len(out))
	}
	if out := EncodeG711("PCMA", pcm, nil); len(out) != 160 {
		t.Fatalf("EncodeG711 len %d", len(out))
	}
	// G.711's SNR on a tone is the textbook 35–39 dB (36.7 dB for μ-law
	// at −6 dBFS, 1017 Hz: not a divisor of 8 kHz, so the error is not a
	// repeating pattern of a few samples).
	ref := tone(1017, 8000, 8000, 0.5)
	for _, law := range []G711Law{MuLaw, ALaw} {
		snr, _ := alignedSNR(ref, law.Decode(nil, law.Encode(nil, ref)), 0, 0)
		if snr < 35 {
			t.Errorf("%s SNR %.1f dB, want ≥ 35", law, snr)
		}
	}
}

func TestG711Transcode(t *testing.T) {
	pcm := tone(441, 8000, 8000, 0.3)
	u := MuLaw.Encode(nil, pcm)
	a := MuLaw.Transcode(nil, u, ALaw)
	snr, _ := alignedSNR(pcm, ALaw.Decode(nil, a), 0, 0)
	// A tandem μ→A adds a second quantization: 33 dB measured.
	if snr < 30 {
		t.Fatalf("μ→A SNR %.1f dB", snr)
	}
	u2 := ALaw.Transcode(nil, a, MuLaw)
	if snr, _ := alignedSNR(pcm, MuLaw.Decode(nil, u2), 0, 0); snr < 30 {
		t.Fatalf("μ→A→μ SNR %.1f dB", snr)
	}
}

func TestG711ZeroAlloc(t *testing.T) {
	pcm := tone(1000, 8000, 160, 0.5)
	enc := make([]byte, 0, 160)
	dec := make([]int16, 0, 160)
	allocs := testing.AllocsPerRun(100, func() {
		enc = MuLaw.Encode(enc[:0], pcm)
		dec = DecodeG711("PCMA", enc, dec[:0])
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per frame", allocs)
	}
}

func BenchmarkG711(b *testing.B) {
	pcm := tone(1000, 8000, 160, 0.5)
	enc := make([]byte, 0, 160)
	dec := make([]int16, 0, 160)
	cpuPerOp(b, func() {
		for b.Loop() {
			enc = ALaw.Encode(enc[:0], pcm)
			dec = ALaw.Decode(dec[:0], enc)
		}
	})
}
