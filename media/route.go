// Routes: a direction's snapshot of the negotiated session (mode, payload
// type classes, destination), and how a direction adopts a new one.

package media

import "time"

// routeMode is how a direction treats audio.
type routeMode uint8

const (
	modeNone      routeMode = iota // the destination is not negotiated yet
	modeRelay                      // same codec: rewrite headers and forward
	modeTranscode                  // codecs differ: decode and re-encode
)

// Payload type classes of the incoming stream.
const (
	classDrop  = 0
	classAudio = 1
	classEvent = 2
	// classOtherLaw is audio in the other G.711 law than the route's
	// input (sideMedia.otherLaw): converted to it on arrival.
	classOtherLaw = 3
)

// route is one direction's view of the negotiated session. Signalling
// replaces it wholesale (Offer, then AnswerB after a 183 and again for the
// 200) through an atomic pointer, so the relay reads a consistent snapshot
// per packet without locks.
type route struct {
	from *remote // the side whose packets this direction reads
	to   *remote // the destination; nil while it is not known
	mode routeMode

	class [128]uint8 // incoming payload type → class
	// pt maps incoming payload types to the destination's (relay), and
	// the audio and telephone-event types in any mode.
	pt ptMap
	// frame is the timestamp step of one incoming packet, used to continue
	// the outgoing stream across an SSRC change.
	frame uint32
	// in and out are the audio formats on the two legs (the same codec
	// when relaying); outPT the destination's audio payload type.
	in, out codecFmt
	outPT   uint8
	// eventOut is the destination's telephone-event payload type, ptDrop
	// when it has none.
	eventOut uint8
	// inFrame is how much audio one incoming packet carries, as the
	// source was asked to send (its ptime), for NAT re-latching.
	inFrame time.Duration
	// mute: the destination holds (its SDP said sendonly, inactive or
	// c=0.0.0.0), so nothing is sent to it but RTCP. quiet: the source
	// may send nothing (it holds, or is muted), so it has no RTP timeout.
	mute, quiet bool
	// linked: the source is another call's side (Link): quiet, and not
	// timed out on its RTCP either. replacing: the source's peer is being
	// replaced (OfferSide: a transfer rings its target): quiet, and not
	// timed out on the old peer's RTCP either, which stops when the
	// transferring agent hangs up.
	linked, replacing bool
	// absent: the source side has no peer at all (B of a call answered
	// locally, until one is connected), so it cannot time out.
	absent bool
}

// ready reports whether packets can go to the destination.
func (r *route) ready() bool {
	return r != nil && r.mode != modeNone && r.to != nil && r.to.dst().IsValid()
}

// switchRoute adopts a new route: keys, stages and timing that depend on
// it. Crypto contexts are kept when the keys are the same (an answer
// repeated in the 200 after a 183 must not reset SRTP state).
func (d *direction) switchRoute(rt *route) {
	old := d.cur
	if old != nil && old.quiet && (rt == nil || !rt.quiet) {
		// Out of hold: the source's timeout counts from now (and its
		// start timeout, if it never sent).
		now := d.clock()
		d.last, d.started, d.confirming = now, now, false
	}
	if (old == nil || !old.quiet) && rt != nil && rt.quiet {
		// Into hold: the start timeout is not used while it lasts (and
		// is reset when it ends), so started says when it began.
		d.started, d.confirming = d.clock(), false
	}
	if old != nil && old.absent && rt != nil && !rt.absent && !rt.quiet {
		// A peer at last (the B of a call answered locally): its start
		// timeout counts from now. The timeout job's last look at the
		// absent side, up to absentPoll ago, left B only the grace.
		d.started, d.confirming = d.clock(), false
	}
	d.cur = rt
	if rt == nil {
		return
	}
	if rt.from != nil {
		if k := rt.from.recvKey; d.srtpIn == nil || !d.srtpIn.key.equal(k) {
			d.srtpIn = nil
			if k != nil {
				var err error
				if d.srtpIn, err = newSRTPIn(k); err != nil {
					d.b.log.Error("media: cannot key SRTP", "side", d.side, "err", err)
				}
			}
		}
		if k := rt.from.sendKey; d.rtcpOut == nil || !d.rtcpOut.key.equal(k) {
			d.rtcpOut = d.newOut(k)
		}
	}
	// A route without a source (toward A of a call answered locally,
	// before its B) still sends: silence and playbacks.
	if rt.to == nil {
		return
	}
	if k := rt.to.sendKey; d.srtpOut == nil || !d.srtpOut.key.equal(k) {
		d.srtpOut = d.newOut(k)
	}
	d.out.tx.clock.Store(int32(rt.out.rate))
	if d.pl != nil && (!d.paced(rt) || d.pl.rate != int64(rt.in.rate)) {
		// What is held was timed for another codec or mode.
		d.pl.free()
		d.pl = nil
	}
	if d.pl != nil && old != nil && old.in.name != rt.in.name {
		// The source moved to the other G.711 law (a re-INVITE to a
		// phone with A-law): what is held is in the old one. Decoded
		// by the new law it was distorted audio at a quarter of its
		// level, a crackle at the switch; converted, it plays on.
		if conv := lawConversion(rt.in.name); conv != nil && lawConversion(old.in.name) != nil {
			d.pl.convert(conv)
			d.pl.quiet = quietFunc(rt.in.name)
		} else {
			d.pl.free()
			d.pl = nil
		}
	}
	if d.xc != nil && (rt.mode != modeTranscode || !d.xc.adopt(rt)) {
		d.xc.close()
		d.xc = nil
	}
	d.xcFailed = false
}

// transcoder returns the direction's transcode stage, made at the first
// audio packet (two libopus states are most of a transcoded call's
// memory; a held call whose sides say nothing needs none: its silence is
// precomputed). nil when it cannot be built (logged once).
func (d *direction) transcoder(rt *route) *transcodeStage {
	if d.xc != nil || d.xcFailed {
		return d.xc
	}
	xc, err := newTranscodeStage(d, rt, d.b.m.opus)
	if err != nil {
		d.xcFailed = true
		d.b.log.Error("media: cannot transcode", "from_side", d.side, "err", err)
		return nil
	}
	d.xc = xc
	return xc
}

func (d *direction) newOut(k *sdesKey) *srtpOut {
	if k == nil {
		return nil
	}
	o, err := newSRTPOut(k)
	if err != nil {
		d.b.log.Error("media: cannot key SRTP", "side", d.side, "err", err)
	}
	return o
}
