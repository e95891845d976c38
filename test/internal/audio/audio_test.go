package audio

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

func TestFrequencyOfNoisyTone(t *testing.T) {
	for _, rate := range []int{8000, 16000, 48000} {
		for _, f := range []float64{440, 1000, 1633.3} {
			s := Tone(f, 0.3, rate, 0, rate) // 1 s
			r := rand.New(rand.NewPCG(1, 2))
			for i := range s {
				s[i] += int16(r.NormFloat64() * 300) // ≈ -40 dBFS of noise
			}
			got := Frequency(s, rate)
			if math.Abs(got-f) > 0.5 {
				t.Errorf("%d Hz rate, %.1f Hz tone: measured %.2f", rate, f, got)
			}
			if p := Goertzel(s, rate, f); p < 0.9 {
				t.Errorf("%d Hz rate, %.1f Hz tone: purity %.2f", rate, f, p)
			}
			if p := Goertzel(s, rate, f*1.5); p > 0.05 {
				t.Errorf("%d Hz rate: purity at the wrong frequency %.2f", rate, p)
			}
		}
	}
}

func TestAnalyzeFindsToneAfterSilence(t *testing.T) {
	s := make([]int16, 8000) // 1 s silence
	s = append(s, Tone(1000, 0.25, 8000, 0, 16000)...)
	s = append(s, make([]int16, 4000)...)
	a := Analyze(s, 8000, 1000, -40)
	if a.Active.Start != 8000 || a.Active.End != 24000 {
		t.Errorf("active %+v, want [8000, 24000)", a.Active)
	}
	if !Within(a.Frequency, 1000, 1, 2) || math.Abs(a.DBFS-(-15.05)) > 0.3 {
		t.Errorf("analysis %+v", a)
	}
	if FirstActive(s, 8000, -40) != 8000 {
		t.Errorf("first active %d", FirstActive(s, 8000, -40))
	}
}

func TestAnalyzeCountsBreaks(t *testing.T) {
	s := Tone(1000, 0.25, 8000, 0, 8000) // 1 s, 50 frames of 20 ms
	for _, f := range []int{10, 20, 21, 22, 40} {
		clear(s[f*160 : (f+1)*160])
	}
	if a := Analyze(s, 8000, 1000, -40); a.Breaks != 5 || a.LongestBreak != 3 {
		t.Errorf("breaks %d, longest %d; want 5 and 3", a.Breaks, a.LongestBreak)
	}
}

func TestWAVRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.wav")
	in := Tone(700, 0.5, 8000, 0, 4000)
	if err := WriteWAV(path, 8000, in); err != nil {
		t.Fatal(err)
	}
	out, rate, err := ReadWAV(path)
	if err != nil || rate != 8000 || len(out) != len(in) {
		t.Fatalf("read: %d samples at %d: %v", len(out), rate, err)
	}
	for i := range in {
		if in[i] != out[i] {
			t.Fatalf("sample %d: %d != %d", i, out[i], in[i])
		}
	}
}
