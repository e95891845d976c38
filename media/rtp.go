package media

import (
	"encoding/binary"
	"math/rand/v2"
)

const rtpHeaderMin = 12

// rtpHeaderLen validates an RTP packet (RFC 3550 §5.1) and returns the
// length of its header (fixed part, CSRCs and extension). ok is false for
// anything a peer could not have meant as RTP: wrong version, a CSRC list or
// extension running past the end, or padding longer than the payload.
func rtpHeaderLen(pkt []byte) (n int, ok bool) {
	if len(pkt) < rtpHeaderMin || pkt[0]>>6 != 2 {
		return 0, false
	}
	n = rtpHeaderMin + 4*int(pkt[0]&0x0f)
	if len(pkt) < n {
		return 0, false
	}
	if pkt[0]&0x10 != 0 { // extension
		if len(pkt) < n+4 {
			return 0, false
		}
		n += 4 + 4*int(binary.BigEndian.Uint16(pkt[n+2:]))
		if len(pkt) < n {
			return 0, false
		}
	}
	if pkt[0]&0x20 != 0 { // padding: the last byte counts itself
		pad := int(pkt[len(pkt)-1])
		if pad == 0 || n+pad > len(pkt) {
			return 0, false
		}
	}
	return n, true
}

// isRTCP reports whether a packet received on a port shared by RTP and RTCP
// (a=rtcp-mux) is RTCP: RFC 5761 §4 reserves the second byte's values
// 192-223 (RTCP packet types 192-223) for it.
func isRTCP(pkt []byte) bool {
	return len(pkt) >= 2 && pkt[1] >= 192 && pkt[1] <= 223
}

// ptMap maps incoming payload types to outgoing ones; ptDrop marks a payload
// type that was not negotiated.
type ptMap [128]uint8

const ptDrop = 0xff

func newPTMap() ptMap {
	var m ptMap
	for i := range m {
		m[i] = ptDrop
	}
	return m
}

// outStream is one outgoing RTP stream of our own toward a leg: our SSRC,
// a random initial sequence number and timestamp, and continuity whatever
// the input does.
//
// A relayed packet keeps its place in the input's numbering (relay): the
// offsets are fixed at the first packet, so reordering and loss pass
// through as they came and the far end's jitter buffer sees the truth.
// When the incoming SSRC changes (the peer restarted its stream, a PBX
// switched from music-on-hold to the agent) the offsets are rebased so the
// outgoing stream simply continues: next sequence number, the timestamp one
// frame on, and the marker bit set to say "discontinuity".
//
// Packets we make ourselves (transcoded audio, silence, DTMF) take the next
// sequence number and the current timestamp (own). A relayed packet after
// them is rebased the same way, except that its timestamp keeps the input's
// timing when that is ahead (the input paused and resumed later).
//
// The zero value is not usable; use newOutStream.
type outStream struct {
	ssrc    uint32
	started bool
	seq     uint16 // highest sequence number sent
	ts      uint32 // where the next audio starts: the highest timestamp sent plus its duration
	marker  bool   // the next audio packet starts a talk spurt

	mapped bool // the offsets below are set
	rebase bool // own packets were sent since: rebase the offsets
	inSSRC uint32
	seqOff uint16
	tsOff  uint32
}

func newOutStream(ssrc uint32) outStream {
	return outStream{ssrc: ssrc, seq: uint16(rand.Uint32()), ts: rand.Uint32()}
}

// relay rewrites a valid RTP header in place: payload type pt, our SSRC,
// sequence and timestamp shifted. frame is the timestamp step of one packet
// of the stream. It returns the packet's outgoing timestamp.
func (s *outStream) relay(pkt []byte, pt uint8, frame uint32) uint32 {
	seq := binary.BigEndian.Uint16(pkt[2:])
	ts := binary.BigEndian.Uint32(pkt[4:])
	ssrc := binary.BigEndian.Uint32(pkt[8:])
	marker := pkt[1] & 0x80
	if !s.mapped || s.rebase || ssrc != s.inSSRC {
		keepTS := s.mapped && ssrc == s.inSSRC && int32(ts+s.tsOff-s.ts) >= 0
		s.seqOff = s.seq + 1 - seq
		if !keepTS {
			s.tsOff = s.ts - ts
		}
		if s.started {
			marker = 0x80
		}
		s.mapped, s.rebase, s.inSSRC = true, false, ssrc
	}
	if s.marker {
		marker, s.marker = 0x80, false
	}
	outSeq := seq + s.seqOff
	outTS := ts + s.tsOff
	if !s.started || int16(outSeq-s.seq) > 0 {
		s.seq = outSeq
	}
	if !s.started || int32(outTS+frame-s.ts) > 0 {
		s.ts = outTS + frame
	}
	s.started = true
	pkt[1] = marker | pt&0x7f
	binary.BigEndian.PutUint16(pkt[2:], outSeq)
	binary.BigEndian.PutUint32(pkt[4:], outTS)
	binary.BigEndian.PutUint32(pkt[8:], s.ssrc)
	return outTS
}

// own writes the header of a packet we make into b[:12]: the next sequence
// number, timestamp ts (use s.ts for audio), payload type pt. The marker is
// set when mark is, or for audio when a talk spurt starts.
func (s *outStream) own(b []byte, pt uint8, ts uint32, mark, audio bool) {
	s.seq++
	s.started, s.rebase = true, true
	if audio && s.marker {
		mark, s.marker = true, false
	}
	var m byte
	if mark {
		m = 0x80
	}
	b[0] = 0x80
	b[1] = m | pt&0x7f
	binary.BigEndian.PutUint16(b[2:], s.seq)
	binary.BigEndian.PutUint32(b[4:], ts)
	binary.BigEndian.PutUint32(b[8:], s.ssrc)
}

// inject takes the next sequence number for an extra packet inserted into
// a relayed stream (a repeated DTMF end), shifting the relayed packets
// after it by one.
func (s *outStream) inject(pkt []byte) {
	s.seq++
	s.seqOff++
	binary.BigEndian.PutUint16(pkt[2:], s.seq)
}

// skip is told that the relayed input packet seq is dropped (a duplicate
// DTMF end): if it would have been the next one out, the packets after it
// move up so the far end sees no gap.
func (s *outStream) skip(seq uint16) {
	if s.mapped && !s.rebase && seq+s.seqOff == s.seq+1 {
		s.seqOff--
	}
}
