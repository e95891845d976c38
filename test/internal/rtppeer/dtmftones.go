package rtppeer

import (
	"math"
	"sync"
)

// DTMFTones is a Source that sends keys as in-band DTMF tones (ITU-T
// Q.23: a low and a high frequency added), each On long and followed by
// Off of silence, then silence for good. Amp is each tone's amplitude
// (full scale 32767).
type DTMFTones struct {
	Digits  string
	On, Off int // in samples
	Amp     float64
	Rate    int

	mu sync.Mutex
	n  int // samples sent
}

// dtmfPair are the Q.23 frequencies of a key.
func dtmfPair(k byte) (float64, float64, bool) {
	const keys = "123A456B789C*0#D"
	i := -1
	for j := range len(keys) {
		if keys[j] == k {
			i = j
		}
	}
	if i < 0 {
		return 0, 0, false
	}
	rows := [4]float64{697, 770, 852, 941}
	cols := [4]float64{1209, 1336, 1477, 1633}
	return rows[i/4], cols[i%4], true
}

// Read implements Source.
func (d *DTMFTones) Read(pcm []int16) {
	d.mu.Lock()
	start := d.n
	d.n += len(pcm)
	d.mu.Unlock()
	period := d.On + d.Off
	for i := range pcm {
		s := start + i
		k := s / period
		pcm[i] = 0
		if k >= len(d.Digits) || s%period >= d.On {
			continue
		}
		lo, hi, ok := dtmfPair(d.Digits[k])
		if !ok {
			continue
		}
		t := float64(s) / float64(d.Rate)
		pcm[i] = int16(d.Amp * (math.Sin(2*math.Pi*lo*t) + math.Sin(2*math.Pi*hi*t)))
	}
}

// Done reports whether every key has been sent.
func (d *DTMFTones) Done() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n >= len(d.Digits)*(d.On+d.Off)
}
