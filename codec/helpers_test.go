package codec

import (
	"math"
	"math/cmplx"
	"testing"

	"gopkg.in/hraban/opus.v2"
)

// Test signals and the measurements used on them: frequency by zero
// crossings, SNR after delay alignment by cross-correlation (to a fraction
// of a sample), log-spectral distance. Everything here is offline and
// deliberately independent of the code under test (its own long resampler,
// its own libopus encoder/decoder settings), so both rate modes are judged
// by the same yardstick.

// tone returns n samples of a sine at freq Hz and amplitude amp (0..1 of
// full scale).
func tone(freq float64, rate, n int, amp float64) []int16 {
	out := make([]int16, n)
	for i := range out {
		out[i] = int16(math.Round(amp * 32767 * math.Sin(2*math.Pi*freq*float64(i)/float64(rate))))
	}
	return out
}

// sweepFreq is the instantaneous frequency of sweep at time t: logarithmic
// from f0 to f1 over dur seconds.
func sweepFreq(f0, f1, dur, t float64) float64 {
	return f0 * math.Pow(f1/f0, t/dur)
}

// sweep returns a logarithmic sine sweep from f0 to f1 Hz lasting dur
// seconds. The phase is analytic, so the 8 kHz and 48 kHz versions are the
// same signal sampled at two rates.
func sweep(f0, f1 float64, rate int, dur, amp float64) []int16 {
	n := int(dur * float64(rate))
	k := math.Log(f1 / f0)
	out := make([]int16, n)
	for i := range out {
		t := float64(i) / float64(rate)
		ph := 2 * math.Pi * f0 * dur / k * (math.Exp(t/dur*k) - 1)
		out[i] = int16(math.Round(amp * 32767 * math.Sin(ph)))
	}
	return out
}

// zeroCrossFreq estimates the frequency of a (near) pure tone from its
// rising zero crossings, interpolated between samples.
func zeroCrossFreq(x []int16, rate int) float64 {
	var first, last float64
	count := 0
	for i := 1; i < len(x); i++ {
		a, b := float64(x[i-1]), float64(x[i])
		if a < 0 && b >= 0 {
			t := float64(i-1) + a/(a-b)
			if count == 0 {
				first = t
			}
			last = t
			count++
		}
	}
	if count < 2 {
		return 0
	}
	return float64(count-1) * float64(rate) / (last - first)
}

// rms is the root mean square of x.
func rms(x []int16) float64 {
	if len(x) == 0 {
		return 0
	}
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s / float64(len(x)))
}

func toFloat(x []int16) []float64 {
	f := make([]float64, len(x))
	for i, v := range x {
		f[i] = float64(v)
	}
	return f
}

// fft is an in-place iterative radix-2 FFT (len(a) a power of two);
// inverse when inv.
func fft(a []complex128, inv bool) {
	n := len(a)
	for i, j := 1, 0; i < n; i++ {
		bit := n >> 1
		for ; j&bit != 0; bit >>= 1 {
			j ^= bit
		}
		j ^= bit
		if i < j {
			a[i], a[j] = a[j], a[i]
		}
	}
	for size := 2; size <= n; size <<= 1 {
		ang := 2 * math.Pi / float64(size)
		if !inv {
			ang = -ang
		}
		w := cmplx.Rect(1, ang)
		for start := 0; start < n; start += size {
			wk := complex(1, 0)
			for k := 0; k < size/2; k++ {
				u, v := a[start+k], a[start+k+size/2]*wk
				a[start+k], a[start+k+size/2] = u+v, u-v
				wk *= w
			}
		}
	}
	if inv {
		for i := range a {
			a[i] /= complex(float64(n), 0)
		}
	}
}

func nextPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

// bestLag returns the delay d in [0, maxLag] (out[n+d] ≈ ref[n]) that
// maximizes the cross-correlation, refined to a fraction of a sample by a
// parabola through the peak.
func bestLag(ref, out []float64, maxLag int) float64 {
	n := nextPow2(len(ref) + len(out))
	a := make([]complex128, n)
	b := make([]complex128, n)
	for i, v := range ref {
		a[i] = complex(v, 0)
	}
	for i, v := range out {
		b[i] = complex(v, 0)
	}
	fft(a, false)
	fft(b, false)
	for i := range a {
		a[i] = b[i] * cmplx.Conj(a[i])
	}
	fft(a, true) // a[d] = Σ out[n+d]·ref[n]
	best := 0
	for d := 0; d <= maxLag && d < n; d++ {
		if real(a[d]) > real(a[best]) {
			best = d
		}
	}
	if best == 0 || best == maxLag {
		return float64(best)
	}
	y0, y1, y2 := real(a[best-1]), real(a[best]), real(a[best+1])
	den := y0 - 2*y1 + y2
	if den == 0 {
		return float64(best)
	}
	return float64(best) + 0.5*(y0-y2)/den
}

// shiftFrac returns x advanced by d samples (y[n] = x(n+d)), with a long
// Kaiser-windowed sinc for the fractional part.
func shiftFrac(x []float64, d float64) []float64 {
	const half = 48
	ip := math.Floor(d)
	frac := d - ip
	taps := make([]float64, 2*half+1)
	beta := 10.0
	for k := -half; k <= half; k++ {
		t := float64(k) - frac
		s := 1.0
		if t != 0 {
			s = math.Sin(math.Pi*t) / (math.Pi * t)
		}
		r := t / (half + 1)
		w := 0.0
		if r*r < 1 {
			w = besselI0(beta*math.Sqrt(1-r*r)) / besselI0(beta)
		}
		taps[k+half] = s * w
	}
	y := make([]float64, len(x))
	for n := range y {
		var acc float64
		base := n + int(ip)
		for k := -half; k <= half; k++ {
			if j := base + k; j >= 0 && j < len(x) {
				acc += taps[k+half] * x[j]
			}
		}
		y[n] = acc
	}
	return y
}

// alignedSNR aligns out to ref (out lags ref by up to maxLag samples) and
// returns the SNR in dB over the middle of the signal (edge margin skipped
// at both ends, where codecs start up and the tail is cut), and the delay.
func alignedSNR(ref, out []int16, maxLag, margin int) (snr, delay float64) {
	r, o := toFloat(ref), toFloat(out)
	delay = bestLag(r, o, maxLag)
	o = shiftFrac(o, delay)
	end := min(len(r), len(o)-int(math.Ceil(delay))) - margin
	var sig, noise float64
	for i := margin; i < end; i++ {
		sig += r[i] * r[i]
		e := r[i] - o[i]
		noise += e * e
	}
	if noise == 0 {
		return math.Inf(1), delay
	}
	return 10 * math.Log10(sig/noise), delay
}

// alignedOutput returns out advanced by the delay found against ref.
func alignedOutput(ref, out []int16, maxLag int) ([]float64, float64) {
	d := bestLag(toFloat(ref), toFloat(out), maxLag)
	return shiftFrac(toFloat(out), d), d
}

// logSpectralDistance compares ref and out (already aligned, 8 kHz) in
// 32 ms Hann frames over the 300–3400 Hz band, in dB; frames more than
// 50 dB below the loudest are skipped as silence, and both spectra are
// floored 50 dB below the reference frame's peak so that empty bins (a
// sweep has one busy bin per frame) count codec noise only down to there.
func logSpectralDistance(ref, out []float64, rate int) float64 {
	const size, hop = 256, 128
	win := make([]float64, size)
	for i := range win {
		win[i] = 0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/size)
	}
	lo := int(300 * size / float64(rate))
	hi := int(3400 * size / float64(rate))
	type frame struct{ e, d float64 }
	var frames []frame
	var maxE float64
	n := min(len(ref), len(out))
	a := make([]complex128, size)
	b := make([]complex128, size)
	for s := 0; s+size <= n; s += hop {
		var e float64
		for i := range size {
			a[i] = complex(ref[s+i]*win[i], 0)
			b[i] = complex(out[s+i]*win[i], 0)
			e += ref[s+i] * ref[s+i]
		}
		fft(a, false)
		fft(b, false)
		var peak float64
		for k := lo; k <= hi; k++ {
			peak = max(peak, real(a[k])*real(a[k])+imag(a[k])*imag(a[k]))
		}
		floor := peak*1e-5 + 1
		var d2 float64
		for k := lo; k <= hi; k++ {
			pa := max(real(a[k])*real(a[k])+imag(a[k])*imag(a[k]), floor)
			pb := max(real(b[k])*real(b[k])+imag(b[k])*imag(b[k]), floor)
			l := 10 * math.Log10(pa/pb)
			d2 += l * l
		}
		frames = append(frames, frame{e, math.Sqrt(d2 / float64(hi-lo+1))})
		maxE = max(maxE, e)
	}
	var sum float64
	var cnt int
	for _, f := range frames {
		if f.e > maxE*1e-5 {
			sum += f.d
			cnt++
		}
	}
	if cnt == 0 {
		return 0
	}
	return sum / float64(cnt)
}

// resampleOffline converts x from rate in to rate out with a long
// Kaiser-windowed sinc (about 100 dB stopband, cut-off at 92 % of the lower
// Nyquist), for preparing references: exact, and not the code under test.
// The kernel depends only on the output index modulo out/gcd(in, out), so
// each phase is computed once.
func resampleOffline(x []int16, in, out int) []int16 {
	g := gcd(in, out)
	step, phases := in/g, out/g // t = m·step/phases input samples
	ratio := float64(out) / float64(in)
	fc := 0.5 * min(1, ratio) * 0.92 // cut-off as a fraction of the input rate
	half := 24 / (2 * fc)            // 24 zero crossings each side
	const beta = 10.0
	kernels := make([][]float64, phases)
	los := make([]int, phases)
	y := make([]int16, int(float64(len(x))*ratio))
	for m := range y {
		num := m * step
		ip, r := num/phases, num%phases
		if kernels[r] == nil {
			frac := float64(r) / float64(phases)
			lo := int(math.Ceil(frac - half))
			hi := int(math.Floor(frac + half))
			k := make([]float64, hi-lo+1)
			for j := range k {
				u := frac - float64(lo+j)
				s := 2 * fc
				if u != 0 {
					s = math.Sin(2*math.Pi*fc*u) / (math.Pi * u)
				}
				w := u / half
				k[j] = s * besselI0(beta*math.Sqrt(max(0, 1-w*w))) / besselI0(beta)
			}
			kernels[r], los[r] = k, lo
		}
		var acc float64
		for j, c := range kernels[r] {
			if i := ip + los[r] + j; i >= 0 && i < len(x) {
				acc += float64(x[i]) * c
			}
		}
		y[m] = toInt16(float32(acc))
	}
	return y
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// refEncoder is an Opus encoder like a WhatsApp client's: 48 kHz, 20 ms,
// 20 kbit/s, at most wideband (Meta signals maxplaybackrate=16000), FEC on.
func refEncoder(t testing.TB, lossPerc int) *opus.Encoder {
	t.Helper()
	enc, err := opus.NewEncoder(48000, 1, opus.AppVoIP)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		enc.SetBitrate(20000),
		enc.SetMaxBandwidth(opus.Wideband),
		enc.SetInBandFEC(true),
		enc.SetPacketLossPerc(lossPerc),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return enc
}

// encodeOpus48 encodes 48 kHz PCM in 20 ms packets (a tail shorter than a
// packet is dropped).
func encodeOpus48(t testing.TB, enc *opus.Encoder, pcm []int16) [][]byte {
	t.Helper()
	var pkts [][]byte
	for off := 0; off+960 <= len(pcm); off += 960 {
		buf := make([]byte, 1500)
		n, err := enc.Encode(pcm[off:off+960], buf)
		if err != nil {
			t.Fatal(err)
		}
		pkts = append(pkts, buf[:n])
	}
	return pkts
}

// decodeOpus48 decodes packets with a fresh 48 kHz mono decoder, a nil
// packet meaning PLC for 20 ms.
func decodeOpus48(t testing.TB, pkts [][]byte) []int16 {
	t.Helper()
	dec, err := opus.NewDecoder(48000, 1)
	if err != nil {
		t.Fatal(err)
	}
	var out []int16
	buf := make([]int16, 5760)
	for _, p := range pkts {
		if p == nil {
			if err := dec.DecodePLC(buf[:960:960]); err != nil {
				t.Fatal(err)
			}
			out = append(out, buf[:960]...)
			continue
		}
		n, err := dec.Decode(p, buf)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, buf[:n]...)
	}
	return out
}

// packets splits a G.711 payload into packets of ptime ms.
func packets(payload []byte, ptimeMs int) [][]byte {
	size := ptimeMs * samplesPMs
	var out [][]byte
	for off := 0; off+size <= len(payload); off += size {
		out = append(out, payload[off:off+size])
	}
	return out
}

// run feeds every packet to tc (nil meaning lost: counted into the next
// Write) and returns the emitted payloads (copied) and total samples.
func run(t testing.TB, tc *Transcoder, pkts [][]byte) ([][]byte, int) {
	t.Helper()
	var out [][]byte
	total := 0
	emit := func(frame []byte, samples int) {
		out = append(out, append([]byte(nil), frame...))
		total += samples
	}
	lost := 0
	for _, p := range pkts {
		if p == nil {
			lost++
			continue
		}
		if err := tc.Write(p, lost, emit); err != nil {
			t.Fatal(err)
		}
		lost = 0
	}
	return out, total
}

// concat joins G.711 payloads.
func concat(pkts [][]byte) []byte {
	var out []byte
	for _, p := range pkts {
		out = append(out, p...)
	}
	return out
}

// speechLike is a synthetic voiced signal for benchmarks and tests that
// must not depend on espeak-ng: a 120–220 Hz glottal-like harmonic series
// shaped by two moving formants, with syllable-rate amplitude modulation.
func speechLike(rate int, dur float64) []int16 {
	n := int(dur * float64(rate))
	out := make([]int16, n)
	var ph float64
	for i := range out {
		t := float64(i) / float64(rate)
		f0 := 170 + 50*math.Sin(2*math.Pi*0.7*t)
		ph += 2 * math.Pi * f0 / float64(rate)
		f1 := 600 + 250*math.Sin(2*math.Pi*1.3*t)
		f2 := 1700 + 600*math.Sin(2*math.Pi*0.9*t)
		var v float64
		for h := 1; float64(h)*f0 < 3600; h++ {
			fh := float64(h) * f0
			g := 1/(1+math.Pow((fh-f1)/150, 2)) + 0.6/(1+math.Pow((fh-f2)/250, 2)) + 0.05
			v += g / float64(h) * math.Sin(float64(h)*ph)
		}
		env := 0.55 + 0.45*math.Sin(2*math.Pi*4*t)
		out[i] = int16(math.Max(-32767, math.Min(32767, 6000*env*v)))
	}
	return out
}

func log10(x float64) float64 { return math.Log10(x) }
