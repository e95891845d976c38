// Package audio makes and measures test audio for the end-to-end media
// tests: sine tones as 16-bit PCM, the frequency and level of a received
// signal, the segment of a recording where a tone is present, and WAV files
// (for baresip's aufile module).
//
// The measurements are deliberately simple and robust against what a
// lossy, transcoding path does to a tone (Opus at 20 kbit/s, G.711, packet
// loss concealment): the frequency is the median of per-window estimates
// from interpolated zero crossings, cross-checked by a Goertzel filter at
// the expected frequency.
package audio

import (
	"math"
	"sort"
)

// Tone returns n samples of a sine of freq Hz at rate Hz, starting at sample
// index start (consecutive calls continue the waveform), with peak amplitude
// amp (0..1 of full scale).
func Tone(freq, amp float64, rate, start, n int) []int16 {
	out := make([]int16, n)
	for i := range out {
		out[i] = int16(math.Round(amp * 32767 * math.Sin(2*math.Pi*freq*float64(start+i)/float64(rate))))
	}
	return out
}

// RMS is the root mean square of s, 0..1 of full scale.
func RMS(s []int16) float64 {
	if len(s) == 0 {
		return 0
	}
	var sum float64
	for _, v := range s {
		f := float64(v) / 32768
		sum += f * f
	}
	return math.Sqrt(sum / float64(len(s)))
}

// DBFS is the RMS level of s in dB relative to full scale (a full-scale
// sine is -3 dBFS); silence is -120.
func DBFS(s []int16) float64 {
	r := RMS(s)
	if r < 1e-6 {
		return -120
	}
	return 20 * math.Log10(r)
}

// ZeroCrossingFrequency estimates the frequency of s (rate Hz) from the
// first and last rising zero crossing, each interpolated between samples.
// A crossing counts only after the signal went below -10 % of its peak
// (hysteresis), so noise around zero adds no crossings. It returns 0 when s
// holds fewer than two rising crossings.
func ZeroCrossingFrequency(s []int16, rate int) float64 {
	h := RMS(s) * math.Sqrt2 * 32768 * 0.1
	first, last := -1.0, -1.0
	count := 0
	armed := false
	for i := 1; i < len(s); i++ {
		a, b := float64(s[i-1]), float64(s[i])
		if a < -h {
			armed = true
		}
		if armed && a < 0 && b >= 0 {
			x := float64(i-1) + (-a)/(b-a)
			if first < 0 {
				first = x
			}
			last = x
			count++
			armed = false
		}
	}
	if count < 2 || last <= first {
		return 0
	}
	return float64(count-1) * float64(rate) / (last - first)
}

// Frequency estimates the frequency of the tone in s (rate Hz): the median
// of ZeroCrossingFrequency over 100 ms windows whose level is within 10 dB
// of the loudest window, so that a few glitched or concealed frames do not
// move the result. It returns 0 for a signal too short or silent.
func Frequency(s []int16, rate int) float64 {
	win := rate / 10
	if len(s) < win {
		return ZeroCrossingFrequency(s, rate)
	}
	var levels []float64
	for off := 0; off+win <= len(s); off += win {
		levels = append(levels, DBFS(s[off:off+win]))
	}
	maxL := -120.0
	for _, l := range levels {
		maxL = math.Max(maxL, l)
	}
	if maxL <= -60 {
		return 0
	}
	var est []float64
	for i, off := 0, 0; off+win <= len(s); i, off = i+1, off+win {
		if levels[i] < maxL-10 {
			continue
		}
		if f := ZeroCrossingFrequency(s[off:off+win], rate); f > 0 {
			est = append(est, f)
		}
	}
	return median(est)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = append([]float64(nil), v...)
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// Goertzel returns the power of s at freq Hz (rate Hz) as a fraction of the
// total power of s: close to 1 for a pure tone at freq, close to 0 when the
// energy is elsewhere.
func Goertzel(s []int16, rate int, freq float64) float64 {
	if len(s) == 0 {
		return 0
	}
	w := 2 * math.Pi * freq / float64(rate)
	coeff := 2 * math.Cos(w)
	var s1, s2, total float64
	for _, v := range s {
		x := float64(v) / 32768
		total += x * x
		s0 := x + coeff*s1 - s2
		s2, s1 = s1, s0
	}
	if total == 0 {
		return 0
	}
	power := s1*s1 + s2*s2 - coeff*s1*s2
	// A sine of amplitude A over N samples has power (A·N/2)² at its
	// frequency and total energy A²·N/2, so the ratio below is 1 for it.
	return power / (total * float64(len(s)) / 2)
}

// Segment is a stretch of a recording: sample offsets [Start, End).
type Segment struct{ Start, End int }

// Len is the segment's length in samples.
func (g Segment) Len() int { return g.End - g.Start }

// Active returns the longest run of 20 ms frames of s whose level is at or
// above minDBFS (the part of a recording where the tone is present).
func Active(s []int16, rate int, minDBFS float64) Segment {
	frame := rate / 50
	var best, cur Segment
	cur.Start = -1
	for off := 0; off+frame <= len(s); off += frame {
		if DBFS(s[off:off+frame]) >= minDBFS {
			if cur.Start < 0 {
				cur.Start = off
			}
			cur.End = off + frame
			if cur.Len() > best.Len() {
				best = cur
			}
		} else {
			cur.Start = -1
		}
	}
	return best
}

// FirstActive returns the offset of the first 20 ms frame of s at or above
// minDBFS, or -1.
func FirstActive(s []int16, rate int, minDBFS float64) int {
	frame := rate / 50
	for off := 0; off+frame <= len(s); off += frame {
		if DBFS(s[off:off+frame]) >= minDBFS {
			return off
		}
	}
	return -1
}

// Analysis is what a test reports about a received tone.
type Analysis struct {
	Samples int     // length of the recording
	Active  Segment // longest stretch above the threshold
	// Total is the number of samples in all 20 ms frames above the
	// threshold; Breaks counts the quiet frames between the first and the
	// last of them (dropouts inside the tone), LongestBreak the longest
	// run of such frames.
	Total, Breaks, LongestBreak int
	Frequency                   float64 // Hz, over the active stretch
	DBFS                        float64 // level over the active stretch
	Purity                      float64 // Goertzel power at the expected frequency / total
}

// Analyze measures the tone in s: how much of it is at or above minDBFS,
// and over the longest such stretch, trimmed by 60 ms at each end (codec
// onset and fade), its frequency, level and purity at want Hz.
func Analyze(s []int16, rate int, want, minDBFS float64) Analysis {
	a := Analysis{Samples: len(s), DBFS: -120}
	a.Active = Active(s, rate, minDBFS)
	frame := rate / 50
	first, last := -1, -1
	var loud []bool
	for off := 0; off+frame <= len(s); off += frame {
		l := DBFS(s[off:off+frame]) >= minDBFS
		loud = append(loud, l)
		if l {
			a.Total += frame
			if first < 0 {
				first = len(loud) - 1
			}
			last = len(loud) - 1
		}
	}
	run := 0
	for i := first; i >= 0 && i <= last; i++ {
		if loud[i] {
			run = 0
			continue
		}
		a.Breaks++
		run++
		a.LongestBreak = max(a.LongestBreak, run)
	}
	seg := a.Active
	trim := rate * 60 / 1000
	if seg.Len() > 4*trim {
		seg.Start += trim
		seg.End -= trim
	}
	if seg.Len() == 0 {
		return a
	}
	x := s[seg.Start:seg.End]
	a.Frequency = Frequency(x, rate)
	a.DBFS = DBFS(x)
	a.Purity = Goertzel(x, rate, want)
	return a
}

// Within reports whether got is within max(pct % of want, abs Hz) of want.
func Within(got, want, pct, abs float64) bool {
	tol := math.Max(want*pct/100, abs)
	return math.Abs(got-want) <= tol
}
