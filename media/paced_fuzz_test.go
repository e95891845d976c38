package media

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
)

// FuzzPacedStream: a PBX's packet stream toward WhatsApp, paced from the
// playout buffer, with whatever numbering, timestamps, SSRCs, arrival
// times and payload sizes the fuzz bytes give (six bytes a packet:
// sequence step, timestamp step, arrival gap, payload size, SSRC and
// padding flags), relayed (PCMU both legs) or transcoded to Opus. The
// play job runs as the pacer runs it, on a simulated clock. Nothing
// panics, the job never goes idle toward WhatsApp (which needs media
// all along), and every packet it sends carries a payload under our own
// SSRC. Run: go test -run '^$' -fuzz FuzzPacedStream -parallel 1 ./media/
func FuzzPacedStream(f *testing.F) {
	steady := func(n int, size byte) []byte {
		var b []byte
		for range n {
			b = append(b, 1, 0, 160, 40, size, 0)
		}
		return b
	}
	f.Add(steady(30, 160), false)
	f.Add(steady(30, 160), true)
	f.Add(append(steady(10, 160), append(steady(10, 0), steady(10, 160)...)...), false)
	f.Add([]byte{1, 0, 160, 40, 1, 0, 0xff, 0xff, 0x60, 40, 160, 1, 1, 0x7f, 0xff, 0, 80, 2, 0x80, 0, 0, 255, 255, 4}, false)
	f.Add([]byte{1, 0, 160, 40, 160, 0, 0, 0, 0, 0, 160, 0, 1, 0x80, 0, 1, 200, 0}, true)
	from := netip.MustParseAddrPort("127.0.0.1:6000")
	f.Fuzz(func(t *testing.T, data []byte, transcode bool) {
		if len(data) > 6*200 {
			return
		}
		var br *Bridge
		if transcode {
			br = socketlessBridge(LegConfig{WhatsApp: true, Codecs: []string{"opus"}}, LegConfig{Codecs: []string{"PCMU"}})
			if _, err := br.Offer([]byte(metaPlainOffer)); err != nil {
				t.Fatal(err)
			}
		} else {
			br = socketlessBridge(LegConfig{WhatsApp: true, Codecs: []string{"PCMU"}}, LegConfig{Codecs: []string{"PCMU"}})
			if _, err := br.Offer(sdpOffer(5000, "RTP/AVP", "0", "rtpmap:0 PCMU/8000")); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := br.AnswerB(pcmuAnswer(6000)); err != nil {
			t.Fatal(err)
		}
		d := newTestDirection(br, SideB)
		defer d.closeStages()
		d.silenceFrom, d.playAt = 0, 20*time.Millisecond
		var arr []arrival
		seq, ts, ssrc, at := uint16(0), uint32(0), uint32(0x77), 100*time.Millisecond
		for ; len(data) >= 6; data = data[6:] {
			seq += uint16(int8(data[0]))
			ts += uint32(int32(int16(binary.BigEndian.Uint16(data[1:3]))))
			at += time.Duration(data[3]) * time.Millisecond / 2
			if data[5]&1 != 0 {
				ssrc++
			}
			pkt := rtpPacket(t, 0, seq, ts, ssrc, bytes.Repeat([]byte{0x10}, int(data[4])))
			if data[5]&2 != 0 && len(pkt) > rtpHeaderMin {
				pkt[0] |= 0x20 // the payload's last byte is the padding's count
				pkt[len(pkt)-1] = byte(min(int(data[5]>>2), len(pkt)-rtpHeaderMin))
			}
			arr = append(arr, arrival{at: at, pkt: pkt})
		}
		until := at + time.Second
		next, i := 20*time.Millisecond, 0
		for next < until {
			if i < len(arr) && arr[i].at <= next {
				feedAt(d.direction, arr[i].pkt, from, arr[i].at)
				i++
				continue
			}
			n := tickAt(d.direction, next)
			if n == 0 {
				t.Fatalf("the play job toward WhatsApp went idle at %v", next)
			}
			next = max(n, next+time.Millisecond)
		}
		ours := br.legs[SideA].ssrc
		for k, p := range d.dst.pkts {
			if len(p) <= rtpHeaderMin || readHdr(p).ssrc != ours {
				t.Fatalf("packet %d toward WhatsApp: %x", k, p)
			}
		}
	})
}
