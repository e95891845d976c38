package media

import (
	"time"
	"unsafe"
)

// playout is the adaptive jitter buffer of one paced direction: the
// packets one side sends wait in it until the pacer plays them out toward
// the other side, one frame per tick, at a delay that follows the jitter
// measured on the way in.
//
// Timing. For every packet, offset = arrival − media time (its RTP
// timestamp as a duration). Over a sliding window (jbWindow, in buckets)
// base is the smallest offset (the packet that had the quickest trip) and
// jitter the spread up to the largest one. The input position p plays at
//
//	D(p) = media time of p + base + target,   target = clamp(jitter + jbMargin, min, max)
//
// so a packet as late as any in the window is still on time. When the
// jitter falls (a burst is over and has left the window) the target falls
// with it and the buffer drains: the delay does not ratchet upward.
//
// Each tick compares D(next input) with when that input would actually
// play (the tick plus what is already produced and not yet sent):
//
//   - more than half a frame plus jbHysteresis early: expand, that is,
//     make up one frame (concealment) without consuming input;
//   - as late: compress, that is, drop one input frame, preferably a quiet
//     one, at most one per tick (a missing frame is skipped for free);
//   - otherwise play the next input frame, or conceal it (Opus PLC or FEC,
//     G.711 PLC; a gap in the sequence when relaying) if it is missing
//     while the source is still sending. It is then late when it comes,
//     and dropped: nothing is ever inserted in front of audio that is
//     still to be played.
//
// When the source pauses (nothing held, nothing arrived for a while) the
// talk spurt ends; the next packet starts a new one, anchored afresh at
// its own D, and catching up or waiting happens there, in the silence.
//
// Slots hold payloads in pooled buffers: a copy in a 160- or 256-byte one
// when it fits (G.711 up to 30 ms, Opus at the usual bitrates), else the
// reader's own 1.5 KB buffer, handed over; an idle direction holds none.
// Not safe for concurrent use: the direction's lock guards it.
type playout struct {
	minDepth, maxDepth time.Duration
	rate               int64 // input RTP clock
	// quiet says whether a payload is near silence: compressing prefers
	// dropping those.
	quiet func(payload []byte) bool

	slots [jbSlots]playSlot
	held  int

	// The input timeline.
	started     bool // a packet was seen: numbering and timestamps known
	ssrc        uint32
	lastTS      uint32 // the last timestamp seen, for unwrapping
	lastSeq     uint16 // the sequence number of the packet at lastTS
	lastExt     int64
	talking     bool   // a talk spurt is being played
	played      bool   // nextSeq is known: a packet was played or skipped
	nextSeq     uint16 // the packet to play next
	pos         int64  // its extended timestamp
	lastDur     int64  // duration of the last packet played, input clock
	lastArrival time.Duration
	waitQuiet   int  // ticks spent waiting for a quiet frame to drop
	newSpurt    bool // a talk spurt was anchored: its first packet out gets the marker
	lateRun     int  // late packets in a row
	trailing    int  // frames concealed since the last packet, with none held

	// The delay estimate.
	win    [jbBuckets]jbBucket
	cur    int
	base   time.Duration
	jitter time.Duration
	target time.Duration

	// Counters for the call's report.
	late, concealed, expanded, compressed uint64
	depthSum                              time.Duration
	depthN                                uint64
	depthMax                              time.Duration
}

// playSlot's fields are ordered largest first, and the payload's buffer
// is one untyped pointer with a kind rather than a slice and a
// *packetBuf, so that a slot takes 40 bytes, not 56: 32 of them are most
// of a playout buffer, which is then 1,752 bytes (Go's 1,792-byte size
// class) rather than 2,264 (2,304), on every call's paced direction.
type playSlot struct {
	ts int64         // extended timestamp
	at time.Duration // arrival
	// mem is the payload's buffer: a pooled copy (*[tinyBufSize]byte or
	// *[smallBufSize]byte, payload at 0) or the reader's *packetBuf,
	// handed over (payload at off), as kind says.
	mem    unsafe.Pointer
	dur    int32 // duration, input clock units (at most a second)
	seq    uint16
	off, n uint16 // the payload within mem
	kind   slotMem
	used   bool
}

// slotMem is the kind of buffer a held payload is in.
type slotMem uint8

const (
	memNone   slotMem = iota
	memTiny           // a *[tinyBufSize]byte from tinyPool
	memSmall          // a *[smallBufSize]byte from smallPool
	memPacket         // the reader's *packetBuf
)

func (s *playSlot) payload() []byte {
	switch s.kind {
	case memTiny:
		return (*[tinyBufSize]byte)(s.mem)[:s.n]
	case memSmall:
		return (*[smallBufSize]byte)(s.mem)[:s.n]
	case memPacket:
		return (*packetBuf)(s.mem).b[s.off : s.off+s.n]
	}
	return nil
}

// hold stores the payload buf.b[off:off+n], copied into a small pooled
// buffer when it fits (buf stays the caller's: false), else buf itself
// (true).
func (s *playSlot) hold(buf *packetBuf, off, n int) bool {
	s.n = uint16(n)
	switch {
	case n <= tinyBufSize:
		b := tinyPool.get()
		copy(b[:], buf.b[off:off+n])
		s.mem, s.kind = unsafe.Pointer(b), memTiny
	case n <= smallBufSize:
		b := smallPool.get()
		copy(b[:], buf.b[off:off+n])
		s.mem, s.kind = unsafe.Pointer(b), memSmall
	default:
		s.mem, s.kind, s.off = unsafe.Pointer(buf), memPacket, uint16(off)
		return true
	}
	return false
}

// freeMem returns the payload's buffer to its pool.
func (s *playSlot) freeMem() {
	switch s.kind {
	case memTiny:
		tinyPool.put((*[tinyBufSize]byte)(s.mem))
	case memSmall:
		smallPool.put((*[smallBufSize]byte)(s.mem))
	case memPacket:
		putBuf((*packetBuf)(s.mem))
	}
}

type jbBucket struct {
	start  time.Duration
	lo, hi time.Duration
	used   bool
}

const (
	// jbSlots is the most packets held: 320 ms at the shortest ptime
	// (10 ms), beyond any max depth allowed.
	jbSlots = 32
	// jbBuckets × jbBucketSpan is the window the delay estimate looks at.
	jbBuckets    = 8
	jbBucketSpan = 250 * time.Millisecond
	// jbMargin is added to the measured jitter: the pacer runs a job
	// within about a millisecond of its time, either way.
	jbMargin = 2 * time.Millisecond
	// jbHysteresis keeps the playout point from flapping between
	// expanding and compressing around half a frame.
	jbHysteresis = 2 * time.Millisecond
	// jbQuietWait is how many ticks compressing waits for a quiet frame
	// before it drops a loud one.
	jbQuietWait = 25
	// jbPauseAfter is how long after the last arrival, beyond the target,
	// a missing frame means the source paused rather than a late packet.
	jbPauseAfter = 60 * time.Millisecond
	// jbLateRun late packets in a row (200 ms of a 20 ms stream) mean
	// the delay stepped up beyond max without a pause: the buffer times
	// the stream afresh rather than drop it all for the length of the
	// window. (Jitter beyond max makes runs too, but one this long only
	// about once in 10,000 packets even at 0..200 ms with max 120 ms.)
	jbLateRun = 10
	// jbRetimeAfter packets held, all beyond max at the start of a spurt,
	// mean the delay stepped up; fewer, held longer than jbStraggler,
	// are stragglers.
	jbRetimeAfter = 3
	jbStraggler   = 60 * time.Millisecond
	// jbRestartEarly is how much earlier than the quickest packet of the
	// window one must seem to arrive for its timestamp to be taken as a
	// new timeline (restarted): far beyond any network's variation and
	// any jitter_buffer.max (at most 1 s).
	jbRestartEarly = 2 * time.Second
)

// pushResult is what push did with a packet.
type pushResult uint8

const (
	pushHeld      pushResult = iota // held for playout: the buffer is the playout's now
	pushCopied                      // held for playout, copied: the buffer is still the caller's
	pushLate                        // its time has passed: dropped (buffer still the caller's)
	pushDuplicate                   // already held: dropped (buffer still the caller's)
)

func newPlayout(minDepth, maxDepth time.Duration, rate int, quiet func([]byte) bool) *playout {
	p := &playout{minDepth: minDepth, maxDepth: maxDepth, rate: int64(rate), quiet: quiet}
	p.target = minDepth
	return p
}

// media converts an extended timestamp to a duration.
func (p *playout) media(ext int64) time.Duration {
	return time.Duration(ext * int64(time.Second) / p.rate)
}

// ticks converts a duration to input clock units.
func (p *playout) ticks(d time.Duration) int64 { return int64(d) * p.rate / int64(time.Second) }

// push offers one packet (payload buf.b[off:off+n], duration dur in input
// clock units) that arrived at now.
func (p *playout) push(ssrc uint32, seq uint16, ts uint32, dur int64, buf *packetBuf, off, n int, now time.Duration) pushResult {
	if !p.started || ssrc != p.ssrc || p.restarted(seq, ts, now) {
		// A new stream: what is held of the old one is dropped (it cannot
		// be told apart in time from the new), and the new one is timed
		// afresh.
		p.reset()
		p.started, p.ssrc, p.lastTS, p.lastSeq, p.lastExt = true, ssrc, ts, seq, 0
	}
	ext := p.lastExt + int64(int32(ts-p.lastTS))
	if ext > p.lastExt {
		p.lastTS, p.lastSeq, p.lastExt = ts, seq, ext
	}
	// Late packets count most for the estimate: they are the jitter.
	p.observe(now-p.media(ext), now)
	p.lastArrival = now
	if p.played {
		switch d := int16(seq - p.nextSeq); {
		case d < 0 && int(d) > -maxMisorder:
			p.late++
			if p.lateRun++; p.lateRun < jbLateRun {
				return pushLate
			}
			// Every packet late: the stream's delay stepped up (the path
			// changed, or the sender stalled and went on where it left
			// off). Time it afresh from this packet and play from it.
			p.late--
			p.win = [jbBuckets]jbBucket{}
			p.observe(now-p.media(ext), now)
			p.endSpurt()
			p.nextSeq, p.pos = seq, ext
		case d < 0:
			// Far behind: the peer restarted its numbering without a new
			// SSRC. Start over with the new numbering.
			p.reset()
			p.started, p.ssrc, p.lastTS, p.lastSeq, p.lastExt = true, ssrc, ts, seq, 0
			ext = 0
			p.observe(now, now)
		case int(d) >= jbSlots:
			// Beyond what can be held: end the spurt; the next tick
			// starts a new one from what is held.
			p.endSpurt()
		}
	}
	s := &p.slots[int(seq)%jbSlots]
	if s.used {
		if s.seq == seq {
			return pushDuplicate
		}
		// An old packet a full span of slots ago, never played: the
		// newer one wins.
		p.drop(s)
	}
	*s = playSlot{used: true, seq: seq, ts: ext, dur: int32(dur), at: now}
	p.held++
	p.lateRun = 0
	if s.hold(buf, off, n) {
		return pushHeld
	}
	return pushCopied
}

// restarted reports whether a packet of the same SSRC, numbered after
// the one with the latest timestamp, is on another timeline: the
// sender kept its SSRC and numbering but its timestamps jumped (an SBC
// or PBX whose source changed, music on hold to the agent). Either the
// timestamp went back, which no reordering or loss produces, or it went
// so far ahead that the packet would have arrived over jbRestartEarly
// sooner than the quickest of the window (a pause of the sender moves
// the timestamp on by about the time it paused, and the offset stays).
// Timed on the old timeline such packets were all 'late' (dropped, with
// concealment and compression until ten in a row retimed the stream:
// 300 ms of chopped audio), or all 'early' (the jitter estimate spanning
// the jump, the target at its max for the window's 2 s).
func (p *playout) restarted(seq uint16, ts uint32, now time.Duration) bool {
	if int16(seq-p.lastSeq) <= 0 {
		return false
	}
	dt := int64(int32(ts - p.lastTS))
	if dt < 0 {
		return true
	}
	return p.win[p.cur].used && now-p.media(p.lastExt+dt) < p.base-jbRestartEarly
}

// observe adds one packet's offset, arrived at now, to the delay
// estimate.
func (p *playout) observe(off, now time.Duration) {
	if b := &p.win[p.cur]; b.used && now-b.start >= jbBucketSpan {
		p.cur = (p.cur + 1) % jbBuckets
	}
	b := &p.win[p.cur]
	if !b.used || now-b.start >= jbBucketSpan {
		*b = jbBucket{start: now, lo: off, hi: off, used: true}
	} else {
		b.lo, b.hi = min(b.lo, off), max(b.hi, off)
	}
	p.recompute(now)
}

// recompute derives base, jitter and target from the buckets of the last
// window (older ones are left from before a pause and no longer count).
func (p *playout) recompute(now time.Duration) {
	first := true
	for i := range p.win {
		b := &p.win[i]
		if !b.used || now-b.start >= jbBuckets*jbBucketSpan {
			continue
		}
		if first {
			p.base, p.jitter, first = b.lo, b.hi, false
			continue
		}
		p.base, p.jitter = min(p.base, b.lo), max(p.jitter, b.hi)
	}
	p.jitter -= p.base
	p.target = min(max(p.jitter+jbMargin, p.minDepth), p.maxDepth)
}

// lag is how much later than at+ahead the next input should play (0
// outside a talk spurt): the play job moves its next tick by up to
// maxNudge of it, so the ticks line up with the playout times.
func (p *playout) lag(at, ahead time.Duration) time.Duration {
	if !p.talking {
		return 0
	}
	return min(max(p.due(p.pos)-(at+ahead), -maxNudge), maxNudge)
}

// maxNudge is how far one tick may move off the frame grid to line up
// with the playout times: 1 ms in 20 is jitter no receiver minds.
const maxNudge = time.Millisecond

// due is when input position ext should play.
func (p *playout) due(ext int64) time.Duration { return p.media(ext) + p.base + p.target }

// playAction is what a tick does.
type playAction uint8

const (
	// playNothing: no audio to play (none yet, or the source paused):
	// silence toward WhatsApp, nothing toward other legs.
	playNothing playAction = iota
	// playFrame: play the slot returned, then release it.
	playFrame
	// playConceal: the frame at the playout point is missing while the
	// source is still sending: make one up (the slot returned, if any,
	// is the next packet, for Opus FEC). The position has moved past it.
	playConceal
	// playExpand: make up a frame without consuming input: the buffer
	// is growing toward a larger target.
	playExpand
	// playWait: a talk spurt starts at the time returned.
	playWait
)

// next decides the tick at sched; ahead is audio already produced and not
// yet sent (a transcoder's queue), frame the output frame duration.
func (p *playout) next(sched, ahead, frame time.Duration) (playAction, *playSlot, time.Duration) {
	if !p.talking {
		if p.held == 0 {
			return playNothing, nil, 0
		}
		// A new talk spurt, from the earliest packet held.
		s := p.earliest()
		p.talking, p.nextSeq, p.pos, p.lastDur, p.waitQuiet = true, s.seq, s.ts, int64(s.dur), 0
		p.newSpurt, p.trailing = true, 0
		err := p.due(p.pos) - (sched + ahead)
		if err < -frame/2 {
			// Late before it starts: its delay is beyond what the window
			// allows (max). Either one packet straggled in after the
			// source went quiet (drop it: playing it now would put old
			// audio after silence), or the delay stepped up (the path
			// changed, or the sender stalled and went on where it left
			// off: more packets follow, and the stream is timed afresh
			// from them).
			if p.held < jbRetimeAfter {
				p.talking = false
				if sched-s.at > jbStraggler {
					p.late++
					p.drop(s)
				}
				return playNothing, nil, 0
			}
			p.retime()
			err = p.due(p.pos) - (sched + ahead)
		}
		p.note()
		if err > 0 {
			return playWait, nil, sched + err
		}
		return playFrame, s, 0
	}
	err := p.due(p.pos) - (sched + ahead)
	band := frame/2 + jbHysteresis
	if err > band {
		p.expanded++
		p.note()
		return playExpand, nil, 0
	}
	if err < -band {
		s := p.at(p.nextSeq)
		switch {
		case s == nil:
			// Missing, and late anyway: skip it, no concealment needed.
			if p.missingIsPause(sched) {
				p.pause()
				return playNothing, nil, 0
			}
			p.advance(p.lastDur)
			p.compressed++
			p.waitQuiet = 0
		case p.quiet(s.payload()) || err < -(frame+band) || p.waitQuiet >= jbQuietWait:
			p.dropAt()
			p.compressed++
			p.waitQuiet = 0
		default:
			p.waitQuiet++
		}
	} else {
		p.waitQuiet = 0
	}
	p.note()
	if s := p.at(p.nextSeq); s != nil {
		if s.ts > p.pos+int64(s.dur)/2 && s.ts-p.pos > p.ticks(frame) {
			// The sender's clock moved on without packets (silence
			// suppression, DTX): a pause, and a new spurt at s.
			p.endSpurt()
			return p.next(sched, ahead, frame)
		}
		return playFrame, s, 0
	}
	if p.missingIsPause(sched) {
		p.pause()
		return playNothing, nil, 0
	}
	p.concealed++
	if p.held == 0 {
		p.trailing++ // loss, or the source pausing: told apart later
	}
	p.advance(p.lastDur)
	return playConceal, p.at(p.nextSeq), 0
}

// retime restarts the delay estimate from the packets held.
func (p *playout) retime() {
	p.win = [jbBuckets]jbBucket{}
	p.cur = 0
	for i := range p.slots {
		if s := &p.slots[i]; s.used {
			p.observe(s.at-p.media(s.ts), s.at)
		}
	}
}

// pause ends the talk spurt because the source stopped sending. The
// frames concealed since its last packet were the pause, not loss: the
// playout point goes back to just after that packet (the next spurt's
// first packet numbers on from it) and they are not counted as
// concealed.
func (p *playout) pause() {
	p.talking = false
	if p.trailing > 0 {
		p.nextSeq -= uint16(p.trailing)
		p.pos -= int64(p.trailing) * p.lastDur
		p.concealed -= uint64(p.trailing)
		p.trailing = 0
	}
}

// missingIsPause reports whether the frame at the playout point being
// missing means the source stopped sending (nothing later held, nothing
// arrived lately) rather than a late or lost packet.
func (p *playout) missingIsPause(now time.Duration) bool {
	return p.held == 0 && now-p.lastArrival > p.target+jbPauseAfter
}

// note records the depth for the report.
func (p *playout) note() {
	p.depthSum += p.target
	p.depthN++
	p.depthMax = max(p.depthMax, p.target)
}

// at returns the held slot of seq, or nil.
func (p *playout) at(seq uint16) *playSlot {
	if s := &p.slots[int(seq)%jbSlots]; s.used && s.seq == seq {
		return s
	}
	return nil
}

// earliest returns the held packet with the lowest sequence number (held
// > 0), counted from the one after the last played.
func (p *playout) earliest() *playSlot {
	var best *playSlot
	var bestD int
	for i := range p.slots {
		s := &p.slots[i]
		if !s.used {
			continue
		}
		if d := int(uint16(s.seq - p.nextSeq)); best == nil || d < bestD {
			best, bestD = s, d
		}
	}
	return best
}

// release is called after the slot returned with playFrame was played:
// its buffer goes back to the pool and the position moves past it.
func (p *playout) release(s *playSlot) {
	p.played, p.lastDur, p.trailing = true, int64(s.dur), 0
	p.nextSeq, p.pos = s.seq+1, s.ts+int64(s.dur)
	p.drop(s)
}

// dropAt drops the packet at the playout point (compressing), reporting
// whether there was one.
func (p *playout) dropAt() bool {
	s := p.at(p.nextSeq)
	if s == nil {
		return false
	}
	p.release(s)
	return true
}

func (p *playout) advance(dur int64) {
	p.played = true
	p.nextSeq++
	p.pos += dur
}

func (p *playout) drop(s *playSlot) {
	s.freeMem()
	*s = playSlot{}
	p.held--
}

// endSpurt ends the talk spurt; what is held stays for the next one.
func (p *playout) endSpurt() { p.talking = false }

// reset drops everything held and forgets the stream (not the estimate's
// counters).
func (p *playout) reset() {
	for i := range p.slots {
		if p.slots[i].used {
			p.drop(&p.slots[i])
		}
	}
	p.talking, p.started, p.played = false, false, false
	p.win = [jbBuckets]jbBucket{}
	p.cur = 0
}

// convert converts every payload held with conv (G.711 of one law to the
// other: the same size, so timing and slots are unchanged).
func (p *playout) convert(conv *[256]byte) {
	for i := range p.slots {
		if s := &p.slots[i]; s.used {
			convertLaw(s.payload(), conv)
		}
	}
}

// free returns every buffer held to the pool (the direction is closing).
func (p *playout) free() {
	for i := range p.slots {
		if p.slots[i].used {
			p.drop(&p.slots[i])
		}
	}
}
