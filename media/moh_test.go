package media

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wagate/wagate/codec"
)

// wavBytes builds a WAV file: format tag, channels, rate, bits, and the
// data chunk's bytes.
func wavBytes(format, channels, rate, bits int, data []byte) []byte {
	var b bytes.Buffer
	b.WriteString("RIFF")
	binary.Write(&b, binary.LittleEndian, uint32(4+8+16+8+len(data)))
	b.WriteString("WAVEfmt ")
	binary.Write(&b, binary.LittleEndian, uint32(16))
	binary.Write(&b, binary.LittleEndian, uint16(format))
	binary.Write(&b, binary.LittleEndian, uint16(channels))
	binary.Write(&b, binary.LittleEndian, uint32(rate))
	binary.Write(&b, binary.LittleEndian, uint32(rate*channels*bits/8))
	binary.Write(&b, binary.LittleEndian, uint16(channels*bits/8))
	binary.Write(&b, binary.LittleEndian, uint16(bits))
	b.WriteString("data")
	binary.Write(&b, binary.LittleEndian, uint32(len(data)))
	b.Write(data)
	return b.Bytes()
}

func pcm16(samples []int16) []byte {
	out := make([]byte, 2*len(samples))
	for i, s := range samples {
		binary.LittleEndian.PutUint16(out[2*i:], uint16(s))
	}
	return out
}

// TestParseWAV: the formats music on hold takes all come out as 8 kHz
// mono at the tone's frequency and level; the rest are refused with a
// reason.
func TestParseWAV(t *testing.T) {
	stereo := func(x []int16) []int16 {
		out := make([]int16, 2*len(x))
		for i, v := range x {
			out[2*i], out[2*i+1] = v, v
		}
		return out
	}
	for _, tt := range []struct {
		name string
		file []byte
	}{
		{"8 kHz mono", wavBytes(1, 1, 8000, 16, pcm16(tone(440, 8000, 8000, 0)))},
		{"16 kHz mono", wavBytes(1, 1, 16000, 16, pcm16(tone(440, 16000, 16000, 0)))},
		{"44.1 kHz stereo", wavBytes(1, 2, 44100, 16, pcm16(stereo(tone(440, 44100, 44100, 0))))},
		{"48 kHz mono", wavBytes(1, 1, 48000, 16, pcm16(tone(440, 48000, 48000, 0)))},
		{"μ-law", wavBytes(7, 1, 8000, 8, codec.EncodeG711("PCMU", tone(440, 8000, 8000, 0), nil))},
		{"A-law", wavBytes(6, 1, 8000, 8, codec.EncodeG711("PCMA", tone(440, 8000, 8000, 0), nil))},
	} {
		c, err := ParseWAV(tt.file)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if d := c.Duration(); math.Abs(d-1) > 0.01 {
			t.Errorf("%s: %.3f s, want 1 s", tt.name, d)
		}
		mid := c.pcm[800 : len(c.pcm)-800] // away from the filter's edges
		if f := zeroCrossFreq(mid, 8000); math.Abs(f-440) > 2 {
			t.Errorf("%s: %.1f Hz, want 440", tt.name, f)
		}
		if r := rms(mid); math.Abs(r-16000/math.Sqrt2) > 600 {
			t.Errorf("%s: RMS %.0f, want about %.0f", tt.name, r, 16000/math.Sqrt2)
		}
	}
	// 3 kHz at 48 kHz survives; 6 kHz (above what 8 kHz can carry) does not alias back.
	c, err := ParseWAV(wavBytes(1, 1, 48000, 16, pcm16(tone(6000, 48000, 48000, 0))))
	if err != nil {
		t.Fatal(err)
	}
	if r := rms(c.pcm[800 : len(c.pcm)-800]); r > 500 {
		t.Errorf("6 kHz resampled to 8 kHz keeps RMS %.0f: aliasing", r)
	}
	for _, tt := range []struct {
		name, want string
		file       []byte
	}{
		{"empty", "not a RIFF WAVE", nil},
		{"24-bit", "want 16-bit PCM", wavBytes(1, 1, 8000, 24, make([]byte, 3000))},
		{"float", "want 16-bit PCM", wavBytes(3, 1, 8000, 32, make([]byte, 4000))},
		{"6 channels", "channels", wavBytes(1, 6, 8000, 16, make([]byte, 12000))},
		{"4 kHz", "sample rate", wavBytes(1, 1, 4000, 16, make([]byte, 8000))},
		{"too short", "shorter than 20 ms", wavBytes(1, 1, 8000, 16, make([]byte, 100))},
		{"no data", "no data chunk", wavBytes(1, 1, 8000, 16, nil)[:36]},
	} {
		if _, err := ParseWAV(tt.file); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error saying %q", tt.name, err, tt.want)
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "moh.wav")
	if err := os.WriteFile(path, wavBytes(1, 1, 8000, 16, pcm16(tone(440, 8000, 800, 0))), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = LoadWAV(path)
	if err != nil {
		t.Fatal(err)
	}
	// The loop wraps: 5 frames of a 100 ms clip is a whole clip and a
	// fifth, the same samples again.
	src := c.Loop()
	var got []int16
	frame := make([]int16, PlaybackFrame)
	for range 6 {
		src.ReadFrame(frame)
		got = append(got, frame...)
	}
	if !slicesEqual(got[800:], c.pcm[:160]) {
		t.Error("the loop does not start again at the clip's start")
	}
	if _, err := LoadWAV(filepath.Join(dir, "missing.wav")); err == nil || !strings.Contains(err.Error(), "music on hold") {
		t.Errorf("missing file: %v", err)
	}
}

func slicesEqual(a, b []int16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestComfortNoise: about the level asked, never digital silence, never
// the same frame twice.
func TestComfortNoise(t *testing.T) {
	src := ComfortNoise(-60)
	pcm := make([]int16, 8000)
	for i := 0; i < len(pcm); i += PlaybackFrame {
		src.ReadFrame(pcm[i : i+PlaybackFrame])
	}
	db := 20 * math.Log10(rms(pcm)/32768)
	if db < -63 || db > -57 {
		t.Errorf("comfort noise at %.1f dBFS, want about -60", db)
	}
	if slicesEqual(pcm[:160], pcm[160:320]) {
		t.Error("the noise repeats frame to frame")
	}
}

// FuzzParseWAV: no panic, and what parses is playable audio.
func FuzzParseWAV(f *testing.F) {
	f.Add(wavBytes(1, 1, 8000, 16, pcm16(tone(440, 8000, 400, 0))))
	f.Add(wavBytes(7, 2, 16000, 8, make([]byte, 800)))
	f.Add(wavBytes(0xFFFE, 1, 48000, 16, make([]byte, 4000)))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseWAV(data)
		if err != nil {
			return
		}
		if len(c.pcm) < PlaybackFrame || len(c.pcm) > maxClip {
			t.Fatalf("%d samples", len(c.pcm))
		}
	})
}
