package media

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRTPConnWrites: the socket sends to IPv4 and IPv6 peers, and bound
// dual-stack to both; without allocating; and refuses once closed.
func TestRTPConnWrites(t *testing.T) {
	for _, tc := range []struct {
		network, bind string
		peers         []string
	}{
		{"udp4", "127.0.0.1", []string{"127.0.0.1"}},
		{"udp6", "::1", []string{"::1"}},
		{"udp", "::", []string{"::1", "127.0.0.1"}}, // dual-stack: IPv4 peers as IPv4-mapped
	} {
		c, err := net.ListenUDP(tc.network, &net.UDPAddr{IP: net.ParseIP(tc.bind)})
		if err != nil {
			t.Skipf("%s: %v", tc.network, err)
		}
		s, err := newRTPConn(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, ip := range tc.peers {
			peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
			if err != nil {
				t.Skipf("%s: %v", ip, err)
			}
			to := netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(peer.LocalAddr().(*net.UDPAddr).Port))
			if n, err := s.WriteToUDPAddrPort([]byte("hello"), to); err != nil || n != 5 {
				t.Fatalf("%s socket to %v: %d, %v", tc.network, to, n, err)
			}
			buf := make([]byte, 16)
			_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
			if n, _, err := peer.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "hello" {
				t.Fatalf("%s socket to %v: the peer read %q, %v", tc.network, to, buf[:n], err)
			}
			pkt := make([]byte, 172)
			if a := testing.AllocsPerRun(100, func() { _, _ = s.WriteToUDPAddrPort(pkt, to) }); a != 0 {
				t.Errorf("%s socket to %v: %.1f allocations a write, want 0", tc.network, to, a)
			}
			peer.Close()
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if _, err := s.WriteToUDPAddrPort([]byte("x"), netip.MustParseAddrPort("127.0.0.1:9")); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("write after Close: %v, want net.ErrClosed", err)
		}
	}
}

// TestRTPSocketsOnlyInTheCallsSet: while a call is up, each of its RTP
// sockets is watched by one epoll set, the call's, and not also by the Go
// runtime's poller (which would take every datagram a second time: the
// CPU the call reader would otherwise cost); the call's set is in the
// runtime's poller.
func TestRTPSocketsOnlyInTheCallsSet(t *testing.T) {
	t.Cleanup(func() { checkNoRelayGoroutines(t) })
	m := newTestManager(t, 2, time.Hour, time.Hour)
	peerA, peerB := newPeer(t), newPeer(t)
	br := plainCall(t, m, "sets", peerA, peerB)
	t.Cleanup(br.Close)
	br.Start(nil)
	if br.cr == nil {
		t.Fatal("the bridge started without a call reader")
	}
	watched := epollWatches(t) // epoll fd -> what it watches ("socket:[inode]" …)
	var setFD int
	_ = br.cr.raw.Control(func(fd uintptr) { setFD = int(fd) })
	set := fdTarget(setFD)
	for _, fd := range br.cr.fds {
		sock := fdTarget(int(fd))
		var by []int
		for ep, targets := range watched {
			for _, x := range targets {
				if x == sock {
					by = append(by, ep)
				}
			}
		}
		if len(by) != 1 || by[0] != setFD {
			t.Errorf("RTP socket %s is watched by epoll fds %v, want only the call's, %d", sock, by, setFD)
		}
	}
	inRuntime := false
	for ep, targets := range watched {
		for _, x := range targets {
			if x == set && ep != setFD {
				inRuntime = true
			}
		}
	}
	if !inRuntime {
		t.Errorf("the call's epoll set (fd %d) is not in the runtime's poller", setFD)
	}
}

// fdTarget is what descriptor fd of the process is ("socket:[1234]",
// "anon_inode:[eventpoll]"), "" if it is not open.
func fdTarget(fd int) string {
	s, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	return s
}

// epollWatches reads, for each open epoll descriptor of the process, what
// the descriptors it watches are (the "tfd:" lines of /proc/self/fdinfo,
// through fdTarget: the same socket under two descriptors is one).
func epollWatches(t *testing.T) map[int][]string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	out := map[int][]string{}
	for _, e := range ents {
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || !strings.Contains(link, "eventpoll") {
			continue
		}
		ep, _ := strconv.Atoi(e.Name())
		info, err := os.ReadFile("/proc/self/fdinfo/" + e.Name())
		if err != nil {
			continue
		}
		out[ep] = []string{}
		for _, line := range strings.Split(string(info), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == "tfd:" {
				if n, err := strconv.Atoi(f[1]); err == nil {
					out[ep] = append(out[ep], fdTarget(n))
				}
			}
		}
	}
	return out
}
