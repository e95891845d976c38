package codec

// G.711 has no concealment of its own. fadePLC is a small one in the spirit
// of ITU-T G.711 Appendix I, without its overlap-add: repeat the last pitch
// period of real audio (so a vowel keeps its pitch instead of buzzing at the
// packet rate), hold full level for 10 ms, then fade linearly to silence by
// 50 ms. Longer gaps are silence: repeating speech for longer sounds worse
// than a gap.

const (
	plcHistory  = 30 * samplesPMs // real audio kept for the pitch search
	plcMinLag   = 20              // 2.5 ms: 400 Hz, above any speaking pitch
	plcMaxLag   = 120             // 15 ms: 67 Hz, below any speaking pitch
	plcHold     = 10 * samplesPMs // full level before the fade
	plcFadeEnd  = 50 * samplesPMs // silence from here
	plcFadeSpan = plcFadeEnd - plcHold
)

// fadePLC conceals lost G.711 packets. Not safe for concurrent use.
type fadePLC struct {
	hist [plcHistory]int16 // the most recent real audio, oldest first
	have int               // valid samples at the end of hist
	lag  int               // repetition period; 0 until a loss starts
	pos  int               // next index into the repeated period
	run  int               // samples concealed since the last real audio
}

// remember records real decoded audio and ends any concealment run.
func (p *fadePLC) remember(pcm []int16) {
	if len(pcm) >= plcHistory {
		copy(p.hist[:], pcm[len(pcm)-plcHistory:])
		p.have = plcHistory
	} else {
		copy(p.hist[:], p.hist[len(pcm):])
		copy(p.hist[plcHistory-len(pcm):], pcm)
		p.have = min(plcHistory, p.have+len(pcm))
	}
	p.run, p.lag = 0, 0
}

// conceal fills dst with the continuation of the last audio.
func (p *fadePLC) conceal(dst []int16) {
	if p.run == 0 {
		p.lag = p.pitch()
		p.pos = 0
	}
	for i := range dst {
		g := p.gain()
		if g == 0 || p.lag == 0 {
			dst[i] = 0
		} else {
			s := float32(p.hist[plcHistory-p.lag+p.pos]) * g
			dst[i] = int16(s)
			p.pos++
			if p.pos == p.lag {
				p.pos = 0
			}
		}
		p.run++
	}
}

// gain is the level of the next concealed sample.
func (p *fadePLC) gain() float32 {
	switch {
	case p.run < plcHold:
		return 1
	case p.run >= plcFadeEnd:
		return 0
	}
	return 1 - float32(p.run-plcHold)/plcFadeSpan
}

// pitch picks the repetition period: the lag in 2.5–15 ms with the highest
// normalized autocorrelation of the recent audio, or the whole history when
// there is too little audio to search (or none, which yields silence).
func (p *fadePLC) pitch() int {
	if p.have < plcMaxLag*2 {
		return min(p.have, plcMaxLag)
	}
	h := p.hist[:]
	win := h[plcHistory-plcMaxLag:] // the newest 15 ms
	best, bestScore := plcMaxLag, float32(-1)
	for lag := plcMinLag; lag <= plcMaxLag; lag++ {
		prev := h[plcHistory-plcMaxLag-lag : plcHistory-lag]
		var xy, yy float32
		for i, x := range win {
			y := float32(prev[i])
			xy += float32(x) * y
			yy += y * y
		}
		if yy == 0 {
			continue
		}
		// xy·|xy|/yy ranks by normalized correlation without a square root
		// and keeps the sign, so an anti-correlated lag never wins.
		if score := xy * abs32(xy) / yy; score > bestScore {
			best, bestScore = lag, score
		}
	}
	return best
}

func abs32(v float32) float32 {
	if v < 0 {
		return -v
	}
	return v
}
