package media

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The transports wagate speaks: plain RTP on PBX legs, SDES-SRTP toward
// Meta.
const (
	plainRTP  = "RTP/AVP"
	secureRTP = "RTP/SAVP"
)

const telephoneEvent = "telephone-event"

// negotiation is a bridge's offer/answer state, guarded by Bridge.mu.
type negotiation struct {
	offerA *Description // A's offer
	audio  int          // index of the relayed stream in offerA.Media
	peerA  *remote      // A as its offer describes it; shared by the routes
	peerB  *remote      // B as its latest answer describes it (nil before)
	// candidates are A's audio codecs allowed on side A, in A's order;
	// eventA is A's telephone-event/8000 (Name "" if none).
	candidates []Codec
	eventA     Codec
	// offered are the codecs offered to B (A's payload types for the
	// ones A has); common[i] says A has offered[i] too (relay).
	offered []Codec
	common  []bool
	// eventOffered is the telephone-event offered to B.
	eventOffered Codec
	// offerPtime is the a=ptime of our offer to B (0: none).
	offerPtime int
	// keysB are our a=crypto keys offered to B; sendKeyA is ours toward A.
	keysB    []*sdesKey
	sendKeyA *sdesKey
	offerB   []byte     // SDP sent to B
	answerA  []byte     // SDP sent to A
	sdpA     sdpSession // our SDP session toward A
	sdpB     sdpSession // toward B

	// sides are what each side agreed once B answered (nil before);
	// routes are built from them. pending is an offer out to a new peer
	// of a side (OfferSide), sent the last SDP sent to each side.
	sides   [2]*sideMedia
	pending [2]*pendingOffer
	sent    [2][]byte
	// leaving: the side's peer is leaving the call before the party that
	// takes its place is there (ReleaseSide): it has no RTP timeout until
	// Link gives the side a new peer.
	leaving [2]bool
	// local: A was answered by AnswerLocal, with localMedia as our
	// stream; a B connected later (OfferToB, AnswerB) must fit that
	// answer, which A already has and which never changes.
	local      bool
	localMedia Media
	// offerToA is wagate's own offer to A on a call it originates
	// (OfferA); ring is the ringback A hears until B answers.
	offerToA []byte
	ring     *Playback
	// holdA is the direction A's re-INVITE said while it heard the
	// ringback (reofferRinging; "" for none): B's answer starts the
	// call's media with A held if it was.
	holdA Direction
}

// session is our SDP session toward side s.
func (n *negotiation) session(s Side) *sdpSession {
	if s == SideA {
		return &n.sdpA
	}
	return &n.sdpB
}

// sdpSession keeps o= stable for one side: same session id, and a version
// that only moves when the body does (RFC 3264 §8), so an answer repeated
// in a 200 after a 183 is byte-identical.
type sdpSession struct {
	id, version uint64
	last        []byte
}

func (s *sdpSession) marshal(d *Description, advertise netip.Addr) []byte {
	if s.id == 0 {
		// 62 bits: some stacks parse o= numbers as signed 64-bit.
		s.id = rand.Uint64()>>2 | 1
		s.version = 1
	}
	d.Origin = Origin{Username: "wagate", SessionID: strconv.FormatUint(s.id, 10), Address: advertise.String()}
	d.SessionName = "wagate"
	d.Origin.SessionVersion = strconv.FormatUint(s.version, 10)
	body := d.Marshal()
	if s.last != nil && !bytes.Equal(body, s.last) {
		s.version++
		d.Origin.SessionVersion = strconv.FormatUint(s.version, 10)
		body = d.Marshal()
	}
	s.last = body
	return body
}

// AnswerB parses B's answer to the offer from Offer and returns the answer
// to send to A.
//
// B's codec is the first in B's answer that was offered (by name and clock
// rate, or by payload type where B gave no rtpmap). If A has it too, the
// call is relayed and A's answer names it with A's payload type and B's
// fmtp, ptime and maxptime; otherwise it is transcoded and A's answer
// names the first of A's codecs that converts to B's, with A's payload
// type and A's ptime. telephone-event goes in A's answer whenever A offered
// it. The answer carries our A-facing port, B's direction, rtcp-mux if A
// offered it, and on an "sdes" A leg an a=crypto line with A's tag and
// suite and our own key. A's other streams are rejected (port 0).
//
// AnswerB may be called again (183 then 200); the latest answer updates B's
// address, keys and codec for the relay. Errors wrap ErrBadSDP (including
// a transport or key that does not match what B's LegConfig asks), or
// ErrNoCommonCodec when B accepted nothing we offered.
func (b *Bridge) AnswerB(answerB []byte) ([]byte, error) {
	d, err := ParseSDP(answerB)
	if err != nil {
		return nil, fmt.Errorf("media: answer from B: %w", err)
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errClosed
	}
	n := &b.neg
	if n.offerA == nil {
		return nil, errors.New("media: answer from B before any offer to B")
	}
	cfgB := b.legs[SideB].cfg
	if len(d.Media) == 0 {
		return nil, fmt.Errorf("media: answer from B: %w", badSDP(0, "no m= line"))
	}
	mb := &d.Media[0]
	switch {
	case mb.Type != "audio":
		return nil, fmt.Errorf("media: answer from B: %w", badSDP(0, "first m= line is %q, offered audio", mb.Type))
	case mb.Port == 0:
		return nil, fmt.Errorf("%w: B rejected the audio stream (port 0)", ErrNoCommonCodec)
	case !cfgB.accepts(mb.Proto):
		return nil, fmt.Errorf("media: answer from B: %w", badSDP(0, "transport %q, but side B is configured for %s (%s)", mb.Proto, cfgB.Encryption, cfgB.proto()))
	case !mb.Connection.IsValid():
		return nil, fmt.Errorf("media: answer from B: %w", badSDP(0, "no c= for the audio stream"))
	}
	if err := b.checkReach(SideB, mb, cfgB, nil); err != nil {
		return nil, fmt.Errorf("media: answer from B: %w", err)
	}
	var recvKeyB, sendKeyB *sdesKey
	secB := b.legs[SideB].sec.Load()
	if cfgB.Encryption == EncryptionDTLS {
		if !mb.RTCPMux {
			return nil, fmt.Errorf("media: answer from B: %w", badSDP(0, "a dtls stream without a=rtcp-mux"))
		}
		p, err := parseSecure(d, mb, false)
		if err != nil {
			return nil, fmt.Errorf("media: answer from B: %w", err)
		}
		if secB == nil {
			return nil, errors.New("media: answer from B on a dtls leg without our offer")
		}
		if secB.done == nil {
			secB.setPeerAnswer(p) // a later answer (200 after 183) once started changes nothing
		}
	}
	if cfgB.Encryption == EncryptionSDES {
		if recvKeyB, sendKeyB, err = answerCrypto(mb.Attributes, n.keysB); err != nil {
			return nil, fmt.Errorf("media: answer from B: %w", badSDP(0, "%v", err))
		}
	}
	codecB, off, ok := matchAnswer(mb.Codecs, n.offered, false)
	if !ok {
		return nil, fmt.Errorf("%w: B answered %s to an offer of %s", ErrNoCommonCodec, codecNames(mb.Codecs), codecNames(n.offered))
	}
	eventB, eventOff, hasEventB := matchAnswer(mb.Codecs, []Codec{n.eventOffered}, true)
	nameB := canonicalCodec(codecB.Name)
	relay := n.common[slices.IndexFunc(n.offered, func(c Codec) bool { return c.PT == off.PT })]
	codecA := off
	if !relay {
		i := slices.IndexFunc(n.candidates, func(c Codec) bool { return canTranscode(canonicalCodec(c.Name), nameB) })
		if i < 0 {
			return nil, fmt.Errorf("%w: cannot transcode %s to anything A offered", ErrNoCommonCodec, codecB.Name)
		}
		codecA = n.candidates[i]
	}
	nameA := canonicalCodec(codecA.Name)

	ma := &n.offerA.Media[n.audio]
	active := Media{
		Type:      "audio",
		Port:      b.legs[SideA].pair.port,
		Proto:     ma.Proto,
		RTCPMux:   ma.RTCPMux,
		Direction: d.EffectiveDirection(mb),
	}
	if relay {
		active.Codecs = []Codec{withFmtp(codecA, codecB.Fmtp)}
		active.Ptime, active.MaxPtime = mb.Ptime, mb.MaxPtime
	} else {
		active.Codecs = []Codec{withFmtp(codecA, ourFmtp(nameA, b.m.opus.OpusFEC))}
		active.Ptime = normalPtime(nameA, ma.Ptime)
	}
	if n.eventA.Name != "" {
		te := n.eventA
		if hasEventB {
			te = withFmtp(te, cmp.Or(eventB.Fmtp, te.Fmtp))
		}
		active.Codecs = append(active.Codecs, te)
	}
	if n.sendKeyA != nil {
		active.Attributes = []Attribute{{Key: "crypto", Value: n.sendKeyA.attribute()}}
	}
	if sa := b.legs[SideA].sec.Load(); sa != nil {
		active.RTCPMux = true
		active.Attributes = append(active.Attributes, sa.attributes(active.Port)...)
	}
	out := Description{Connection: b.m.advertise, Media: make([]Media, len(n.offerA.Media))}
	for i, m := range n.offerA.Media {
		if i == n.audio {
			out.Media[i] = active
			continue
		}
		out.Media[i] = Media{Type: m.Type, Port: 0, Proto: m.Proto, Formats: m.Formats}
	}
	if !n.local {
		n.answerA = n.sdpA.marshal(&out, b.m.advertise)
	}

	mux := mb.RTCPMux && (ma.RTCPMux || cfgB.WhatsApp || cfgB.Encryption == EncryptionDTLS) // we offered it
	var peerB *remote
	switch {
	case secB != nil && n.peerB != nil && n.peerB.secure:
		peerB = n.peerB // keyed already, or still keying: the same peer
	case secB != nil:
		peerB = &remote{mux: true, secure: true}
	default:
		peerB = &remote{rtp: mediaAddr(mb), rtcp: rtcpAddr(mb, mux), mux: mux, recvKey: recvKeyB, sendKey: sendKeyB}
		peerB.setUp(cfgB, b.m)
	}
	n.peerB = peerB
	// A sends with the payload types of our answer (A's); B should send
	// with those of our offer, but some PBXs send with their own answer's
	// numbers, so B→A takes both, B's own number winning a clash.
	askA := active.Ptime
	if n.local {
		// A has AnswerLocal's answer, not this one.
		askA = n.localMedia.Ptime
	}
	sideA := &sideMedia{peer: n.peerA, codec: codecA, recvAudio: []uint8{codecA.PT},
		ptime: ma.Ptime, askPtime: askA}
	if n.eventA.Name != "" {
		sideA.event, sideA.recvEvent = n.eventA, []uint8{n.eventA.PT}
	}
	if n.offerToA != nil && n.holdA != "" {
		sideA.noSend = n.holdA == SendOnly || n.holdA == Inactive
		sideA.quiet = n.holdA != SendRecv
	}
	sideB := &sideMedia{peer: peerB, codec: codecB, recvAudio: []uint8{off.PT, codecB.PT},
		ptime: mb.Ptime, askPtime: n.offerPtime}
	sideB.otherLaw, sideB.nOtherLaw = otherLaw(mb.Codecs, n.offered, codecB)
	if hasEventB {
		sideB.event, sideB.recvEvent = eventB, []uint8{eventOff.PT, eventB.PT}
	}
	ab, err := buildRoute(sideA, sideB)
	if err != nil {
		return nil, err
	}
	ba, err := buildRoute(sideB, sideA)
	if err != nil {
		return nil, err
	}
	n.sides = [2]*sideMedia{sideA, sideB}
	n.sent[SideA] = n.answerA
	if n.offerToA != nil {
		// A call wagate originated: A has our offer, not this answer.
		n.sent[SideA] = n.offerToA
	}
	n.markLeaving(ab, ba)
	b.routeAB.Store(ab)
	b.routeBA.Store(ba)
	b.log.Debug("media: answer from B", "b_addr", mediaAddr(mb), "codec_a", codecA.Name, "codec_b", codecB.Name,
		"transcode", !relay, "pt_a", codecA.PT, "pt_b", codecB.PT, "telephone_event", n.eventA.Name != "" && hasEventB,
		"srtp_a", suiteName(n.sendKeyA), "srtp_b", suiteName(sendKeyB), "rtcp_mux_a", ma.RTCPMux, "rtcp_mux_b", mux)
	return bytes.Clone(n.answerA), nil
}

// answerCrypto finds B's a=crypto answering one of our offered keys: same
// tag and suite. It returns B's key and ours.
func answerCrypto(attrs []Attribute, offered []*sdesKey) (recv, send *sdesKey, err error) {
	var reasons []string
	for _, a := range attrs {
		if a.Key != "crypto" {
			continue
		}
		k, err := parseCrypto(a.Value)
		if err != nil {
			reasons = append(reasons, err.Error())
			continue
		}
		for _, o := range offered {
			if o.tag == k.tag && o.suite == k.suite {
				return k, o, nil
			}
		}
		reasons = append(reasons, fmt.Sprintf("a=crypto tag %d %s was not offered", k.tag, k.name))
	}
	if reasons == nil {
		return nil, nil, errors.New("no a=crypto line in the answer")
	}
	return nil, nil, fmt.Errorf("no a=crypto line answers our offer (%s)", strings.Join(reasons, "; "))
}

func suiteName(k *sdesKey) string {
	if k == nil {
		return "none"
	}
	return k.suite.name
}

// pickAudio returns the index of the stream to relay: the first audio
// stream that is enabled and uses the transport cfg asks for.
func pickAudio(d *Description, cfg LegConfig) (int, error) {
	var sawAudio, sawEnabled bool
	var proto string
	for i := range d.Media {
		m := &d.Media[i]
		if m.Type != "audio" {
			continue
		}
		sawAudio = true
		if m.Port == 0 {
			continue
		}
		sawEnabled = true
		if cfg.accepts(m.Proto) {
			return i, nil
		}
		if proto == "" {
			proto = m.Proto
		}
	}
	switch {
	case !sawAudio:
		return 0, badSDP(0, "no audio m= line")
	case !sawEnabled:
		return 0, badSDP(0, "audio stream disabled (port 0)")
	}
	return 0, badSDP(0, "audio transport %q, but side A is configured for %s (%s)", proto, cfg.Encryption, cfg.proto())
}

// selectCodecs returns A's audio codecs whose names are in allowed (with
// the clock rate wagate expects for them), in A's order, and A's first
// telephone-event/8000 (Name "" if none).
func selectCodecs(a []Codec, allowed []string) (audio []Codec, event Codec) {
	seen := map[uint8]bool{}
	for _, c := range a {
		if c.Name == "" || seen[c.PT] {
			continue
		}
		if strings.EqualFold(c.Name, telephoneEvent) {
			if c.ClockRate == 8000 && event.Name == "" {
				seen[c.PT] = true
				event = c
			}
			continue
		}
		name := canonicalCodec(c.Name)
		if name == "" || c.ClockRate != codecClock(name) || !slices.Contains(allowed, name) {
			continue
		}
		seen[c.PT] = true
		audio = append(audio, c)
	}
	return audio, event
}

// offerCodecs returns the audio codecs to offer B: A's candidates that B
// allows (common: relayable), then B's other allowed codecs that one of
// A's converts to, with our payload types and fmtp.
func offerCodecs(candidates []Codec, eventA Codec, allowedB []string, fec bool) (offered []Codec, common []bool) {
	have := map[string]bool{}
	for _, c := range candidates {
		name := canonicalCodec(c.Name)
		if slices.Contains(allowedB, name) && !have[name] {
			have[name] = true
			offered, common = append(offered, c), append(common, true)
		}
	}
	for _, name := range allowedB {
		if have[name] || !slices.ContainsFunc(candidates, func(c Codec) bool { return canTranscode(canonicalCodec(c.Name), name) }) {
			continue
		}
		have[name] = true
		c := Codec{Name: name, ClockRate: codecClock(name), Fmtp: ourFmtp(name, fec)}
		switch name {
		case "PCMU":
			c.PT = 0
		case "PCMA":
			c.PT = 8
		default:
			used := append(append(slices.Clone(candidates), offered...), eventA)
			c.PT, c.Channels = freePT(used, 111), 2
		}
		if slices.ContainsFunc(offered, func(o Codec) bool { return o.PT == c.PT }) {
			continue // a static type A used for something else: leave it out
		}
		offered, common = append(offered, c), append(common, false)
	}
	return offered, common
}

// preferOpus keeps only the Opus candidates when there are any.
func preferOpus(cs []Codec) []Codec {
	var opus []Codec
	for _, c := range cs {
		if canonicalCodec(c.Name) == "opus" {
			opus = append(opus, c)
		}
	}
	if opus == nil {
		return cs
	}
	return opus
}

// opusFirst moves Opus to the front of an offer (stable otherwise).
func opusFirst(offered []Codec, common []bool) ([]Codec, []bool) {
	var oc, rc []Codec
	var ob, rb []bool
	for i, c := range offered {
		if canonicalCodec(c.Name) == "opus" {
			oc, ob = append(oc, c), append(ob, common[i])
		} else {
			rc, rb = append(rc, c), append(rb, common[i])
		}
	}
	return append(oc, rc...), append(ob, rb...)
}

// ourFmtp is the fmtp of a codec wagate encodes itself.
func ourFmtp(name string, fec bool) string {
	if name != "opus" {
		return ""
	}
	if fec {
		return "minptime=20;useinbandfec=1"
	}
	return "minptime=20"
}

// freePT returns want if no codec in used has it, else the first free
// dynamic payload type.
func freePT(used []Codec, want uint8) uint8 {
	taken := func(pt uint8) bool { return slices.ContainsFunc(used, func(c Codec) bool { return c.PT == pt }) }
	if !taken(want) {
		return want
	}
	for pt := uint8(96); pt < 128; pt++ {
		if !taken(pt) {
			return pt
		}
	}
	return want
}

// packetTime is the duration of a packet of ptime ms (20 when not
// signalled), within what peers use.
func packetTime(ptime int) time.Duration {
	if ptime <= 0 {
		ptime = 20
	}
	return time.Duration(min(max(ptime, 10), 120)) * time.Millisecond
}

func withPtime(f codecFmt, ptime int) codecFmt {
	f.ptime = normalPtime(f.name, ptime)
	return f
}

// rtcpAddr is where a stream's RTCP goes: its RTP address when mux, else
// a=rtcp (RFC 3605) or the port above RTP.
func rtcpAddr(m *Media, mux bool) netip.AddrPort {
	rtp := mediaAddr(m)
	if mux || !rtp.IsValid() {
		return rtp
	}
	for _, a := range m.Attributes {
		if a.Key != "rtcp" {
			continue
		}
		f := strings.Fields(a.Value)
		if len(f) == 0 {
			break
		}
		port, err := strconv.Atoi(f[0])
		if err != nil || port < 1 || port > 65535 {
			break
		}
		addr := rtp.Addr()
		if len(f) == 4 {
			if ip, err := netip.ParseAddr(f[3]); err == nil && !ip.IsUnspecified() {
				addr = ip.Unmap()
			}
		}
		return netip.AddrPortFrom(addr, uint16(port))
	}
	if rtp.Port() == 65535 {
		return rtp
	}
	return netip.AddrPortFrom(rtp.Addr(), rtp.Port()+1)
}

func hasAudioCodec(cs []Codec) bool {
	for _, c := range cs {
		if !strings.EqualFold(c.Name, telephoneEvent) {
			return true
		}
	}
	return false
}

// matchAnswer finds the first codec of B's answer that was offered, among
// telephone-event codecs (te) or the others, and returns B's codec and the
// offered one.
func matchAnswer(answer, offered []Codec, te bool) (b, a Codec, ok bool) {
	for _, cb := range answer {
		if cb.Name != "" && strings.EqualFold(cb.Name, telephoneEvent) != te {
			continue
		}
		for _, ca := range offered {
			if strings.EqualFold(ca.Name, telephoneEvent) != te {
				continue
			}
			if cb.Name == "" {
				// Dynamic payload type without rtpmap: B reuses ours.
				if cb.PT == ca.PT {
					return withName(cb, ca), ca, true
				}
				continue
			}
			if strings.EqualFold(cb.Name, ca.Name) && cb.ClockRate == ca.ClockRate {
				return cb, ca, true
			}
		}
	}
	return Codec{}, Codec{}, false
}

func withName(c, named Codec) Codec {
	c.Name, c.ClockRate, c.Channels = named.Name, named.ClockRate, named.Channels
	return c
}

func withFmtp(c Codec, fmtp string) Codec {
	c.Fmtp = fmtp
	return c
}

// frameTicks is the timestamp step of one packet: clock rate × ptime
// (20 ms when not signalled).
func frameTicks(c Codec, ptime int) uint32 {
	if ptime <= 0 {
		ptime = 20
	}
	return uint32(c.ClockRate * ptime / 1000)
}

// reaches reports whether the media sockets can send to a: bound to an
// IPv4 address (0.0.0.0 too) they reach IPv4 only, bound to one IPv6
// address IPv6 only, unbound (or "::") both. No address (invalid, or
// unspecified: a hold) needs no sending and passes.
func (m *Manager) reaches(a netip.Addr) bool {
	bind := m.bind
	if !bind.IsValid() || bind == netip.IPv6Unspecified() || !a.IsValid() || a.IsUnspecified() {
		return true
	}
	return a.Is4() == bind.Is4()
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// checkReach refuses, with an error wrapping ErrUnreachable, an offer or
// answer from side s (configured as cfg) whose stream md puts its media
// where the media sockets cannot send (reaches). Accepted, every write
// toward that peer failed and the call had no audio that way until the
// RTP timeout ended it; refused (488 upstream), the peer is told which
// address and why, and a re-offer changes nothing. prev is the peer's
// transport before a re-offer, nil for its first SDP. Two cases do
// without the address, and are let through (the remote built then sends
// nothing there, see remote.setUp):
//
//   - a peer behind NAT, whose media and RTCP go where they come from
//     once latched (symmetric RTP), whatever its SDP says: a phone behind
//     NAT that signals an IPv6 c= to IPv4 sockets is latched from its SIP
//     address as usual. It needs a candidate the sockets can receive
//     from: latch_any_address, or its SIP address of their family.
//   - an a=rtcp address alone, in a first offer or answer: RTCP is not
//     sent to it and the call keeps its audio. A re-offer that moves RTCP
//     there from an address it was being sent to is refused: accepted,
//     the reports that reached the peer would stop for the rest of the
//     call, and it can as well be told.
//
// A dtls leg is not judged by c=: ICE's candidates say where its media
// goes.
func (b *Bridge) checkReach(s Side, md *Media, cfg LegConfig, prev *remote) error {
	m := b.m
	if cfg.Encryption == EncryptionDTLS {
		return nil
	}
	// What and why first, short: the Warning keeps 160 bytes of it.
	why := func(what, line string, a netip.Addr) string {
		return fmt.Sprintf("%s address %s (%s) is %s; wagate's media sockets are %s", what, a, line, family(a), family(m.bind))
	}
	audio := md.Connection
	latches := cfg.BehindNAT && (cfg.LatchAnyAddress || cfg.SignalIP.IsValid() && m.reaches(cfg.SignalIP))
	switch {
	case m.reaches(audio):
	case latches:
		from := "any address"
		if !cfg.LatchAnyAddress {
			from = cfg.SignalIP.String()
		}
		b.log.Info("media: the peer's SDP address is of a family the media sockets cannot reach; its media goes where it latches (behind NAT)",
			"side", s, "sdp", audio, "latch_from", from)
	case cfg.BehindNAT:
		return &unreachableError{why("audio", "c=", audio) + fmt.Sprintf("; behind NAT, but no %s SIP address to latch from", family(m.bind))}
	default:
		return &unreachableError{why("audio", "c=", audio)}
	}
	rtcp := rtcpAddr(md, md.RTCPMux)
	if m.reaches(rtcp.Addr()) || cfg.BehindNAT {
		return nil // a peer behind NAT latches its RTCP too
	}
	if prev != nil && prev.rtcp.IsValid() && m.reaches(prev.rtcp.Addr()) {
		return &unreachableError{why("RTCP", "a=rtcp", rtcp.Addr()) + fmt.Sprintf("; the re-offer moves it from %s", prev.rtcp)}
	}
	b.log.Info("media: no RTCP to the peer: its a=rtcp address is of a family the media sockets cannot reach",
		"side", s, "rtcp", rtcp, "audio", audio)
	return nil
}

// mediaAddr is a stream's RTP address for the relay, invalid when the SDP
// gave none usable (0.0.0.0 is the old "hold" form).
func mediaAddr(m *Media) netip.AddrPort {
	if !m.Connection.IsValid() || m.Connection.IsUnspecified() || m.Port == 0 {
		return netip.AddrPort{}
	}
	return m.Addr()
}

func codecNames(cs []Codec) string {
	var sb strings.Builder
	for i, c := range cs {
		if i > 0 {
			sb.WriteByte(',')
		}
		name := c.Name
		if name == "" {
			name = "?"
		}
		fmt.Fprintf(&sb, "%s/%d(%d)", name, c.ClockRate, c.PT)
	}
	if sb.Len() == 0 {
		return "nothing"
	}
	return sb.String()
}
