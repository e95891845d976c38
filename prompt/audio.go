package prompt

import (
	"math"
	"time"
)

// Rates a player may ask for.
const (
	Rate8k  = 8000
	Rate16k = 16000
)

// FrameDuration is the length of one frame of Frames: the packet time of
// every leg wagate plays into (Opus's 20 ms; G.711 legs are repacketized).
const FrameDuration = 20 * time.Millisecond

// Audio is mono 16-bit PCM at Rate samples per second. Audio returned by a
// Library may be shared with other calls through the cache: treat Samples as
// read-only.
type Audio struct {
	Rate    int
	Samples []int16
}

// Duration is how long the audio plays.
func (a Audio) Duration() time.Duration {
	if a.Rate <= 0 {
		return 0
	}
	return time.Duration(len(a.Samples)) * time.Second / time.Duration(a.Rate)
}

// FrameSamples is the number of samples in one 20 ms frame at a's rate.
func (a Audio) FrameSamples() int { return a.Rate / 50 }

// Frames cuts the audio into 20 ms frames, the last one padded with
// silence. The frames of whole 20 ms stretches share a's memory.
func (a Audio) Frames() [][]int16 {
	n := a.FrameSamples()
	if n <= 0 || len(a.Samples) == 0 {
		return nil
	}
	frames := make([][]int16, 0, (len(a.Samples)+n-1)/n)
	for off := 0; off < len(a.Samples); off += n {
		if off+n <= len(a.Samples) {
			frames = append(frames, a.Samples[off:off+n:off+n])
			continue
		}
		last := make([]int16, n)
		copy(last, a.Samples[off:])
		frames = append(frames, last)
	}
	return frames
}

// Concat joins audio of one rate; pieces at another rate are resampled.
func Concat(rate int, parts ...Audio) Audio {
	n := 0
	for _, p := range parts {
		n += len(p.Samples) * rate / max(p.Rate, 1)
	}
	out := Audio{Rate: rate, Samples: make([]int16, 0, n)}
	for _, p := range parts {
		out.Samples = append(out.Samples, Resample(p.Samples, p.Rate, rate)...)
	}
	return out
}

// Silence returns d of silence at rate, rounded to whole samples.
func Silence(rate int, d time.Duration) Audio {
	return Audio{Rate: rate, Samples: make([]int16, samplesFor(rate, d))}
}

// Tone returns d of a sine of freq Hz at rate with peak amplitude amp (0–1
// of full scale). Its first and last 5 ms are faded so that it starts and
// stops without a click (the beep before a recording, test signals).
func Tone(rate int, freq, amp float64, d time.Duration) Audio {
	n := samplesFor(rate, d)
	s := make([]int16, n)
	fade := rate / 200
	for i := range s {
		g := 1.0
		if i < fade {
			g = float64(i) / float64(fade)
		} else if n-1-i < fade {
			g = float64(n-1-i) / float64(fade)
		}
		s[i] = int16(math.Round(g * amp * 32767 * math.Sin(2*math.Pi*freq*float64(i)/float64(rate))))
	}
	return Audio{Rate: rate, Samples: s}
}

func samplesFor(rate int, d time.Duration) int {
	if d <= 0 || rate <= 0 {
		return 0
	}
	return int(int64(d) * int64(rate) / int64(time.Second))
}

// validRate reports whether a player may ask for rate.
func validRate(rate int) bool { return rate == Rate8k || rate == Rate16k }
