package media

import (
	"encoding/binary"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
)

// RTCP (RFC 3550 §6): wagate terminates RTCP on each leg. The legs' SSRCs,
// sequence numbers and timestamps differ (every outgoing stream is
// re-originated), so forwarding the peers' reports would describe streams
// the other side never saw. Instead each leg gets our own compound packet
// every media.rtcp_interval: a sender report when we sent on that leg
// lately, else a receiver report, with one reception report block for the
// peer's stream, and an SDES CNAME (required in every compound packet).
//
// Incoming RTCP is authenticated (SRTCP on SDES legs), counted and read
// for two things: the peer's SR time (for our LSR/DLSR, so the peer can
// measure round-trip time) and the peer's report on our stream, whose
// fraction lost sizes the Opus encoder's in-band FEC. It never keeps a
// call alive: only RTP does.

const (
	// Sequence-number validity per RFC 3550 A.1.
	maxDropout  = 3000
	maxMisorder = 100
	// ntpEpochOffset is seconds from 1900 (NTP) to 1970 (Unix).
	ntpEpochOffset = 2208988800
	// rtcpRecvBuffer is SO_RCVBUF for the separate RTCP sockets. They are
	// drained every reporting interval, and a peer sends about one
	// compound packet per interval, so a few packets' room is plenty;
	// more would only let a flood pin kernel memory.
	rtcpRecvBuffer = 8 << 10
	// maxRTCPDrain bounds the packets read from an RTCP socket per drain.
	maxRTCPDrain = 16
)

// rxStats is the reception side of one leg: what RFC 3550 A.1 (sequence
// numbers), A.3 (loss) and A.8 (interarrival jitter) keep for the peer's
// stream. Owned by the goroutine reading that leg.
type rxStats struct {
	started       bool
	ssrc          uint32
	baseSeq       uint16
	maxSeq        uint16
	cycles        uint32
	badSeq        uint32 // RFC 3550's bad_seq: RTP_SEQ_MOD+1 when unset
	received      uint32
	expectedPrior uint32
	receivedPrior uint32
	// Jitter in timestamp units, scaled by 16 as in RFC 3550 A.8.
	jitter  uint32
	transit int32
	haveTr  bool
	// The peer's last SR: the middle 32 bits of its NTP time, and when we
	// got it.
	lastSR   uint32
	lastSRAt time.Time
	// lossPct is the fraction lost of the last report, in percent.
	lossPct int
}

// update records one authenticated RTP packet. clock is the payload
// type's clock rate, 0 for packets that must not enter the jitter
// estimate (telephone-event timestamps stand still during an event).
func (s *rxStats) update(ssrc uint32, seq uint16, ts uint32, arrival time.Duration, clock int) {
	if !s.started || ssrc != s.ssrc {
		*s = rxStats{started: true, ssrc: ssrc, baseSeq: seq, maxSeq: seq, badSeq: 1<<16 + 1,
			lastSR: s.lastSR, lastSRAt: s.lastSRAt, lossPct: s.lossPct}
		s.received = 1
		s.jitterSample(ts, arrival, clock)
		return
	}
	switch delta := seq - s.maxSeq; {
	case delta < maxDropout:
		if seq < s.maxSeq {
			s.cycles += 1 << 16
		}
		s.maxSeq = seq
	case delta <= 1<<16-maxMisorder:
		// A very large jump: two in a row mean the peer restarted its
		// numbering; one alone is ignored.
		if uint32(seq) == s.badSeq {
			s.baseSeq, s.maxSeq, s.cycles, s.badSeq = seq, seq, 0, 1<<16+1
			s.received, s.expectedPrior, s.receivedPrior = 0, 0, 0
		} else {
			s.badSeq = uint32(seq+1) & 0xffff
			return
		}
	default:
		// Duplicate or reordered: counted, the highest stays.
	}
	s.received++
	s.jitterSample(ts, arrival, clock)
}

// jitterSample is RFC 3550 A.8: J += (|D| - J) / 16.
func (s *rxStats) jitterSample(ts uint32, arrival time.Duration, clock int) {
	if clock <= 0 {
		return
	}
	// Arrival time in timestamp units; wraps like the timestamps do.
	at := uint32(int64(arrival) * int64(clock) / int64(time.Second))
	transit := int32(at - ts)
	if !s.haveTr {
		s.transit, s.haveTr = transit, true
		return
	}
	d := transit - s.transit
	s.transit = transit
	if d < 0 {
		d = -d
	}
	s.jitter += uint32(d) - ((s.jitter + 8) >> 4)
}

// report returns the reception report block for the peer's stream and
// starts a new reporting interval. now is for DLSR.
func (s *rxStats) report(now time.Time) rtcp.ReceptionReport {
	extMax := s.cycles + uint32(s.maxSeq)
	expected := extMax - uint32(s.baseSeq) + 1
	lost := int64(expected) - int64(s.received)
	// Cumulative lost is a signed 24-bit field.
	lost = max(-(1 << 23), min(lost, 1<<23-1))
	expInt := expected - s.expectedPrior
	recInt := s.received - s.receivedPrior
	s.expectedPrior, s.receivedPrior = expected, s.received
	var fraction uint8
	if lostInt := int64(expInt) - int64(recInt); expInt > 0 && lostInt > 0 {
		fraction = uint8(lostInt << 8 / int64(expInt))
	}
	s.lossPct = int(fraction) * 100 / 256
	r := rtcp.ReceptionReport{
		SSRC:               s.ssrc,
		FractionLost:       fraction,
		TotalLost:          uint32(lost) & 0xffffff,
		LastSequenceNumber: extMax,
		Jitter:             s.jitter >> 4,
		LastSenderReport:   s.lastSR,
	}
	if !s.lastSRAt.IsZero() {
		// DLSR in units of 1/65536 s.
		r.Delay = uint32(now.Sub(s.lastSRAt) * 65536 / time.Second)
	}
	return r
}

// txStats is what a leg's outgoing stream has sent, for our sender
// reports. The goroutine writing to the leg updates it per packet; the
// goroutine reading the leg (which sends the leg's RTCP) reads it.
type txStats struct {
	packets atomic.Uint32
	octets  atomic.Uint32 // payload octets, as RFC 3550 counts them
	lastTS  atomic.Uint32 // RTP timestamp of the latest packet
	lastAt  atomic.Int64  // when it was sent, ns on the bridge's clock
	clock   atomic.Int32  // the stream's RTP clock rate
}

func (t *txStats) sent(payload int, ts uint32, at time.Duration) {
	t.packets.Add(1)
	t.octets.Add(uint32(payload))
	t.lastTS.Store(ts)
	t.lastAt.Store(int64(at))
}

// ntpTime converts a wall-clock time to the 64-bit NTP format.
func ntpTime(t time.Time) uint64 {
	sec := uint64(t.Unix() + ntpEpochOffset)
	frac := uint64(t.Nanosecond()) << 32 / uint64(time.Second)
	return sec<<32 | frac
}

// RTCP packet types and the SDES item we send (RFC 3550 §12.1, §12.2).
const (
	rtcpSR     = 200
	rtcpRR     = 201
	rtcpSDES   = 202
	sdesCNAME  = 1
	maxSDESLen = 255 // an SDES item's length is one octet
)

// appendReport appends our compound RTCP packet for a leg to dst: an SR
// when we sent media on it within the last two intervals (RFC 3550 §6.4),
// else an RR, plus SDES CNAME. It is written by hand rather than through
// pion/rtcp's Marshal, which allocates the packets, their slices and the
// result: every call sends a report per leg per interval, and that was
// most of what a held call with audio allocated.
func appendReport(dst []byte, ssrc uint32, cname string, tx *txStats, rx *rxStats, since, interval time.Duration, wall time.Time) []byte {
	var block rtcp.ReceptionReport
	blocks := 0
	if rx.started {
		block, blocks = rx.report(wall), 1
	}
	lastAt := time.Duration(tx.lastAt.Load())
	if n := tx.packets.Load(); n > 0 && since-lastAt < 2*interval {
		// The RTP timestamp that corresponds to the NTP time: the last
		// one sent, moved on by the time since.
		clock := int64(tx.clock.Load())
		ts := tx.lastTS.Load() + uint32(int64(since-lastAt)*clock/int64(time.Second))
		dst = appendRTCPHeader(dst, blocks, rtcpSR, 28+24*blocks)
		dst = binary.BigEndian.AppendUint32(dst, ssrc)
		dst = binary.BigEndian.AppendUint64(dst, ntpTime(wall))
		dst = binary.BigEndian.AppendUint32(dst, ts)
		dst = binary.BigEndian.AppendUint32(dst, n)
		dst = binary.BigEndian.AppendUint32(dst, tx.octets.Load())
	} else {
		dst = appendRTCPHeader(dst, blocks, rtcpRR, 8+24*blocks)
		dst = binary.BigEndian.AppendUint32(dst, ssrc)
	}
	if blocks > 0 {
		dst = appendReportBlock(dst, &block)
	}
	return appendSDES(dst, ssrc, cname)
}

// appendRTCPHeader appends the common header of a packet of size bytes (a
// multiple of 4) with count in its count field.
func appendRTCPHeader(dst []byte, count int, pt byte, size int) []byte {
	dst = append(dst, 2<<6|byte(count), pt)
	return binary.BigEndian.AppendUint16(dst, uint16(size/4-1))
}

// appendReportBlock appends a reception report block (RFC 3550 §6.4.1).
func appendReportBlock(dst []byte, r *rtcp.ReceptionReport) []byte {
	dst = binary.BigEndian.AppendUint32(dst, r.SSRC)
	dst = binary.BigEndian.AppendUint32(dst, uint32(r.FractionLost)<<24|r.TotalLost&0xffffff)
	dst = binary.BigEndian.AppendUint32(dst, r.LastSequenceNumber)
	dst = binary.BigEndian.AppendUint32(dst, r.Jitter)
	dst = binary.BigEndian.AppendUint32(dst, r.LastSenderReport)
	return binary.BigEndian.AppendUint32(dst, r.Delay)
}

// appendSDES appends an SDES packet of one chunk with our CNAME, cut to
// the 255 octets an item can carry. The chunk ends with at least one
// null octet and is padded to a 32-bit boundary (RFC 3550 §6.5).
func appendSDES(dst []byte, ssrc uint32, cname string) []byte {
	if len(cname) > maxSDESLen {
		cname = cname[:maxSDESLen]
	}
	item := 2 + len(cname)
	chunk := (4 + item + 1 + 3) &^ 3
	dst = appendRTCPHeader(dst, 1, rtcpSDES, 4+chunk)
	dst = binary.BigEndian.AppendUint32(dst, ssrc)
	dst = append(dst, sdesCNAME, byte(len(cname)))
	dst = append(dst, cname...)
	for range chunk - 4 - item {
		dst = append(dst, 0)
	}
	return dst
}

// rtcpInfo is what an incoming compound packet tells us.
type rtcpInfo struct {
	// sr is the middle 32 bits of the NTP time of the peer's SR, 0 if none.
	sr uint32
	// lossPct is the peer's fraction lost for our stream, -1 if it did not
	// report on it.
	lossPct int
}

// readReport parses a plain (decrypted) compound RTCP packet. ours is our
// SSRC on this leg. ok is false for a packet pion cannot parse.
func readReport(pkt []byte, ours uint32) (info rtcpInfo, ok bool) {
	pkts, err := rtcp.Unmarshal(pkt)
	if err != nil {
		return rtcpInfo{lossPct: -1}, false
	}
	info.lossPct = -1
	blocks := func(rs []rtcp.ReceptionReport) {
		for _, r := range rs {
			if r.SSRC == ours {
				info.lossPct = int(r.FractionLost) * 100 / 256
			}
		}
	}
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.SenderReport:
			info.sr = uint32(p.NTPTime >> 16)
			blocks(p.Reports)
		case *rtcp.ReceiverReport:
			blocks(p.Reports)
		}
	}
	return info, true
}
