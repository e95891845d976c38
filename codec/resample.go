package codec

import (
	"fmt"
	"math"
)

// The explicit 48 kHz ↔ 8 kHz resampler. It is the measured alternative to
// letting libopus work at 8 kHz (see opus.go, rateFIR); docs/codec.md has the
// numbers. It is a windowed-sinc low-pass used polyphase: the decimator
// computes only the one output in six that it keeps, the interpolator only
// the one tap in six that meets a non-zero input.

const (
	// resampleFactor is 48000 / 8000.
	resampleFactor = 6
	// firTaps is 12·17+1 so the linear-phase delay, (firTaps-1)/2 = 102
	// samples at 48 kHz, is exactly 17 samples at 8 kHz: no fractional
	// offset between the rates, which keeps 48k audio and its 8k
	// counterpart sample-aligned and measurements honest.
	firTaps = 205
	// firDelay8k is the group delay of one pass (either direction) in 8 kHz
	// samples.
	firDelay8k = (firTaps - 1) / 2 / resampleFactor
	// firCutoffHz is the -6 dB point: the middle of the band 3.4–4.6 kHz
	// between the telephone passband and the lowest frequency that would
	// alias back into it at 8 kHz.
	firCutoffHz = 4000
	// firKaiserBeta sets the stopband to about 80 dB (Kaiser's formula
	// 0.1102·(A−8.7)); with 205 taps the transition is about 1.2 kHz wide,
	// which is the 3.4–4.6 kHz band above.
	firKaiserBeta = 7.86
	// firPhaseTaps is the length of one interpolator phase.
	firPhaseTaps = (firTaps + resampleFactor - 1) / resampleFactor
)

// firProto is the prototype low-pass at 48 kHz with unity gain at DC.
var firProto = designLowpass(firTaps, firCutoffHz/48000.0, firKaiserBeta)

// designLowpass returns n taps of a Kaiser-windowed sinc low-pass with the
// cut-off fc given as a fraction of the sample rate, normalized to unity DC
// gain.
func designLowpass(n int, fc, beta float64) []float32 {
	h := make([]float64, n)
	mid := float64(n-1) / 2
	var sum float64
	for i := range h {
		x := float64(i) - mid
		s := 2 * fc
		if x != 0 {
			s = math.Sin(2*math.Pi*fc*x) / (math.Pi * x)
		}
		r := x / mid
		w := besselI0(beta*math.Sqrt(1-r*r)) / besselI0(beta)
		h[i] = s * w
		sum += h[i]
	}
	out := make([]float32, n)
	for i := range h {
		out[i] = float32(h[i] / sum)
	}
	return out
}

// besselI0 is the zeroth-order modified Bessel function of the first kind,
// by its power series (converges fast for the β used here).
func besselI0(x float64) float64 {
	sum, term := 1.0, 1.0
	for k := 1; k < 50; k++ {
		term *= (x / (2 * float64(k))) * (x / (2 * float64(k)))
		sum += term
		if term < sum*1e-12 {
			break
		}
	}
	return sum
}

// toInt16 rounds and saturates: the filter overshoots on full-scale square
// waves and wrapping around would turn a click into a full-scale pop.
func toInt16(v float32) int16 {
	switch {
	case v >= math.MaxInt16:
		return math.MaxInt16
	case v <= math.MinInt16:
		return math.MinInt16
	case v >= 0:
		return int16(v + 0.5)
	default:
		return int16(v - 0.5)
	}
}

// dot returns Σ a[i]·b[i] (len(b) ≥ len(a)) with four partial sums. One
// running sum is a chain of dependent float adds, each waiting for the
// last; four independent chains overlap in the CPU and made both
// resamplers about twice as fast (Go does not vectorize).
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	for len(a) >= 4 && len(b) >= 4 {
		// Fixed-size views let the compiler drop the bounds checks.
		a4, b4 := (*[4]float32)(a), (*[4]float32)(b)
		s0 += a4[0] * b4[0]
		s1 += a4[1] * b4[1]
		s2 += a4[2] * b4[2]
		s3 += a4[3] * b4[3]
		a, b = a[4:], b[4:]
	}
	for i := range a {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// Downsampler converts 48 kHz mono to 8 kHz mono through the anti-aliasing
// FIR. It keeps the filter history between calls, so a stream can be fed in
// chunks of any multiple of six samples. Not safe for concurrent use.
type Downsampler struct {
	buf   []float32 // firTaps-1 samples of history, then the current chunk
	maxIn int
}

// NewDownsampler returns a downsampler accepting up to maxIn 48 kHz samples
// per call.
func NewDownsampler(maxIn int) *Downsampler {
	maxIn -= maxIn % resampleFactor
	return &Downsampler{buf: make([]float32, firTaps-1+maxIn), maxIn: maxIn}
}

// Process writes len(src)/6 samples to dst and returns that count. src must
// be a multiple of six samples long and at most maxIn; dst must have room.
func (d *Downsampler) Process(dst, src []int16) (int, error) {
	if len(src)%resampleFactor != 0 || len(src) > d.maxIn {
		return 0, fmt.Errorf("downsample: %d input samples (want a multiple of %d, at most %d)", len(src), resampleFactor, d.maxIn)
	}
	nOut := len(src) / resampleFactor
	if len(dst) < nOut {
		return 0, fmt.Errorf("downsample: output room %d < %d", len(dst), nOut)
	}
	const hist = firTaps - 1
	cur := d.buf[hist : hist+len(src)]
	for i, s := range src {
		cur[i] = float32(s)
	}
	h := firProto
	for k := range nOut {
		// The newest input of output k is 48k sample 6k, so output k lines
		// up with 8k sample k−17 of the same timeline: an integer delay.
		// The prototype is symmetric, so the convolution is a plain dot
		// product with the window of the last firTaps inputs.
		dst[k] = toInt16(dot(h, d.buf[resampleFactor*k:resampleFactor*k+firTaps]))
	}
	copy(d.buf[:hist], d.buf[len(src):len(src)+hist])
	return nOut, nil
}

// Reset clears the history, as after a discontinuity.
func (d *Downsampler) Reset() { clear(d.buf) }

// Upsampler converts 8 kHz mono to 48 kHz mono through the interpolation
// FIR (the same low-pass, split into six phases). Not safe for concurrent
// use.
type Upsampler struct {
	// phases[p] holds taps p, p+6, p+12 … of the prototype in reverse
	// order, so output 6q+p is a dot product with the last firPhaseTaps
	// inputs.
	phases [resampleFactor][firPhaseTaps]float32
	buf    []float32 // firPhaseTaps-1 samples of history, then the chunk
	maxIn  int
}

// NewUpsampler returns an upsampler accepting up to maxIn 8 kHz samples per
// call.
func NewUpsampler(maxIn int) *Upsampler {
	u := &Upsampler{buf: make([]float32, firPhaseTaps-1+maxIn), maxIn: maxIn}
	for i, c := range firProto {
		// Zero-stuffing by six divides the level by six; the gain puts it
		// back.
		u.phases[i%resampleFactor][firPhaseTaps-1-i/resampleFactor] = c * resampleFactor
	}
	return u
}

// Process writes 6·len(src) samples to dst and returns that count. src must
// be at most maxIn samples; dst must have room.
func (u *Upsampler) Process(dst, src []int16) (int, error) {
	if len(src) > u.maxIn {
		return 0, fmt.Errorf("upsample: %d input samples (at most %d)", len(src), u.maxIn)
	}
	nOut := len(src) * resampleFactor
	if len(dst) < nOut {
		return 0, fmt.Errorf("upsample: output room %d < %d", len(dst), nOut)
	}
	const hist = firPhaseTaps - 1
	cur := u.buf[hist : hist+len(src)]
	for i, s := range src {
		cur[i] = float32(s)
	}
	for q := range src {
		x := u.buf[q : q+firPhaseTaps] // x[hist] is input q
		out := dst[q*resampleFactor : q*resampleFactor+resampleFactor]
		for p := range out {
			out[p] = toInt16(dot(u.phases[p][:], x))
		}
	}
	copy(u.buf[:hist], u.buf[len(src):len(src)+hist])
	return nOut, nil
}

// Reset clears the history, as after a discontinuity.
func (u *Upsampler) Reset() { clear(u.buf) }
