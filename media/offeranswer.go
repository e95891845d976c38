package media

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
)

// plainRTP is the only transport this version relays, on both legs. SRTP
// (RTP/SAVP with a=crypto toward Meta) plugs in here: the transport becomes
// per side, and the relay gets an SRTP stage.
const plainRTP = "RTP/AVP"

const telephoneEvent = "telephone-event"

// negotiation is a bridge's offer/answer state, guarded by Bridge.mu.
type negotiation struct {
	offerA  *Description // A's offer
	audio   int          // index of the relayed stream in offerA.Media
	offered []Codec      // codecs offered to B, with A's payload types
	offerB  []byte       // SDP sent to B
	answerA []byte       // SDP sent to A
	sdpA    sdpSession   // our SDP session toward A
	sdpB    sdpSession   // toward B
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

// OfferB parses A's offer and returns the offer to send to B: A's codecs
// whose names are in codecsB ("opus", "PCMU", "PCMA"; case-insensitive; in
// A's order with A's payload types and fmtp), plus telephone-event/8000 if A
// offered it, at our advertised address and B-facing port; ptime, maxptime,
// rtcp-mux and the direction are copied from A's stream.
//
// Only A's first audio stream that is enabled (port not 0) and uses plain
// RTP/AVP is relayed; the answer to A rejects A's other streams with port 0.
// Errors wrap ErrBadSDP (unparseable, no usable audio stream, no address)
// or ErrNoCommonCodec.
//
// OfferB may be called again, e.g. for the next target of a hunt list: it
// forgets the previous B.
func (b *Bridge) OfferB(offerA []byte, codecsB []string) ([]byte, error) {
	d, err := ParseSDP(offerA)
	if err != nil {
		return nil, fmt.Errorf("media: offer from A: %w", err)
	}
	idx, err := pickAudio(d)
	if err != nil {
		return nil, fmt.Errorf("media: offer from A: %w", err)
	}
	ma := &d.Media[idx]
	if !ma.Connection.IsValid() {
		return nil, fmt.Errorf("media: offer from A: %w", badSDP(0, "no c= for the audio stream"))
	}
	offered := selectCodecs(ma.Codecs, codecsB)
	if !hasAudioCodec(offered) {
		return nil, fmt.Errorf("%w: A offers %s, B takes %s", ErrNoCommonCodec, codecNames(ma.Codecs), strings.Join(codecsB, ","))
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errClosed
	}
	out := Description{
		Connection: b.m.advertise,
		Media: []Media{{
			Type:      "audio",
			Port:      b.legB.port,
			Proto:     plainRTP,
			Codecs:    offered,
			Ptime:     ma.Ptime,
			MaxPtime:  ma.MaxPtime,
			RTCPMux:   ma.RTCPMux,
			Direction: d.EffectiveDirection(ma),
		}},
	}
	n := &b.neg
	n.offerA, n.audio, n.offered = d, idx, offered
	n.offerB = n.sdpB.marshal(&out, b.m.advertise)
	n.answerA = nil
	// A's packets are now recognised (they keep A alive) but go nowhere
	// until B answers; nothing from B is accepted yet.
	b.routeAB.Store(&route{src: mediaAddr(ma), pt: newPTMap()})
	b.routeBA.Store(&route{dst: mediaAddr(ma), pt: newPTMap()})
	b.log.Debug("media: offer to B", "a_addr", mediaAddr(ma), "codecs", codecNames(offered))
	return bytes.Clone(n.offerB), nil
}

// AnswerB parses B's answer to the offer from OfferB and returns the answer
// to send to A. B's codec is the first in B's answer that was offered (by
// name and clock rate, or by payload type where B gave no rtpmap); the
// answer to A names it with A's payload type, adds telephone-event with A's
// payload type when both sides have it, and carries our A-facing port,
// B's ptime and direction, and rtcp-mux if A offered it. A's other streams
// are rejected (port 0).
//
// AnswerB may be called again (183 then 200); the latest answer updates B's
// address and codec for the relay. Errors wrap ErrBadSDP, or
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
	if len(d.Media) == 0 {
		return nil, fmt.Errorf("media: answer from B: %w", badSDP(0, "no m= line"))
	}
	mb := &d.Media[0]
	switch {
	case mb.Type != "audio":
		return nil, fmt.Errorf("media: answer from B: %w", badSDP(0, "first m= line is %q, offered audio", mb.Type))
	case mb.Port == 0:
		return nil, fmt.Errorf("%w: B rejected the audio stream (port 0)", ErrNoCommonCodec)
	case mb.Proto != plainRTP:
		return nil, fmt.Errorf("media: answer from B: %w", badSDP(0, "transport %q, offered %s", mb.Proto, plainRTP))
	case !mb.Connection.IsValid():
		return nil, fmt.Errorf("media: answer from B: %w", badSDP(0, "no c= for the audio stream"))
	}
	codecB, codecA, ok := matchAnswer(mb.Codecs, n.offered, false)
	if !ok {
		return nil, fmt.Errorf("%w: B answered %s to an offer of %s", ErrNoCommonCodec, codecNames(mb.Codecs), codecNames(n.offered))
	}
	teB, teA, hasTE := matchAnswer(mb.Codecs, n.offered, true)

	ma := &n.offerA.Media[n.audio]
	active := Media{
		Type:      "audio",
		Port:      b.legA.port,
		Proto:     ma.Proto,
		Codecs:    []Codec{withFmtp(codecA, codecB.Fmtp)},
		Ptime:     mb.Ptime,
		MaxPtime:  mb.MaxPtime,
		RTCPMux:   ma.RTCPMux,
		Direction: d.EffectiveDirection(mb),
	}
	if hasTE {
		active.Codecs = append(active.Codecs, withFmtp(teA, teB.Fmtp))
	}
	out := Description{Connection: b.m.advertise, Media: make([]Media, len(n.offerA.Media))}
	for i, m := range n.offerA.Media {
		if i == n.audio {
			out.Media[i] = active
			continue
		}
		out.Media[i] = Media{Type: m.Type, Port: 0, Proto: m.Proto, Formats: m.Formats}
	}
	n.answerA = n.sdpA.marshal(&out, b.m.advertise)

	// A sends with the payload types of our answer (A's); B should send
	// with those of our offer (also A's), but some PBXs send with their own
	// answer's numbers, so B→A takes both.
	ab := &route{src: mediaAddr(ma), dst: mediaAddr(mb), pt: newPTMap(), frame: frameTicks(codecA, ma.Ptime)}
	ab.pt[codecA.PT] = codecB.PT
	ba := &route{src: mediaAddr(mb), dst: mediaAddr(ma), pt: newPTMap(), frame: frameTicks(codecB, mb.Ptime)}
	ba.pt[codecA.PT] = codecA.PT
	if hasTE {
		ab.pt[teA.PT] = teB.PT
		ba.pt[teA.PT] = teA.PT
		ba.pt[teB.PT] = teA.PT
	}
	ba.pt[codecB.PT] = codecA.PT // B's own number wins a clash
	b.routeAB.Store(ab)
	b.routeBA.Store(ba)
	b.log.Debug("media: answer from B", "b_addr", mediaAddr(mb), "codec", codecA.Name,
		"pt_a", codecA.PT, "pt_b", codecB.PT, "telephone_event", hasTE)
	return bytes.Clone(n.answerA), nil
}

// pickAudio returns the index of the stream to relay: the first audio
// stream that is enabled and uses a transport we relay.
func pickAudio(d *Description) (int, error) {
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
		if m.Proto == plainRTP {
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
	return 0, badSDP(0, "audio transport %q not supported (only %s)", proto, plainRTP)
}

// selectCodecs keeps, in A's order, A's codecs named in allowed and A's
// first telephone-event/8000.
func selectCodecs(a []Codec, allowed []string) []Codec {
	var out []Codec
	seen := map[uint8]bool{}
	haveTE := false
	for _, c := range a {
		if c.Name == "" || seen[c.PT] {
			continue
		}
		if strings.EqualFold(c.Name, telephoneEvent) {
			if c.ClockRate == 8000 && !haveTE {
				haveTE = true
				seen[c.PT] = true
				out = append(out, c)
			}
			continue
		}
		for _, name := range allowed {
			if strings.EqualFold(c.Name, name) {
				seen[c.PT] = true
				out = append(out, c)
				break
			}
		}
	}
	return out
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
