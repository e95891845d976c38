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

// reoriginator turns an incoming RTP stream (whatever its SSRCs) into one
// outgoing stream of our own: our SSRC, random sequence and timestamp bases.
//
// The offsets are fixed at the first packet, so reordering and loss pass
// through as they came and the far end's jitter buffer sees the truth.
// When the incoming SSRC changes (the peer restarted its stream, a PBX
// switched from music-on-hold to the agent, B re-targeted), the offsets are
// rebased so the outgoing stream simply continues: next sequence number, the
// timestamp one frame on, and the marker bit set to say "discontinuity".
//
// The zero value is not usable; use newReoriginator.
type reoriginator struct {
	ssrc            uint32 // ours
	seqBase, tsBase uint32 // random first outgoing seq (16 bits) and ts

	started bool
	inSSRC  uint32
	seqOff  uint16
	tsOff   uint32
	maxSeq  uint16 // highest outgoing seq so far (RFC 1982 order)
	maxTS   uint32 // highest outgoing ts so far
}

func newReoriginator() reoriginator {
	return reoriginator{ssrc: rand.Uint32(), seqBase: rand.Uint32() & 0xffff, tsBase: rand.Uint32()}
}

// rewrite rewrites a valid RTP header in place: payload type pt, our SSRC,
// sequence and timestamp shifted. frame is the timestamp step of one packet
// of the stream, used to continue across an SSRC change. pkt must have
// passed rtpHeaderLen.
func (r *reoriginator) rewrite(pkt []byte, pt uint8, frame uint32) {
	seq := binary.BigEndian.Uint16(pkt[2:])
	ts := binary.BigEndian.Uint32(pkt[4:])
	ssrc := binary.BigEndian.Uint32(pkt[8:])
	marker := pkt[1] & 0x80
	switch {
	case !r.started:
		r.started = true
		r.inSSRC = ssrc
		r.seqOff = uint16(r.seqBase) - seq
		r.tsOff = r.tsBase - ts
		r.maxSeq = seq + r.seqOff
		r.maxTS = ts + r.tsOff
	case ssrc != r.inSSRC:
		r.inSSRC = ssrc
		r.seqOff = r.maxSeq + 1 - seq
		r.tsOff = r.maxTS + frame - ts
		marker = 0x80
	}
	outSeq := seq + r.seqOff
	outTS := ts + r.tsOff
	if int16(outSeq-r.maxSeq) > 0 {
		r.maxSeq = outSeq
	}
	if int32(outTS-r.maxTS) > 0 {
		r.maxTS = outTS
	}
	pkt[1] = marker | pt&0x7f
	binary.BigEndian.PutUint16(pkt[2:], outSeq)
	binary.BigEndian.PutUint32(pkt[4:], outTS)
	binary.BigEndian.PutUint32(pkt[8:], r.ssrc)
}
