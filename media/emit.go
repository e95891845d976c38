// Sending: how a direction writes audio to the destination, relayed at
// once or as packets of its own (transcoded, played out, silence,
// playback), encrypted on SDES legs and counted for the sender reports.

package media

import (
	"encoding/binary"
	"errors"
	"net"
	"time"
)

// payload returns an RTP packet's payload without padding.
func payload(pkt []byte, hl int) []byte {
	end := len(pkt)
	if pkt[0]&0x20 != 0 {
		end -= int(pkt[end-1])
	}
	return pkt[hl:end]
}

// relayAudio sends one audio packet on at once, its header rewritten in
// place (relay toward a leg other than WhatsApp).
func (d *direction) relayAudio(pkt []byte, hl int, rt *route, now time.Duration) {
	if h := d.tapHolder(); h != nil {
		d.tapDec.decode(rt.in, binary.BigEndian.Uint16(pkt[2:]), payload(pkt, hl), h.tap)
	}
	ts := d.stream.relay(pkt, rt.pt[pkt[1]&0x7f], rt.frame)
	if d.send(pkt, len(pkt)-hl, ts, now) {
		d.forwarded.Add(1)
	}
}

// emitKind says what a packet of ours carries, for the counters.
type emitKind uint8

const (
	emitAudio    emitKind = iota // the other side's audio: forwarded
	emitSilence                  // silence toward WhatsApp
	emitPlayback                 // a playback (Bridge.Play)
)

// emitOwn sends one packet of ours built from an audio payload (the
// transcoder's output, a relayed payload played out, silence, a
// playback) with the stream's next sequence number and its current
// timestamp.
func (d *direction) emitOwn(pt uint8, frame []byte, samples int, kind emitKind, now time.Duration) {
	if len(frame)+rtpHeaderMin > packetBufSize {
		return
	}
	pb := getBuf()
	defer putBuf(pb)
	ts := d.stream.ts
	d.stream.own(pb.b[:], pt, ts, false, true)
	d.stream.ts += uint32(samples)
	n := rtpHeaderMin + copy(pb.b[rtpHeaderMin:], frame)
	if !d.send(pb.b[:n], len(frame), ts, now) {
		return
	}
	switch kind {
	case emitSilence:
		d.b.silence.Add(1)
	case emitPlayback:
		d.b.played.Add(1)
	default:
		d.forwarded.Add(1)
	}
}

// send writes one plain RTP packet to the destination, encrypted on an
// SDES leg, and records it for our sender reports.
func (d *direction) send(pkt []byte, payloadLen int, ts uint32, now time.Duration) bool {
	out := pkt
	if d.srtpOut != nil {
		eb := getBuf()
		defer putBuf(eb)
		enc, err := d.srtpOut.rtp(eb.b[:], pkt)
		if err != nil {
			d.logOnce(&d.loggedWrite, "media: SRTP encryption failed", "to_side", d.side.other(), "err", err)
			return false
		}
		out = enc
	} else if d.cur.to.sendKey != nil || d.cur.to.secure {
		return false // never send plain RTP to an SRTP leg
	}
	if d.cur.mute {
		return false // the destination holds: RTCP only
	}
	dst := d.cur.to.dst()
	if _, err := d.toDst.WriteToUDPAddrPort(out, dst); err != nil {
		if !errors.Is(err, net.ErrClosed) {
			d.logOnce(&d.loggedWrite, "media: relay write failed", "from_side", d.side, "to", dst, "err", err)
		}
		return false
	}
	d.out.tx.sent(payloadLen, ts, now)
	return true
}
