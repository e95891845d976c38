package media

import (
	"encoding/binary"
	"time"

	"github.com/wagate/wagate/codec"
)

// maxPacerSlip is how late a play tick may run and still be played on its
// intended schedule (the frames owed sent back to back); beyond it the
// schedule starts again from now rather than sending a burst.
const maxPacerSlip = 100 * time.Millisecond

// paced reports whether audio toward rt's destination goes through the
// playout buffer and the pacer: everything toward a WhatsApp leg, and
// every transcoded direction (a decoder must be fed in order, and the
// encoder at its own frame rate).
func (d *direction) paced(rt *route) bool {
	return rt != nil && (rt.mode == modeTranscode || rt.mode == modeRelay && d.silenceOn)
}

// hold puts one audio packet into the playout buffer. It reports whether
// the buffer kept buf.
func (d *direction) hold(buf *packetBuf, pkt []byte, hl int, rt *route, now time.Duration) bool {
	if rt.mode == modeTranscode && d.transcoder(rt) == nil {
		return false // the transcoder could not be built; logged then
	}
	body := payload(pkt, hl)
	if len(body) == 0 {
		// No audio: a header-only packet (some PBXs keep a silent stream
		// alive so), or padding that takes all of it. It has kept the
		// stream alive and counted as received; to the playout (and the
		// recording) it is the same as no packet. Held, it was a frame:
		// of no length for G.711, which the playout played and concealed
		// again on every pacer tick (a millisecond apart, not 20), each
		// one a number of our stream skipped or an empty packet sent; of
		// ptime for Opus (payloadSamples cannot read a duration from
		// nothing), relayed toward WhatsApp as an empty packet where
		// silence belonged, or decoded as a lost packet and sent on as
		// concealment through what was a pause.
		return false
	}
	if rt.mode == modeRelay || rt.in.name != "opus" {
		// A recording gets the audio as it arrives, not as played out
		// (with the playout's concealment and its stretching to the
		// jitter): G.711 decodes for next to nothing. Opus input being
		// transcoded is tapped from the transcoder's own decoder instead
		// of being decoded twice.
		if h := d.tapHolder(); h != nil {
			d.tapDec.decode(rt.in, binary.BigEndian.Uint16(pkt[2:]), body, h.tap)
		}
	}
	if d.pl == nil {
		d.pl = newPlayout(d.b.m.jbMin, d.b.m.jbMax, rt.in.rate, quietFunc(rt.in.name))
	}
	dur := int64(payloadSamples(rt.in, body))
	switch d.pl.push(binary.BigEndian.Uint32(pkt[8:]), binary.BigEndian.Uint16(pkt[2:]), binary.BigEndian.Uint32(pkt[4:]),
		dur, buf, hl, len(body), now) {
	case pushHeld:
		d.wakePlay()
		return true
	case pushCopied:
		d.wakePlay()
	case pushLate, pushDuplicate:
		d.b.droppedLate.Add(1)
		d.late++
	}
	return false
}

// wakePlay makes sure a play tick is coming: toward a leg other than
// WhatsApp the job sleeps while the source is silent, and toward
// WhatsApp with DTX it may sleep up to dtxInterval before the next
// silence frame: new audio must not wait for that.
func (d *direction) wakePlay() {
	switch {
	case d.playAt > 0 && !d.inDTXGap():
	case d.playJob == nil:
		d.playJob = d.b.m.pacer.Schedule(time.Now(), d.playTick)
	default:
		d.playJob.Wake(time.Time{})
	}
}

// playTick is the play job: it sends the destination its next frame (or
// silence toward WhatsApp) and says when the one after is due.
func (d *direction) playTick(wall time.Time) time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return time.Time{}
	}
	now := wall.Sub(d.epoch)
	sched := d.playAt
	if sched > now && (d.inDTXGap() || d.play != nil && !d.play.begun) {
		// Woken early in a DTX gap, by audio or by a prompt or music
		// that starts: it plays from now, not from the next silence
		// frame's time.
		sched = now
	}
	if sched <= 0 || now-sched > maxPacerSlip || sched-now > maxPacerSlip {
		if sched > 0 {
			// The machine stalled: our stream jumps over the gap, a
			// discontinuity its receiver is told of.
			d.stream.marker = true
		}
		sched = now
	}
	if rt := d.route.Load(); rt != d.cur {
		d.switchRoute(rt)
	}
	var next time.Duration
	if d.play != nil && !d.underTalking(sched) {
		next = d.playbackTick(sched, now)
	} else {
		next = d.pace(sched, now)
	}
	if next <= 0 {
		d.playAt = 0
		return time.Time{}
	}
	d.playAt = next
	return d.epoch.Add(next)
}

// pace does one tick scheduled at sched and returns when the next is due
// (0: none until a packet arrives).
func (d *direction) pace(sched, now time.Duration) time.Duration {
	rt := d.cur
	if !rt.ready() {
		if d.silenceOn {
			return sched + silenceFrame // the other side is not known yet
		}
		return 0
	}
	switch {
	case rt.mode == modeTranscode:
		return d.paceTranscode(rt, sched, now)
	case rt.mode == modeRelay && d.silenceOn:
		return d.paceRelay(rt, sched, now)
	}
	return 0 // relayed as it arrives
}

// paceRelay plays a relayed stream out toward WhatsApp: the held packets'
// payloads under our header, silence when there are none.
func (d *direction) paceRelay(rt *route, sched, now time.Duration) time.Duration {
	pl := d.pl
	if pl == nil {
		return d.idle(rt, sched, now, 0)
	}
	frame := pl.frameDur()
	act, s, at := pl.next(sched, 0, frame)
	switch act {
	case playWait:
		return d.idle(rt, sched, now, at)
	case playNothing:
		return d.idle(rt, sched, now, 0)
	case playExpand, playConceal:
		dur := pl.media(pl.lastDur)
		if d.inSilence {
			// Nothing of this talk spurt has gone out yet: nothing to
			// conceal. Its first frame takes the marker and a timestamp
			// moved on over the whole pause (stamp), and the far end
			// sees no gap in our numbering.
			return sched + dur + pl.lag(sched+dur, 0)
		}
		// Made up by the far end: a gap in our numbering, and the
		// timestamp moves on as if the frame had been sent.
		d.stamp(sched, rt)
		d.stream.seq++
		d.stream.ts += uint32(pl.lastDur)
		d.sent(sched, dur)
		return sched + dur + pl.lag(sched+dur, 0)
	}
	d.startSpurt()
	d.stamp(sched, rt)
	d.emitOwn(rt.outPT, s.payload(), int(s.dur), emitAudio, now)
	dur := pl.media(int64(s.dur))
	d.sent(sched, dur)
	pl.release(s)
	return sched + dur + pl.lag(sched+dur, 0)
}

// paceTranscode feeds the transcoder from the playout buffer until it has
// an output frame, and sends that frame.
func (d *direction) paceTranscode(rt *route, sched, now time.Duration) time.Duration {
	xc := d.xc
	if xc == nil {
		return d.idle(rt, sched, now, 0)
	}
	frame := xc.outDur
	var waitAt time.Duration
feed:
	for i := 0; xc.qn == 0 && d.pl != nil && i < maxFeed; i++ {
		// The playout is judged in input packets when they are longer
		// than an output frame (60 ms Opus into 20 ms G.711): input is
		// only taken when the queue has run dry, once a packet, so the
		// tick can be up to a packet minus a frame off the packet's due
		// time. Judged in output frames, every packet of a 60 ms stream
		// came 'late': dropped and concealed in turn, the user heard
		// nearly nothing.
		act, s, at := d.pl.next(sched, xc.buffered(), max(frame, d.pl.frameDur()))
		switch act {
		case playNothing:
			break feed
		case playWait:
			waitAt = at
			break feed
		case playExpand:
			xc.conceal(nil)
		case playConceal:
			if s != nil && xc.fec {
				// The next packet's in-band FEC rebuilds the missing one;
				// both are decoded now.
				xc.conceal(s.payload())
				d.pl.release(s)
			} else {
				xc.conceal(nil)
			}
		case playFrame:
			xc.write(s.payload())
			d.pl.release(s)
		}
	}
	if xc.qn > 0 {
		d.startSpurt()
		d.stamp(sched, rt)
		xc.sendOne(now)
		d.sent(sched, frame)
		next := sched + frame
		if d.pl != nil {
			next += d.pl.lag(next, time.Duration(xc.qn)*frame+xc.buffered())
		}
		return next
	}
	return d.idle(rt, sched, now, waitAt)
}

// maxFeed bounds the input packets one tick decodes (10 ms G.711 needs
// two per 20 ms Opus frame; concealing a gap may need a few more).
const maxFeed = 8

// startSpurt marks the first audio of a talk spurt (after silence, after
// a pause of the source, or at the start) with the marker bit.
func (d *direction) startSpurt() {
	d.silenceRun, d.silenceDue = 0, 0
	if d.inSilence || d.pl != nil && d.pl.newSpurt {
		d.stream.marker, d.inSilence = true, false
		if d.pl != nil {
			d.pl.newSpurt = false
		}
	}
}

// stamp moves the outgoing timestamp on over the time nothing was sent
// when a packet starts a new talk spurt (it carries the marker: after a
// pause of the source, or a stall of the machine), so timestamps stay
// true to time across it. Within a spurt they advance by the audio sent
// and nothing else: the ticks' small nudges are not gaps.
func (d *direction) stamp(sched time.Duration, rt *route) {
	if d.outBased && d.stream.marker && sched > d.outEnd {
		d.stream.ts += d.samplesSinceOut(sched, rt.out.rate)
	}
}

// samplesSinceOut is the time from the end of the last paced packet's
// audio to t, in samples at rate.
func (d *direction) samplesSinceOut(t time.Duration, rate int) uint32 {
	return uint32(int64(t-d.outEnd) * int64(rate) / int64(time.Second))
}

// sent records that the packet of the tick at sched carried dur of audio.
func (d *direction) sent(sched, dur time.Duration) {
	d.outBased, d.outEnd = true, sched+dur
}

// idle is a tick at sched with nothing to play: it sends silence toward
// a WhatsApp leg when a frame is due, and returns when the next tick is
// (waitAt, when not 0, is when the playout buffer's next audio is due;
// 0 and no silence: none until a packet arrives).
func (d *direction) idle(rt *route, sched, now, waitAt time.Duration) time.Duration {
	if p := d.play; p != nil && p.under && sched >= p.start-time.Millisecond {
		// A playback that gives way (GiveWay) fills the pause: its
		// frame, not silence.
		next := d.playbackTick(sched, now)
		if waitAt > 0 && (next <= 0 || waitAt < next) {
			return waitAt
		}
		return next
	}
	if !d.silenceOn || waitAt > 0 && waitAt-sched < silenceFrame {
		return waitAt // audio comes before a frame of silence would end
	}
	if sched >= d.silenceDue {
		d.sendSilence(rt, sched, now)
	}
	if waitAt > 0 && waitAt < d.silenceDue {
		return waitAt
	}
	return d.silenceDue
}

// gapTS is our outgoing timestamp for something that starts now (a DTMF
// event): moved on over the pause when the stream is between silence
// frames of DTX, where the last frame's end may be 400 ms ago.
func (d *direction) gapTS(now time.Duration, rate int) uint32 {
	if d.outBased && d.inSilence && now-d.outEnd >= silenceFrame {
		return d.stream.ts + d.samplesSinceOut(now, rate)
	}
	return d.stream.ts
}

// inDTXGap reports whether the play job is sleeping between two
// silence frames of DTX: until silenceDue, not until audio the playout
// buffer holds is due (then a packet arriving must not wake it early:
// the buffer would be asked for a frame before its time).
func (d *direction) inDTXGap() bool {
	return d.inSilence && d.play == nil && d.b.m.dtx && d.silenceRun >= dtxHangover && d.playAt == d.silenceDue
}

// sendSilence sends one frame of silence toward a WhatsApp leg: Meta
// wants media from the business from the moment the call is answered (it
// hangs up after 20 s without), and while the other side is silent. With
// DTX, after the hangover the frames are dtxInterval apart, each
// timestamped at its own time (no marker: the talk spurt has not begun).
func (d *direction) sendSilence(rt *route, sched, now time.Duration) {
	frame, samples := d.silencePayload(rt)
	d.inSilence = true
	if !d.stream.marker { // with the marker, stamp moves it on
		d.stream.ts = d.gapTS(sched, rt.out.rate)
	}
	d.stamp(sched, rt)
	d.emitOwn(rt.outPT, frame, samples, emitSilence, now)
	d.sent(sched, silenceFrame)
	d.silenceRun++
	d.silenceDue = sched + silenceFrame
	if d.b.m.dtx && d.silenceRun >= dtxHangover {
		// On the coarse grid: the gaps of many calls end in one wake-up.
		d.silenceDue = d.b.m.pacer.Coarse(d.epoch.Add(sched + dtxInterval)).Sub(d.epoch)
	}
}

// silencePayload is 20 ms of silence in the destination's codec,
// precomputed: a constant for G.711; for Opus the 3-byte CELT silence
// frame when relaying, and when transcoding a frame our own encoder made
// of silence once, at the manager's Opus settings, so the stream toward
// Meta stays one encoder's.
func (d *direction) silencePayload(rt *route) ([]byte, int) {
	if rt.out.name == "opus" {
		if rt.mode == modeTranscode && d.b.m.opusSilence != nil {
			return d.b.m.opusSilence, 960
		}
		return opusSilence, 960
	}
	n := rt.out.rate * int(silenceFrame/time.Millisecond) / 1000
	return g711Silence(rt.out.name, n), n
}

// quietFunc returns how compressing tells a quiet input frame in codec
// name: G.711 by its mean level, Opus by its size (a frame of silence or
// near-silence is a few bytes; speech at Meta's bitrates is tens).
func quietFunc(name string) func([]byte) bool {
	return func(p []byte) bool { return quietPayload(name, p) }
}

// quietPayload reports whether payload p of codec name is near silence
// (see quietFunc).
func quietPayload(name string, p []byte) bool {
	if name == "opus" {
		return len(p) <= 8
	}
	if len(p) == 0 {
		return true
	}
	mag := &g711Mag[0]
	if name == "PCMA" {
		mag = &g711Mag[1]
	}
	sum := 0
	for _, c := range p {
		sum += int(mag[c])
	}
	return sum/len(p) < quietLevel
}

// quietLevel is the mean magnitude below which a G.711 frame counts as
// quiet: about −50 dBFS.
const quietLevel = 100

// g711Mag holds |linear| for every μ-law and A-law code.
var g711Mag = func() (m [2][256]uint16) {
	var codes [256]byte
	for i := range codes {
		codes[i] = byte(i)
	}
	for k, name := range []string{"PCMU", "PCMA"} {
		for i, v := range codec.DecodeG711(name, codes[:], nil) {
			if v < 0 {
				v = -v
			}
			m[k][i] = uint16(v)
		}
	}
	return m
}()

// frameDur is the output frame of a relayed stream played out: the
// duration of the packet at the playout point, else of the last one.
func (p *playout) frameDur() time.Duration {
	if s := p.at(p.nextSeq); s != nil && p.talking {
		return p.media(int64(s.dur))
	}
	if p.lastDur > 0 {
		return p.media(p.lastDur)
	}
	return silenceFrame
}
