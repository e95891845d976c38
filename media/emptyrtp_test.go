package media

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// TestPacedEmptyPayloads: a PBX relayed toward WhatsApp (PCMU on both
// legs) talks, then keeps its stream alive through a pause with RTP
// packets that carry no payload (header only; one with padding only),
// then talks again. Toward WhatsApp that is the same as a pause with no
// packets at all: the same packets on the same 20 ms clock, numbered the
// same, both talk spurts relayed whole, and none goes out empty. Before,
// each empty packet was held as a frame of no length: the play job ran
// every millisecond instead of every 20, sent empty packets and skipped
// a hundred numbers of our stream at a time (loss to WhatsApp's
// receiver).
func TestPacedEmptyPayloads(t *testing.T) {
	quiet := pacedWithPause(t, false)
	empty := pacedWithPause(t, true)
	if len(quiet) < 60 {
		t.Fatalf("%d packets toward WhatsApp in 1.5 s without the empty ones, want one every 20 ms", len(quiet))
	}
	if got, want := fmt.Sprint(empty), fmt.Sprint(quiet); got != want {
		t.Errorf("toward WhatsApp (tick: seq step, payload bytes):\n with empty packets %s\nwithout them        %s", got, want)
	}
	audio := 0
	for _, p := range empty {
		if p.payload == 0 {
			t.Errorf("a packet toward WhatsApp has no payload: %+v", p)
		}
		if p.audio {
			audio++
		}
	}
	if audio != 20 {
		t.Errorf("%d audio packets relayed toward WhatsApp, want the 20 the PBX sent", audio)
	}
}

// pacedOut is one packet of the paced stream toward WhatsApp: the play
// tick that sent it, its sequence step from the previous one, its
// payload's size, and whether it is the PBX's audio.
type pacedOut struct {
	tick    int
	step    uint16
	payload int
	audio   bool
}

// pacedWithPause runs the PBX→WhatsApp direction for 1.5 s: 10 packets
// of audio, a 400 ms pause, 10 more; withEmpty sends, through the pause,
// the packets with no payload. The play job runs as the pacer runs it:
// at the time it asks for, and never twice in one millisecond.
func pacedWithPause(t *testing.T, withEmpty bool) []pacedOut {
	br := socketlessBridge(LegConfig{WhatsApp: true, Codecs: []string{"PCMU"}}, LegConfig{Codecs: []string{"PCMU"}})
	if _, err := br.Offer(sdpOffer(5000, "RTP/AVP", "0", "rtpmap:0 PCMU/8000")); err != nil {
		t.Fatal(err)
	}
	if _, err := br.AnswerB(pcmuAnswer(6000)); err != nil {
		t.Fatal(err)
	}
	d := newTestDirection(br, SideB)
	t.Cleanup(d.closeStages)
	d.silenceFrom, d.playAt = 0, 20*time.Millisecond
	from := netip.MustParseAddrPort("127.0.0.1:6000")
	var arr []arrival
	for i := range 40 {
		pkt := rtpPacket(t, 0, uint16(i), uint32(160*i), 0x77, bytes.Repeat([]byte{0x10}, 160))
		if i >= 10 && i < 30 {
			if !withEmpty {
				continue
			}
			pkt = rtpPacket(t, 0, uint16(i), uint32(160*i), 0x77, nil)
			if i == 20 {
				pkt[0] |= 0x20 // padding only: four bytes, the last saying so
				pkt = append(pkt, 0, 0, 0, 4)
			}
		}
		arr = append(arr, arrival{at: 200*time.Millisecond + time.Duration(i)*20*time.Millisecond, pkt: pkt})
	}
	const until = 1500 * time.Millisecond
	var out []pacedOut
	next, i, ticks := 20*time.Millisecond, 0, 0
	for next < until && ticks < 10000 {
		if i < len(arr) && arr[i].at <= next {
			feedAt(d.direction, arr[i].pkt, from, arr[i].at)
			i++
			continue
		}
		ticks++
		sent := len(d.dst.pkts)
		n := tickAt(d.direction, next)
		for _, p := range d.dst.pkts[sent:] {
			o := pacedOut{tick: ticks, payload: len(p) - rtpHeaderMin}
			o.audio = o.payload > 0 && p[rtpHeaderMin] == 0x10
			if k := len(out); k > 0 {
				o.step = readHdr(p).seq - readHdr(d.dst.pkts[sent-1]).seq
			}
			out = append(out, o)
			sent++
		}
		if n == 0 {
			t.Fatalf("the play job toward WhatsApp went idle at %v", next)
		}
		next = max(n, next+time.Millisecond)
	}
	return out
}
