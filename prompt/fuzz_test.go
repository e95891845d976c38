package prompt

import (
	"errors"
	"os"
	"testing"
	"time"
)

// FuzzParseWAV: any bytes give audio that obeys the documented bounds, or
// an ErrNotAudio error; never a panic.
func FuzzParseWAV(f *testing.F) {
	for _, s := range []wavSpec{
		{code: wavPCM, channels: 1, rate: 8000, bits: 16},
		{code: wavPCM, channels: 2, rate: 44100, bits: 8, extraChunk: "LIST"},
		{code: wavFloat, channels: 1, rate: 16000, bits: 32, extensible: true},
		{code: wavMuLaw, channels: 1, rate: 8000, bits: 8, streamSize: true},
	} {
		f.Add(makeWAV(f, s, []float64{1000}, 64))
	}
	f.Add([]byte("RIFF\xff\xff\xff\xffWAVEfmt \xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := ParseWAV(data)
		if err != nil {
			if !errors.Is(err, ErrNotAudio) {
				t.Fatalf("error %v does not wrap ErrNotAudio", err)
			}
			return
		}
		if a.Rate < minFileRate || a.Rate > maxFileRate || len(a.Samples) == 0 || len(a.Samples) > len(data) {
			t.Fatalf("rate %d, %d samples from %d bytes", a.Rate, len(a.Samples), len(data))
		}
	})
}

// FuzzDecode drives the MP3 path (and the WAV one) through Decode, with
// inputs bounded to 64 KiB and the decoded duration to 2 s so that one
// input costs milliseconds (the test file is 1 s).
func FuzzDecode(f *testing.F) {
	mp3, err := os.ReadFile("testdata/tone1k.mp3")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(mp3)
	f.Add(mp3[:417])
	f.Add(append([]byte("ID3\x03\x00\x00\x00\x00\x00\x0a"), mp3...))
	f.Add(makeWAV(f, wavSpec{code: wavPCM, channels: 1, rate: 22050, bits: 16}, []float64{440}, 256))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		a, err := Decode(data, Rate8k, 2*time.Second)
		if err != nil {
			if !errors.Is(err, ErrNotAudio) && !errors.Is(err, ErrTooLong) {
				t.Fatalf("error %v is neither ErrNotAudio nor ErrTooLong", err)
			}
			return
		}
		if a.Rate != Rate8k || a.Duration() > 2*time.Second {
			t.Fatalf("rate %d, %v", a.Rate, a.Duration())
		}
	})
}
