//go:build unix

package media

import (
	"net"
	"net/netip"
	"testing"
)

// TestRTCPDrain: a drain hands over every waiting packet with its
// sender, at most maxRTCPDrain, never waits on an empty socket, and
// allocates nothing (it runs per call leg at every reporting interval).
func TestRTCPDrain(t *testing.T) {
	c, peer := newPeer(t).conn, newPeer(t).conn
	s := newRTCPSocket(c)
	to := c.LocalAddr().(*net.UDPAddr)
	var got []string
	var from netip.AddrPort
	fn := func(pkt []byte, f netip.AddrPort) { got, from = append(got, string(pkt)), f }
	buf := make([]byte, packetBufSize)

	for _, m := range []string{"one", "two"} {
		if _, err := peer.WriteToUDP([]byte(m), to); err != nil {
			t.Fatal(err)
		}
	}
	s.drain(buf, fn)
	if len(got) != 2 || got[0] != "one" || got[1] != "two" || from != peer.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Fatalf("drained %q from %v, want one and two from %v", got, from, peer.LocalAddr())
	}

	for range maxRTCPDrain + 3 {
		if _, err := peer.WriteToUDP([]byte("x"), to); err != nil {
			t.Fatal(err)
		}
	}
	got = got[:0]
	s.drain(buf, fn)
	if len(got) != maxRTCPDrain {
		t.Fatalf("a flood drained %d packets at once, want at most %d", len(got), maxRTCPDrain)
	}
	s.drain(buf, fn) // the rest

	n := 0
	count := func([]byte, netip.AddrPort) { n++ }
	if allocs := testing.AllocsPerRun(100, func() {
		if _, err := peer.WriteToUDP([]byte("x"), to); err != nil {
			t.Fatal(err)
		}
		s.drain(buf, count)
	}); allocs != 0 {
		t.Errorf("a drain allocates %.1f times", allocs)
	}
	if n != 101 {
		t.Errorf("drained %d of 101 packets", n)
	}
}
