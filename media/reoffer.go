package media

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Offers after the answer: a peer's re-INVITE (AcceptOffer), and a new
// peer for one side when the call is transferred (OfferSide, AnswerSide).
// In every case the other side keeps what it agreed and nothing is sent
// to it: when it is WhatsApp, Meta refuses re-INVITEs.

// StreamState is what a side's latest SDP says about its stream.
type StreamState struct {
	// Direction is the direction the peer offered, read as RFC 3264 says
	// (an offer at c=0.0.0.0 that says sendrecv is sendonly).
	Direction Direction
	// Hold: the peer does not want media from wagate (sendonly or
	// inactive). wagate then sends it nothing but RTCP, and does not
	// expect media from it.
	Hold bool
	// Moved: the peer's media address changed.
	Moved bool
}

// AcceptOffer takes a new offer from side s's peer (a re-INVITE) and
// returns wagate's answer, from the same port: the peer may move its
// media (a new c= or port: the relay sends there and accepts media from
// there only), change its payload types, hold (sendonly, inactive, or
// c=0.0.0.0: wagate answers recvonly or inactive, sends it nothing, and
// stops expecting media from it) and resume. The leg keeps its codec
// while the offer has it; an offer without it moves the leg to one the
// leg allows and wagate converts the other side's to (reofferCodec), and
// fails with ErrNoCommonCodec (the SIP layer answers 488), changing
// nothing, when there is none. Errors wrap ErrBadSDP or ErrNoCommonCodec.
func (b *Bridge) AcceptOffer(s Side, offer []byte) ([]byte, StreamState, error) {
	return b.accept(s, offer, true)
}

// AcceptAnswer takes side s's answer to ReOffer's offer (the SDP in the
// ACK of a re-INVITE without SDP) and applies it as AcceptOffer applies
// an offer: the peer may move its media, change its SRTP key, hold or
// resume; the leg's codec must be in it. Errors change nothing.
func (b *Bridge) AcceptAnswer(s Side, answer []byte) (StreamState, error) {
	_, st, err := b.accept(s, answer, false)
	return st, err
}

// ReOffer returns wagate's offer to side s's peer for a re-INVITE without
// SDP (a delayed offer, answered in the ACK: AcceptAnswer): the side's
// current stream (its port, codec, telephone-event and SRTP key) at
// a=sendrecv whatever the last exchange said. wagate never holds a side
// itself, and an offer repeating its answer to a hold (recvonly) could
// only be answered with a hold: the peer could never resume. Side A of a
// call wagate originated, while B rings, is offered the codecs of its
// answer (reofferToRinging). A dtls side, and a side whose media is not
// agreed yet, get the SDP they have.
func (b *Bridge) ReOffer(s Side) []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := &b.neg
	cur := n.sides[s]
	if !b.closed && s == SideA && n.ringingA() {
		return b.reofferToRinging()
	}
	if b.closed || cur == nil || n.sides[s.other()] == nil || b.legs[s].sec.Load() != nil {
		return slices.Clone(n.sent[s])
	}
	mo := Media{Type: "audio", Port: b.legs[s].pair.port, Proto: b.legs[s].cfg.proto(), Codecs: []Codec{cur.codec},
		Ptime: cur.askPtime, RTCPMux: cur.peer.mux, Direction: SendRecv}
	if cur.event.Name != "" {
		mo.Codecs = append(mo.Codecs, cur.event)
	}
	if k := cur.peer.sendKey; k != nil {
		mo.Attributes = []Attribute{{Key: "crypto", Value: k.attribute()}}
	}
	// The new offer keeps the m= lines of the last SDP (RFC 3264 §8): the
	// streams wagate refused stay refused, at port 0.
	out := Description{Connection: b.m.advertise, Media: []Media{mo}}
	if last, err := ParseSDP(n.sent[s]); err == nil {
		if i := slices.IndexFunc(last.Media, func(m Media) bool { return m.Type == "audio" && m.Port != 0 }); i >= 0 {
			out.Media = last.Media
			out.Media[i] = mo
		}
	}
	body := n.session(s).marshal(&out, b.m.advertise)
	n.sent[s] = body
	if s == SideA {
		n.answerA = body
	}
	return bytes.Clone(body)
}

// accept applies side s's SDP: an offer (answered from the same port,
// the answer returned) or an answer to ReOffer.
func (b *Bridge) accept(s Side, sdp []byte, isOffer bool) ([]byte, StreamState, error) {
	what := "re-offer"
	if !isOffer {
		what = "answer to the re-offer"
	}
	d, err := ParseSDP(sdp)
	if err != nil {
		return nil, StreamState{}, fmt.Errorf("media: %s from %s: %w", what, s, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, StreamState{}, errClosed
	}
	n := &b.neg
	cur := n.sides[s]
	if s == SideA && n.ringingA() {
		return b.reofferRinging(d, isOffer)
	}
	if cur == nil || n.sides[s.other()] == nil {
		if n.local && s == SideA && n.sent[SideA] != nil {
			// A call wagate answered itself, its B not connected: A's
			// stream is the flow's (prompts, keys) and there is no one to
			// hold for; A gets the SDP it has and nothing changes.
			return slices.Clone(n.sent[SideA]), StreamState{Direction: SendRecv}, nil
		}
		return nil, StreamState{}, fmt.Errorf("media: %s from %s: %w", what, s, badSDP(0, "the call's media is not agreed yet"))
	}
	if sec := b.legs[s].sec.Load(); sec != nil {
		// A dtls side: ICE moves its media, DTLS keys it; a re-offer
		// (an ICE stack's re-INVITE with its chosen candidates) gets the
		// SDP it already has, fingerprint and candidates included, and
		// changes nothing. Only a WhatsApp leg is dtls, and it does not
		// hold. A re-offer that would need a new ICE run or DTLS
		// association is refused: answering it as if accepted leaves the
		// peer checking and handshaking with credentials wagate does not
		// use, and the call loses its audio.
		idx, err := pickAudio(d, b.legs[s].cfg)
		if err != nil {
			return nil, StreamState{}, fmt.Errorf("media: re-offer from %s: %w", s, err)
		}
		if err := sec.sameAssociation(d, &d.Media[idx]); err != nil {
			return nil, StreamState{}, fmt.Errorf("media: re-offer from %s: %w", s, err)
		}
		return n.answerAgain(s, sec, b.m.advertise), StreamState{Direction: SendRecv}, nil
	}
	cfg := b.legs[s].cfg
	idx, err := pickAudio(d, cfg)
	if err != nil {
		return nil, StreamState{}, fmt.Errorf("media: %s from %s: %w", what, s, err)
	}
	m := &d.Media[idx]
	if !m.Connection.IsValid() {
		return nil, StreamState{}, fmt.Errorf("media: %s from %s: %w", what, s, badSDP(0, "no c= for the audio stream"))
	}
	if err := b.checkReach(s, m, cfg, cur.peer); err != nil {
		return nil, StreamState{}, fmt.Errorf("media: %s from %s: %w", what, s, err)
	}
	codec, ok := reofferCodec(m.Codecs, cur, n.sides[s.other()], cfg.Codecs, isOffer)
	if !ok {
		return nil, StreamState{}, fmt.Errorf("%w: the %s from %s (%s) drops %s, the codec of the call, and offers none %s allows that wagate converts %s to",
			ErrNoCommonCodec, what, s, codecNames(m.Codecs), cur.codec.Name, s, n.sides[s.other()].codec.Name)
	}
	_, event := selectCodecs(m.Codecs, nil)

	peer := cur.peer
	recvKey, sendKey := peer.recvKey, peer.sendKey
	if cfg.Encryption == EncryptionSDES {
		k, err := pickCrypto(m.Attributes)
		if err != nil {
			return nil, StreamState{}, fmt.Errorf("media: %s from %s: %w", what, s, badSDP(0, "%v", err))
		}
		if !k.equal(recvKey) {
			recvKey = k
		}
		if sendKey == nil || sendKey.tag != k.tag || sendKey.suite != k.suite {
			// Our key must answer the line the peer chose: same tag and
			// suite.
			if sendKey, err = newLocalKey(k.tag, k.suite, k.name); err != nil {
				return nil, StreamState{}, err
			}
		}
	}
	addr := mediaAddr(m)
	dir := holdDirection(d.EffectiveDirection(m), addr)
	st := StreamState{Direction: dir, Hold: dir == SendOnly || dir == Inactive}
	if addr.IsValid() && addr != peer.rtp || m.RTCPMux != peer.mux || rtcpAddr(m, m.RTCPMux) != peer.rtcp ||
		recvKey != peer.recvKey || sendKey != peer.sendKey {
		// A new remote: a behind-NAT peer latches afresh. A hold at
		// 0.0.0.0 keeps the address it had, to resume to.
		np := &remote{rtp: peer.rtp, rtcp: peer.rtcp, mux: m.RTCPMux, recvKey: recvKey, sendKey: sendKey}
		if addr.IsValid() {
			st.Moved = addr != peer.rtp
			np.rtp, np.rtcp = addr, rtcpAddr(m, m.RTCPMux)
		}
		np.setUp(cfg, b.m)
		peer = np
	}
	ptime := orPtime(m.Ptime, cur.askPtime)
	next := &sideMedia{peer: peer, codec: codec, recvAudio: []uint8{codec.PT}, ptime: m.Ptime, askPtime: ptime,
		noSend: st.Hold || !addr.IsValid(), quiet: dir != SendRecv}
	if event.Name != "" {
		next.event, next.recvEvent = event, []uint8{event.PT}
	}
	ans := Media{Type: "audio", Port: b.legs[s].pair.port, Proto: m.Proto, Codecs: []Codec{codec},
		Ptime: ptime, RTCPMux: m.RTCPMux, Direction: reverse(dir)}
	if event.Name != "" {
		ans.Codecs = append(ans.Codecs, event)
	}
	if sendKey != nil {
		ans.Attributes = []Attribute{{Key: "crypto", Value: sendKey.attribute()}}
	}
	out := answerFor(d, idx, ans, b.m.advertise)
	prev := n.sides[s]
	n.sides[s] = next
	if err := b.installLocked(); err != nil {
		n.sides[s] = prev
		return nil, StreamState{}, err
	}
	if !isOffer {
		// The SDP sent stays ReOffer's offer.
		b.log.Info("media: answer to the re-offer accepted", "side", s, "addr", addr, "direction", dir, "moved", st.Moved,
			"codec", codec.Name, "pt", codec.PT)
		return nil, st, nil
	}
	body := n.session(s).marshal(&out, b.m.advertise)
	n.sent[s] = body
	if s == SideA {
		n.answerA = body
	}
	b.log.Info("media: re-offer accepted", "side", s, "addr", addr, "direction", dir, "moved", st.Moved,
		"codec", codec.Name, "pt", codec.PT)
	return bytes.Clone(body), st, nil
}

// reofferCodec picks the codec of a re-offer (or of the answer to
// ReOffer's offer) from side s, whose stream is cur, the other side's
// other: the call's codec when it is still there, so nothing changes
// (relayed stays relayed). An offer without it may move the leg to
// another codec the leg allows (allowed, canonical names) and wagate
// converts the other side's to, in the offer's order: a PBX re-INVITEs
// so after its own transfer or conference moved the call to a phone
// with other codecs, and a 488 there failed its transfer and left the
// caller on a dead stream. The other side is not asked to change: its
// codec is converted from then on. An answer to ReOffer's offer, which
// named the call's codec only, must keep it.
func reofferCodec(offered []Codec, cur, other *sideMedia, allowed []string, isOffer bool) (Codec, bool) {
	if ci := slices.IndexFunc(offered, func(c Codec) bool {
		return canonicalCodec(c.Name) == cur.name() && c.ClockRate == cur.codec.ClockRate
	}); ci >= 0 {
		return offered[ci], true
	}
	if !isOffer {
		return Codec{}, false
	}
	audio, _ := selectCodecs(offered, allowed)
	on := other.name()
	for _, c := range audio {
		if name := canonicalCodec(c.Name); name == on || canTranscode(on, name) {
			return c, true
		}
	}
	return Codec{}, false
}

// orPtime returns a when it is set, else b.
func orPtime(a, b int) int {
	if a > 0 {
		return a
	}
	return b
}

// pendingOffer is an offer out to a new peer of one side (OfferSide).
type pendingOffer struct {
	cfg     LegConfig
	offered []Codec
	event   Codec
	ptime   int
	keys    []*sdesKey
	sess    sdpSession
	body    []byte
}

// OfferSide starts replacing side s's peer (a transfer): it returns an
// offer, from side s's port, for a peer configured as cfg. The codec of
// the other side comes first when cfg allows it (then media is relayed as
// before), followed by cfg's other codecs wagate converts it to. The
// current peer keeps its media until AnswerSide, without an RTP timeout
// (it may hang up while the new peer rings); CancelOffer forgets the
// offer. A new OfferSide replaces one that was not answered.
func (b *Bridge) OfferSide(s Side, cfg LegConfig) ([]byte, error) {
	cfg, err := cfg.normalize(s)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errClosed
	}
	other := b.neg.sides[s.other()]
	if other == nil {
		return nil, errors.New("media: offer to a new peer before the call's media was agreed")
	}
	p := &pendingOffer{cfg: cfg, event: Codec{PT: 101, Name: telephoneEvent, ClockRate: 8000, Fmtp: "0-16"}}
	on := other.name()
	if slices.Contains(cfg.Codecs, on) {
		p.offered = append(p.offered, newPeerCodec(on, other.codec.Fmtp, b.m.opus.OpusFEC))
		p.ptime = other.ptime
	}
	for _, name := range cfg.Codecs {
		if name != on && canTranscode(on, name) {
			p.offered = append(p.offered, newPeerCodec(name, "", b.m.opus.OpusFEC))
		}
	}
	if len(p.offered) == 0 {
		return nil, fmt.Errorf("%w: the call carries %s, side %s allows %s", ErrNoCommonCodec, on, s, strings.Join(cfg.Codecs, ","))
	}
	if p.ptime == 0 || p.offered[0].Name != on {
		p.ptime = 20
	}
	mo := Media{Type: "audio", Port: b.legs[s].pair.port, Proto: cfg.proto(), Codecs: append(slices.Clone(p.offered), p.event),
		Ptime: p.ptime, RTCPMux: cfg.WhatsApp, Direction: SendRecv}
	if cfg.Encryption == EncryptionSDES {
		for i, suite := range srtpSuites[:offeredSuites] {
			k, err := newLocalKey(i+1, suite, "")
			if err != nil {
				return nil, err
			}
			p.keys = append(p.keys, k)
			mo.Attributes = append(mo.Attributes, Attribute{Key: "crypto", Value: k.attribute()})
		}
	}
	out := Description{Connection: b.m.advertise, Media: []Media{mo}}
	p.body = p.sess.marshal(&out, b.m.advertise)
	prev := b.neg.pending[s]
	b.neg.pending[s] = p
	if err := b.installLocked(); err != nil {
		b.neg.pending[s] = prev
		return nil, err
	}
	return bytes.Clone(p.body), nil
}

// newPeerCodec is a codec as offered to a new peer, with a payload type
// of wagate's choosing.
func newPeerCodec(name, fmtp string, fec bool) Codec {
	switch name {
	case "PCMU":
		return Codec{PT: 0, Name: name, ClockRate: 8000}
	case "PCMA":
		return Codec{PT: 8, Name: name, ClockRate: 8000}
	}
	if fmtp == "" {
		fmtp = ourFmtp(name, fec)
	}
	return Codec{PT: 111, Name: name, ClockRate: 48000, Channels: 2, Fmtp: fmtp}
}

// AnswerSide takes the new peer's answer to OfferSide's offer: side s's
// media moves to it at once (the old peer's packets are dropped from now
// on) and the leg is configured as OfferSide's cfg. Errors wrap ErrBadSDP
// or ErrNoCommonCodec and change nothing; the offer stays pending.
func (b *Bridge) AnswerSide(s Side, answer []byte) error {
	d, err := ParseSDP(answer)
	if err != nil {
		return fmt.Errorf("media: answer from the new peer of %s: %w", s, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errClosed
	}
	p := b.neg.pending[s]
	if p == nil {
		return errors.New("media: answer from a new peer without an offer to it")
	}
	if len(d.Media) == 0 || d.Media[0].Type != "audio" || d.Media[0].Port == 0 {
		return fmt.Errorf("%w: the new peer of %s accepted no audio stream", ErrNoCommonCodec, s)
	}
	mb := &d.Media[0]
	switch {
	case mb.Proto != p.cfg.proto():
		return fmt.Errorf("media: answer from the new peer of %s: %w", s, badSDP(0, "transport %q, but it is configured for %s", mb.Proto, p.cfg.proto()))
	case !mb.Connection.IsValid():
		return fmt.Errorf("media: answer from the new peer of %s: %w", s, badSDP(0, "no c= for the audio stream"))
	}
	if err := b.checkReach(s, mb, p.cfg, nil); err != nil {
		return fmt.Errorf("media: answer from the new peer of %s: %w", s, err)
	}
	var recvKey, sendKey *sdesKey
	if p.cfg.Encryption == EncryptionSDES {
		if recvKey, sendKey, err = answerCrypto(mb.Attributes, p.keys); err != nil {
			return fmt.Errorf("media: answer from the new peer of %s: %w", s, badSDP(0, "%v", err))
		}
	}
	codec, off, ok := matchAnswer(mb.Codecs, p.offered, false)
	if !ok {
		return fmt.Errorf("%w: the new peer of %s answered %s to an offer of %s", ErrNoCommonCodec, s, codecNames(mb.Codecs), codecNames(p.offered))
	}
	event, eventOff, hasEvent := matchAnswer(mb.Codecs, []Codec{p.event}, true)
	mux := mb.RTCPMux && p.cfg.WhatsApp
	peer := &remote{rtp: mediaAddr(mb), rtcp: rtcpAddr(mb, mux), mux: mux, recvKey: recvKey, sendKey: sendKey}
	peer.setUp(p.cfg, b.m)
	dir := holdDirection(d.EffectiveDirection(mb), peer.rtp)
	next := &sideMedia{peer: peer, codec: codec, recvAudio: []uint8{off.PT, codec.PT}, ptime: mb.Ptime, askPtime: p.ptime,
		noSend: dir == SendOnly || dir == Inactive || !peer.rtp.IsValid(), quiet: dir != SendRecv}
	if hasEvent {
		next.event, next.recvEvent = event, []uint8{eventOff.PT, event.PT}
	}
	next.otherLaw, next.nOtherLaw = otherLaw(mb.Codecs, p.offered, codec)
	prev, prevCfg := b.neg.sides[s], b.legs[s].cfg
	b.neg.sides[s], b.legs[s].cfg, b.neg.pending[s] = next, p.cfg, nil
	if err := b.installLocked(); err != nil {
		b.neg.sides[s], b.legs[s].cfg, b.neg.pending[s] = prev, prevCfg, p
		return err
	}
	*b.neg.session(s) = p.sess
	b.neg.sent[s] = p.body
	if s == SideA {
		b.neg.answerA = p.body
	}
	b.log.Info("media: side moved to a new peer", "side", s, "addr", peer.rtp, "codec", codec.Name, "pt", codec.PT,
		"transcode", canonicalCodec(codec.Name) != b.neg.sides[s.other()].name())
	return nil
}

// CancelOffer forgets an offer OfferSide made that will not be answered:
// side s's current peer is timed again from now.
func (b *Bridge) CancelOffer(s Side) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.neg.pending[s] == nil {
		return
	}
	b.neg.pending[s] = nil
	if b.closed {
		return
	}
	if err := b.installLocked(); err != nil {
		// The routes were built from these sides before the offer.
		b.log.Warn("media: routes not rebuilt after a withdrawn offer", "side", s, "err", err)
	}
}

// answerAgain is side s's answer to a dtls peer's re-offer that keeps the
// association: the SDP the side has, with wagate's DTLS role where that
// SDP was wagate's offer (a=setup:actpass may not be in an answer, RFC
// 5763 §5; the peer's answer fixed the roles). Called with b.mu held.
func (n *negotiation) answerAgain(s Side, sec *secureLeg, advertise netip.Addr) []byte {
	body := n.sent[s]
	if !sec.offered {
		return slices.Clone(body)
	}
	d, err := ParseSDP(body)
	if err != nil {
		return slices.Clone(body) // our own SDP: not reached
	}
	role := setupPassive
	if sec.client {
		role = setupActive
	}
	for i := range d.Media {
		for j, a := range d.Media[i].Attributes {
			if a.Key == "setup" {
				d.Media[i].Attributes[j].Value = role
			}
		}
	}
	body = n.session(s).marshal(d, advertise)
	n.sent[s] = body
	return slices.Clone(body)
}

// answerFor is the answer to offer d whose stream idx wagate takes, as
// ans: every other stream is refused with port 0 (RFC 3264 §6), in the
// offer's order.
func answerFor(d *Description, idx int, ans Media, conn netip.Addr) Description {
	out := Description{Connection: conn, Media: make([]Media, len(d.Media))}
	for i, om := range d.Media {
		if i == idx {
			out.Media[i] = ans
			continue
		}
		out.Media[i] = Media{Type: om.Type, Port: 0, Proto: om.Proto, Formats: om.Formats}
	}
	return out
}
