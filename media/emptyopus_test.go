package media

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"gopkg.in/hraban/opus.v2"
)

// TestPacedEmptyOpusPayloads: an Opus stream that talks, keeps itself
// alive through a 400 ms pause with RTP packets that carry no payload
// (header only; one with padding only), and talks again, is played out
// as the same stream with a plain pause: the same packets at the same
// times, numbered the same, none of them empty. Before, an empty Opus
// payload was held as a 20 ms frame (its length was taken from ptime,
// as for an Opus packet whose duration cannot be read): relayed toward
// WhatsApp it went out as an empty packet where silence belonged, and
// transcoded it was decoded as a lost packet, 400 ms of concealment sent
// to the PBX where the pause sends nothing.
func TestPacedEmptyOpusPayloads(t *testing.T) {
	for _, tc := range []struct {
		name string
		side Side // the direction's source
		pbx  []byte
		b    string
	}{
		{"PBX Opus relayed toward WhatsApp", SideB,
			sdpOffer(6000, "RTP/AVP", "111 101", "rtpmap:111 opus/48000/2", "rtpmap:101 telephone-event/8000", "ptime:20"), "opus"},
		{"WhatsApp Opus transcoded toward a PCMU PBX", SideA, pcmuAnswer(6000), "PCMU"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			quiet := opusWithPause(t, tc.side, tc.pbx, tc.b, false)
			empty := opusWithPause(t, tc.side, tc.pbx, tc.b, true)
			if len(quiet) < 20 {
				t.Fatalf("%d packets out in 1.5 s without the empty ones, want the 20 of audio at least", len(quiet))
			}
			if got, want := fmt.Sprint(empty), fmt.Sprint(quiet); got != want {
				t.Errorf("out (sent at: seq step, payload bytes):\nwith empty packets %s\nwithout them       %s", got, want)
			}
			for _, p := range empty {
				if p.payload == 0 {
					t.Errorf("a packet out has no payload: %+v", p)
				}
			}
		})
	}
}

// opusOut is one packet out: when the play job sent it (ms), its sequence
// step from the previous one, and its payload's size.
type opusOut struct {
	ms      int64
	step    uint16
	payload int
}

// opusWithPause runs the direction from side for 1.5 s, the source
// sending Opus (PT 111, 20 ms frames of a 440 Hz tone): 10 packets, a
// 400 ms pause, 10 more; withEmpty sends, through the pause, packets with
// no payload. The play job runs as the pacer runs it.
func opusWithPause(t *testing.T, side Side, pbxAnswer []byte, codecB string, withEmpty bool) []opusOut {
	br, d := pacedDirection(t, side, pbxAnswer, codecB)
	from := netip.MustParseAddrPort("127.0.0.1:6000")
	if side == SideA {
		from = br.routeAB.Load().from.rtp
	} else {
		d.silenceFrom, d.playAt = 0, 20*time.Millisecond
	}
	enc, err := opus.NewEncoder(48000, 1, opus.AppVoIP)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	var arr []arrival
	for i := range 40 {
		n, err := enc.Encode(tone(440, 48000, 960, 960*i), buf)
		if err != nil {
			t.Fatal(err)
		}
		pkt := rtpPacket(t, 111, uint16(i), uint32(960*i), 0x77, buf[:n])
		if i >= 10 && i < 30 {
			if !withEmpty {
				continue
			}
			pkt = rtpPacket(t, 111, uint16(i), uint32(960*i), 0x77, nil)
			if i == 20 {
				pkt[0] |= 0x20 // padding only: four bytes, the last saying so
				pkt = append(pkt, 0, 0, 0, 4)
			}
		}
		arr = append(arr, arrival{at: 200*time.Millisecond + time.Duration(i)*20*time.Millisecond, pkt: pkt})
	}
	const until = 1500 * time.Millisecond
	var out []opusOut
	next, i, ticks := time.Duration(0), 0, 0
	if side == SideB {
		next = 20 * time.Millisecond
	}
	for ticks < 10000 {
		if i < len(arr) && (next == 0 || arr[i].at <= next) {
			feedAt(d.direction, arr[i].pkt, from, arr[i].at)
			if next == 0 {
				d.mu.Lock()
				next = d.playAt // woken
				d.mu.Unlock()
				if next == 0 {
					next = arr[i].at
				}
			}
			i++
			continue
		}
		if next == 0 || next >= until {
			break
		}
		ticks++
		sent := len(d.dst.pkts)
		n := tickAt(d.direction, next)
		for _, p := range d.dst.pkts[sent:] {
			o := opusOut{ms: next.Milliseconds(), payload: len(p) - rtpHeaderMin}
			if sent > 0 {
				o.step = readHdr(p).seq - readHdr(d.dst.pkts[sent-1]).seq
			}
			out = append(out, o)
			sent++
		}
		if n == 0 {
			next = 0 // idle until the next packet wakes it
			continue
		}
		next = max(n, next+time.Millisecond)
	}
	return out
}
