package media

import (
	"bytes"
	"math"
	"testing"
	"time"

	"github.com/wagate/wagate/codec"
	"gopkg.in/hraban/opus.v2"
)

// TestPlaybackGivesWay: music on hold (1 kHz) plays toward WhatsApp
// under a PBX that holds: when the PBX sends its own audio (440 Hz, from
// 1 s to 2 s) the user hears that, and the music fills the time before
// and after, in one stream without gaps; the PBX's silence (0.4 s to
// 0.9 s) does not replace the music.
func TestPlaybackGivesWay(t *testing.T) {
	c := newPacedCall(t, pcmuAnswer(6000), "PCMU")
	c.br.dirs[SideB] = c.d.direction
	if _, err := c.br.Play(SideA, GiveWay(&toneSource{freq: 1000, frames: 1 << 20}), time.Time{}); err != nil {
		t.Fatal(err)
	}
	var arr []arrival
	// Before its music the PBX streams silence, as some do on hold: that
	// is no reason to stop ours.
	for i := range 25 {
		arr = append(arr, arrival{at: 400*time.Millisecond + time.Duration(i)*20*time.Millisecond,
			pkt: rtpPacket(t, 0, uint16(3000-25+i), uint32(160*(i-25)), 0x9b, bytes.Repeat([]byte{0xff}, 160))})
	}
	for i := range 50 {
		arr = append(arr, arrival{at: time.Second + time.Duration(i)*20*time.Millisecond,
			pkt: rtpPacket(t, 0, uint16(3000+i), uint32(160*i), 0x9b, codec.EncodeG711("PCMU", tone(440, 8000, 160, 160*i), nil))})
	}
	c.run(arr, 3*time.Second)
	dec, err := opus.NewDecoder(48000, 1)
	if err != nil {
		t.Fatal(err)
	}
	pcm := make([]int16, 5760)
	hz := func(from, to time.Duration) (moh, pbx, other int) {
		for i, pkt := range c.d.dst.pkts {
			n, err := dec.Decode(pkt[12:], pcm)
			if err != nil {
				t.Fatal(err)
			}
			at := time.Duration(i) * 20 * time.Millisecond
			if at < from || at >= to {
				continue
			}
			switch f := zeroCrossFreq(pcm[:n], 48000); {
			case math.Abs(f-1000) < 60:
				moh++
			case math.Abs(f-440) < 60:
				pbx++
			default:
				other++
			}
		}
		return
	}
	if n := len(c.d.dst.pkts); n < 145 {
		t.Fatalf("%d packets toward WhatsApp in 3 s, want 150", n)
	}
	for i := 1; i < len(c.d.dst.pkts); i++ {
		if h, p := readHdr(c.d.dst.pkts[i]), readHdr(c.d.dst.pkts[i-1]); h.seq != p.seq+1 {
			t.Fatalf("packet %d: sequence %d after %d", i, h.seq, p.seq)
		}
	}
	for _, w := range []struct {
		what     string
		from, to time.Duration
		wantPBX  bool
	}{
		{"before the PBX sends", 200 * time.Millisecond, 900 * time.Millisecond, false},
		{"while the PBX sends", 1200 * time.Millisecond, 1900 * time.Millisecond, true},
		{"after the PBX stopped", 2300 * time.Millisecond, 2900 * time.Millisecond, false},
	} {
		moh, pbx, other := hz(w.from, w.to)
		t.Logf("%s: %d frames of music, %d of the PBX, %d other", w.what, moh, pbx, other)
		got, miss := moh, pbx
		if w.wantPBX {
			got, miss = pbx, moh
		}
		if got < 30 || miss > 0 {
			t.Errorf("%s: %d frames of music on hold, %d of the PBX's audio", w.what, moh, pbx)
		}
	}
}
