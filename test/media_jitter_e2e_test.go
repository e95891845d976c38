package test

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/rtppeer"
)

// Audio toward WhatsApp under jitter, through the real binary: the Go
// Meta peer calls (Opus over SDES-SRTP), the Go PBX answers with PCMU and
// sends with every packet 0..J ms late (order kept), and the Meta peer
// looks at each 20 ms it receives.

// speechLike is continuous voiced sound: a harmonic buzz whose pitch
// (100–180 Hz) and loudness (−24 to −14 dBFS) wander like speech, but
// which is never quiet, so any frame of silence at the far end was put
// there on the way.
type speechLike struct {
	rate  int
	n     atomic.Int64
	phase float64
}

func (s *speechLike) Read(pcm []int16) {
	start := int(s.n.Add(int64(len(pcm)))) - len(pcm)
	for i := range pcm {
		t := float64(start+i) / float64(s.rate)
		f0 := 140 + 40*math.Sin(2*math.Pi*0.7*t)
		s.phase += f0 / float64(s.rate)
		amp := 0.12 + 0.05*math.Sin(2*math.Pi*1.9*t)
		v := 0.0
		for h := 1; h <= 10; h++ {
			v += math.Sin(2*math.Pi*s.phase*float64(h)) / float64(h)
		}
		pcm[i] = int16(32767 * amp * v / 2)
	}
}

// silentDBFS: a frame below this is silence (wagate's Opus silence
// decodes to about −80 dBFS; the speech above never goes under −35).
const silentDBFS = -55.0

// markedSpeech is speechLike between two marks: 200 ms of a loud 1 kHz
// tone (−9 dBFS, louder than any of the speech) before and after, so the
// far end can count the frames from one mark to the other. Silence put
// in between by the relay (the old one inserted a frame at each late
// packet) makes the count larger, however it decodes: a silence frame
// from the encoder right after speech decodes at nearly speech level.
type markedSpeech struct {
	speech speechLike
	frames int // 20 ms frames of speech between the marks
	n      int // frames read
}

const markFrames = 10

func (m *markedSpeech) Read(pcm []int16) {
	i := m.n
	m.n++
	if i < markFrames || (i >= markFrames+m.frames && i < 2*markFrames+m.frames) {
		for k := range pcm {
			pcm[k] = int16(0.5 * 32767 * math.Sin(2*math.Pi*1000*float64(i*len(pcm)+k)/8000))
		}
		return
	}
	if i >= 2*markFrames+m.frames {
		clear(pcm)
		return
	}
	m.speech.Read(pcm)
}

// markDBFS: a frame this loud is a mark.
const markDBFS = -15.0

// jitterCall sets up a UIC between the Go Meta peer (keeping every frame)
// and the Go PBX.
func jitterCall(t *testing.T) (*wagate, recCall) {
	t.Helper()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{MetaEncryption: "sdes"})
	meta := newGoPeer(t, e.Meta, metapeer.Config{KeepFrames: true})
	pbx := newGoPeer(t, e.PBX, metapeer.Config{Profile: metapeer.ProfileG711})
	return w, placeUIC(t, w, meta, pbx)
}

// TestMediaJitterNoInsertedSilence: the PBX sends 6 s of continuous
// speech-like audio between two tone marks, each packet 0..30 ms late
// (order kept). The WhatsApp side must get exactly as many 20 ms frames
// from one mark to the other as the PBX sent (the relay used to put a
// silence frame in front of every packet that came more than ptime +
// 20 ms after the previous one, and then still forward it: tens of frames
// more), none of them silence, with no gap in the sequence and no
// timestamp jump.
func TestMediaJitterNoInsertedSilence(t *testing.T) {
	t.Parallel()
	w, c := jitterCall(t)
	time.Sleep(300 * time.Millisecond) // silence first, as answered
	const speechFrames = 280
	c.pbx.Media.SetSendJitter(30 * time.Millisecond)
	c.pbx.Media.SetSource(&markedSpeech{speech: speechLike{rate: 8000}, frames: speechFrames})
	time.Sleep((2*markFrames + speechFrames + 10) * 20 * time.Millisecond)
	c.pbx.Media.SetSource(nil)
	time.Sleep(300 * time.Millisecond)
	hangup(t, c.meta, "meta")
	waitBye(t, c.pbx, "the PBX")
	w.waitIdle()

	sent := c.pbx.Media.Stats()
	frames := c.meta.Media.Frames()
	// The first frame of each mark.
	markA, markB := -1, -1
	for i, f := range frames {
		switch {
		case f.DBFS < markDBFS:
		case markA < 0:
			markA = i
		case markB < 0 && i > markA+markFrames+speechFrames/2:
			markB = i
		}
	}
	if markA < 0 || markB < 0 {
		t.Fatalf("the WhatsApp side got %d frames without both marks (at %d and %d)", len(frames), markA, markB)
	}
	var silent, gaps, jumps []string
	for i := markA; i < markB+markFrames && i < len(frames); i++ {
		f := frames[i]
		if f.DBFS <= silentDBFS {
			silent = append(silent, fmt.Sprintf("#%d (%.0f dBFS)", i-markA, f.DBFS))
		}
		if i > markA {
			p := frames[i-1]
			if f.Seq != p.Seq+1 {
				gaps = append(gaps, fmt.Sprintf("#%d: seq %d after %d", i-markA, f.Seq, p.Seq))
			}
			if f.TS != p.TS+960 {
				jumps = append(jumps, fmt.Sprintf("#%d: ts +%d (marker %v)", i-markA, int32(f.TS-p.TS), f.Marker))
			}
		}
	}
	between := markB - markA
	// This test's own peers share the machine with wagate and the rest of
	// the suite: a stall of the PBX's sender (a gap between its packets
	// beyond the 30 ms of jitter) or of delivery to the WhatsApp side is
	// jitter wagate had to deal with too. The buffer may stretch once
	// while it grows to the jitter; each 20 ms of stall beyond 50 ms may
	// cost a frame more or less, and a stall longer than the buffer plus
	// its pause detection is rightly filled with silence and restarts the
	// stream (marker, timestamp jump). A frame inserted at each late packet
	// (ptime + 20 ms after the one before), as the old relay did, is ten
	// or more with no stall at all.
	stallFrames, stalls := 0, 0
	gaps50 := sent.SendStalls
	for i := markA + 1; i < len(frames) && i <= markB; i++ {
		if g := frames[i].At.Sub(frames[i-1].At); g > 50*time.Millisecond {
			gaps50 = append(gaps50, g)
		}
	}
	for _, g := range gaps50 {
		stalls++
		stallFrames += int((g - 50*time.Millisecond + 19*time.Millisecond) / (20 * time.Millisecond))
	}
	t.Logf("PBX sent %d packets, input jitter %.1f ms, stalls beyond 50 ms (sender or delivery) %v; WhatsApp got %d frames from mark to mark for %d sent, %d silent, %d gaps, %d timestamp jumps",
		sent.Sent, sent.SendJitter, gaps50, between, markFrames+speechFrames, len(silent), len(gaps), len(jumps))
	if extra := between - (markFrames + speechFrames); extra < -(1+stallFrames) || extra > 1+stallFrames {
		t.Errorf("%d frames toward WhatsApp from mark to mark for %d sent: %+d frames of audio inserted or lost (%d allowed for the machine's stalls)",
			between, markFrames+speechFrames, extra, 1+stallFrames)
	}
	if len(silent) > stallFrames {
		t.Errorf("%d silence frames inside continuous speech toward WhatsApp: %s", len(silent), strings.Join(silent, ", "))
	}
	if len(gaps)+len(jumps) > stalls {
		t.Errorf("the stream toward WhatsApp is not one continuous run: %s %s", strings.Join(gaps, ", "), strings.Join(jumps, ", "))
	}
}

// TestMediaJitterBurstDelayDrains: the PBX sends 200 ms tone bursts every
// 500 ms; for 10 s in the middle each packet is 0..60 ms late. The one-way
// delay PBX → WhatsApp must come back to within 20 ms of where it was
// before once the jitter is over: it does not ratchet up. It is measured
// two ways, per burst: by arrival (a burst's onset leaving the PBX to its
// onset decoded at the WhatsApp side: wagate's playout buffer grows
// during the jitter and drains after it), and on the stream's own
// timeline (the onset's place in the RTP timestamps toward WhatsApp, which
// a receiver plays by, against its place in the PBX's audio: every frame
// the relay inserted shifted everything after it 20 ms later, for good).
func TestMediaJitterBurstDelayDrains(t *testing.T) {
	t.Parallel()
	w, c := jitterCall(t)
	start := time.Now()
	const period = 500 * time.Millisecond
	c.pbx.Media.SetSource(&rtppeer.Bursts{Freq: 440, Amp: toneAmp, Rate: 8000, On: 200 * time.Millisecond, Period: period})
	time.Sleep(4 * time.Second)
	burstFrom := time.Now()
	c.pbx.Media.SetSendJitter(60 * time.Millisecond)
	time.Sleep(10 * time.Second)
	c.pbx.Media.SetSendJitter(0)
	burstTo := time.Now()
	time.Sleep(6 * time.Second)
	c.pbx.Media.SetSource(nil)
	time.Sleep(300 * time.Millisecond)
	hangup(t, c.meta, "meta")
	waitBye(t, c.pbx, "the PBX")
	w.waitIdle()

	type sample struct {
		at    time.Time
		delay time.Duration
	}
	// By arrival.
	sentOn, _ := c.pbx.Media.Onsets()
	_, recvOn := c.meta.Media.Onsets()
	var arrival []sample
	j := 0
	for _, s := range sentOn {
		for j < len(recvOn) && !recvOn[j].After(s) {
			j++
		}
		if j < len(recvOn) && recvOn[j].Sub(s) < 400*time.Millisecond {
			arrival = append(arrival, sample{s, recvOn[j].Sub(s)})
			j++
		}
	}
	// On the timeline: each onset's media time toward WhatsApp, less its
	// burst's place in the PBX's audio (a multiple of the period), both
	// counted from the first onset.
	frames := c.meta.Media.Frames()
	var timeline []sample
	var first time.Duration
	have := false
	quiet := 0
	for i, f := range frames {
		if f.Onset >= 0 && quiet >= 5 {
			mt := time.Duration(int64(int32(f.TS-frames[0].TS))+int64(f.Onset)) * time.Second / 48000
			if !have {
				first, have = mt, true
			}
			n := (mt - first + period/2) / period
			timeline = append(timeline, sample{frames[i].At, mt - first - n*period})
		}
		if f.DBFS < -40 {
			quiet++
		} else {
			quiet = 0
		}
	}
	median := func(s []sample, from, to time.Time) (time.Duration, int) {
		var d []time.Duration
		for _, x := range s {
			if !x.at.Before(from) && x.at.Before(to) {
				d = append(d, x.delay)
			}
		}
		if len(d) == 0 {
			return 0, 0
		}
		sort.Slice(d, func(a, b int) bool { return d[a] < d[b] })
		return d[len(d)/2], len(d)
	}
	list := func(s []sample) string {
		var out []string
		for _, x := range s {
			out = append(out, fmt.Sprintf("%.0f", x.delay.Seconds()*1000))
		}
		return strings.Join(out, " ")
	}
	for _, m := range []struct {
		name string
		s    []sample
	}{{"by arrival", arrival}, {"on the stream's timeline", timeline}} {
		before, nb := median(m.s, start.Add(1500*time.Millisecond), burstFrom)
		during, nd := median(m.s, burstFrom.Add(4*time.Second), burstTo)
		after, na := median(m.s, burstTo.Add(4*time.Second), burstTo.Add(6*time.Second))
		t.Logf("one-way delay PBX → WhatsApp %s (median of burst onsets): %v before the jitter (%d bursts), %v during (%d), %v after (%d); all, ms: %s",
			m.name, before.Round(100*time.Microsecond), nb, during.Round(100*time.Microsecond), nd, after.Round(100*time.Microsecond), na, list(m.s))
		if nb < 3 || nd < 5 || na < 3 {
			t.Errorf("%s: too few bursts timed (%d before, %d during, %d after)", m.name, nb, nd, na)
			continue
		}
		if d := after - before; d > 20*time.Millisecond || d < -20*time.Millisecond {
			t.Errorf("%s: delay %v after the jitter, %v before: want within 20 ms (the delay must not ratchet up)", m.name, after, before)
		}
		if m.name == "by arrival" && during-before < 15*time.Millisecond {
			t.Errorf("%s: delay %v during 0..60 ms of jitter, %v before: the playout buffer did not grow to hold it", m.name, during, before)
		}
	}
}
