package prompt

import "math"

// The resampler every source goes through on its way to the player's rate:
// espeak-ng's 22050 Hz, and files at whatever rate they were made. It is a
// Kaiser-windowed sinc evaluated at each output instant (so any pair of
// rates works, not only integer ratios), with the cut-off just below the
// lower of the two Nyquist frequencies so that nothing above 4 kHz folds
// back into an 8 kHz prompt. Prompts are resampled once, before they are
// cached, so clarity matters more here than speed; BenchmarkResample has the
// cost.
const (
	rsZeros = 16   // zero crossings of the sinc kept on each side
	rsOver  = 256  // table points per zero crossing (linear interpolation between)
	rsBeta  = 8.0  // Kaiser window: about 80 dB stopband
	rsPass  = 0.92 // cut-off as a fraction of the lower Nyquist frequency
)

// Resample converts mono PCM from rate from to rate to. Equal rates return a
// copy. Rates must be positive.
func Resample(in []int16, from, to int) []int16 {
	if from == to || len(in) == 0 || from <= 0 || to <= 0 {
		return append([]int16(nil), in...)
	}
	// fc is the cut-off in cycles per input sample.
	fc := 0.5 * rsPass * min(1, float64(to)/float64(from))
	table := rsTable
	half := float64(rsZeros) / (2 * fc) // kernel half-width in input samples
	scale := 2 * fc * rsOver            // input-sample distance → table index
	gain := 2 * fc
	nOut := int(int64(len(in)) * int64(to) / int64(from))
	out := make([]int16, nOut)
	last := len(in) - 1
	for n := range out {
		// The instant of output n on the input's timeline, from integers so
		// that long files do not drift.
		q := int64(n) * int64(from)
		t := float64(q/int64(to)) + float64(q%int64(to))/float64(to)
		lo := max(int(math.Ceil(t-half)), 0)
		hi := min(int(math.Floor(t+half)), last)
		var sum float64
		for k := lo; k <= hi; k++ {
			x := math.Abs(t-float64(k)) * scale
			i := int(x)
			if i >= len(table)-1 {
				continue
			}
			f := x - float64(i)
			sum += float64(in[k]) * (table[i] + f*(table[i+1]-table[i]))
		}
		out[n] = saturate(sum * gain)
	}
	return out
}

// rsTable is sinc(u)·kaiser(u/rsZeros) for u from 0 to rsZeros in steps of
// 1/rsOver, built once.
var rsTable = buildSincTable()

func buildSincTable() []float64 {
	t := make([]float64, rsZeros*rsOver+2)
	i0b := besselI0(rsBeta)
	for i := range t {
		u := float64(i) / rsOver
		s := 1.0
		if u != 0 {
			s = math.Sin(math.Pi*u) / (math.Pi * u)
		}
		r := u / rsZeros
		w := 0.0
		if r <= 1 {
			w = besselI0(rsBeta*math.Sqrt(1-r*r)) / i0b
		}
		t[i] = s * w
	}
	return t
}

// besselI0 is the zeroth-order modified Bessel function of the first kind.
func besselI0(x float64) float64 {
	sum, term := 1.0, 1.0
	for k := 1; k < 60; k++ {
		term *= (x / (2 * float64(k))) * (x / (2 * float64(k)))
		sum += term
		if term < sum*1e-12 {
			break
		}
	}
	return sum
}

// saturate rounds to int16, clipping instead of wrapping around: a filter
// overshoots on full-scale input, and a wrapped sample is a loud click.
func saturate(v float64) int16 {
	switch {
	case v >= math.MaxInt16:
		return math.MaxInt16
	case v <= math.MinInt16:
		return math.MinInt16
	}
	return int16(math.Round(v))
}
