// Receiving: the read loop, source checks and SRTP authentication, audio
// decoding with the RFC 3550 statistics, echo, and inbound RTCP.

package rtppeer

import (
	"math"
	"net"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/wagate/wagate/test/internal/audio"
)

func (s *Session) readLoop() {
	defer s.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, from, err := s.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		now := time.Now()
		pkt := append([]byte(nil), buf[:n]...)
		s.mu.Lock()
		started := s.started
		if !started {
			if len(s.early) < 200 {
				s.early = append(s.early, earlyPkt{pkt, from, now})
			} else {
				s.st.EarlyDropped++
			}
		}
		s.mu.Unlock()
		if started {
			s.handle(pkt, from, now)
		}
	}
}

// isRTCP tells RTCP from RTP on a multiplexed port (RFC 5761 §4).
func isRTCP(p []byte) bool { return len(p) >= 2 && p[1] >= 192 && p[1] <= 223 }

type earlyPkt struct {
	pkt  []byte
	from *net.UDPAddr
	at   time.Time
}

func (s *Session) handle(pkt []byte, from *net.UDPAddr, now time.Time) {
	s.handleMu.Lock()
	defer s.handleMu.Unlock()
	s.mu.Lock()
	remote, rx := s.remote, s.rx
	s.mu.Unlock()
	if len(pkt) < 12 || pkt[0]>>6 != 2 {
		return
	}
	if remote != nil && (!from.IP.Equal(remote.IP) || from.Port != remote.Port) {
		s.mu.Lock()
		s.st.WrongSource++
		s.st.LastWrongSource = from.String()
		s.mu.Unlock()
		return
	}
	if isRTCP(pkt) {
		raw := pkt
		if rx != nil {
			var err error
			if raw, err = rx.DecryptRTCP(nil, pkt, nil); err != nil {
				s.mu.Lock()
				s.st.AuthFailures++
				s.mu.Unlock()
				return
			}
		}
		s.handleRTCP(raw, now)
		return
	}
	raw := pkt
	if rx != nil {
		var err error
		if raw, err = rx.DecryptRTP(nil, pkt, nil); err != nil {
			s.mu.Lock()
			s.st.AuthFailures++
			s.mu.Unlock()
			return
		}
	}
	var p rtp.Packet
	if err := p.Unmarshal(raw); err != nil {
		return
	}
	if s.cfg.Echo {
		s.echo(&p)
	}
	s.mu.Lock()
	s.st.Received++
	s.st.PTs[p.PayloadType]++
	s.st.SSRCs[p.SSRC]++
	if s.st.FirstRecv.IsZero() {
		s.st.FirstRecv = now
	}
	s.st.LastRecv = now
	s.mu.Unlock()

	switch {
	case p.PayloadType == s.cfg.Codec.PT:
		s.handleAudio(&p, now)
	case s.cfg.EventPT != 0 && p.PayloadType == s.cfg.EventPT:
		s.handleEvent(&p, now)
	}
}

func (s *Session) echo(p *rtp.Packet) {
	s.txMu.Lock()
	pkt, err := s.protect(p.Header, p.Payload)
	s.txMu.Unlock()
	if err == nil {
		s.write(pkt)
		s.mu.Lock()
		s.st.Sent++
		s.mu.Unlock()
	}
}

func (s *Session) handleAudio(p *rtp.Packet, now time.Time) {
	var pcm []int16
	if (!s.cfg.Echo || !s.cfg.NoRecord) && !s.cfg.NoDecode {
		var err error
		pcm, err = s.dec.decode(p.Payload)
		if err != nil {
			s.mu.Lock()
			s.st.DecodeErrors++
			s.mu.Unlock()
			pcm = nil
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.ReceivedAudio++
	// Sequence accounting (RFC 3550 A.1, without probation).
	if !s.haveSeq {
		s.haveSeq, s.baseSeq, s.maxSeq = true, p.SequenceNumber, p.SequenceNumber
	} else if d := p.SequenceNumber - s.maxSeq; d < 0x8000 {
		if p.SequenceNumber < s.maxSeq {
			s.cycles += 1 << 16
		}
		s.maxSeq = p.SequenceNumber
	}
	s.st.Expected = int64(s.cycles) + int64(s.maxSeq) - int64(s.baseSeq) + 1
	s.st.Lost = s.st.Expected - int64(s.st.ReceivedAudio)
	// Interarrival jitter (RFC 3550 A.8), in ms.
	rate := float64(s.cfg.Codec.Rate)
	transit := float64(now.Sub(s.startTime))/float64(time.Second)*rate - float64(p.Timestamp)
	if s.haveTransit {
		d := math.Abs(transit - s.lastTransit)
		if d < rate*10 { // ignore a timestamp jump (new stream, gap)
			s.st.Jitter += (d/rate*1000 - s.st.Jitter) / 16
		}
	}
	s.lastTransit, s.haveTransit = transit, true
	if s.cfg.KeepFrames {
		f := Frame{Seq: p.SequenceNumber, TS: p.Timestamp, Marker: p.Marker, At: now, DBFS: -120, Size: len(p.Payload), Onset: -1}
		if pcm != nil {
			f.DBFS = audio.DBFS(pcm)
			if k := s.firstLoud(pcm); k >= 0 && !s.lastLoud {
				f.Onset = k
			}
		}
		s.frames = append(s.frames, f)
	}
	if pcm != nil {
		k := s.firstLoud(pcm)
		if k >= 0 && !s.lastLoud {
			s.recvOnsets = append(s.recvOnsets, now.Add(s.sampleTime(k)))
		}
		s.lastLoud = k >= 0
		if !s.cfg.NoRecord {
			s.rec = append(s.rec, pcm...)
		}
	}
}

func (s *Session) handleRTCP(raw []byte, now time.Time) {
	pkts, err := rtcp.Unmarshal(raw)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.RTCPReceived++
	if err != nil {
		return
	}
	for _, p := range pkts {
		var reports []rtcp.ReceptionReport
		switch r := p.(type) {
		case *rtcp.SenderReport:
			reports = r.Reports
		case *rtcp.ReceiverReport:
			reports = r.Reports
		}
		for _, rr := range reports {
			if rr.SSRC != s.ssrc || rr.LastSenderReport == 0 {
				continue
			}
			if sent, ok := s.srNTP[rr.LastSenderReport]; ok {
				rtt := now.Sub(sent) - time.Duration(rr.Delay)*time.Second/65536
				s.st.RTT = append(s.st.RTT, rtt)
			}
		}
	}
}
