package media

import (
	"testing"
	"time"
)

// TestHoldKeepsReceptionStats: the PBX (B) holds for a second while
// WhatsApp (A) goes on sending, then resumes. wagate's reception report
// to Meta counts A's packets of the hold as received, not lost: before,
// the relay stopped looking at A's packets while B held, and the next
// report told Meta half of its stream was lost (a sender adapting to it
// lowers its bitrate after every hold), and the Opus encoder toward
// WhatsApp, sized by that loss when Meta sends no RTCP, filled its
// packets with FEC.
func TestHoldKeepsReceptionStats(t *testing.T) {
	c := newPacedCallFromWhatsApp(t)
	br, d, from := c.br, c.d, c.from
	send := func(from0, to int) {
		for i := from0; i < to; i++ {
			feedAt(d.direction, rtpPacket(t, 111, uint16(1000+i), uint32(960*i), 0x3e7a, testOpusSilence), from, time.Duration(i)*20*time.Millisecond)
		}
	}
	send(0, 10)
	if _, _, err := br.AcceptOffer(SideB, sdpOffer(6000, "RTP/AVP", "0", "rtpmap:0 PCMU/8000", "sendonly")); err != nil {
		t.Fatal(err)
	}
	send(10, 60)
	if _, _, err := br.AcceptOffer(SideB, sdpOffer(6000, "RTP/AVP", "0", "rtpmap:0 PCMU/8000", "sendrecv")); err != nil {
		t.Fatal(err)
	}
	send(60, 100)
	d.mu.Lock()
	r := d.rx.report(time.Now())
	d.mu.Unlock()
	if r.TotalLost != 0 || r.FractionLost != 0 || r.LastSequenceNumber != 1099 {
		t.Errorf("report on A's stream: %d lost (fraction %d/256), highest sequence %d; want none lost of 1000..1099",
			r.TotalLost, r.FractionLost, r.LastSequenceNumber)
	}
}
