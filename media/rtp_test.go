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

func TestOutStreamRelay(t *testing.T) {
	s := newOutStream(0xcafe)
	s.seq, s.ts = 65533, 0xffffff00 // first packet gets 65534: wraps soon

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
		s.relay(pkt, 8, 160)
		if got := readHdr(pkt); got != tt.want {
			t.Fatalf("packet %d: got %+v, want %+v", i, got, tt.want)
		}
		if !bytes.Equal(pkt[12:], []byte{byte(i), 2, 3}) {
			t.Fatalf("packet %d: payload changed", i)
		}
	}
}

// TestOutStreamMixed: packets of our own (silence, transcoded audio) and
// injected or skipped ones keep one gapless, monotonic stream.
func TestOutStreamMixed(t *testing.T) {
	s := newOutStream(7)
	s.seq, s.ts = 999, 100000
	own := func(samples uint32) hdr {
		b := make([]byte, 12)
		s.own(b, 111, s.ts, false, true)
		s.ts += samples
		return readHdr(b)
	}
	relay := func(seq uint16, ts uint32) hdr {
		pkt := rtpPacket(t, 111, seq, ts, 5, nil)
		s.relay(pkt, 111, 960)
		return readHdr(pkt)
	}
	for i, tt := range []struct {
		got, want hdr
	}{
		{own(960), hdr{false, 111, 1000, 100000, 7}},              // silence first
		{own(960), hdr{false, 111, 1001, 100960, 7}},              // more silence
		{relay(50, 3000), hdr{true, 111, 1002, 101920, 7}},        // real audio: rebased, marked
		{relay(51, 3960), hdr{false, 111, 1003, 102880, 7}},       // follows the input
		{own(960), hdr{false, 111, 1004, 103840, 7}},              // the input paused: silence
		{relay(52, 3960+960*10), hdr{true, 111, 1005, 112480, 7}}, // input ahead of us: its timing kept
	} {
		if tt.got != tt.want {
			t.Fatalf("step %d: got %+v, want %+v", i, tt.got, tt.want)
		}
	}
	// A repeated DTMF end is injected; a duplicate from the sender skipped.
	pkt := rtpPacket(t, 101, 53, 20000, 5, nil)
	s.relay(pkt, 101, 0)
	s.inject(pkt)
	if h := readHdr(pkt); h.seq != 1007 {
		t.Fatalf("injected seq %d, want 1007", h.seq)
	}
	s.skip(54) // would have been 1008
	if h := relay(55, 3960+960*12); h.seq != 1008 {
		t.Fatalf("after inject and skip: seq %d, want 1008", h.seq)
	}
}
