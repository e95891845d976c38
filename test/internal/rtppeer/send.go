// Sending: the paced send loop that encodes the source into 20 ms frames,
// the optional send jitter, SRTP protection, and our RTCP sender reports.

package rtppeer

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// delayedPkt is an audio packet waiting for its (jittered) send time.
type delayedPkt struct {
	pkt []byte
	ts  uint32
	due time.Time
}

// SetSendJitter delays every audio packet sent from now on by a random
// 0..max (uniform), keeping their order: a packet never leaves before the
// one sent before it. 0 sends at once again.
func (s *Session) SetSendJitter(max time.Duration) { s.jitterMax.Store(int64(max)) }

// delayLoop writes the delayed packets at their times.
func (s *Session) delayLoop() {
	defer s.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case d := <-s.delayed:
			if w := time.Until(d.due); w > 0 {
				t.Reset(w)
				select {
				case <-t.C:
				case <-s.stop:
					return
				}
			}
			s.writeAudio(d.pkt, d.ts)
		}
	}
}

// sendAudio writes an audio packet now, or hands it to delayLoop when a
// send jitter is set.
func (s *Session) sendAudio(pkt []byte, ts uint32) {
	max := time.Duration(s.jitterMax.Load())
	if max <= 0 && len(s.delayed) == 0 {
		s.writeAudio(pkt, ts)
		return
	}
	due := time.Now()
	if max > 0 {
		due = due.Add(time.Duration(rand.Int64N(int64(max) + 1)))
	}
	if due.Before(s.lastDue) {
		due = s.lastDue // order kept
	}
	s.lastDue = due
	select {
	case s.delayed <- delayedPkt{pkt, ts, due}:
	case <-s.stop:
	}
}

// writeAudio writes an audio packet with timestamp ts and keeps the send
// statistics: the input jitter (the receiver's estimator over our write
// times, send jitter included) and the longest gap.
func (s *Session) writeAudio(pkt []byte, ts uint32) {
	now := time.Now()
	s.write(pkt)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.lastWrite.IsZero() {
		gap := now.Sub(s.lastWrite)
		s.st.MaxSendGap = max(s.st.MaxSendGap, gap)
		if gap > 50*time.Millisecond {
			s.st.SendStalls = append(s.st.SendStalls, gap)
		}
	}
	s.lastWrite = now
	if s.cfg.KeepFrames {
		s.sentFrames = append(s.sentFrames, SentFrame{TS: ts, At: now})
	}
	transit := float64(now.Sub(s.startTime))/float64(time.Second)*float64(s.cfg.Codec.Rate) - float64(ts)
	if s.sendHaveTransit {
		d := math.Abs(transit - s.sendLastTransit)
		s.st.SendJitter += (d/float64(s.cfg.Codec.Rate)*1000 - s.st.SendJitter) / 16
	}
	s.sendLastTransit, s.sendHaveTransit = transit, true
}

// SetSource sets what the sender sends from the next frame on (nil: send
// no audio, only RTCP).
func (s *Session) SetSource(src Source) {
	s.srcMu.Lock()
	s.src = src
	s.srcMu.Unlock()
}

// SetEncodedLoop makes the session send frames, already encoded in its
// codec, in turn and over again instead of encoding its source (load
// tools: the generator must cost little next to what it measures).
// nil goes back to the source.
func (s *Session) SetEncodedLoop(frames [][]byte) {
	s.srcMu.Lock()
	s.encLoop, s.encPos = frames, 0
	s.srcMu.Unlock()
}

// EncodeLoop encodes n frames of src in codec c (at its default bitrate),
// for SetEncodedLoop.
func EncodeLoop(c Codec, src Source, n int) ([][]byte, error) {
	enc, err := newEncoder(c, 0)
	if err != nil {
		return nil, err
	}
	pcm := make([]int16, c.FrameSamples())
	out := make([][]byte, 0, n)
	for range n {
		src.Read(pcm)
		p, err := enc.encode(pcm)
		if err != nil {
			return nil, err
		}
		out = append(out, append([]byte(nil), p...))
	}
	return out, nil
}

// sendLoop sends a frame every 20 ms of wall time. When the process was
// not scheduled for a while (a loaded machine), it sends the frames it owes
// at once rather than skipping them, as a real-time source with a capture
// buffer does; after more than a second behind it resynchronises.
func (s *Session) sendLoop() {
	defer s.wg.Done()
	pcm := make([]int16, s.cfg.Codec.FrameSamples())
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	lastRTCP := time.Now()
	marker := true
	next := time.Now()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		now := time.Now()
		if now.Sub(next) > time.Second {
			next = now
		}
		for !next.After(now) {
			s.sendFrame(pcm, &marker)
			next = next.Add(20 * time.Millisecond)
		}
		if s.cfg.RTCPMux && time.Since(lastRTCP) >= time.Second {
			lastRTCP = time.Now()
			s.sendSR()
		}
	}
}

// sendFrame sends the next 20 ms: a DTMF step, or a frame of the source,
// or nothing (media time still advances).
func (s *Session) sendFrame(pcm []int16, marker *bool) {
	frame := len(pcm)
	s.srcMu.Lock()
	src := s.src
	var ev *dtmfReq
	if len(s.dtmf) > 0 {
		ev = &s.dtmf[0]
	}
	if ev != nil && ev.sent < ev.frames+2 {
		s.sendEventFrame(ev)
		s.srcMu.Unlock()
		*marker = true
		return
	}
	if ev != nil { // the gap after an event: audio as usual
		ev.sent++
		if ev.sent >= ev.frames+2+ev.gap {
			s.dtmf = s.dtmf[1:]
		}
	}
	var pre []byte
	if len(s.encLoop) > 0 {
		pre = s.encLoop[s.encPos%len(s.encLoop)]
		s.encPos++
	}
	s.srcMu.Unlock()
	if pre != nil {
		s.sendRTP(s.cfg.Codec.PT, *marker, pre, uint32(frame))
		*marker = false
		return
	}
	if src == nil {
		s.txMu.Lock()
		s.ts += uint32(frame) // media time goes on while silent
		s.txMu.Unlock()
		*marker = true
		s.mu.Lock()
		s.lastWrite = time.Time{} // a pause is not a stall
		s.mu.Unlock()
		return
	}
	src.Read(pcm)
	payload, err := s.enc.encode(pcm)
	if err != nil {
		s.logf("encode: %v", err)
		return
	}
	s.noteSent(pcm)
	s.sendRTP(s.cfg.Codec.PT, *marker, payload, uint32(frame))
	*marker = false
}

func (s *Session) sendRTP(pt uint8, marker bool, payload []byte, adv uint32) {
	now := time.Now()
	s.txMu.Lock()
	s.seq++
	ts := s.ts
	h := rtp.Header{Version: 2, Marker: marker, PayloadType: pt, SequenceNumber: s.seq, Timestamp: ts, SSRC: s.ssrc}
	s.ts += adv
	pkt, err := s.protect(h, payload)
	s.txMu.Unlock()
	if err != nil {
		s.logf("protect: %v", err)
		return
	}
	s.sendAudio(pkt, ts)
	s.mu.Lock()
	s.st.Sent++
	s.rtcpCount++
	s.rtcpOctets += uint32(len(payload))
	if s.st.FirstSent.IsZero() {
		s.st.FirstSent = now
	}
	s.mu.Unlock()
}

// protect marshals (and encrypts) an RTP packet. Called with txMu held.
func (s *Session) protect(h rtp.Header, payload []byte) ([]byte, error) {
	p := rtp.Packet{Header: h, Payload: payload}
	raw, err := p.Marshal()
	if err != nil {
		return nil, err
	}
	if s.tx == nil {
		return raw, nil
	}
	return s.tx.EncryptRTP(nil, raw, nil)
}

func (s *Session) write(pkt []byte) {
	s.mu.Lock()
	remote := s.remote
	s.mu.Unlock()
	if remote == nil {
		return
	}
	if _, err := s.conn.WriteToUDP(pkt, remote); err != nil {
		select {
		case <-s.stop:
		default:
			s.logf("write: %v", err)
		}
	}
}

// sendSR sends an RTCP sender report (SRTCP with a key) on the RTP port.
func (s *Session) sendSR() {
	now := time.Now()
	ntp := toNTP(now)
	s.txMu.Lock()
	ts := s.ts
	s.txMu.Unlock()
	s.mu.Lock()
	sr := &rtcp.SenderReport{SSRC: s.ssrc, NTPTime: ntp, RTPTime: ts, PacketCount: s.rtcpCount, OctetCount: s.rtcpOctets}
	s.srNTP[uint32(ntp>>16)] = now
	s.mu.Unlock()
	raw, err := sr.Marshal()
	if err != nil {
		return
	}
	if s.tx != nil {
		s.txMu.Lock()
		raw, err = s.tx.EncryptRTCP(nil, raw, nil)
		s.txMu.Unlock()
		if err != nil {
			s.logf("protect RTCP: %v", err)
			return
		}
	}
	s.write(raw)
	s.mu.Lock()
	s.st.RTCPSent++
	s.mu.Unlock()
}

func toNTP(t time.Time) uint64 {
	const ntpEpochOffset = 2208988800
	secs := uint64(t.Unix()) + ntpEpochOffset
	frac := uint64(t.Nanosecond()) * (1 << 32) / 1e9
	return secs<<32 | frac
}

func (s *Session) noteSent(pcm []int16) {
	k := s.firstLoud(pcm)
	now := time.Now()
	s.mu.Lock()
	if k >= 0 && !s.sentLoud {
		s.sentOnsets = append(s.sentOnsets, now.Add(s.sampleTime(k)))
	}
	s.sentLoud = k >= 0
	s.mu.Unlock()
}

// firstLoud is the index of the first sample of pcm whose magnitude reaches
// the peak of a sine at OnsetDBFS, or -1.
func (s *Session) firstLoud(pcm []int16) int {
	thr := int(math.Pow(10, s.cfg.OnsetDBFS/20) * math.Sqrt2 * 32768)
	for i, v := range pcm {
		if int(v) >= thr || int(v) <= -thr {
			return i
		}
	}
	return -1
}

func (s *Session) sampleTime(k int) time.Duration {
	return time.Duration(k) * time.Second / time.Duration(s.cfg.Codec.Rate)
}
