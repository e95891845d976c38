package media

import (
	"bytes"
	"testing"
	"time"

	"github.com/wagate/wagate/codec"
)

// TestWhatsAppSilenceDTX: with the default media.silence (dtx), a
// WhatsApp leg whose other side says nothing gets a first frame of
// silence at once and then one every 400 ms, each timestamped at its own
// time in one stream (sequence numbers without gaps, no marker). Audio
// from the PBX does not wait for the next silence frame; when it stops,
// ten frames of silence 20 ms apart follow before the gaps begin again.
func TestWhatsAppSilenceDTX(t *testing.T) {
	c := newWhatsAppCall(t, newTestManager(t, 2, 0, 0), pcmuAnswer)
	silence := c.b.m.opusSilence
	c.b.Start(nil)

	type got struct {
		h      hdr
		silent bool
		at     time.Time
	}
	next := func() got {
		t.Helper()
		pkt := c.meta.recvSRTP(t)
		if pkt == nil {
			t.Fatal("no packet toward Meta within 2 s")
		}
		return got{readHdr(pkt), bytes.Equal(pkt[12:], silence), time.Now()}
	}
	step := func(prev, cur got, ts uint32, what string) {
		t.Helper()
		if cur.h.seq != prev.h.seq+1 || cur.h.ssrc != prev.h.ssrc || cur.h.pt != 111 {
			t.Fatalf("%s: %+v after %+v: not the next packet of the stream", what, cur.h, prev.h)
		}
		// A DTX frame's time is rounded up to the pacer's 10 ms grid.
		if d := cur.h.ts - prev.h.ts; ts != 0 && (d < ts || ts == 400*48 && d > ts+10*48 || ts != 400*48 && d != ts) {
			t.Fatalf("%s: timestamp moved %d, want %d", what, d, ts)
		}
	}

	first := next()
	if !first.silent {
		t.Fatal("the first packet toward Meta is not silence")
	}
	prev := first
	for i := range 2 {
		p := next()
		if !p.silent || p.h.marker {
			t.Fatalf("DTX frame %d: silent %v, marker %v", i, p.silent, p.h.marker)
		}
		// Due 400 ms after the one before; the pacer never sends early
		// (the upper bound only catches a stall).
		if gap := p.at.Sub(prev.at); gap < 300*time.Millisecond {
			t.Fatalf("DTX frame %d came %v after the one before, want about 400 ms", i, gap)
		}
		step(prev, p, 400*48, "DTX frame")
		prev = p
	}

	// Three talk spurts from the PBX, each starting just after a DTX
	// frame: 350 ms before the next one would be due. A talk spurt that
	// waited for it would start 350 ms or more after its first packet; a
	// loaded machine may stall one spurt, not all three.
	var fastest time.Duration = time.Hour
	seq := uint16(100)
	pbxEpoch := time.Now()
	var spurtTS uint32
	for spurt := range 3 {
		time.Sleep(50 * time.Millisecond)
		sentAt := time.Now()
		for i := range 10 {
			// A PBX's own DTX: the timestamp follows its clock over the
			// pause, the first packet of a spurt has the marker.
			seq++
			if i == 0 {
				spurtTS = uint32(time.Since(pbxEpoch).Milliseconds() * 8)
			}
			ts := spurtTS + uint32(160*i)
			pkt := rtpPacket(t, 0, seq, ts, 0x9b, codec.EncodeG711("PCMU", tone(1000, 8000, 160, int(ts)), nil))
			if i == 0 {
				pkt[1] |= 0x80
			}
			c.pbx.send(c.toB, pkt)
			time.Sleep(20 * time.Millisecond)
			if i == 0 {
				p := next()
				if p.silent {
					t.Fatalf("spurt %d: silence before the audio: %+v after %+v, %v after the PBX sent", spurt, p.h, prev.h, p.at.Sub(sentAt))
				}
				if !p.h.marker || int32(p.h.ts-prev.h.ts) <= 960 {
					t.Fatalf("spurt %d: first audio %+v after %+v: want the marker and the timestamp moved on over the gap", spurt, p.h, prev.h)
				}
				step(prev, p, 0, "first audio")
				fastest = min(fastest, p.at.Sub(sentAt))
				prev = p
			}
		}
		// The rest of the spurt, then the hangover, then the gap.
		audio, hang := 1, 0
		for resumed := false; !resumed; {
			p := next()
			switch {
			case !p.silent && hang == 0:
				step(prev, p, 960, "audio")
				audio++
			case p.silent && hang < dtxHangover:
				step(prev, p, 960, "hangover silence")
				hang++
			case p.silent:
				step(prev, p, 400*48, "first DTX frame after the hangover")
				if gap := p.at.Sub(prev.at); gap < 300*time.Millisecond {
					t.Fatalf("spurt %d: DTX resumed %v after the hangover's last frame", spurt, gap)
				}
				resumed = true
			default:
				t.Fatalf("spurt %d: audio after %d frames of hangover", spurt, hang)
			}
			prev = p
		}
		if audio < 8 {
			t.Fatalf("spurt %d: %d of 10 audio frames reached Meta", spurt, audio)
		}
	}
	if fastest > 250*time.Millisecond {
		t.Fatalf("audio after a DTX frame reached Meta %v after the PBX sent it at best of three spurts: it waited for the next silence frame", fastest)
	}
	t.Logf("audio after a DTX frame reached Meta %v after the PBX sent it (best of three)", fastest.Round(time.Millisecond))
}
