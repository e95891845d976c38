package media

import "math"

// In-band DTMF: a caller on a G.711 leg may send its keys as tones in the
// audio instead of RFC 4733 events (a phone or gateway without
// telephone-event, or one that was not negotiated). DTMFDetector finds
// them in 8 kHz PCM with the Goertzel algorithm, as ITU-T Q.23/Q.24
// receivers do:
//
//   - The audio is cut into blocks of dtmfBlock samples (12.75 ms). A
//     block of 102 samples puts the first zero of each tone's response
//     78 Hz away, about where the neighbouring row tone lies, so adjacent
//     rows barely leak into each other, while a sender 1.5 % off a
//     nominal frequency loses under 1.5 dB.
//   - A block holds a key when the strongest row and column tones are
//     each at least dtmfMinLevel; their twist is within limits (the low
//     group at most 8 dB above the high group, "normal" twist; the high
//     group at most 4 dB above the low, "reverse"); each is 8 dB above
//     the other tones of its group; the two together carry at least
//     dtmfToTotal of the block's energy (speech and music spread theirs);
//     and neither has a strong second harmonic (voiced speech does).
//   - A key is reported when dtmfHitsToStart blocks in a row hold it
//     (tones from about 40 ms are taken at any alignment, 20 ms and less
//     never), once per press: it must then be missing from
//     dtmfMissesToEnd blocks in a row (a pause of about 25 ms; Q.24 asks
//     for 40 ms pauses to be seen) before the next key, or the same key
//     again, counts.

const (
	dtmfRate  = 8000
	dtmfBlock = 102

	dtmfHitsToStart = 2
	dtmfMissesToEnd = 2

	// dtmfMinLevel is the weakest tone taken: -42 dBFS (a full-scale
	// sine is 0 dBFS), as a mean power in int16 units.
	dtmfMinLevel = 32767.0 * 32767.0 / 2 * 6.31e-5
	// Twist limits, as power ratios: 8 dB and 4 dB.
	dtmfNormalTwist  = 6.31
	dtmfReverseTwist = 2.51
	// dtmfRelativePeak: the chosen tone over the others of its group, 8 dB.
	dtmfRelativePeak = 6.31
	// dtmfToTotal is the least share of the block's power in the two tones.
	dtmfToTotal = 0.8
	// dtmfHarmonic is the most a tone's second harmonic may have of its
	// power (-10 dB); a row's harmonic is not checked when a column tone
	// of the key lies within dtmfHarmonicGuard of it (it leaks there).
	dtmfHarmonic      = 0.1
	dtmfHarmonicGuard = 150.0
)

// dtmfRows and dtmfCols are the low and high group frequencies.
var (
	dtmfRows = [4]float64{697, 770, 852, 941}
	dtmfCols = [4]float64{1209, 1336, 1477, 1633}
	dtmfKeys = [4][4]rune{
		{'1', '2', '3', 'A'},
		{'4', '5', '6', 'B'},
		{'7', '8', '9', 'C'},
		{'*', '0', '#', 'D'},
	}
	// dtmfCoef are the Goertzel coefficients 2cos(2πf/fs): rows, then
	// columns, then the rows' and columns' second harmonics.
	dtmfCoef = func() (c [16]float32) {
		for i := range 4 {
			c[i] = goertzelCoef(dtmfRows[i])
			c[4+i] = goertzelCoef(dtmfCols[i])
			c[8+i] = goertzelCoef(2 * dtmfRows[i])
			c[12+i] = goertzelCoef(2 * dtmfCols[i])
		}
		return c
	}()
)

func goertzelCoef(f float64) float32 { return float32(2 * math.Cos(2*math.Pi*f/dtmfRate)) }

// DTMFDetector finds key presses sent as DTMF tones in 8 kHz mono PCM.
// The zero value is ready; it is not safe for concurrent use.
type DTMFDetector struct {
	buf [dtmfBlock]float32
	n   int
	// prev is the last block's key (0: none) and run how many blocks in
	// a row held it; down is the key reported and not yet released, gone
	// how many blocks in a row have lacked it.
	prev, down rune
	run, gone  int
}

// Write reads pcm (any length) and calls report once for each key press
// it completes: '0'–'9', '*', '#', 'A'–'D'.
func (d *DTMFDetector) Write(pcm []int16, report func(key rune)) {
	for len(pcm) > 0 {
		k := min(len(pcm), dtmfBlock-d.n)
		for i, s := range pcm[:k] {
			d.buf[d.n+i] = float32(s)
		}
		d.n += k
		pcm = pcm[k:]
		if d.n < dtmfBlock {
			return
		}
		d.n = 0
		if key := d.step(blockKey(&d.buf)); key != 0 {
			report(key)
		}
	}
}

// Reset forgets any key in progress and buffered audio.
func (d *DTMFDetector) Reset() { *d = DTMFDetector{} }

// step takes one block's key (0: none) and returns a key to report.
func (d *DTMFDetector) step(k rune) rune {
	switch {
	case k == 0:
		d.run = 0
	case k == d.prev:
		d.run++
	default:
		d.run = 1
	}
	d.prev = k
	if d.down != 0 {
		if k == d.down {
			d.gone = 0
			return 0
		}
		if d.gone++; d.gone < dtmfMissesToEnd {
			return 0
		}
		d.down = 0
	}
	if k != 0 && d.run >= dtmfHitsToStart {
		d.down, d.gone = k, 0
		return k
	}
	return 0
}

// goertzel returns the squared magnitude of x's DTFT at the frequency of
// coef.
func goertzel(x *[dtmfBlock]float32, coef float32) float32 {
	var s1, s2 float32
	for _, v := range x {
		s1, s2 = v+coef*s1-s2, s1
	}
	return s1*s1 + s2*s2 - coef*s1*s2
}

// blockKey returns the key a block holds, or 0.
func blockKey(x *[dtmfBlock]float32) rune {
	var energy float32
	for _, v := range x {
		energy += v * v
	}
	if energy < 2*dtmfMinLevel*dtmfBlock {
		return 0 // too quiet for two tones at the least level: most blocks
	}
	// The eight tones in one pass.
	var s1, s2 [8]float32
	for _, v := range x {
		for j := range 8 {
			s1[j], s2[j] = v+dtmfCoef[j]*s1[j]-s2[j], s1[j]
		}
	}
	// Mean power of a tone: 2|X|²/N² (amplitude A gives A²/2).
	const scale = 2.0 / (dtmfBlock * dtmfBlock)
	var p [8]float32
	for j := range 8 {
		p[j] = (s1[j]*s1[j] + s2[j]*s2[j] - dtmfCoef[j]*s1[j]*s2[j]) * scale
	}
	r, c := 0, 4
	for j := 1; j < 4; j++ {
		if p[j] > p[r] {
			r = j
		}
		if p[4+j] > p[c] {
			c = 4 + j
		}
	}
	pr, pc := p[r], p[c]
	switch {
	case pr < dtmfMinLevel || pc < dtmfMinLevel:
		return 0
	case pr > pc*dtmfNormalTwist || pc > pr*dtmfReverseTwist:
		return 0
	case (pr+pc)*dtmfBlock < dtmfToTotal*energy:
		return 0
	}
	for j := range 4 {
		if j != r && p[j]*dtmfRelativePeak > pr || 4+j != c && p[4+j]*dtmfRelativePeak > pc {
			return 0
		}
	}
	if goertzel(x, dtmfCoef[12+c-4])*scale > dtmfHarmonic*pc {
		return 0
	}
	if math.Abs(2*dtmfRows[r]-dtmfCols[c-4]) > dtmfHarmonicGuard && goertzel(x, dtmfCoef[8+r])*scale > dtmfHarmonic*pr {
		return 0
	}
	return dtmfKeys[r][c-4]
}
