package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"sync/atomic"
	"time"
)

// A call wagate answers itself (an IVR) has no B when A is answered:
// AnswerLocal answers A's offer with wagate as the far end. Until a B is
// connected, what A sends is read for its digits (OnDTMF) and, when a tap
// is set, decoded for a recording (a voicemail); toward A the pacer sends
// silence and playbacks (Play) in A's answered codec. Side B has no peer:
// nothing from it is accepted and it has no RTP timeout. Then OfferToB
// and AnswerB connect a B like any other; A's answer never changes (A
// already has it), so B is offered A's answered codec first and
// transcoded when it picks another.

// errNotLocal is returned by OfferToB on a bridge A was not answered
// locally on.
var errNotLocal = errors.New("media: OfferToB needs a bridge whose A was answered by AnswerLocal")

// AnswerLocal answers A's offer itself and returns the answer to send to
// A: the first of A's codecs that side A allows (in A's order, with A's
// payload type; Opus from WhatsApp), telephone-event when A offered it,
// our A-facing port, rtcp-mux when offered, and on an "sdes" leg a key of
// our own for A's suite; A's other streams are rejected (port 0). Errors
// wrap ErrBadSDP or ErrNoCommonCodec as for Offer. Start the bridge when
// the answer has been sent.
func (b *Bridge) AnswerLocal(offer []byte) ([]byte, error) {
	b.mu.Lock()
	cfgA := b.legs[SideA].cfg
	b.mu.Unlock()
	pa, err := b.parseOfferA(offer, cfgA)
	if err != nil {
		return nil, err
	}
	codecA := pa.candidates[0]
	nameA := canonicalCodec(codecA.Name)
	ma := &pa.d.Media[pa.idx]
	active := Media{
		Type:      "audio",
		Port:      b.legs[SideA].pair.port,
		Proto:     ma.Proto,
		RTCPMux:   ma.RTCPMux,
		Direction: answerDirection(pa.d.EffectiveDirection(ma)),
		Codecs:    []Codec{withFmtp(codecA, ourFmtp(nameA, b.m.opus.OpusFEC))},
		Ptime:     normalPtime(nameA, ma.Ptime),
	}
	if pa.eventA.Name != "" {
		active.Codecs = append(active.Codecs, pa.eventA)
	}
	if pa.sendKey != nil {
		active.Attributes = []Attribute{{Key: "crypto", Value: pa.sendKey.attribute()}}
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errClosed
	}
	n := &b.neg
	n.offerA, n.audio = pa.d, pa.idx
	b.setPeerA(pa)
	if b.localReady == nil {
		b.localReady = make(chan struct{})
	}
	if pa.secA == nil {
		b.setLocalReadyLocked()
	}
	if sa := b.legs[SideA].sec.Load(); pa.secA != nil && sa != nil {
		// A dtls leg (DTLS-SRTP with ICE): our fingerprint and ICE
		// credentials, as AnswerB gives them.
		active.RTCPMux = true
		active.Attributes = append(active.Attributes, sa.attributes(active.Port)...)
	}
	out := Description{Connection: b.m.advertise, Media: make([]Media, len(pa.d.Media))}
	for i, m := range pa.d.Media {
		if i == pa.idx {
			out.Media[i] = active
			continue
		}
		out.Media[i] = Media{Type: m.Type, Port: 0, Proto: m.Proto, Formats: m.Formats}
	}

	fmtA := codecFmt{name: nameA, rate: codecClock(nameA)}
	// A sends at the ptime of our answer; it gets what it asked for.
	ab := &route{from: n.peerA, pt: newPTMap(), eventOut: ptDrop,
		in: withPtime(fmtA, active.Ptime), inFrame: packetTime(active.Ptime), frame: frameTicks(codecA, active.Ptime)}
	ab.class[codecA.PT] = classAudio
	if pa.eventA.Name != "" {
		ab.class[pa.eventA.PT] = classEvent
	}
	// Toward A our own audio only (silence, playbacks): encoded, as when
	// transcoding, so the stream is one encoder's from the start.
	ba := &route{to: n.peerA, mode: modeTranscode, pt: newPTMap(), eventOut: ptDrop,
		out: withPtime(fmtA, ma.Ptime), outPT: codecA.PT, absent: true}
	// Whatever B comes later must fit the codec A was answered with.
	n.candidates, n.eventA = []Codec{codecA}, pa.eventA
	n.sendKeyA = pa.sendKey
	n.local, n.localMedia = true, active
	n.offered, n.common, n.keysB, n.offerB = nil, nil, nil, nil
	n.answerA = n.sdpA.marshal(&out, b.m.advertise)
	n.sides, n.pending = [2]*sideMedia{}, [2]*pendingOffer{}
	n.sent = [2][]byte{n.answerA, nil}
	b.routeAB.Store(ab)
	b.routeBA.Store(ba)
	b.log.Debug("media: A answered locally", "a_addr", mediaAddr(ma), "codec_a", codecA.Name, "pt_a", codecA.PT,
		"telephone_event", pa.eventA.Name != "", "srtp_a", suiteName(pa.sendKey), "rtcp_mux_a", ma.RTCPMux)
	return bytes.Clone(n.answerA), nil
}

// LocalReady is closed when A, answered by AnswerLocal, can hear what is
// played to it: at once on a plain or SDES leg, once DTLS-SRTP is keyed
// on a dtls leg (what is sent before that is lost). It means nothing on
// a bridge A was not answered locally on.
func (b *Bridge) LocalReady() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.localReady == nil {
		b.localReady = make(chan struct{})
	}
	return b.localReady
}

// setLocalReadyLocked closes localReady once, if AnswerLocal made it;
// called with b.mu held.
func (b *Bridge) setLocalReadyLocked() {
	if b.localReady == nil {
		return
	}
	select {
	case <-b.localReady:
	default:
		close(b.localReady)
	}
}

// answerDirection is the direction an answer takes to an offer's.
func answerDirection(offer Direction) Direction {
	switch offer {
	case SendOnly:
		return RecvOnly
	case RecvOnly:
		return SendOnly
	case Inactive:
		return Inactive
	}
	return SendRecv
}

// SetLegB replaces side B's settings, for the next offer to a B (OfferToB
// or Offer): a call answered locally may connect to an endpoint other
// than the one the bridge was made for.
func (b *Bridge) SetLegB(cfg LegConfig) error {
	cfg, err := cfg.normalize(SideB)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errClosed
	}
	b.legs[SideB].cfg = cfg
	return nil
}

// OfferToB returns the offer for a B of a call whose A was answered by
// AnswerLocal: A's answered codec first (relayed if B takes it), then the
// codecs side B allows that it transcodes to, and telephone-event. It may
// be called again for another B when one does not answer. A's media goes
// on as it is (silence, playbacks, digits) until AnswerB.
func (b *Bridge) OfferToB() ([]byte, error) {
	b.mu.Lock()
	n := &b.neg
	if !n.local {
		b.mu.Unlock()
		return nil, errNotLocal
	}
	d, idx, candidates, eventA, cfgB := n.offerA, n.audio, n.candidates, n.eventA, b.legs[SideB].cfg
	b.mu.Unlock()
	ob, err := b.buildOfferB(d, idx, candidates, eventA, cfgB)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errClosed
	}
	b.storeOfferB(ob)
	n.sides[SideB], n.pending[SideB], n.sent[SideB] = nil, nil, n.offerB
	b.log.Debug("media: offer to B after a local answer", "codecs", codecNames(ob.media.Codecs), "proto", ob.media.Proto)
	return bytes.Clone(n.offerB), nil
}

// OnDTMF makes fn hear each key a side presses (RFC 4733 telephone-event;
// on a call answered locally, before its B, also G.711 in-band tones:
// inband.go), once per key: '0'–'9', '*', '#', 'A'–'D'. It is called on a relay
// goroutine with the direction's lock held: it must not block or call
// the bridge. Keys are reported whether or not they are relayed to the
// other side. nil stops the reports.
func (b *Bridge) OnDTMF(fn func(side Side, key rune)) {
	if fn == nil {
		b.dtmfFn.Store(nil)
		return
	}
	b.dtmfFn.Store(&fn)
}

// dtmfHook boxes the OnDTMF function for an atomic pointer.
type dtmfHook = atomic.Pointer[func(Side, rune)]

// notifyKey reports the key of an event's first packet to OnDTMF.
// A key the in-band detector has just reported is not reported again
// (inband.go).
func (d *direction) notifyKey(body []byte, act dtmfAction, now time.Duration) {
	if !d.dtmf.newKey(act) {
		return
	}
	k := eventKey(body[0])
	if k == 0 || !d.eventSeen(k, now) {
		return
	}
	if fn := d.b.dtmfFn.Load(); fn != nil {
		(*fn)(d.side, k)
	}
}

// eventKey is the key of an RFC 4733 event code, 0 for the codes that are
// not keys (flash, tones).
func eventKey(code byte) rune {
	switch {
	case code <= 9:
		return rune('0' + code)
	case code == 10:
		return '*'
	case code == 11:
		return '#'
	case code <= 15:
		return rune('A' + code - 12)
	}
	return 0
}

// unrouted handles a valid packet from a source whose destination is not
// there (a call answered locally, before its B): its key presses go to
// OnDTMF and its audio to the tap, nowhere else. Called with d.mu held.
func (d *direction) unrouted(pkt []byte, hl int, rt *route, now time.Duration) {
	pt := pkt[1] & 0x7f
	switch rt.class[pt] {
	case classAudio:
		d.rxBytes += uint64(len(pkt))
		d.rx.update(binary.BigEndian.Uint32(pkt[8:]), binary.BigEndian.Uint16(pkt[2:]), binary.BigEndian.Uint32(pkt[4:]), now, rt.in.rate)
		if h := d.tapHolder(); h != nil {
			d.tapDec.decode(rt.in, binary.BigEndian.Uint16(pkt[2:]), payload(pkt, hl), h.tap)
		}
		d.inband(rt.in, binary.BigEndian.Uint16(pkt[2:]), payload(pkt, hl), now)
	case classEvent:
		d.rxBytes += uint64(len(pkt))
		d.rx.update(binary.BigEndian.Uint32(pkt[8:]), binary.BigEndian.Uint16(pkt[2:]), binary.BigEndian.Uint32(pkt[4:]), now, 0)
		body := payload(pkt, hl)
		if len(body) < eventPayloadLen {
			d.dropInvalid(d.cur.from.rtp, len(pkt))
			return
		}
		act := d.dtmf.classifyBlock(binary.BigEndian.Uint32(pkt[8:]), binary.BigEndian.Uint32(pkt[4:]), body)
		if d.dtmf.newKey(act) {
			d.b.dtmfEvents.Add(1)
		}
		d.notifyKey(body, act, now)
	}
}

// absentPoll is how often the RTP timeout job of a side with no peer yet
// (a call answered locally, before its B) looks again.
const absentPoll = time.Second
