package media

import (
	"net/netip"
	"sync"
	"time"
)

// livePeriod is how often a relay direction publishes its counters for
// Bridge.Live while media flows: often enough for an operator watching a
// call, rare enough to cost nothing per packet (one comparison).
const livePeriod = 250 * time.Millisecond

// LiveReport is a running call's media so far: per direction the counters
// of Report, and per leg its negotiated media and where wagate sends it.
type LiveReport struct {
	// AtoB is what side A sent (toward B), BtoA what side B sent, as the
	// relay last published it (at most livePeriod old while packets
	// arrive; the last packets before a pause show with the next one).
	AtoB, BtoA DirectionReport
	A, B       LiveLeg
}

// LiveLeg is one leg's media as negotiated so far.
type LiveLeg struct {
	// Codec is the codec the leg carries ("opus", "PCMU", "PCMA"), empty
	// before the leg's answer; Encryption "sdes" or "none".
	Codec, Encryption string
	// Remote is where wagate sends the leg's RTP: the address its SDP
	// signalled, or the source latched behind NAT. Invalid before the
	// leg's SDP is known, and behind NAT, while its SDP address is of a
	// family the media sockets cannot send to, until the latch.
	Remote netip.AddrPort
}

// liveStats is a direction's published report. The relay goroutine
// writes it; Bridge.Live reads it from any goroutine.
type liveStats struct {
	mu   sync.Mutex
	rep  DirectionReport
	next time.Duration // when the relay publishes again
}

// publishLive copies the direction's counters for Bridge.Live when the
// last copy is livePeriod old. Only the relay goroutine calls it.
func (d *direction) publishLive(now time.Duration) {
	if now < d.live.next {
		return
	}
	d.live.next = now + livePeriod
	dr := DirectionReport{
		Packets:            uint64(d.rx.received),
		Bytes:              d.rxBytes,
		Forwarded:          d.forwarded.Load(),
		SRTPAuthFailures:   d.srtpAuth,
		SRTPReplayFailures: d.srtpReplay,
		Late:               d.late,
	}
	if d.rx.started {
		expected := int64(d.rx.cycles+uint32(d.rx.maxSeq)) - int64(d.rx.baseSeq) + 1
		dr.Lost = uint64(max(0, expected-int64(d.rx.received)))
		if rt := d.cur; rt != nil && rt.in.rate > 0 {
			dr.JitterMS = float64(d.rx.jitter>>4) * 1000 / float64(rt.in.rate)
		}
	}
	d.live.mu.Lock()
	d.live.rep = dr
	d.live.mu.Unlock()
}

// Live returns the media of a running call so far; after Close it
// returns the final counters of Report. Safe from any goroutine.
func (b *Bridge) Live() LiveReport {
	b.mu.Lock()
	dirs, closed := b.dirs, b.closed
	b.mu.Unlock()
	var r LiveReport
	if closed {
		// Close has stopped the relay goroutines (or is stopping them:
		// Report must wait until it is done).
		<-b.released
		rep := b.Report()
		r.AtoB, r.BtoA = rep.AtoB, rep.BtoA
	} else {
		for i, d := range dirs {
			if d == nil {
				continue
			}
			d.live.mu.Lock()
			dr := d.live.rep
			d.live.mu.Unlock()
			if i == int(SideA) {
				r.AtoB = dr
			} else {
				r.BtoA = dr
			}
		}
	}
	// The routes are immutable snapshots swapped whole by signalling: the
	// codec a leg carries is what the direction toward it writes, and the
	// leg's remote is the source of the direction reading it.
	ab, ba := b.routeAB.Load(), b.routeBA.Load()
	for side, l := range []*LiveLeg{&r.A, &r.B} {
		l.Encryption = b.legs[side].cfg.Encryption
		if l.Encryption == "" {
			l.Encryption = EncryptionNone
		}
	}
	if ba != nil && ba.mode != modeNone {
		r.A.Codec = ba.out.name
	}
	if ab != nil && ab.mode != modeNone {
		r.B.Codec = ab.out.name
	}
	if ab != nil && ab.from != nil {
		r.A.Remote = ab.from.dst()
	}
	if ba != nil && ba.from != nil {
		r.B.Remote = ba.from.dst()
	}
	return r
}
