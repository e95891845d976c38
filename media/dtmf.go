package media

import (
	"encoding/binary"
	"net/netip"
	"time"
)

// DTMF (RFC 4733 telephone-event) is relayed event by event, whether the
// audio is relayed or transcoded (a transcoder never sees these packets).
//
//   - An event is identified by its RTP timestamp, which stays the same
//     for all its packets; a new timestamp is a new event even when the
//     sender forgot the marker bit (some carriers do), and the first
//     packet we forward of each event carries the marker.
//   - The end packet (E bit) is sent three times, as RFC 4733 §2.5.1.4
//     asks, however many the sender sent; its further copies and anything
//     else of a finished event are dropped, so each key press reaches the
//     far end as exactly one event.
//   - Packets of an older event arriving late are dropped.
//
// Timestamps and durations are in the units of the leg's RTP clock: on a
// relayed call both legs share the audio codec, so they pass through; on a
// transcoded call the event is rebased onto the outgoing stream (its
// timestamp is where our outgoing audio stands when the event starts) and
// its durations scaled between the legs' clocks, e.g. ×6 from a PBX's
// 8 kHz to the 48 kHz Opus stream of the WhatsApp leg.

// dtmfEndCopies is how many times the end of an event is sent.
const dtmfEndCopies = 3

// dtmfAction is what to do with one telephone-event packet.
type dtmfAction uint8

const (
	dtmfDrop     dtmfAction = iota // duplicate, late, or of an ended event
	dtmfForward                    // a continuation of the current event
	dtmfStart                      // the first packet of a new event: marker
	dtmfEnd                        // the event's end: send dtmfEndCopies times
	dtmfStartEnd                   // both (the only packet we saw of it)
)

// dtmfStragglerSpan is how far behind the current event, in clock
// ticks, a packet is still taken for a late one of an earlier event
// (2^20: 22 s at 48 kHz, 131 s at 8 kHz). Further back, the sender
// restarted its timestamps (a random new start, RFC 3550 §5.1) and the
// packet is a new event: taken for a straggler, every key after such a
// restart was dropped, half the time.
const dtmfStragglerSpan = 1 << 20

// dtmfSegmentMin is how long, in clock ticks, an unended event must have
// lasted for a packet of the same key at a later timestamp, at most one
// full segment on, to be its next segment. RFC 4733 §2.5.1.3: an event
// longer than the 16-bit duration field allows (8.19 s at 8 kHz, 1.37 s
// at 48 kHz) goes on as a new segment, a new timestamp 0xFFFF ticks on,
// and the segment before it has no end. Half a segment leaves room for
// the last packets of the one before being lost.
const dtmfSegmentMin = 0xffff / 2

// dtmfState follows the events of one direction.
type dtmfState struct {
	active bool
	ssrc   uint32 // the stream of the current event
	ts     uint32 // input timestamp of the current event
	ended  bool
	code   byte   // the current event's code
	dur    uint16 // the longest duration seen of its current segment
	// cont: the current event is the next segment of a long one, the
	// same key held down: not a new key press.
	cont bool
	// outTS is the current event's outgoing timestamp (transcoding).
	outTS  uint32
	events uint64
}

// classifyBlock is classify for the event block of a packet; it also
// tells a long event's next segment (s.cont) from a new key press.
func (s *dtmfState) classifyBlock(ssrc, ts uint32, block []byte) dtmfAction {
	code, dur := block[0], binary.BigEndian.Uint16(block[2:])
	next := s.active && !s.ended && ssrc == s.ssrc && code == s.code && s.dur >= dtmfSegmentMin &&
		ts != s.ts && ts-s.ts >= uint32(s.dur) && ts-s.ts <= 0xffff
	act := s.classify(ssrc, ts, eventEnd(block))
	switch act {
	case dtmfStart, dtmfStartEnd:
		s.code, s.dur, s.cont = code, dur, next
		if next {
			s.events--
		}
	case dtmfForward, dtmfEnd:
		s.dur = max(s.dur, dur)
	}
	return act
}

// newKey reports whether act starts a key press (not a long one's next
// segment).
func (s *dtmfState) newKey(act dtmfAction) bool {
	return (act == dtmfStart || act == dtmfStartEnd) && !s.cont
}

// classify decides the fate of a telephone-event packet of stream ssrc
// with input timestamp ts whose E bit is end. Another stream (a new
// phone behind the PBX, a transfer's new party) numbers its events
// afresh: its first packet starts an event whatever its timestamp.
func (s *dtmfState) classify(ssrc, ts uint32, end bool) dtmfAction {
	if s.active && ssrc != s.ssrc {
		s.reset()
	}
	s.ssrc = ssrc
	if s.active && ts == s.ts {
		if s.ended {
			return dtmfDrop
		}
		if end {
			s.ended = true
			return dtmfEnd
		}
		return dtmfForward
	}
	if s.active && int32(ts-s.ts) < 0 && s.ts-ts < dtmfStragglerSpan {
		return dtmfDrop // a straggler of an earlier event
	}
	s.active, s.ts, s.ended = true, ts, end
	s.events++
	if end {
		return dtmfStartEnd
	}
	return dtmfStart
}

// reset forgets the current event (the sender's stream changed).
func (s *dtmfState) reset() {
	s.active, s.ended = false, false
}

// eventPayloadLen is one RFC 4733 event block: event, E|R|volume,
// duration.
const eventPayloadLen = 4

func eventEnd(payload []byte) bool { return payload[1]&0x80 != 0 }

// scaleEventDuration rewrites the duration of an event block from the
// inClock to the outClock, saturating at the 16-bit maximum (long events
// at 48 kHz reach it after 1.37 s; a key press lasts about 100 ms).
func scaleEventDuration(block []byte, inClock, outClock int) {
	if inClock == outClock || inClock <= 0 {
		return
	}
	d := int(binary.BigEndian.Uint16(block[2:])) * outClock / inClock
	binary.BigEndian.PutUint16(block[2:], uint16(min(d, 0xffff)))
}

// event relays one telephone-event packet (RFC 4733).
func (d *direction) event(pkt []byte, hl int, rt *route, now time.Duration) {
	body := payload(pkt, hl)
	if len(body) < eventPayloadLen {
		d.dropInvalid(netip.AddrPort{}, len(pkt))
		return
	}
	seq, ts := binary.BigEndian.Uint16(pkt[2:]), binary.BigEndian.Uint32(pkt[4:])
	prev, prevIn, prevOut := d.dtmf.active, d.dtmf.ts, d.dtmf.outTS
	act := d.dtmf.classifyBlock(binary.BigEndian.Uint32(pkt[8:]), ts, body)
	d.notifyKey(body, act, now)
	if rt.eventOut == ptDrop {
		if !d.loggedNoEvent && d.dtmf.newKey(act) {
			d.loggedNoEvent = true
			d.b.log.Info("media: DTMF event dropped: the other side did not negotiate telephone-event", "from_side", d.side)
		}
		return
	}
	if d.dtmf.newKey(act) {
		d.b.dtmfEvents.Add(1)
	}
	copies := 1
	if act == dtmfEnd || act == dtmfStartEnd {
		copies = dtmfEndCopies
	}
	if rt.mode == modeRelay {
		switch act {
		case dtmfDrop:
			d.stream.skip(seq)
			return
		case dtmfStart, dtmfStartEnd:
			if !d.dtmf.cont {
				pkt[1] |= 0x80
			} else {
				pkt[1] &^= 0x80 // a segment of the same key press
			}
		}
		ts := d.stream.relay(pkt, rt.eventOut, 0)
		for i := range copies {
			if i > 0 {
				d.stream.inject(pkt)
				pkt[1] &^= 0x80 // the marker is for the event's first packet only
			}
			if d.send(pkt, len(pkt)-hl, ts, now) {
				d.forwarded.Add(1)
			}
		}
		return
	}
	if act == dtmfDrop {
		return
	}
	if act == dtmfStart || act == dtmfStartEnd {
		// The event starts where our outgoing audio stands, or, when no
		// audio went out since the previous event, as far after that
		// event as the sender's timestamps say: two events must never
		// share a timestamp, or the far end hears one.
		d.dtmf.outTS = d.gapTS(now, rt.out.rate)
		if prev {
			if delta := int64(int32(ts - prevIn)); delta > 0 {
				at := prevOut + uint32(delta*int64(rt.out.rate)/int64(rt.in.rate))
				if int32(at-d.dtmf.outTS) > 0 {
					d.dtmf.outTS = at
				}
			}
		}
	}
	pb := getBuf()
	defer putBuf(pb)
	for i := range copies {
		d.stream.own(pb.b[:], rt.eventOut, d.dtmf.outTS, i == 0 && d.dtmf.newKey(act), false)
		block := pb.b[rtpHeaderMin : rtpHeaderMin+eventPayloadLen]
		copy(block, body[:eventPayloadLen])
		scaleEventDuration(block, rt.in.rate, rt.out.rate)
		if d.send(pb.b[:rtpHeaderMin+eventPayloadLen], eventPayloadLen, d.dtmf.outTS, now) {
			d.forwarded.Add(1)
		}
	}
}
