package media

import "time"

// Report is what a call's media was, for its call record: per direction,
// what wagate received from the source side, and per leg the codec and
// encryption negotiated. Report it after Close: the relay goroutines own
// the counters while they run.
type Report struct {
	// AtoB is what side A sent (toward B), BtoA what side B sent.
	AtoB, BtoA DirectionReport
	A, B       LegReport
}

// DirectionReport is one direction of a call's media.
type DirectionReport struct {
	// Packets and Bytes count the valid RTP packets received from the
	// source side (RTP bytes, headers included).
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
	// Forwarded counts packets written toward the other side (relayed,
	// transcoded, DTMF; not silence).
	Forwarded uint64 `json:"forwarded"`
	// Lost is RFC 3550's cumulative loss of the source's stream.
	Lost uint64 `json:"lost"`
	// JitterMS is RFC 3550's interarrival jitter estimate at the end.
	JitterMS float64 `json:"jitter_ms"`
	// SRTPAuthFailures and SRTPReplayFailures count packets that failed
	// SRTP authentication or the replay check.
	SRTPAuthFailures   uint64 `json:"srtp_auth_failures"`
	SRTPReplayFailures uint64 `json:"srtp_replay_failures"`
	// Late counts packets dropped because they came after their playout
	// time (paced directions: toward WhatsApp, or transcoded).
	Late uint64 `json:"late"`
	// Concealed counts frames made up because their packet was missing
	// at its playout time (Opus FEC or PLC, G.711 PLC; relaying, a gap
	// the far end conceals). Expanded and Compressed count frames made up
	// and dropped to move the playout delay with the jitter.
	Concealed  uint64 `json:"concealed"`
	Expanded   uint64 `json:"expanded"`
	Compressed uint64 `json:"compressed"`
	// JitterBufferMS is the playout buffer's mean target depth over the
	// call, JitterBufferMaxMS its largest (0: the direction was not
	// paced, or had no audio).
	JitterBufferMS    float64 `json:"jitter_buffer_ms"`
	JitterBufferMaxMS float64 `json:"jitter_buffer_max_ms"`
}

// LegReport is a leg's negotiated media.
type LegReport struct {
	Codec      string `json:"codec"`      // "opus", "PCMU", "PCMA"; "" when none was agreed
	Encryption string `json:"encryption"` // "sdes" or "none"
}

// Report returns the call's media report. Before Close it may race with
// the relay and is not to be used.
func (b *Bridge) Report() Report {
	b.mu.Lock()
	dirs := b.dirs
	b.mu.Unlock()
	var r Report
	for i, d := range dirs {
		if d == nil {
			continue
		}
		dr := DirectionReport{
			Packets:            uint64(d.rx.received),
			Bytes:              d.rxBytes,
			Forwarded:          d.forwarded.Load(),
			SRTPAuthFailures:   d.srtpAuth,
			SRTPReplayFailures: d.srtpReplay,
			Late:               d.late,
		}
		if p := d.pl; p != nil {
			dr.Concealed, dr.Expanded, dr.Compressed = p.concealed, p.expanded, p.compressed
			if p.depthN > 0 {
				dr.JitterBufferMS = float64(p.depthSum/time.Duration(p.depthN)) / float64(time.Millisecond)
				dr.JitterBufferMaxMS = float64(p.depthMax) / float64(time.Millisecond)
			}
		}
		if d.rx.started {
			expected := int64(d.rx.cycles+uint32(d.rx.maxSeq)) - int64(d.rx.baseSeq) + 1
			dr.Lost = uint64(max(0, expected-int64(d.rx.received)))
			if rt := d.cur; rt != nil && rt.in.rate > 0 {
				dr.JitterMS = float64(d.rx.jitter>>4) * 1000 / float64(rt.in.rate)
			}
		}
		if i == int(SideA) {
			r.AtoB = dr
		} else {
			r.BtoA = dr
		}
	}
	for side, lr := range []*LegReport{&r.A, &r.B} {
		lr.Encryption = b.legs[side].cfg.Encryption
		if lr.Encryption == "" {
			lr.Encryption = "none"
		}
	}
	// The codec a leg carries is what the direction toward it writes: the
	// route in force, which a direction that never had a packet or a
	// tick to handle has not adopted yet (d.cur).
	if rt := routeOf(dirs[SideB]); rt != nil && rt.mode != modeNone {
		r.A.Codec = rt.out.name
	}
	if rt := routeOf(dirs[SideA]); rt != nil && rt.mode != modeNone {
		r.B.Codec = rt.out.name
	}
	return r
}

// transcoded reports whether either direction transcoded (after Close).
func (b *Bridge) transcoded() bool {
	for _, d := range b.dirs {
		if d != nil && d.cur != nil && d.cur.mode == modeTranscode {
			return true
		}
	}
	return false
}

// routeOf is d's route in force, adopted or not (nil without one).
func routeOf(d *direction) *route {
	if d == nil {
		return nil
	}
	return d.route.Load()
}
