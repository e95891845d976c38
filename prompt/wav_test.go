package prompt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseWAVFormats(t *testing.T) {
	cases := []wavSpec{
		{code: wavPCM, channels: 1, rate: 8000, bits: 16},
		{code: wavPCM, channels: 1, rate: 8000, bits: 8},
		{code: wavPCM, channels: 2, rate: 44100, bits: 16},
		{code: wavPCM, channels: 1, rate: 48000, bits: 24},
		{code: wavPCM, channels: 1, rate: 16000, bits: 32},
		{code: wavFloat, channels: 2, rate: 22050, bits: 32},
		{code: wavMuLaw, channels: 1, rate: 8000, bits: 8},
		{code: wavALaw, channels: 1, rate: 8000, bits: 8},
		{code: wavPCM, channels: 6, rate: 48000, bits: 16, extensible: true},
		{code: wavPCM, channels: 1, rate: 11025, bits: 16, extraChunk: "LIST"},
		{code: wavPCM, channels: 1, rate: 22050, bits: 16, streamSize: true},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%+v", c), func(t *testing.T) {
			n := c.rate / 2
			a, err := ParseWAV(makeWAV(t, c, []float64{1000}, n))
			if err != nil {
				t.Fatal(err)
			}
			if a.Rate != c.rate || len(a.Samples) != n {
				t.Fatalf("rate %d, %d samples; want %d, %d", a.Rate, len(a.Samples), c.rate, n)
			}
			if p := goertzel(middle(a.Samples), a.Rate, 1000); p < 0.95 {
				t.Fatalf("1 kHz purity %.3f", p)
			}
			if l := dbfs(middle(a.Samples)); l < -10 || l > -8 {
				t.Fatalf("level %.2f dBFS, want about -9 (half scale)", l)
			}
		})
	}
}

// Two channels with different tones are mixed: both are heard, each at
// half level.
func TestParseWAVMixesChannels(t *testing.T) {
	w := makeWAV(t, wavSpec{code: wavPCM, channels: 2, rate: 8000, bits: 16}, []float64{500, 1500}, 8000)
	a, err := ParseWAV(w)
	if err != nil {
		t.Fatal(err)
	}
	m := middle(a.Samples)
	p500, p1500 := goertzel(m, 8000, 500), goertzel(m, 8000, 1500)
	if p500 < 0.4 || p1500 < 0.4 {
		t.Fatalf("power shares 500 Hz %.2f, 1500 Hz %.2f; want both about 0.5", p500, p1500)
	}
}

func TestParseWAVRefuses(t *testing.T) {
	good := makeWAV(t, wavSpec{code: wavPCM, channels: 1, rate: 8000, bits: 16}, []float64{1000}, 100)
	patch := func(off int, v uint16) []byte {
		b := append([]byte(nil), good...)
		binary.LittleEndian.PutUint16(b[off:], v)
		return b
	}
	cases := map[string]struct {
		data []byte
		want string
	}{
		"text":       {[]byte("hello, this is not audio"), "not a RIFF/WAVE"},
		"avi":        {append([]byte("RIFF\x00\x00\x00\x00AVI "), good[12:]...), "not a RIFF/WAVE"},
		"no fmt":     {[]byte("RIFF\x10\x00\x00\x00WAVEdata\x04\x00\x00\x00abcd"), "before its fmt"},
		"no data":    {good[:36], "no data chunk"},
		"0 channels": {patch(22, 0), "0 channels"},
		"9 channels": {patch(22, 9), "9 channels"},
		"12 bits":    {patch(34, 12), "12 bits"},
		"mp3 in wav": {patch(20, 0x55), "format code 85"},
		"bad align":  {patch(32, 3), "block align"},
		"short fmt":  {append([]byte("RIFF\x20\x00\x00\x00WAVEfmt \x08\x00\x00\x00"), make([]byte, 8)...), "at least 16"},
		"cut fmt":    {good[:30], "cut short"},
		"empty data": {append(good[:40:40], 0, 0, 0, 0), "no samples"},
		"rate too low": {func() []byte {
			b := append([]byte(nil), good...)
			binary.LittleEndian.PutUint32(b[24:], 1000)
			return b
		}(), "1000 Hz"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseWAV(c.data)
			if !errors.Is(err, ErrNotAudio) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v; want ErrNotAudio saying %q", err, c.want)
			}
		})
	}
}

func TestEncodeWAVRoundTrip(t *testing.T) {
	a := Tone(Rate16k, 700, 0.3, 300*time.Millisecond)
	b, err := ParseWAV(EncodeWAV(a))
	if err != nil {
		t.Fatal(err)
	}
	if b.Rate != a.Rate || len(b.Samples) != len(a.Samples) {
		t.Fatalf("round trip changed rate or length")
	}
	for i := range a.Samples {
		if a.Samples[i] != b.Samples[i] {
			t.Fatalf("sample %d changed", i)
		}
	}
}

func TestDecodeMP3Tone(t *testing.T) {
	data, err := os.ReadFile("testdata/tone1k.mp3")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := DecodeMP3(data, 0)
	if err != nil {
		t.Fatal(err)
	}
	if raw.Rate != 22050 || raw.Duration() < 900*time.Millisecond || raw.Duration() > 1200*time.Millisecond {
		t.Fatalf("rate %d, %v; want 22050 Hz, about 1 s", raw.Rate, raw.Duration())
	}
	for _, rate := range []int{Rate8k, Rate16k} {
		a, err := Decode(data, rate, 0)
		if err != nil {
			t.Fatal(err)
		}
		if p := goertzel(middle(a.Samples), rate, 1000); p < 0.9 {
			t.Fatalf("%d Hz: 1 kHz purity %.3f", rate, p)
		}
		if l := dbfs(middle(a.Samples)); l < -11 || l > -7 {
			t.Fatalf("%d Hz: level %.1f dBFS, want about -9", rate, l)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	mp3, err := os.ReadFile("testdata/tone1k.mp3")
	if err != nil {
		t.Fatal(err)
	}
	long := makeWAV(t, wavSpec{code: wavPCM, channels: 1, rate: 8000, bits: 16}, []float64{1000}, 8000*3)
	cases := map[string]struct {
		data   []byte
		maxDur time.Duration
		want   error
	}{
		"html":              {[]byte("<!doctype html><title>404</title>"), 0, ErrNotAudio},
		"empty":             {nil, 0, ErrNotAudio},
		"mp3 sync, garbage": {append([]byte{0xFF, 0xFB, 0x90, 0x00}, make([]byte, 64)...), 0, ErrNotAudio},
		"id3 only":          {[]byte("ID3\x04\x00\x00\x00\x00\x00\x00"), 0, ErrNotAudio},
		"mp3 over limit":    {mp3, 500 * time.Millisecond, ErrTooLong},
		"wav over limit":    {long, 2 * time.Second, ErrTooLong},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Decode(c.data, Rate8k, c.maxDur)
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v; want %v", err, c.want)
			}
		})
	}
	// A file cut mid-frame still plays what it holds.
	a, err := Decode(mp3[:len(mp3)/2], Rate8k, 0)
	if err != nil || a.Duration() < 300*time.Millisecond {
		t.Fatalf("half an MP3: %v, %v", a.Duration(), err)
	}
}

// go-mp3 does not decode MPEG 2.5 (the 8, 11.025 and 12 kHz MP3s some
// telephony tools write): the error must say so plainly.
func TestDecodeMPEG25SaysUnsupported(t *testing.T) {
	data, err := os.ReadFile("testdata/mpeg25-8k.mp3")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Decode(data, Rate8k, 0)
	if !errors.Is(err, ErrNotAudio) || !strings.Contains(err.Error(), "2.5") {
		t.Fatalf("error %v; want ErrNotAudio naming MPEG 2.5", err)
	}
}
