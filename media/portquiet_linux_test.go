package media

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestFreePairQueuesNothing: while a pair is free its sockets hold
// nothing in the kernel, however much is sent to them (the filter drops
// nothing is delivered to them), so a peer that keeps sending to a port
// of a finished call costs no memory; in use again, they receive.
func TestFreePairQueuesNothing(t *testing.T) {
	a, _ := newTestAllocator(t, 1, 0, nil)
	t.Cleanup(a.close)
	p, err := a.get()
	if err != nil {
		t.Fatal(err)
	}
	a.release(p)
	sender, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	for range 200 {
		for _, port := range []int{p.port, p.port + 1} {
			if _, err := sender.WriteToUDP(make([]byte, 172), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, port := range []int{p.port, p.port + 1} {
		if q, _ := udpQueue(t, port); q != 0 {
			t.Errorf("free port %d: %d bytes queued, want none", port, q)
		}
	}
	q, err := a.get()
	if err != nil {
		t.Fatal(err)
	}
	defer a.release(q)
	if _, err := sender.WriteToUDP([]byte("hello"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: q.port}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if n, err := readSocket(q.rtp, buf, 2*time.Second); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("in use again: read %q, %v", buf[:n], err)
	}
}

// udpQueue reads a 127.0.0.1 UDP socket's receive queue (bytes) and drop
// count from /proc/net/udp.
func udpQueue(t *testing.T, port int) (queued, drops int) {
	t.Helper()
	f, err := os.Open("/proc/net/udp")
	if err != nil {
		t.Skip("no /proc/net/udp")
	}
	defer f.Close()
	want := fmt.Sprintf("0100007F:%04X", port)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 13 || fs[1] != want {
			continue
		}
		_, rx, _ := strings.Cut(fs[4], ":")
		q, _ := strconv.ParseInt(rx, 16, 64)
		d, _ := strconv.Atoi(fs[12])
		return int(q), d
	}
	t.Fatalf("port %d not in /proc/net/udp", port)
	return 0, 0
}
