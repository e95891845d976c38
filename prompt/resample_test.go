package prompt

import (
	"fmt"
	"math"
	"testing"
)

func TestResampleKeepsFrequencyAndLevel(t *testing.T) {
	for _, from := range []int{8000, 11025, 16000, 22050, 44100, 48000} {
		for _, to := range []int{Rate8k, Rate16k} {
			for _, freq := range []float64{300, 1000, 3000} {
				t.Run(fmt.Sprintf("%d-%d-%g", from, to, freq), func(t *testing.T) {
					in := Tone(from, freq, 0.5, 1e9).Samples // 1 s
					out := Resample(in, from, to)
					if len(out) != to {
						t.Fatalf("%d samples for 1 s, want %d", len(out), to)
					}
					m := middle(out)
					if p := goertzel(m, to, freq); p < 0.95 {
						t.Fatalf("purity at %g Hz %.3f", freq, p)
					}
					if d := dbfs(m) - dbfs(middle(in)); math.Abs(d) > 0.5 {
						t.Fatalf("level changed by %.2f dB", d)
					}
				})
			}
		}
	}
}

// A tone above the new Nyquist frequency must disappear, not fold back
// into the telephone band as another tone.
func TestResampleRemovesWhatWouldAlias(t *testing.T) {
	for _, c := range []struct {
		from, to int
		freq     float64
	}{{44100, 8000, 6000}, {22050, 8000, 5000}, {48000, 16000, 9000}} {
		in := Tone(c.from, c.freq, 0.9, 1e9).Samples
		out := middle(Resample(in, c.from, c.to))
		if l := dbfs(out); l > -50 {
			t.Errorf("%d→%d: %g Hz leaves %.1f dBFS, want below -50", c.from, c.to, c.freq, l)
		}
	}
}

func TestResampleSameRateCopies(t *testing.T) {
	in := []int16{1, 2, 3}
	out := Resample(in, 8000, 8000)
	out[0] = 9
	if in[0] != 1 {
		t.Fatal("same-rate resample shares memory with its input")
	}
}

func BenchmarkResample(b *testing.B) {
	for _, from := range []int{22050, 44100} {
		in := Tone(from, 1000, 0.5, 1e9).Samples
		b.Run(fmt.Sprintf("%dto8k-1s", from), func(b *testing.B) {
			for b.Loop() {
				Resample(in, from, Rate8k)
			}
		})
	}
}
