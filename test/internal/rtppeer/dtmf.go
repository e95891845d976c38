// RFC 4733 telephone-events: queueing digits to send, sending their
// event packets, and keeping the events and digits received.

package rtppeer

import (
	"errors"
	"fmt"
	"time"

	"github.com/pion/rtp"
)

// SendDTMF queues digits as RFC 4733 events of the given length each
// (the last event packet is sent three times), with gap between them. No
// audio is sent while an event is; in the gaps the source plays as usual.
func (s *Session) SendDTMF(digits string, length, gap time.Duration) error {
	if s.cfg.EventPT == 0 {
		return errors.New("rtppeer: no telephone-event payload type")
	}
	s.srcMu.Lock()
	defer s.srcMu.Unlock()
	for i := 0; i < len(digits); i++ {
		code, ok := eventCode(digits[i])
		if !ok {
			return fmt.Errorf("rtppeer: %q is not a DTMF digit", digits[i])
		}
		s.dtmf = append(s.dtmf, dtmfReq{code: code, frames: max(1, int(length/(20*time.Millisecond))), gap: int(gap / (20 * time.Millisecond))})
	}
	return nil
}

// DTMFPending reports whether queued digits are still being sent.
func (s *Session) DTMFPending() bool {
	s.srcMu.Lock()
	defer s.srcMu.Unlock()
	return len(s.dtmf) > 0
}

type dtmfReq struct {
	code   byte
	frames int // frames of event
	gap    int // frames of no event after it
	sent   int // frames sent so far (event, ends, gap)
	ts     uint32
}

func eventCode(d byte) (byte, bool) {
	switch {
	case d >= '0' && d <= '9':
		return d - '0', true
	case d == '*':
		return 10, true
	case d == '#':
		return 11, true
	case d >= 'A' && d <= 'D':
		return 12 + d - 'A', true
	}
	return 0, false
}

func eventDigit(code byte) byte {
	switch {
	case code <= 9:
		return '0' + code
	case code == 10:
		return '*'
	case code == 11:
		return '#'
	case code <= 15:
		return 'A' + code - 12
	}
	return '?'
}

// sendEventFrame sends one 20 ms step of a DTMF event: event packets
// (marker on the first), the last one with the end bit, then two more
// copies of it. Called with srcMu held.
func (s *Session) sendEventFrame(ev *dtmfReq) {
	const step = 160 // telephone-event/8000: 20 ms
	s.txMu.Lock()
	if ev.sent == 0 {
		ev.ts = s.ts
	}
	s.txMu.Unlock()
	switch {
	case ev.sent < ev.frames:
		dur := uint16((ev.sent + 1) * step)
		end := ev.sent == ev.frames-1
		s.sendEvent(ev, ev.sent == 0, end, dur)
	default:
		s.sendEvent(ev, false, true, uint16(ev.frames*step))
	}
	ev.sent++
	s.txMu.Lock()
	s.ts += uint32(s.cfg.Codec.FrameSamples())
	s.txMu.Unlock()
}

func (s *Session) sendEvent(ev *dtmfReq, marker, end bool, dur uint16) {
	p := []byte{ev.code, 10, byte(dur >> 8), byte(dur)} // volume -10 dBm0
	if end {
		p[1] |= 0x80
	}
	s.txMu.Lock()
	s.seq++
	h := rtp.Header{Version: 2, Marker: marker, PayloadType: s.cfg.EventPT, SequenceNumber: s.seq, Timestamp: ev.ts, SSRC: s.ssrc}
	pkt, err := s.protect(h, p)
	s.txMu.Unlock()
	if err != nil {
		s.logf("protect event: %v", err)
		return
	}
	s.write(pkt)
	s.mu.Lock()
	s.st.SentEvents++
	s.mu.Unlock()
}

func (s *Session) handleEvent(p *rtp.Packet, now time.Time) {
	if len(p.Payload) < 4 {
		return
	}
	code, end, dur := p.Payload[0], p.Payload[1]&0x80 != 0, uint16(p.Payload[2])<<8|uint16(p.Payload[3])
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.events {
		if e.SSRC == p.SSRC && e.Timestamp == p.Timestamp {
			e.Packets++
			e.Duration = max(e.Duration, dur)
			e.Ended = e.Ended || end
			return
		}
	}
	s.events = append(s.events, &Event{Digit: eventDigit(code), PT: p.PayloadType, Timestamp: p.Timestamp, SSRC: p.SSRC, Ended: end, Duration: dur, Packets: 1, At: now})
}

// Events returns the telephone-events received so far.
func (s *Session) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Event, len(s.events))
	for i, e := range s.events {
		out[i] = *e
	}
	return out
}

// Digits returns the received events' digits in order.
func (s *Session) Digits() string {
	var b []byte
	for _, e := range s.Events() {
		b = append(b, e.Digit)
	}
	return string(b)
}
