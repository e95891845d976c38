package media

import (
	"math"
	"testing"
	"time"

	"github.com/wagate/wagate/codec"
	"gopkg.in/hraban/opus.v2"
)

// TestTranscodeLongOpusPackets: WhatsApp sends a 1 kHz tone in 60 ms Opus
// packets (then 20 ms, then 60 ms again), on time; the PBX gets it as
// 20 ms PCMU, every frame of it. Before, each 60 ms packet was judged
// against 20 ms ticks: the one after a played packet was 'late' by up to
// 40 ms and dropped, then concealed, in turn, and the agent heard almost
// nothing for as long as the packets were 60 ms.
func TestTranscodeLongOpusPackets(t *testing.T) {
	c := newPacedCallFromWhatsApp(t)
	d := c.d
	enc, err := opus.NewEncoder(48000, 1, opus.AppVoIP)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	var arr []arrival
	ts, at := 0, time.Duration(0)
	for i := range 50 {
		ms := 60
		if i >= 20 && i < 30 {
			ms = 20
		}
		n, err := enc.Encode(tone(1000, 48000, 48*ms, ts), buf)
		if err != nil {
			t.Fatal(err)
		}
		arr = append(arr, arrival{at: at, pkt: rtpPacket(t, 111, uint16(i), uint32(ts), 0x3e7a, buf[:n])})
		ts += 48 * ms
		at += time.Duration(ms) * time.Millisecond
	}
	c.run(arr, at+300*time.Millisecond)
	sent := ts / 960 // 20 ms frames of tone sent
	tone := 0
	for _, pkt := range d.dst.pkts {
		pcm := codec.DecodeG711("PCMU", pkt[12:], nil)
		if rms(pcm) > 3000 && math.Abs(zeroCrossFreq(pcm, 8000)-1000) < 30 {
			tone++
		}
	}
	p := d.pl
	if tone < sent-3 {
		t.Errorf("the PBX got %d frames of the tone of %d sent (%d late, %d concealed, %d expanded, %d compressed)",
			tone, sent, p.late, p.concealed, p.expanded, p.compressed)
	}
}
