package media

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCallReaderBurstPastBatch: both sides' sockets hold a burst several
// times readBatch long when the call reader starts, and nothing more
// comes. Every packet comes out on the other side: the call reader's set
// is edge-triggered, so datagrams a wake-up left on a socket must be read
// without waiting for another to arrive, and neither side's burst may
// hold up the other's.
func TestCallReaderBurstPastBatch(t *testing.T) {
	const burst = 3*readBatch + 5
	t.Cleanup(func() { checkNoRelayGoroutines(t) })
	m := newTestManager(t, 2, time.Hour, time.Hour)
	aConn, bConn := listenBig(t), listenBig(t)
	aPort := aConn.LocalAddr().(*net.UDPAddr).Port
	bPort := bConn.LocalAddr().(*net.UDPAddr).Port
	// Neither leg is WhatsApp's: both directions relay as packets arrive.
	br, err := m.NewCallBridge("burst", nil, LegConfig{Codecs: []string{"PCMU"}}, LegConfig{Codecs: []string{"PCMU"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(br.Close)
	offerB, err := br.Offer(sdpOffer(aPort, "RTP/AVP", "0", "rtpmap:0 PCMU/8000", "ptime:20"))
	if err != nil {
		t.Fatal(err)
	}
	answerA, err := br.AnswerB(sdpOffer(bPort, "RTP/AVP", "0", "rtpmap:0 PCMU/8000", "ptime:20"))
	if err != nil {
		t.Fatal(err)
	}
	toB, toA := mustAddr(t, offerB), mustAddr(t, answerA)

	// Each side counts what reaches it, by the sequence number it was
	// sent with, until it has the whole burst or the wait ends.
	count := func(c *net.UDPConn, got chan<- int) {
		seen := map[uint16]bool{}
		buf := make([]byte, 2048)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for len(seen) < burst {
			n, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			if n >= 12 {
				seen[binary.BigEndian.Uint16(buf[2:])] = true
			}
		}
		got <- len(seen)
	}
	gotA, gotB := make(chan int, 1), make(chan int, 1)
	go count(aConn, gotA)
	go count(bConn, gotB)
	payload := make([]byte, 160)
	for k := range burst {
		seq, ts := uint16(k+1), uint32(160*(k+1))
		if _, err := aConn.WriteToUDPAddrPort(rtpPacket(t, 0, seq, ts, 0xa, payload), toA); err != nil {
			t.Fatal(err)
		}
		if _, err := bConn.WriteToUDPAddrPort(rtpPacket(t, 0, seq, ts, 0xb, payload), toB); err != nil {
			t.Fatal(err)
		}
	}
	// Queued before the reader starts: its first wake-up finds the
	// whole burst on both sockets.
	time.Sleep(20 * time.Millisecond)
	br.Start(nil)
	if br.cr == nil {
		t.Fatal("the bridge started without a call reader")
	}
	if n := <-gotB; n != burst {
		t.Errorf("B received %d of A's %d packets", n, burst)
	}
	if n := <-gotA; n != burst {
		t.Errorf("A received %d of B's %d packets", n, burst)
	}
}

// TestCallReaderReleasesItsDescriptor: a call holds one descriptor
// beside its sockets, its epoll set, and gives it back on Close, answered
// or not; many calls leave none behind.
func TestCallReaderReleasesItsDescriptor(t *testing.T) {
	t.Cleanup(func() { checkNoRelayGoroutines(t) })
	m := newTestManager(t, 2, time.Hour, time.Hour)
	peerA, peerB := newPeer(t), newPeer(t)
	start := func() *Bridge {
		br := plainCall(t, m, "fd", peerA, peerB)
		br.Start(nil)
		return br
	}
	// An earlier test's call may still be closing its set: count from
	// when the number stands still.
	before := len(epollWatches(t))
	for range 50 {
		time.Sleep(20 * time.Millisecond)
		n := len(epollWatches(t))
		if n == before {
			break
		}
		before = n
	}
	br := start()
	if n := len(epollWatches(t)); n != before+1 {
		t.Fatalf("%d epoll descriptors with a call up, %d before; want one more", n, before)
	}
	br.Close()
	for i := range 50 {
		if i%2 == 0 {
			start().Close()
		} else {
			plainCall(t, m, "fd", peerA, peerB).Close() // never answered
		}
	}
	// Fewer than before is not a leak (another test's set went away).
	if n := len(epollWatches(t)); n > before {
		t.Fatalf("%d epoll descriptors after the calls closed, %d before", n, before)
	}
}

// TestCallReaderNoDescriptor: with no descriptor left for a call's epoll
// set, the call is refused when its bridge is allocated (ErrNoPorts, the
// SIP layer's 503, saying why), before anyone answers it, and its port
// pairs go back; once descriptors are free again calls go through.
func TestCallReaderNoDescriptor(t *testing.T) {
	t.Cleanup(func() { checkNoRelayGoroutines(t) })
	m := newTestManager(t, 2, time.Hour, time.Hour)
	peerA, peerB := newPeer(t), newPeer(t)
	// Both pairs bound and kept, so that only the set needs a descriptor.
	plainCall(t, m, "warm", peerA, peerB).Close()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skip(err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip(err)
	}
	highest := 0
	for _, fd := range fds {
		if n, err := strconv.Atoi(fd.Name()); err == nil && n > highest {
			highest = n
		}
	}
	tight := lim
	tight.Cur = uint64(highest) // the lowest free number may still be below it
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &tight); err != nil {
		t.Skip(err)
	}
	// Fill every free number below the limit, so that none is left.
	var fill []int
	for {
		fd, err := syscall.Dup(0)
		if err != nil {
			break
		}
		fill = append(fill, fd)
	}
	br, err := m.NewCallBridge("nofd", nil, LegConfig{Codecs: []string{"PCMU"}}, LegConfig{Codecs: []string{"PCMU"}})
	for _, fd := range fill {
		syscall.Close(fd)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if err == nil {
		br.Close()
		t.Fatal("a bridge was allocated with no descriptor left for its reader's epoll set")
	}
	if !errors.Is(err, ErrNoPorts) || !errors.Is(err, syscall.EMFILE) || !strings.Contains(err.Error(), "epoll_create1") {
		t.Fatalf("NewCallBridge: %v, want ErrNoPorts naming the epoll set's EMFILE", err)
	}
	if s := m.Stats(); s.PortsInUse != 0 || s.Bridges != 0 {
		t.Fatalf("manager stats %+v after the refusal: the pairs were not given back", s)
	}
	br = plainCall(t, m, "after", peerA, peerB)
	br.Start(nil)
	br.Close()
}

// plainCall is a bridge between two plain PCMU legs, a and b, offered and
// answered but not started.
func plainCall(t *testing.T, m *Manager, id string, a, b *peer) *Bridge {
	t.Helper()
	br, err := m.NewCallBridge(id, nil, LegConfig{Codecs: []string{"PCMU"}}, LegConfig{Codecs: []string{"PCMU"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := br.Offer(sdpOffer(a.port(), "RTP/AVP", "0", "rtpmap:0 PCMU/8000")); err != nil {
		t.Fatal(err)
	}
	if _, err := br.AnswerB(sdpOffer(b.port(), "RTP/AVP", "0", "rtpmap:0 PCMU/8000")); err != nil {
		t.Fatal(err)
	}
	return br
}
