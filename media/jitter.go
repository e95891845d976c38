package media

import "time"

// jitterBuffer puts a transcoded direction's input back in sequence order
// before it is decoded. A decoder must see packets in order and be told
// what is missing (to run FEC or concealment); a relay need not, because
// the far end's own jitter buffer sees the original numbering.
//
// It is a reorder buffer, not a playout buffer: a packet that is next in
// sequence is delivered at once, so in-order audio gets no added delay.
// Only when a packet is missing are the ones after it held, until the gap
// fills or depth has passed since the first of them arrived; then the gap
// is given up as lost. Packets older than the delivery point (late or
// duplicate) are dropped. Pacing the output to a clock would add latency
// and erase DTX gaps; the re-originated timestamps carry the timing.
//
// A depth of 0 turns reordering off: gaps are declared lost at once and
// late packets dropped.
//
// Slots hold copies of the payloads in memory allocated once, so the
// steady state allocates nothing. Not safe for concurrent use.
type jitterBuffer struct {
	depth   time.Duration
	slots   []jbSlot
	started bool
	next    uint16 // next sequence number to deliver
	count   int    // packets held
	oldest  time.Duration
	deliver func(ts uint32, payload []byte, lost int)
}

type jbSlot struct {
	used bool
	seq  uint16
	ts   uint32
	at   time.Duration
	n    int
	data []byte
}

// jbResult is what push did with a packet.
type jbResult uint8

const (
	jbDelivered jbResult = iota // delivered, maybe with others after it
	jbHeld                      // held until the gap before it fills
	jbLate                      // older than what was delivered: dropped
	jbDuplicate                 // already held: dropped
)

const (
	// minPacketDur is the shortest ptime a peer may use (G.711 at 10 ms):
	// the slot count covers depth at that rate.
	minPacketDur = 10 * time.Millisecond
	maxJBSlots   = 32
	// jbSlotSize holds any audio payload worth buffering: 60 ms of
	// G.711 is 480 bytes, an Opus packet at most 1275.
	jbSlotSize = 1280
)

func newJitterBuffer(depth time.Duration, deliver func(ts uint32, payload []byte, lost int)) *jitterBuffer {
	// A power of two divides 65536, so slot = seq % n stays collision
	// free across the sequence number wrap.
	n := 2
	for n < int(depth/minPacketDur)+1 && n < maxJBSlots {
		n *= 2
	}
	mem := make([]byte, n*jbSlotSize)
	j := &jitterBuffer{depth: depth, slots: make([]jbSlot, n), deliver: deliver}
	for i := range j.slots {
		j.slots[i].data = mem[i*jbSlotSize : (i+1)*jbSlotSize : (i+1)*jbSlotSize]
	}
	return j
}

// push offers one packet that arrived at now (on the caller's clock).
// Payloads too large for a slot are delivered only when in order.
func (j *jitterBuffer) push(seq uint16, ts uint32, payload []byte, now time.Duration) jbResult {
	if !j.started {
		j.started, j.next = true, seq
	}
	d := int16(seq - j.next)
	if d < 0 && int(d) > -maxMisorder {
		return jbLate
	}
	if d < 0 {
		// Far behind: the peer restarted its numbering without a new
		// SSRC. Hand over what is held and follow the new numbering.
		j.flushAll()
		j.next, d = seq, 0
	}
	if d == 0 {
		j.next = seq + 1
		j.deliver(ts, payload, 0)
		j.drain()
		return jbDelivered
	}
	if j.depth <= 0 || int(d) >= len(j.slots) || len(payload) > jbSlotSize {
		// Beyond what the buffer can hold: whatever is missing before it
		// is not worth waiting for.
		j.flushAll()
		lost := int(uint16(seq - j.next))
		j.next = seq + 1
		j.deliver(ts, payload, lost)
		return jbDelivered
	}
	s := &j.slots[int(seq)%len(j.slots)]
	if s.used {
		if s.seq == seq {
			return jbDuplicate
		}
		// The slot still holds a packet from a full buffer's span ago,
		// which cannot happen while d < len(slots); be safe anyway.
		j.flushAll()
		return j.push(seq, ts, payload, now)
	}
	s.used, s.seq, s.ts, s.at, s.n = true, seq, ts, now, copy(s.data, payload)
	if j.count == 0 || now < j.oldest {
		j.oldest = now
	}
	j.count++
	return jbHeld
}

// due returns when flush must next run (ok false: nothing held).
func (j *jitterBuffer) due() (at time.Duration, ok bool) {
	if j.count == 0 {
		return 0, false
	}
	return j.oldest + j.depth, true
}

// flush gives up on gaps older than depth at now.
func (j *jitterBuffer) flush(now time.Duration) {
	for j.count > 0 && now >= j.oldest+j.depth {
		j.skipGap()
		j.drain()
		j.recomputeOldest()
	}
}

// flushAll delivers everything held, in order, gaps counted as lost.
func (j *jitterBuffer) flushAll() {
	for j.count > 0 {
		j.skipGap()
		j.drain()
	}
	j.recomputeOldest()
}

// reset forgets the numbering (a new SSRC) after delivering what is held.
func (j *jitterBuffer) reset() {
	j.flushAll()
	j.started = false
}

// skipGap moves next to the first held packet and delivers it with the
// gap before it as lost.
func (j *jitterBuffer) skipGap() {
	for k := 1; k < len(j.slots); k++ {
		seq := j.next + uint16(k)
		s := &j.slots[int(seq)%len(j.slots)]
		if s.used && s.seq == seq {
			j.next = seq
			j.take(s, k)
			return
		}
	}
	// Unreachable with count > 0; keep the invariant anyway.
	for i := range j.slots {
		j.slots[i].used = false
	}
	j.count = 0
}

// drain delivers held packets that are next in sequence.
func (j *jitterBuffer) drain() {
	for j.count > 0 {
		s := &j.slots[int(j.next)%len(j.slots)]
		if !s.used || s.seq != j.next {
			return
		}
		j.take(s, 0)
	}
}

func (j *jitterBuffer) take(s *jbSlot, lost int) {
	s.used = false
	j.count--
	j.next = s.seq + 1
	j.deliver(s.ts, s.data[:s.n], lost)
}

func (j *jitterBuffer) recomputeOldest() {
	first := true
	for i := range j.slots {
		if s := &j.slots[i]; s.used && (first || s.at < j.oldest) {
			j.oldest, first = s.at, false
		}
	}
}
