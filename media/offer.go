package media

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// The offer side of a bridge's offer/answer: A's offer read (parseOfferA,
// shared with AnswerLocal) and the offer made to B (buildOfferB and
// storeOfferB, shared with OfferToB). offeranswer.go has B's answer.

// Offer parses A's offer and returns the offer to send to B.
//
// Policy: when A and B can share a codec the call is relayed, and B is
// offered the codecs both allow first, in A's order with A's payload types
// and fmtp. After them come B's other allowed codecs that wagate can
// transcode from one of A's (Opus ↔ PCMU/PCMA, PCMU ↔ PCMA), in B's order,
// so a call between Opus-only WhatsApp and a G.711 PBX is transcoded
// instead of refused. telephone-event/8000 is always offered (B may use
// it even when A did not offer it; events then go nowhere), with A's
// payload type when A has one. ptime, maxptime and the direction are
// copied from A; a=rtcp-mux is offered when A offered it or B is WhatsApp.
// On an "sdes" B leg the offer is RTP/SAVP with an a=crypto line of a fresh
// key for each suite wagate supports.
//
// Only A's first enabled audio stream with the transport A's LegConfig
// asks for is used (RTP/SAVP with a usable a=crypto for "sdes", RTP/AVP for
// "none"); the answer to A rejects A's other streams with port 0. Errors
// wrap ErrBadSDP (unparseable, no usable audio stream, wrong transport, no
// usable key) or ErrNoCommonCodec (neither relay nor transcoding can join
// the two sides).
//
// Offer may be called again, e.g. for the next target of a hunt list: it
// forgets the previous B.
func (b *Bridge) Offer(offerA []byte) ([]byte, error) {
	b.mu.Lock()
	cfgA, cfgB := b.legs[SideA].cfg, b.legs[SideB].cfg
	b.mu.Unlock()

	pa, err := b.parseOfferA(offerA, cfgA)
	if err != nil {
		return nil, err
	}
	ob, err := b.buildOfferB(pa.d, pa.idx, pa.candidates, pa.eventA, cfgB)
	if err != nil {
		return nil, err
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errClosed
	}
	n := &b.neg
	n.offerA, n.audio = pa.d, pa.idx
	b.setPeerA(pa)
	n.candidates, n.eventA = pa.candidates, pa.eventA
	n.sendKeyA = pa.sendKey
	n.local, n.localMedia = false, Media{}
	b.storeOfferB(ob)
	n.answerA = nil
	n.sides, n.pending = [2]*sideMedia{}, [2]*pendingOffer{}
	n.sent = [2][]byte{nil, n.offerB}
	// A's packets are now recognised (they keep A alive) but go nowhere
	// until B answers; nothing from B is accepted yet.
	b.routeAB.Store(&route{from: n.peerA, pt: newPTMap(), eventOut: ptDrop})
	b.routeBA.Store(&route{to: n.peerA, pt: newPTMap(), eventOut: ptDrop})
	ma := &pa.d.Media[pa.idx]
	b.log.Debug("media: offer to B", "a_addr", mediaAddr(ma), "codecs", codecNames(ob.media.Codecs), "proto", ob.media.Proto)
	return bytes.Clone(n.offerB), nil
}

// offerA is A's offer as parsed and checked against side A's settings.
type offerA struct {
	d          *Description
	idx        int     // the stream used
	peer       *remote // A as the offer describes it (nil on a dtls leg)
	secA       *secureParams
	candidates []Codec // A's allowed audio codecs, in A's order
	eventA     Codec   // A's telephone-event/8000 (Name "" if none)
	sendKey    *sdesKey
}

// parseOfferA reads A's offer: the stream to use, its codecs and keys.
func (b *Bridge) parseOfferA(offer []byte, cfgA LegConfig) (*offerA, error) {
	d, err := ParseSDP(offer)
	if err != nil {
		return nil, fmt.Errorf("media: offer from A: %w", err)
	}
	idx, err := pickAudio(d, cfgA)
	if err != nil {
		return nil, fmt.Errorf("media: offer from A: %w", err)
	}
	ma := &d.Media[idx]
	if !ma.Connection.IsValid() {
		return nil, fmt.Errorf("media: offer from A: %w", badSDP(0, "no c= for the audio stream"))
	}
	if err := b.checkReach(SideA, ma, cfgA, nil); err != nil {
		return nil, fmt.Errorf("media: offer from A: %w", err)
	}
	var recvKeyA, sendKeyA *sdesKey
	var secA *secureParams
	if cfgA.Encryption == EncryptionDTLS {
		if !ma.RTCPMux {
			return nil, fmt.Errorf("media: offer from A: %w", badSDP(0, "a dtls stream without a=rtcp-mux"))
		}
		if secA, err = parseSecure(d, ma, true); err != nil {
			return nil, fmt.Errorf("media: offer from A: %w", err)
		}
	}
	if cfgA.Encryption == EncryptionSDES {
		if recvKeyA, err = pickCrypto(ma.Attributes); err != nil {
			return nil, fmt.Errorf("media: offer from A: %w", badSDP(0, "%v", err))
		}
		if sendKeyA, err = newLocalKey(recvKeyA.tag, recvKeyA.suite, recvKeyA.name); err != nil {
			return nil, err
		}
	}

	candidates, eventA := selectCodecs(ma.Codecs, cfgA.Codecs)
	if len(candidates) == 0 {
		return nil, fmt.Errorf("%w: A offers %s, side A allows %s", ErrNoCommonCodec, codecNames(ma.Codecs), strings.Join(cfgA.Codecs, ","))
	}
	if cfgA.WhatsApp && cfgA.Prefer == PreferTranscode {
		// Meta's own G.711 is Opus transcoded on its side, with latency
		// added: take the Opus and transcode here.
		candidates = preferOpus(candidates)
	}
	pa := &offerA{d: d, idx: idx, secA: secA, candidates: candidates, eventA: eventA, sendKey: sendKeyA}
	if secA == nil {
		pa.peer = &remote{rtp: mediaAddr(ma), rtcp: rtcpAddr(ma, ma.RTCPMux), mux: ma.RTCPMux, recvKey: recvKeyA, sendKey: sendKeyA}
		pa.peer.setUp(cfgA, b.m)
	}
	return pa, nil
}

// setPeerA makes A's offer the bridge's A peer; on a dtls leg A's secure
// leg starts keying from the offer's fingerprint and ICE credentials, and
// A's address is the ICE pair's, known once it is keyed. Called with
// b.mu held.
func (b *Bridge) setPeerA(pa *offerA) {
	n := &b.neg
	if pa.secA == nil {
		n.peerA = pa.peer
		return
	}
	n.peerA = &remote{mux: true, secure: true}
	sa := newSecureLeg(b, SideA)
	sa.setPeerOffer(pa.secA)
	b.legs[SideA].sec.Store(sa)
}

// offerToB is an offer built for B, not yet stored.
type offerToB struct {
	media   Media
	offered []Codec
	common  []bool
	event   Codec
	keys    []*sdesKey
	sec     *secureLeg // B's dtls leg (nil unless side B is dtls)
}

// buildOfferB builds the offer to B from A's stream d.Media[idx], whose
// usable codecs are candidates (see Offer for the policy).
func (b *Bridge) buildOfferB(d *Description, idx int, candidates []Codec, eventA Codec, cfgB LegConfig) (*offerToB, error) {
	ma := &d.Media[idx]
	offered, common := offerCodecs(candidates, eventA, cfgB.Codecs, b.m.opus.OpusFEC)
	if cfgB.WhatsApp && cfgB.Prefer == PreferTranscode {
		// Meta answers with the first codec it can: Opus, not its G.711.
		offered, common = opusFirst(offered, common)
	}
	if len(offered) == 0 {
		return nil, fmt.Errorf("%w: A offers %s, side B allows %s", ErrNoCommonCodec, codecNames(candidates), strings.Join(cfgB.Codecs, ","))
	}
	event := eventA
	if event.Name == "" {
		event = Codec{PT: freePT(append(slices.Clone(offered), candidates...), 101), Name: telephoneEvent, ClockRate: 8000, Fmtp: "0-16"}
	}
	mediaB := Media{
		Type:      "audio",
		Port:      b.legs[SideB].pair.port,
		Proto:     cfgB.proto(),
		Codecs:    append(slices.Clone(offered), event),
		RTCPMux:   ma.RTCPMux || cfgB.WhatsApp || cfgB.Encryption == EncryptionDTLS,
		Direction: d.EffectiveDirection(ma),
	}
	if common[0] {
		// B will most likely relay to A as is: ask for what A sends.
		mediaB.Ptime, mediaB.MaxPtime = ma.Ptime, ma.MaxPtime
	} else {
		mediaB.Ptime = 20 // we packetize for B: 20 ms is Opus's and a safe G.711 ptime
	}
	var keysB []*sdesKey
	if cfgB.Encryption == EncryptionSDES {
		for i, suite := range srtpSuites[:offeredSuites] {
			k, err := newLocalKey(i+1, suite, "")
			if err != nil {
				return nil, err
			}
			keysB = append(keysB, k)
			mediaB.Attributes = append(mediaB.Attributes, Attribute{Key: "crypto", Value: k.attribute()})
		}
	}
	var secB *secureLeg
	if cfgB.Encryption == EncryptionDTLS {
		secB = newSecureLeg(b, SideB)
		secB.offered = true
		mediaB.Attributes = append(mediaB.Attributes, secB.attributes(mediaB.Port)...)
	}
	return &offerToB{media: mediaB, offered: offered, common: common, event: event, keys: keysB, sec: secB}, nil
}

// storeOfferB records the offer made to B; called with b.mu held.
func (b *Bridge) storeOfferB(o *offerToB) {
	n := &b.neg
	n.peerB = nil
	b.legs[SideB].sec.Store(o.sec)
	n.offered, n.common, n.offerPtime, n.eventOffered = o.offered, o.common, o.media.Ptime, o.event
	n.keysB = o.keys
	out := Description{Connection: b.m.advertise, Media: []Media{o.media}}
	n.offerB = n.sdpB.marshal(&out, b.m.advertise)
}

// OfferB is Offer with side B's allowed codecs given here (unknown names
// are ignored; none known means no common codec).
//
// Deprecated: kept while the SIP layer moves to NewCallBridge and Offer.
func (b *Bridge) OfferB(offerA []byte, codecsB []string) ([]byte, error) {
	codecs := filterCodecs(codecsB)
	if len(codecs) == 0 {
		return nil, fmt.Errorf("%w: side B allows no codec wagate knows (%s)", ErrNoCommonCodec, strings.Join(codecsB, ","))
	}
	b.mu.Lock()
	b.legs[SideB].cfg.Codecs = codecs
	b.mu.Unlock()
	return b.Offer(offerA)
}
