package main

// The load generator's media: cheap RTP/SRTP streams driven by one pacer.
//
// What makes it cheap enough to hold 150+ transcoded calls on the same two
// cores as wagate:
//
//   - Audio is encoded once, at start-up, into one-second loops of payloads
//     (Opus and PCMU) that every stream replays with its own RTP header
//     (SSRC, sequence, timestamp, marker). Only the SRTP protection is per
//     packet (it has to be: the key and the index are the stream's).
//   - All the streams of one side share one UDP socket (an "endpoint"):
//     every call's SDP names that socket's port, and what arrives is told
//     apart by its source, wagate's port for that call (wagate itself
//     accepts media only from the address in the SDP, which is the same
//     for every call, and sends from a port of its own per call). So the
//     generator sends with sendmmsg and receives with recvmmsg, a batch of
//     packets per system call, on two sockets, instead of one socket and
//     one goroutine woken per packet per call.
//   - One goroutine sends every stream, off one 2 ms ticker; each stream has
//     its own phase in the 20 ms frame so the packets reach wagate spread
//     over the frame, as independent clients' would, not in one burst.
//   - Receiving is one goroutine per endpoint that reads the RTP header,
//     authenticates and decrypts SRTP (so a bad tag from wagate is seen),
//     and keeps RFC 3550 counters and jitter. Only the few sampled calls
//     decode audio (Opus), to time tone onsets and check the tone.
//   - Arrival times are the kernel's (SO_TIMESTAMPNS), so the jitter of the
//     streams wagate sends is not inflated by the generator's scheduling.

import (
	"math"
	"time"

	"gopkg.in/hraban/opus.v2"

	"github.com/wagate/wagate/test/internal/audio"
	"github.com/wagate/wagate/test/internal/pcmu"
)

const (
	frameDur  = 20 * time.Millisecond
	pacerTick = 2 * time.Millisecond
	// rtcpEvery is how often a Meta stream sends an RTCP sender report
	// (in frames: 5 s).
	rtcpEvery = 250
	// maxRecord bounds the decoded audio a sampled call keeps (48 kHz).
	maxRecord = 60 * 48000
	onsetDBFS = -30.0
	// batch is the most packets one sendmmsg/recvmmsg moves.
	batch   = 64
	pktSize = 1500
	oobSize = 64
	// smallPayload: Opus payloads up to this size are silence (see
	// stream.recvAtLastBig); srtpTagLen is AES_CM_128_HMAC_SHA1_80's tag.
	smallPayload = 12
	srtpTagLen   = 10
)

// ---------------------------------------------------------------------------
// Pre-encoded loops

// loop is a stretch of audio as payloads, replayed by every stream.
type loop struct {
	frames [][]byte
	// onsetFrame is the frame in which a tone burst starts (-1: none) and
	// onsetOff where in it the first loud sample is.
	onsetFrame int
	onsetOff   time.Duration
}

// loops are the payload loops the streams play.
type loops struct {
	metaAudio  *loop // Meta, unsampled calls: speech-like (5 s) or 1 kHz (1 s)
	opusBursts *loop // 200 ms of 1 kHz every second (Meta, sampled calls)
	pbxAudio   *loop // PBX, unsampled calls: speech-like (5 s) or 440 Hz (1 s)
	pcmuTone   *loop // 440 Hz (PBX, sampled calls with -pbx tone)
}

// speechLike is the codec package's benchmark signal (codec/helpers_test.go,
// copied): a voiced, formant-shaped, amplitude-modulated harmonic series
// with a gliding pitch, so Opus works as hard as on speech. (A pure tone
// is cheaper to encode: wagate's Opus encoder costs about a fifth less on
// one.)
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

// newOpusEncoder is the encoder rtppeer uses, as WhatsApp's client encodes:
// 48 kHz mono VoIP, 20 kbit/s, wideband, in-band FEC.
func newOpusEncoder() (*opus.Encoder, error) {
	e, err := opus.NewEncoder(48000, 1, opus.AppVoIP)
	if err != nil {
		return nil, err
	}
	if err := e.SetBitrate(20000); err != nil {
		return nil, err
	}
	if err := e.SetMaxBandwidth(opus.Wideband); err != nil {
		return nil, err
	}
	if err := e.SetInBandFEC(true); err != nil {
		return nil, err
	}
	return e, nil
}

// encodeOpusLoop encodes warm frames and then n frames of pcm(i) for frame
// i, and keeps those n.
func encodeOpusLoop(pcm func(i int) []int16, warm, n int) (*loop, error) {
	e, err := newOpusEncoder()
	if err != nil {
		return nil, err
	}
	l := &loop{onsetFrame: -1}
	buf := make([]byte, 1500)
	for i := 0; i < warm+n; i++ {
		k, err := e.Encode(pcm(i), buf)
		if err != nil {
			return nil, err
		}
		if i >= warm {
			l.frames = append(l.frames, append([]byte(nil), buf[:k]...))
		}
	}
	return l, nil
}

func firstLoud(pcm []int16) int {
	thr := int(math.Pow(10, onsetDBFS/20) * math.Sqrt2 * 32768)
	for i, v := range pcm {
		if int(v) >= thr || int(v) <= -thr {
			return i
		}
	}
	return -1
}

func makeLoops(speech bool) (*loops, error) {
	const amp = toneAmp
	var ls loops
	var err error
	// 440 Hz: 440 periods in one second, so the 50-frame loop is seamless.
	ls.pcmuTone = &loop{onsetFrame: -1}
	for i := 0; i < 50; i++ {
		ls.pcmuTone.frames = append(ls.pcmuTone.frames, pcmu.Tone(440, amp, i*160, 160))
	}
	if speech {
		// Five seconds, as the codec benchmark uses.
		const frames = 250
		s48 := speechLike(48000, float64(frames+25)/50)
		ls.metaAudio, err = encodeOpusLoop(func(i int) []int16 { return s48[i*960 : (i+1)*960] }, 25, frames)
		if err != nil {
			return nil, err
		}
		s8 := speechLike(8000, float64(frames)/50)
		ls.pbxAudio = &loop{onsetFrame: -1}
		for i := 0; i < frames; i++ {
			f := make([]byte, 160)
			for k := range f {
				f[k] = pcmu.Encode(s8[i*160+k])
			}
			ls.pbxAudio.frames = append(ls.pbxAudio.frames, f)
		}
	} else {
		// 1 kHz has a whole number of periods in 20 ms, so every frame of
		// the tone is the same waveform and the loop wraps without a click.
		ls.metaAudio, err = encodeOpusLoop(func(i int) []int16 { return audio.Tone(1000, amp, 48000, i*960, 960) }, 25, 50)
		if err != nil {
			return nil, err
		}
		ls.pbxAudio = ls.pcmuTone
	}
	// Bursts: frames 0-9 of each second carry the tone. Two seconds are
	// encoded, the second kept, so the encoder is warm.
	burst := func(i int) []int16 {
		if i%50 < int(burstOn/frameDur) {
			return audio.Tone(1000, amp, 48000, (i%50)*960, 960)
		}
		return make([]int16, 960)
	}
	ls.opusBursts, err = encodeOpusLoop(burst, 50, 50)
	if err != nil {
		return nil, err
	}
	k := firstLoud(burst(0))
	ls.opusBursts.onsetFrame = 0
	ls.opusBursts.onsetOff = time.Duration(k) * time.Second / 48000
	return &ls, nil
}
