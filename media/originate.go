package media

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync/atomic"
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

// ringingA reports whether the bridge is a call wagate originated whose
// side A answered and whose side B has not: A hears the ringback and has
// nobody else to hold for. Called with b.mu held.
func (n *negotiation) ringingA() bool {
	return n.offerToA != nil && n.offerA != nil && n.sides[SideA] == nil
}

// reofferRinging applies side A's SDP while it hears the ringback
// (ringingA): an offer in its re-INVITE (a session-timer refresh, media
// moved to another address, a hold) or its answer to ReOffer's offer.
// Until B answers, A's answer to OfferA stands in for A's offer: the
// offer to B was built from its codecs (candidates) with A's payload
// types, and B may answer with any of them. So the SDP must keep the
// codec the ringback is played in (the first candidate), with its
// payload type; candidates it drops are taken out (B's answer then
// transcodes to one A kept). A's new address, direction and packet time
// apply at once to the ringback, and from B's answer to the call's
// media, as if A's answer had said them. The answer, for an offer, names
// the kept candidates from A's port. Called with b.mu held; errors
// change nothing.
func (b *Bridge) reofferRinging(d *Description, isOffer bool) ([]byte, StreamState, error) {
	n := &b.neg
	what := "re-offer"
	if !isOffer {
		what = "answer to the re-offer"
	}
	cfgA := b.legs[SideA].cfg
	idx, err := pickAudio(d, cfgA)
	if err != nil {
		return nil, StreamState{}, fmt.Errorf("media: %s from A: %w", what, err)
	}
	m := &d.Media[idx]
	if !m.Connection.IsValid() {
		return nil, StreamState{}, fmt.Errorf("media: %s from A: %w", what, badSDP(0, "no c= for the audio stream"))
	}
	if err := b.checkReach(SideA, m, cfgA, n.peerA); err != nil {
		return nil, StreamState{}, fmt.Errorf("media: %s from A: %w", what, err)
	}
	same := func(x, y Codec) bool {
		return x.PT == y.PT && canonicalCodec(x.Name) == canonicalCodec(y.Name) && x.ClockRate == y.ClockRate
	}
	var kept []Codec
	for _, c := range n.candidates {
		if slices.ContainsFunc(m.Codecs, func(o Codec) bool { return same(o, c) }) {
			kept = append(kept, c)
		}
	}
	if len(kept) == 0 || !same(kept[0], n.candidates[0]) {
		return nil, StreamState{}, fmt.Errorf("%w: the %s from A (%s) drops %s/%d, which A answered with first and the call to B was offered with",
			ErrNoCommonCodec, what, codecNames(m.Codecs), n.candidates[0].Name, n.candidates[0].PT)
	}
	_, event := selectCodecs(m.Codecs, nil)
	if event.Name != "" && event.PT != n.eventA.PT {
		event = Codec{} // B was offered A's old number: keep none
	}
	addr := mediaAddr(m)
	dir := holdDirection(d.EffectiveDirection(m), addr)
	st := StreamState{Direction: dir, Hold: dir == SendOnly || dir == Inactive}
	old := n.peerA
	if addr.IsValid() && addr != old.rtp || m.RTCPMux != old.mux || rtcpAddr(m, m.RTCPMux) != old.rtcp {
		np := &remote{rtp: old.rtp, rtcp: old.rtcp, mux: m.RTCPMux}
		if addr.IsValid() {
			st.Moved = addr != old.rtp
			np.rtp, np.rtcp = addr, rtcpAddr(m, m.RTCPMux)
		}
		np.setUp(cfgA, b.m)
		b.swapRemote(old, np)
	}
	var body []byte
	if isOffer {
		ans := Media{Type: "audio", Port: b.legs[SideA].pair.port, Proto: m.Proto, Codecs: slices.Clone(kept),
			Ptime: orPtime(m.Ptime, 20), RTCPMux: m.RTCPMux, Direction: reverse(dir)}
		if event.Name != "" {
			ans.Codecs = append(ans.Codecs, event)
		}
		out := answerFor(d, idx, ans, b.m.advertise)
		body = n.sdpA.marshal(&out, b.m.advertise)
		// What A has from wagate now: the SDP a later ReOffer and
		// LocalSDP start from.
		n.offerToA = body
	}
	// B's answer reads A's stream from offerA (its packet time, its
	// mux) and builds A's side from the candidates.
	n.offerA, n.audio = d, idx
	if len(kept) < len(n.candidates) {
		for i, o := range n.offered {
			if n.common[i] && !slices.ContainsFunc(kept, func(c Codec) bool { return c.PT == o.PT }) {
				n.common[i] = false
			}
		}
	}
	n.candidates, n.eventA = kept, event
	n.holdA = dir
	for _, p := range []*atomic.Pointer[route]{&b.routeAB, &b.routeBA} {
		if rt := p.Load(); rt != nil {
			c := *rt
			if c.to == n.peerA {
				c.mute = st.Hold || !addr.IsValid()
				c.out = withPtime(codecFmt{name: c.out.name, rate: c.out.rate}, m.Ptime)
			}
			if c.from == n.peerA {
				// A peer that is leaving (ReleaseSide) stays untimed.
				c.quiet = dir != SendRecv || c.replacing
			}
			p.Store(&c)
		}
	}
	for _, dr := range b.dirs {
		if dr != nil && dr.timeoutJob != nil {
			dr.timeoutJob.Wake(time.Time{})
		}
	}
	b.log.Info("media: "+what+" from A accepted while B rings", "addr", addr, "direction", dir, "moved", st.Moved,
		"codec", kept[0].Name, "pt", kept[0].PT)
	return body, st, nil
}

// reofferToRinging is ReOffer's offer to side A while it hears the
// ringback (ringingA): the candidates A answered with, at sendrecv, from
// A's port. Called with b.mu held.
func (b *Bridge) reofferToRinging() []byte {
	n := &b.neg
	ma := &n.offerA.Media[n.audio]
	mo := Media{Type: "audio", Port: b.legs[SideA].pair.port, Proto: b.legs[SideA].cfg.proto(), Codecs: slices.Clone(n.candidates),
		Ptime: orPtime(ma.Ptime, 20), RTCPMux: ma.RTCPMux, Direction: SendRecv}
	if n.eventA.Name != "" {
		mo.Codecs = append(mo.Codecs, n.eventA)
	}
	out := Description{Connection: b.m.advertise, Media: []Media{mo}}
	body := n.sdpA.marshal(&out, b.m.advertise)
	n.offerToA = body
	return bytes.Clone(body)
}

// ReleaseSide tells the bridge that side s's peer is leaving the call
// before the party that takes its place is there: a click-to-call's
// agent transferred a caller to the user still ringing (semi-attended),
// and may hang up at once. Side s then has no RTP timeout (nor one on
// its RTCP), whether B has answered or not, until Link makes another
// call's side its peer; before, the agent's hang-up ended the call
// after rtp_timeout with the user still ringing for the caller.
func (b *Bridge) ReleaseSide(s Side) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.neg.leaving[s] {
		return
	}
	b.neg.leaving[s] = true
	p := &b.routeAB
	if s == SideB {
		p = &b.routeBA
	}
	if rt := p.Load(); rt != nil {
		c := *rt
		c.quiet, c.replacing = true, true
		p.Store(&c)
	}
	for _, d := range b.dirs {
		if d != nil && d.timeoutJob != nil {
			d.timeoutJob.Wake(time.Time{})
		}
	}
}

// markLeaving makes the routes whose source side is leaving
// (ReleaseSide) quiet and replacing. Called with b.mu held.
func (n *negotiation) markLeaving(ab, ba *route) {
	if n.leaving[SideA] {
		ab.quiet, ab.replacing = true, true
	}
	if n.leaving[SideB] {
		ba.quiet, ba.replacing = true, true
	}
}
