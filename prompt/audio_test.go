package prompt

import (
	"math"
	"testing"
	"time"
)

func TestFramesAre20msPaddedWithSilence(t *testing.T) {
	for _, rate := range []int{Rate8k, Rate16k} {
		a := Tone(rate, 1000, 0.5, 50*time.Millisecond) // 2.5 frames
		frames := a.Frames()
		if len(frames) != 3 {
			t.Fatalf("%d Hz: %d frames for 50 ms, want 3", rate, len(frames))
		}
		for i, f := range frames {
			if len(f) != rate/50 {
				t.Fatalf("%d Hz: frame %d has %d samples, want %d", rate, i, len(f), rate/50)
			}
		}
		tail := frames[2][rate/100:] // the padded half
		for _, v := range tail {
			if v != 0 {
				t.Fatalf("%d Hz: padding is not silence", rate)
			}
		}
		if got := a.Duration(); got != 50*time.Millisecond {
			t.Fatalf("duration %v", got)
		}
	}
	if Silence(Rate8k, time.Second).Duration() != time.Second {
		t.Fatal("one second of silence is not one second long")
	}
	if (Audio{}).Frames() != nil {
		t.Fatal("empty audio has frames")
	}
}

func TestToneFrequencyLevelAndNoClick(t *testing.T) {
	a := Tone(Rate8k, 440, 0.5, time.Second)
	if p := goertzel(middle(a.Samples), Rate8k, 440); p < 0.95 {
		t.Fatalf("440 Hz purity %.3f", p)
	}
	if l := dbfs(middle(a.Samples)); math.Abs(l-(-9.03)) > 0.2 {
		t.Fatalf("level %.2f dBFS, want -9.03 (half-scale sine)", l)
	}
	if a.Samples[0] != 0 || a.Samples[len(a.Samples)-1] != 0 {
		t.Fatal("tone does not start and end at zero (a click)")
	}
}

func TestConcatResamplesParts(t *testing.T) {
	a := Concat(Rate8k, Tone(Rate16k, 500, 0.5, 100*time.Millisecond), Silence(Rate8k, 100*time.Millisecond))
	if a.Rate != Rate8k || len(a.Samples) != 1600 {
		t.Fatalf("rate %d, %d samples; want 8000 and 1600", a.Rate, len(a.Samples))
	}
	if p := goertzel(a.Samples[100:700], Rate8k, 500); p < 0.9 {
		t.Fatalf("500 Hz purity %.3f after resampling", p)
	}
}
