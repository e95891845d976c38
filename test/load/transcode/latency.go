// Latency: the baseline round trip without wagate, and the percentiles
// and means of the measured onsets.

package main

import (
	"context"
	"errors"
	"math"
	"sort"
	"time"

	"github.com/wagate/wagate/test/internal/rtppeer"
)

// baselineRTT is the median round trip of a burst onset from a Meta
// stream to the generator's own echo and back, without wagate: what the
// peers' decoding, loopback and the echo's scheduling cost.
func baselineRTT(ctx context.Context, o options, ls *loops) (time.Duration, error) {
	p := newPacer()
	defer p.close()
	ea, err := listenEndpoint(o.netPrefix+".2", true)
	if err != nil {
		return 0, err
	}
	defer ea.close()
	p.addEndpoint(ea)
	eb, err := listenEndpoint(o.netPrefix+".3", false)
	if err != nil {
		return 0, err
	}
	defer eb.close()
	a, err := newStream(ea, sideMeta, true, false, o.srtp)
	if err != nil {
		return 0, err
	}
	// The echo returns a's (S)RTP packets untouched: an Opus-typed echo.
	b, err := newStream(eb, sideMeta, false, true, false)
	if err != nil {
		return 0, err
	}
	var key *rtppeer.Crypto
	if o.srtp {
		key = rtppeer.NewCrypto() // a decrypts its own packets
	}
	if err := b.start(ea.addr, 111, nil, nil); err != nil {
		return 0, err
	}
	if err := a.start(eb.addr, 111, key, key); err != nil {
		return 0, err
	}
	p.add(a, ls.opusBursts)
	select {
	case <-time.After(5500 * time.Millisecond):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	a.muted.Store(true)
	b.muted.Store(true)
	sent := p.sentOnsets(a)
	time.Sleep(300 * time.Millisecond)
	ea.close()
	eb.close()
	rtts := pairOnsets(sent, a.recvOnsets)
	if len(rtts) == 0 {
		return 0, errors.New("no burst came back from the direct echo")
	}
	return percentile(rtts, 50), nil
}

// pairOnsets matches each sent onset with the first received onset after
// it (within 800 ms) and returns the delays.
func pairOnsets(sent, recv []time.Time) []time.Duration {
	var out []time.Duration
	j := 0
	for _, s := range sent {
		for j < len(recv) && !recv[j].After(s) {
			j++
		}
		if j < len(recv) && recv[j].Sub(s) < 800*time.Millisecond {
			out = append(out, recv[j].Sub(s))
			j++
		}
	}
	return out
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func percentileF(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	t := 0.0
	for _, x := range v {
		t += x
	}
	return t / float64(len(v))
}
