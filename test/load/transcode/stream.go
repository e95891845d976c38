// Streams: one call leg's RTP/SRTP stream on a shared endpoint, its
// send side (frames from a loop, sender reports) and its receive side
// (decryption, loss, jitter, onsets, echo).

package main

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/srtp/v3"
	"github.com/wagate/wagate/test/internal/rtppeer"
	"gopkg.in/hraban/opus.v2"
)

// jitterEst is the RFC 3550 interarrival jitter estimator (A.8), in ms.
type jitterEst struct {
	rate        float64
	have        bool
	lastTransit float64
	j           float64
}

// update takes a packet's arrival (or send) time and RTP timestamp.
func (e *jitterEst) update(at time.Time, ts uint32) {
	transit := float64(at.UnixNano())/1e9*e.rate - float64(ts)
	if e.have {
		d := math.Abs(transit - e.lastTransit)
		if d < e.rate*10 { // not a timestamp jump
			e.j += (d/e.rate*1000 - e.j) / 16
		}
	}
	e.lastTransit, e.have = transit, true
}

// seqTrack is RFC 3550 A.1's sequence accounting (no probation).
type seqTrack struct {
	have      bool
	base, max uint16
	cycles    uint32
	received  uint64
}

func (s *seqTrack) update(seq uint16) {
	s.received++
	if !s.have {
		s.have, s.base, s.max = true, seq, seq
		return
	}
	if d := seq - s.max; d != 0 && d < 0x8000 {
		if seq < s.max {
			s.cycles += 1 << 16
		}
		s.max = seq
	}
}

// lost is expected − received (negative with duplicates).
func (s *seqTrack) lost() int64 {
	if !s.have {
		return 0
	}
	expected := int64(s.cycles) + int64(s.max) - int64(s.base) + 1
	return expected - int64(s.received)
}

type side int

const (
	sideMeta side = iota // WhatsApp leg: Opus over (S)RTP, rtcp-mux
	sidePBX              // PBX leg: PCMU over plain RTP
)

// stream is one leg's media at the generator: what it sends (through the
// pacer) and what it receives (through its endpoint's reader).
type stream struct {
	ep      *endpoint
	side    side
	sampled bool // decode and time onsets (Meta)
	echo    bool // send back every RTP packet received (PBX, sampled)
	auth    bool // authenticate/decrypt what arrives (SRTP legs)
	// protected: what arrives is SRTP (decrypted only with auth).
	protected bool
	remote    netip.AddrPort

	// Sender state: the pacer's only (and, for an echo, the reader's).
	lp          *loop
	tx          *srtp.Context
	pt          uint8
	ssrc        uint32
	seq         uint16
	ts          uint32
	tsStep      uint32
	rate        float64
	idx         int
	next        time.Time
	marker      bool
	sendJit     jitterEst
	rtcpPackets uint32
	rtcpOctets  uint32
	sentOnsets  []time.Time // sampled: when each burst's onset left (under the pacer's lock)

	// Receiver state: the endpoint reader's.
	rx         *srtp.Context
	dec        *opus.Decoder
	pcm        []int16
	lastLoud   bool
	recvOnsets []time.Time
	rec        []int16
	recording  atomic.Bool
	seqs       seqTrack
	recvJit    jitterEst

	// Counters read while the streams run.
	sent, recv, recvRTCP, authFail, sentRTCP atomic.Uint64
	// recvAtLastBig is recv when the last audio payload over smallPayload
	// bytes arrived: what comes after it once the other side has stopped
	// is wagate's silence (its Opus silence frames are 6-8 bytes, after
	// two larger ones that carry the encoder's tail).
	recvAtLastBig            atomic.Uint64
	jitRecvBits, jitSendBits atomic.Uint64
	muted                    atomic.Bool // the pacer sends nothing more
}

// newStream makes a stream on ep; start it once the remote is known.
func newStream(ep *endpoint, sd side, sampled, echo, auth bool) (*stream, error) {
	s := &stream{
		ep: ep, side: sd, sampled: sampled, echo: echo, auth: auth,
		ssrc: rand.Uint32(), seq: uint16(rand.UintN(1 << 16)), ts: rand.Uint32(), marker: true,
	}
	if sd == sideMeta {
		s.rate, s.tsStep, s.pt = 48000, 960, 111
	} else {
		s.rate, s.tsStep, s.pt = 8000, 160, 0
	}
	s.sendJit.rate, s.recvJit.rate = s.rate, s.rate
	if sampled && sd == sideMeta {
		var err error
		if s.dec, err = opus.NewDecoder(48000, 1); err != nil {
			return nil, err
		}
		s.pcm = make([]int16, 5760)
	}
	return s, nil
}

// start sets the remote address (wagate's port for this leg), checks the
// payload type (the generator sends and expects 111 Opus / 0 PCMU), sets
// the SRTP keys (nil: plain RTP) and registers the stream with its
// endpoint. Call before the stream is added to the pacer.
func (s *stream) start(remote netip.AddrPort, pt uint8, local, remoteKey *rtppeer.Crypto) error {
	if pt != s.pt {
		return fmt.Errorf("negotiated payload type %d, the generator sends and expects %d", pt, s.pt)
	}
	if local != nil {
		tx, err := srtp.CreateContext(local.Key[:16], local.Key[16:], profile(local))
		if err != nil {
			return err
		}
		s.tx = tx
	}
	s.protected = remoteKey != nil
	if remoteKey != nil && s.auth {
		rx, err := srtp.CreateContext(remoteKey.Key[:16], remoteKey.Key[16:], profile(remoteKey),
			srtp.SRTPReplayProtection(256), srtp.SRTCPReplayProtection(256))
		if err != nil {
			return err
		}
		s.rx = rx
	}
	s.remote = remote
	s.ep.register(s)
	return nil
}

func profile(c *rtppeer.Crypto) srtp.ProtectionProfile {
	if c.Suite == "AES_CM_128_HMAC_SHA1_32" {
		return srtp.ProtectionProfileAes128CmHmacSha1_32
	}
	return srtp.ProtectionProfileAes128CmHmacSha1_80
}

// stop ends the stream's sending and receiving.
func (s *stream) stop() {
	s.muted.Store(true)
	if s.remote.IsValid() {
		s.ep.unregister(s)
	}
}

// queueFrame puts the next frame of the loop into the endpoint's send
// batch (pacer goroutine); at is the time it is due out.
func (s *stream) queueFrame(at time.Time) {
	payload := s.lp.frames[s.idx%len(s.lp.frames)]
	var plain [pktSize]byte
	p := plain[:12+len(payload)]
	p[0] = 0x80
	p[1] = s.pt & 0x7f
	if s.marker {
		p[1] |= 0x80
		s.marker = false
	}
	s.seq++
	binary.BigEndian.PutUint16(p[2:], s.seq)
	binary.BigEndian.PutUint32(p[4:], s.ts)
	binary.BigEndian.PutUint32(p[8:], s.ssrc)
	copy(p[12:], payload)
	dst := s.ep.slot()
	n := len(p)
	if s.tx != nil {
		out, err := s.tx.EncryptRTP(dst[:0], p, nil)
		if err != nil || &out[0] != &dst[0] {
			return
		}
		n = len(out)
	} else {
		copy(dst, p)
	}
	s.ep.queue(n, s.remote)
	s.sent.Add(1)
	s.rtcpPackets++
	s.rtcpOctets += uint32(len(payload))
	s.sendJit.update(at, s.ts)
	s.jitSendBits.Store(math.Float64bits(s.sendJit.j))
	if s.lp.onsetFrame >= 0 && s.idx%len(s.lp.frames) == s.lp.onsetFrame {
		s.sentOnsets = append(s.sentOnsets, at.Add(s.lp.onsetOff))
	}
	s.ts += s.tsStep
	s.idx++
	if s.side == sideMeta && s.idx%rtcpEvery == 0 {
		s.queueSR(at)
	}
}

// queueSR queues an RTCP sender report on the RTP port (rtcp-mux), as
// SRTCP on an SDES leg.
func (s *stream) queueSR(now time.Time) {
	const ntpEpochOffset = 2208988800
	ntp := uint64(now.Unix()+ntpEpochOffset)<<32 | uint64(now.Nanosecond())*(1<<32)/1e9
	sr := &rtcp.SenderReport{SSRC: s.ssrc, NTPTime: ntp, RTPTime: s.ts, PacketCount: s.rtcpPackets, OctetCount: s.rtcpOctets}
	raw, err := sr.Marshal()
	if err != nil {
		return
	}
	if s.tx != nil {
		if raw, err = s.tx.EncryptRTCP(nil, raw, nil); err != nil {
			return
		}
	}
	dst := s.ep.slot()
	s.ep.queue(copy(dst, raw), s.remote)
	s.sentRTCP.Add(1)
}

func isRTCP(p []byte) bool { return len(p) >= 2 && p[1] >= 192 && p[1] <= 223 }

// handle takes one datagram from the stream's remote (endpoint reader).
func (s *stream) handle(pkt, dbuf []byte, at time.Time) {
	if len(pkt) < 12 || pkt[0]>>6 != 2 {
		return
	}
	if isRTCP(pkt) {
		s.recvRTCP.Add(1)
		return
	}
	if s.rx != nil {
		plain, err := s.rx.DecryptRTP(dbuf[:0], pkt, nil)
		if err != nil {
			s.authFail.Add(1)
			return
		}
		pkt = plain
	}
	if pkt[1]&0x7f != s.pt {
		return // telephone-event or anything else: not audio
	}
	hl := 12 + 4*int(pkt[0]&0x0f)
	if pkt[0]&0x10 != 0 && len(pkt) >= hl+4 {
		hl += 4 + 4*int(binary.BigEndian.Uint16(pkt[hl+2:]))
	}
	if hl > len(pkt) {
		return
	}
	seq, ts := binary.BigEndian.Uint16(pkt[2:]), binary.BigEndian.Uint32(pkt[4:])
	n := s.recv.Add(1)
	plen := len(pkt) - hl
	if s.rx == nil && s.protected {
		plen -= srtpTagLen // not decrypted: the tag is in the length
	}
	if plen > smallPayload {
		s.recvAtLastBig.Store(n)
	}
	s.seqs.update(seq)
	s.recvJit.update(at, ts)
	s.jitRecvBits.Store(math.Float64bits(s.recvJit.j))
	if s.echo {
		// The same bytes straight back, as SIPp's -rtp_echo does.
		if !s.muted.Load() {
			if _, err := s.ep.conn.WriteToUDPAddrPort(pkt, s.remote); err == nil {
				s.sent.Add(1)
				s.sendJit.update(time.Now(), ts)
				s.jitSendBits.Store(math.Float64bits(s.sendJit.j))
			}
		}
		return
	}
	if s.dec == nil || (s.protected && s.rx == nil) {
		return // not decoded, or still encrypted
	}
	end := len(pkt)
	if pkt[0]&0x20 != 0 && end > hl {
		end -= int(pkt[end-1])
	}
	if end < hl {
		return
	}
	k, err := s.dec.Decode(pkt[hl:end], s.pcm)
	if err != nil {
		return
	}
	pcm := s.pcm[:k]
	j := firstLoud(pcm)
	if j >= 0 && !s.lastLoud {
		s.recvOnsets = append(s.recvOnsets, at.Add(time.Duration(j)*time.Second/48000))
	}
	s.lastLoud = j >= 0
	if s.recording.Load() && len(s.rec)+k <= maxRecord {
		s.rec = append(s.rec, pcm...)
	}
}

func (s *stream) recvJitter() float64 { return math.Float64frombits(s.jitRecvBits.Load()) }
func (s *stream) sendJitter() float64 { return math.Float64frombits(s.jitSendBits.Load()) }
