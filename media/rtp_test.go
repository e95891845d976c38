package media

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/pion/rtp"
)

// rtpPacket builds a packet with pion/rtp, an implementation independent
// of ours.
func rtpPacket(t testing.TB, pt uint8, seq uint16, ts, ssrc uint32, payload []byte) []byte {
	t.Helper()
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: ts, SSRC: ssrc}, Payload: payload}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRTPHeaderLen(t *testing.T) {
	ext := rtp.Packet{Header: rtp.Header{Version: 2, CSRC: []uint32{1, 2}, Extension: true, ExtensionProfile: 0xBEDE}, Payload: []byte{1, 2, 3}}
	if err := ext.SetExtension(1, []byte{0xaa, 0xbb}); err != nil {
		t.Fatal(err)
	}
	extBytes, err := ext.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	padded := rtp.Packet{Header: rtp.Header{Version: 2, Padding: true}, Payload: []byte{1, 2, 3}, PaddingSize: 5}
	paddedBytes, err := padded.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		pkt  []byte
		n    int // 0: invalid
	}{
		{"plain", rtpPacket(t, 0, 1, 2, 3, make([]byte, 160)), 12},
		{"header only", rtpPacket(t, 0, 1, 2, 3, nil), 12},
		{"CSRCs and extension", extBytes, 12 + 8 + 4 + 4},
		{"padding", paddedBytes, 12},
		{"short", make([]byte, 11), 0},
		{"version 0", make([]byte, 20), 0},
		{"version 1", append([]byte{0x40}, make([]byte, 19)...), 0},
		{"STUN", []byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, 0},
		{"CSRC past end", append([]byte{0x8f}, make([]byte, 12+4*14)...), 0},
		{"extension header past end", append([]byte{0x90}, make([]byte, 13)...), 0},
		{"extension body past end", append([]byte{0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0, 2}, make([]byte, 7)...), 0},
		{"extension exactly fits", append([]byte{0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0, 2}, make([]byte, 8)...), 24},
		{"padding zero", append([]byte{0xa0}, make([]byte, 15)...), 0},
		{"padding past header", append(append([]byte{0xa0}, make([]byte, 14)...), 5), 0},
		{"padding is whole payload", append(append([]byte{0xa0}, make([]byte, 14)...), 4), 12},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n, ok := rtpHeaderLen(tt.pkt)
			if ok != (tt.n != 0) || n != tt.n {
				t.Fatalf("got %d, %v; want %d", n, ok, tt.n)
			}
		})
	}
}

func TestIsRTCP(t *testing.T) {
	for _, tt := range []struct {
		b1   byte
		rtcp bool
	}{{200, true}, {201, true}, {192, true}, {223, true}, {0, false}, {111, false}, {0x80 | 111, false}, {191, false}, {224, false}} {
		if got := isRTCP([]byte{0x80, tt.b1}); got != tt.rtcp {
			t.Errorf("second byte %d: %v, want %v", tt.b1, got, tt.rtcp)
		}
	}
}

type hdr struct {
	marker bool
	pt     uint8
	seq    uint16
	ts     uint32
	ssrc   uint32
}

func readHdr(p []byte) hdr {
	return hdr{p[1]&0x80 != 0, p[1] & 0x7f, binary.BigEndian.Uint16(p[2:]), binary.BigEndian.Uint32(p[4:]), binary.BigEndian.Uint32(p[8:])}
}

func TestReoriginator(t *testing.T) {
	r := newReoriginator()
	r.ssrc, r.seqBase, r.tsBase = 0xcafe, 65534, 0xffffff00 // wrap soon

	type in struct {
		seq  uint16
		ts   uint32
		ssrc uint32
	}
	for i, tt := range []struct {
		in   in
		want hdr
	}{
		{in{100, 1000, 1}, hdr{false, 8, 65534, 0xffffff00, 0xcafe}},
		{in{101, 1160, 1}, hdr{false, 8, 65535, 0xffffffa0, 0xcafe}},
		{in{103, 1480, 1}, hdr{false, 8, 1, 0xe0, 0xcafe}}, // loss passes through, seq and ts wrap
		{in{102, 1320, 1}, hdr{false, 8, 0, 0x40, 0xcafe}}, // late packet keeps its place
		// New SSRC with unrelated numbers: continue after the highest sent.
		{in{5000, 777, 2}, hdr{true, 8, 2, 0xe0 + 160, 0xcafe}},
		{in{5001, 937, 2}, hdr{false, 8, 3, 0xe0 + 320, 0xcafe}},
		// Back to the old stream (a stale packet): rebased again, never backwards.
		{in{104, 1640, 1}, hdr{true, 8, 4, 0xe0 + 480, 0xcafe}},
	} {
		pkt := rtpPacket(t, 0, tt.in.seq, tt.in.ts, tt.in.ssrc, []byte{byte(i), 2, 3})
		r.rewrite(pkt, 8, 160)
		if got := readHdr(pkt); got != tt.want {
			t.Fatalf("packet %d: got %+v, want %+v", i, got, tt.want)
		}
		if !bytes.Equal(pkt[12:], []byte{byte(i), 2, 3}) {
			t.Fatalf("packet %d: payload changed", i)
		}
	}
}

func TestRelayStage(t *testing.T) {
	rt := &route{pt: newPTMap(), frame: 960}
	rt.pt[111] = 107
	rt.pt[126] = 101
	s := &relayStage{ro: newReoriginator()}
	var out captureSender
	for _, tt := range []struct {
		pt   uint8
		sent bool
		out  uint8
	}{{111, true, 107}, {126, true, 101}, {0, false, 0}, {13, false, 0}} {
		out.pkts = nil
		pkt := rtpPacket(t, tt.pt, 1, 1, 1, []byte{1})
		if ok := s.push(pkt, rt, &out); ok != tt.sent || len(out.pkts) != map[bool]int{true: 1}[tt.sent] {
			t.Fatalf("PT %d: push %v, %d sent", tt.pt, ok, len(out.pkts))
		}
		if tt.sent && out.pkts[0][1]&0x7f != tt.out {
			t.Fatalf("PT %d sent as %d, want %d", tt.pt, out.pkts[0][1]&0x7f, tt.out)
		}
	}
}

type captureSender struct{ pkts [][]byte }

func (c *captureSender) send(p []byte) { c.pkts = append(c.pkts, bytes.Clone(p)) }

type nopSender struct{ n int }

func (s *nopSender) send([]byte) { s.n++ }

// BenchmarkRelayStage is the per-packet work of the relay between read and
// write: validation, payload-type mapping and header re-origination, in
// place. It must not allocate.
func BenchmarkRelayStage(b *testing.B) {
	rt := &route{pt: newPTMap(), frame: 160}
	rt.pt[0] = 0
	s := &relayStage{ro: newReoriginator()}
	pkt := rtpPacket(b, 0, 1, 160, 42, make([]byte, 160))
	var out nopSender
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for i := 0; b.Loop(); i++ {
		binary.BigEndian.PutUint16(pkt[2:], uint16(i))
		pkt[1] = 0
		binary.BigEndian.PutUint32(pkt[8:], 42)
		if _, ok := rtpHeaderLen(pkt); !ok || isRTCP(pkt) {
			b.Fatal("invalid")
		}
		if !s.push(pkt, rt, &out) {
			b.Fatal("dropped")
		}
	}
}
