package codec

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMeasureQuality is the measurement behind the rate-conversion choice
// (docs/codec.md), not a pass/fail test: it prints SNR and log-spectral
// distance for a sweep and for speech through every path in both rate
// modes. It needs espeak-ng for the speech and runs only when asked:
//
//	WAGATE_CODEC_MEASURE=1 go test -run TestMeasureQuality -v ./codec/
//
// Opus outputs are decoded by an independent 48 kHz decoder and brought to
// 8 kHz by a long offline resampler, and Opus inputs come from a
// WhatsApp-like 48 kHz wideband encoder, so neither mode is judged by its
// own machinery.
func TestMeasureQuality(t *testing.T) {
	if testing.Short() || os.Getenv("WAGATE_CODEC_MEASURE") == "" {
		t.Skip("measurement: set WAGATE_CODEC_MEASURE=1 (needs espeak-ng)")
	}
	type signal struct {
		name    string
		s8, s48 []int16
	}
	signals := []signal{{"sweep 300–3400 Hz", sweep(300, 3400, 8000, 6, 0.3), sweep(300, 3400, 48000, 6, 0.3)}}
	if sp, rate, err := espeak(t.TempDir()); err != nil {
		t.Logf("no speech: %v", err)
	} else {
		signals = append(signals, signal{"speech (espeak-ng)", resampleOffline(sp, rate, 8000), resampleOffline(sp, rate, 48000)})
	}

	type path struct {
		name string
		run  func(mode rateMode, s8, s48 []int16) []int16 // 8 kHz result
	}
	fromOpus := func(pkts [][]byte) []int16 { return resampleOffline(decodeOpus48(t, pkts), 48000, 8000) }
	paths := []path{
		{"G.711→Opus", func(m rateMode, s8, _ []int16) []int16 {
			p, _ := run(t, measureTC(t, pcmu20, opus20, m), packets(MuLaw.Encode(nil, s8), 20))
			return fromOpus(p)
		}},
		{"Opus→G.711", func(m rateMode, _, s48 []int16) []int16 {
			p, _ := run(t, measureTC(t, opus20, pcmu20, m), encodeOpus48(t, refEncoder(t, 5), s48))
			return MuLaw.Decode(nil, concat(p))
		}},
		{"G.711→Opus→G.711", func(m rateMode, s8, _ []int16) []int16 {
			p, _ := run(t, measureTC(t, pcmu20, opus20, m), packets(MuLaw.Encode(nil, s8), 20))
			p, _ = run(t, measureTC(t, opus20, pcmu20, m), p)
			return MuLaw.Decode(nil, concat(p))
		}},
		{"Opus→G.711→Opus", func(m rateMode, _, s48 []int16) []int16 {
			p, _ := run(t, measureTC(t, opus20, pcmu20, m), encodeOpus48(t, refEncoder(t, 5), s48))
			p, _ = run(t, measureTC(t, pcmu20, opus20, m), p)
			return fromOpus(p)
		}},
	}

	var report strings.Builder
	fmt.Fprintf(&report, "\n| signal | path | mode | SNR dB | LSD dB | delay ms |\n|---|---|---|---|---|---|\n")
	for _, sig := range signals {
		for _, p := range paths {
			for _, m := range modes {
				out := p.run(m, sig.s8, sig.s48)
				snr, delay := alignedSNR(sig.s8, out, 1600, 1600)
				al, _ := alignedOutput(sig.s8, out, 1600)
				lsd := logSpectralDistance(toFloat(sig.s8), al, 8000)
				fmt.Fprintf(&report, "| %s | %s | %s | %.1f | %.2f | %.1f |\n", sig.name, p.name, m, snr, lsd, delay/8)
			}
		}
	}

	// What FEC buys: speech Opus→G.711 with 10 % random loss, concealed
	// from the next packet's FEC (the transcoder's way) or by PLC alone.
	sp := signals[len(signals)-1]
	pkts := encodeOpus48(t, refEncoder(t, 10), sp.s48)
	rng := rand.New(rand.NewPCG(1, 2))
	lossy := make([][]byte, len(pkts))
	for i, p := range pkts {
		if i > 0 && rng.IntN(10) == 0 {
			continue
		}
		lossy[i] = p
	}
	fmt.Fprintf(&report, "\n| %s, Opus→G.711, 10 %% loss | SNR dB | LSD dB |\n|---|---|---|\n", sp.name)
	for _, fec := range []bool{true, false} {
		tc := measureTC(t, opus20, pcmu20, defaultRateMode)
		var out []byte
		emit := func(f []byte, _ int) { out = append(out, f...) }
		lost := 0
		for _, p := range lossy {
			switch {
			case p == nil && fec:
				lost++
				continue
			case p == nil:
				_ = tc.Write(nil, 0, emit) // PLC now, FEC never used
				continue
			}
			if err := tc.Write(p, lost, emit); err != nil {
				t.Fatal(err)
			}
			lost = 0
		}
		pcm := MuLaw.Decode(nil, out)
		snr, _ := alignedSNR(sp.s8, pcm, 1600, 1600)
		al, _ := alignedOutput(sp.s8, pcm, 1600)
		fmt.Fprintf(&report, "| FEC %t | %.1f | %.2f |\n", fec, snr, logSpectralDistance(toFloat(sp.s8), al, 8000))
	}
	t.Log(report.String())
}

func measureTC(t *testing.T, in, out Format, m rateMode) *Transcoder {
	tc, err := newTranscoder(in, out, DefaultOptions(), m)
	if err != nil {
		t.Fatal(err)
	}
	return tc
}

// espeak synthesizes a few Harvard sentences with espeak-ng and returns
// the mono 16-bit samples and their rate.
func espeak(dir string) ([]int16, int, error) {
	bin, err := exec.LookPath("espeak-ng")
	if err != nil {
		return nil, 0, err
	}
	wav := filepath.Join(dir, "speech.wav")
	text := "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. " +
		"It is easy to tell the depth of a well. These days a chicken leg is a rare dish. " +
		"Rice is often served in round bowls."
	if out, err := exec.Command(bin, "-v", "en-us", "-s", "150", "-w", wav, text).CombinedOutput(); err != nil {
		return nil, 0, fmt.Errorf("espeak-ng: %v: %s", err, out)
	}
	data, err := os.ReadFile(wav)
	if err != nil {
		return nil, 0, err
	}
	return parseWAV(data)
}

// parseWAV reads a mono 16-bit PCM RIFF/WAVE file.
func parseWAV(b []byte) ([]int16, int, error) {
	if len(b) < 12 || string(b[:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return nil, 0, fmt.Errorf("not a WAV file")
	}
	rate := 0
	for off := 12; off+8 <= len(b); {
		id, size := string(b[off:off+4]), int(binary.LittleEndian.Uint32(b[off+4:]))
		body := b[off+8 : min(len(b), off+8+size)]
		switch id {
		case "fmt ":
			if len(body) < 16 || binary.LittleEndian.Uint16(body[0:]) != 1 ||
				binary.LittleEndian.Uint16(body[2:]) != 1 || binary.LittleEndian.Uint16(body[14:]) != 16 {
				return nil, 0, fmt.Errorf("WAV is not mono 16-bit PCM")
			}
			rate = int(binary.LittleEndian.Uint32(body[4:]))
		case "data":
			if rate == 0 {
				return nil, 0, fmt.Errorf("WAV data before fmt")
			}
			pcm := make([]int16, len(body)/2)
			for i := range pcm {
				pcm[i] = int16(binary.LittleEndian.Uint16(body[2*i:]))
			}
			return pcm, rate, nil
		}
		off += 8 + size + size%2
	}
	return nil, 0, fmt.Errorf("WAV without data")
}
