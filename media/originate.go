package media

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"time"
)

// A call wagate originates itself (click-to-call) has no caller's offer:
// wagate offers to side A (the agent, on plain RTP), and A's answer then
// stands in for the offer A would have sent. From there on the bridge is
// the one a dialer's call has:
//
//	OfferA → (A answers) → AnswerA: the offer to B → Start → Ringback
//	→ (B answers) → AnswerBAfterRingback → relay
//
// Meanwhile A hears a ringback tone played by the shared pacer.

// errOfferA is returned by AnswerA without an OfferA before it.
var errOfferA = errors.New("media: answer from A before any offer to A")

// OfferA returns wagate's offer toward side A for a call wagate places on
// both legs: our A-side port, side A's allowed codecs with their static
// payload types (PCMU 0, PCMA 8; opus 111/48000/2), telephone-event 101,
// ptime 20, sendrecv. Side A must be plain RTP: an SDES offer would need
// keys that A's answer cannot then stand in for.
func (b *Bridge) OfferA() ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errClosed
	}
	cfgA := b.legs[SideA].cfg
	if cfgA.Encryption != EncryptionNone && cfgA.Encryption != "" {
		return nil, fmt.Errorf("media: offer to A: %w", badSDP(0, "an originated call's first leg must be plain RTP (media_encryption none)"))
	}
	var codecs []Codec
	for _, name := range cfgA.Codecs {
		switch canonicalCodec(name) {
		case "PCMU":
			codecs = append(codecs, Codec{PT: 0, Name: "PCMU", ClockRate: 8000})
		case "PCMA":
			codecs = append(codecs, Codec{PT: 8, Name: "PCMA", ClockRate: 8000})
		case "opus":
			codecs = append(codecs, Codec{PT: 111, Name: "opus", ClockRate: 48000, Channels: 2, Fmtp: ourFmtp("opus", b.m.opus.OpusFEC)})
		}
	}
	if len(codecs) == 0 {
		return nil, fmt.Errorf("%w: side A allows none of opus, PCMU, PCMA", ErrNoCommonCodec)
	}
	codecs = append(codecs, Codec{PT: 101, Name: telephoneEvent, ClockRate: 8000, Fmtp: "0-16"})
	m := Media{Type: "audio", Port: b.legs[SideA].pair.port, Proto: cfgA.proto(), Codecs: codecs, Ptime: 20, Direction: "sendrecv"}
	out := Description{Connection: b.m.advertise, Media: []Media{m}}
	n := &b.neg
	n.offerToA = n.sdpA.marshal(&out, b.m.advertise)
	return bytes.Clone(n.offerToA), nil
}

// AnswerA takes A's answer to OfferA and returns the offer to send to B,
// as Offer does for a caller's offer: A's answer names A's address, codec
// and telephone-event, which is all Offer needs of it. Errors are
// Offer's, or the answer rejected the stream.
func (b *Bridge) AnswerA(answerA []byte) ([]byte, error) {
	b.mu.Lock()
	offered := b.neg.offerToA != nil
	b.mu.Unlock()
	if !offered {
		return nil, errOfferA
	}
	d, err := ParseSDP(answerA)
	if err != nil {
		return nil, fmt.Errorf("media: answer from A: %w", err)
	}
	if len(d.Media) == 0 || d.Media[0].Port == 0 {
		return nil, fmt.Errorf("%w: A rejected the audio stream", ErrNoCommonCodec)
	}
	offerB, err := b.Offer(answerA)
	if err != nil {
		return nil, err
	}
	// What A answered is what it sends and receives: until B answers,
	// wagate's own audio (Ringback) goes to A in A's first codec.
	b.mu.Lock()
	defer b.mu.Unlock()
	n := &b.neg
	if b.closed || len(n.candidates) == 0 {
		return nil, errClosed
	}
	ma := &n.offerA.Media[n.audio]
	ca := n.candidates[0]
	name := canonicalCodec(ca.Name)
	ring := &route{to: n.peerA, pt: newPTMap(), eventOut: ptDrop, mode: modeTranscode,
		out: withPtime(codecFmt{name: name, rate: codecClock(name)}, ma.Ptime), outPT: ca.PT}
	b.routeBA.Store(ring)
	return offerB, nil
}

// Ringback plays src toward A until B answers (the caller stops it, or
// AnswerBAfterRingback does). The bridge must be started, after AnswerA.
func (b *Bridge) Ringback(src FrameSource) (*Playback, error) {
	p, err := b.Play(SideA, src, time.Time{})
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.neg.ring = p
	b.mu.Unlock()
	return p, nil
}

// AnswerBAfterRingback is AnswerB for an originated call: it takes B's
// answer, stops the ringback, gives side B its full RTPStartTimeout from
// now (B's media starts at its answer, not at Start, which came when A
// answered) and its first RTCP report within half an interval.
func (b *Bridge) AnswerBAfterRingback(answerB []byte) error {
	if _, err := b.AnswerB(answerB); err != nil {
		return err
	}
	b.mu.Lock()
	p, d := b.neg.ring, b.dirs[SideB]
	b.neg.ring = nil
	if sec := b.legs[SideB].sec.Load(); sec != nil && b.started && !b.closed {
		// A DTLS leg starts its ICE and handshake at Start, which found
		// no answer from B yet: start it now. B sent nothing before our
		// connectivity checks; the leg is unpublished while its queues
		// are made, so the reader only ever sees it complete.
		b.legs[SideB].sec.Store(nil)
		sec.start()
		b.legs[SideB].sec.Store(sec)
	}
	b.mu.Unlock()
	if p != nil {
		p.Stop()
	}
	if d != nil {
		d.mu.Lock()
		if !d.seen {
			d.started = d.clock()
		}
		// B's first report comes half an interval after its answer, as
		// for a call started at its answer: the ticks before it found
		// no B to report to.
		if d.rtcpJob != nil && d.interval > 0 {
			d.rtcpJob.Wake(time.Now().Add(d.jittered() / 2))
		}
		d.mu.Unlock()
	}
	return nil
}

// RingbackTone is the ringback an agent hears while wagate calls the
// WhatsApp user: 440 + 480 Hz, two seconds on, four off (the North
// American ring, which callers everywhere recognise), at about -16 dBm0.
// It never runs out; Stop the playback.
type RingbackTone struct {
	n int // samples played
}

const (
	ringOn     = 2 * 8000
	ringPeriod = 6 * 8000
	ringAmp    = 4000.0
)

// ReadFrame fills pcm with the next 20 ms of the tone.
func (r *RingbackTone) ReadFrame(pcm []int16) bool {
	for i := range pcm {
		k := r.n % ringPeriod
		v := 0.0
		if k < ringOn {
			t := float64(k) / 8000
			v = ringAmp * (math.Sin(2*math.Pi*440*t) + math.Sin(2*math.Pi*480*t)) / 2
		}
		pcm[i] = int16(v)
		r.n++
	}
	return true
}
