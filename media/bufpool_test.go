package media

import (
	"bytes"
	"testing"
)

// TestPlayoutPayloadStorage checks that a held payload is kept in the
// smallest buffer that fits it, read back intact, and returned to the
// pool it came from when played; one too big for a copy keeps the
// reader's buffer, which goes back to the packet pool even when the
// payload's place in it happens to leave a small buffer's capacity.
func TestPlayoutPayloadStorage(t *testing.T) {
	cases := []struct {
		name     string
		n, off   int
		wantCopy int // capacity of the copy, 0: none (the reader's buffer)
	}{
		{"pcmu 20ms", 160, 12, tinyBufSize},
		{"opus", 61, 12, tinyBufSize},
		{"pcmu 30ms", 240, 12, smallBufSize},
		{"large", 400, 12, 0},
		{"large at the end", 300, len(packetBuf{}.b) - 300 - 10, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newPlayout(defaultJitterMin, defaultJitterMax, 8000, func([]byte) bool { return false })
			buf := getBuf()
			want := make([]byte, c.n)
			for i := range want {
				want[i] = byte(i*7 + c.n)
			}
			copy(buf.b[c.off:], want)
			res := p.push(1, 100, 0, 160, buf, c.off, c.n, 0)
			s := p.at(100)
			if s == nil {
				t.Fatal("packet not held")
			}
			if !bytes.Equal(s.payload(), want) {
				t.Fatal("held payload differs from the packet's")
			}
			switch {
			case c.wantCopy != 0 && (res != pushCopied || s.kind == memPacket || cap(s.payload()) != c.wantCopy):
				t.Fatalf("push = %v, copy capacity %d, reader's buffer kept %v; want a %d-byte copy", res, cap(s.payload()), s.kind == memPacket, c.wantCopy)
			case c.wantCopy == 0 && (res != pushHeld || s.kind != memPacket || (*packetBuf)(s.mem) != buf):
				t.Fatalf("push = %v; want the reader's buffer held", res)
			}
			if res == pushCopied {
				putBuf(buf)
			}
			tiny, small, pkts := len(tinyPool.free), len(smallPool.free), len(packetPool.free)
			p.release(s)
			dt, ds, dp := len(tinyPool.free)-tiny, len(smallPool.free)-small, len(packetPool.free)-pkts
			want3 := [3]int{}
			switch c.wantCopy {
			case tinyBufSize:
				want3[0] = 1
			case smallBufSize:
				want3[1] = 1
			default:
				want3[2] = 1
			}
			if got := [3]int{dt, ds, dp}; got != want3 {
				t.Fatalf("released into pools (tiny, small, packet) %v, want %v", got, want3)
			}
		})
	}
}
