package test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/sipua"
)

// decoy listens on UDP and TCP at one address and counts what reaches it:
// a host a request names in its Via that wagate must never contact.
type decoy struct {
	addr    string
	packets atomic.Int64
	conns   atomic.Int64
}

func startDecoy(t *testing.T, ip string) *decoy {
	t.Helper()
	port := freeTCPUDPPort(t, ip)
	d := &decoy{addr: net.JoinHostPort(ip, strconv.Itoa(port))}
	pc, err := net.ListenPacket("udp4", d.addr)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", d.addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65536)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			d.packets.Add(1)
		}
	}()
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			d.conns.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { pc.Close(); ln.Close(); wg.Wait() })
	return d
}

// viaOptions is an OPTIONS whose top Via names via (another host than the
// sender), over transport tr.
func viaOptions(tr, via, callID, to string) string {
	return fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/%s %s;branch=z9hG4bK-%s\r\n"+
		"From: <sip:probe@example.invalid>;tag=p1\r\nTo: <sip:%s>\r\nCall-ID: %s\r\nCSeq: 1 OPTIONS\r\n"+
		"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n", to, tr, via, callID, to, callID)
}

// TestViaNeverDialled: requests naming other hosts in their Via — from a
// stranger and from an endpoint, over UDP and over TCP connections closed
// right after the request (so that a response cannot use them) — never
// make wagate send a packet or open a connection anywhere but to the
// sender. An endpoint's UDP request is answered at its source port.
func TestViaNeverDialled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{})
	dc := startDecoy(t, e.ip(7))
	vias := []string{dc.addr, "decoy.invalid:" + strings.Split(dc.addr, ":")[1], "[::1]:5060", "192.0.2.1:5060"}

	for _, from := range []string{e.Stranger.IP, e.Meta.IP} {
		for i, via := range vias {
			// UDP: the endpoint's OPTIONS is answered to where it came
			// from; the stranger's gets nothing.
			p := newRawPeer(t, from, w)
			wait := time.Second // the stranger's: for no answer
			if from == e.Meta.IP {
				wait = replyLimit
			}
			got := p.exchange(viaOptions("UDP", via, fmt.Sprintf("via-u-%s-%d", from, i), w.SIPAddr), wait)
			switch {
			case from == e.Meta.IP && !strings.HasPrefix(got, "SIP/2.0 200"):
				t.Errorf("endpoint's OPTIONS with Via %s: got %q at its source port, want 200", via, got)
			case from == e.Stranger.IP && got != "":
				t.Errorf("stranger's OPTIONS with Via %s answered %q", via, got)
			}
			// TCP: write, then close at once, thirty times.
			for j := range 30 {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: time.Second}
				c, err := d.Dial("tcp4", w.SIPAddr)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = c.Write([]byte(viaOptions("TCP", via, fmt.Sprintf("via-t-%s-%d-%d", from, i, j), w.SIPAddr)))
				c.Close()
			}
		}
	}
	time.Sleep(2 * time.Second) // let any response be attempted
	if n, c := dc.packets.Load(), dc.conns.Load(); n != 0 || c != 0 {
		t.Errorf("the host named in Via got %d datagrams and %d connections, want none", n, c)
	}
	s := w.waitIdle()
	if s.Edge.Refused["stranger"] == 0 {
		t.Errorf("the stranger's requests were not counted: %v", s.Edge.Refused)
	}
}

// floodSetupLimit bounds the setup of TestStrangerFlood's legitimate
// call. It takes a few milliseconds, but this test's own flood sender,
// a -race wagate and make test's other packages share two cores, where
// any of the goroutines on the call's path can wait tens of milliseconds
// for a core. The limit stays under SIP's T1 (500 ms): an INVITE, the
// PBX's INVITE or a 200 that the flood crowded out of a socket buffer is
// sent again only after T1, and then the call fails the test.
const floodSetupLimit = 400 * time.Millisecond

// TestStrangerFlood: 9,000 INVITEs from a stranger in 3 s (default
// unknown_sources: drop) cost wagate next to nothing: its RSS stays within
// 20 MB, the stranger gets nothing back (no 403, no retransmission), and a
// legitimate call placed during the flood is answered without a
// retransmission (under floodSetupLimit; a few milliseconds unloaded).
func TestStrangerFlood(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{})
	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas.xml", Peer: e.PBX, Calls: 1})
	rssBefore := rssKiB(t, w)

	attacker, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(e.Stranger.IP)})
	if err != nil {
		t.Fatal(err)
	}
	defer attacker.Close()
	var back atomic.Int64
	go func() {
		buf := make([]byte, 65536)
		for {
			if _, _, err := attacker.ReadFromUDP(buf); err != nil {
				return
			}
			back.Add(1)
		}
	}()
	to, _ := net.ResolveUDPAddr("udp4", w.SIPAddr)
	p := &rawPeer{t: t, conn: attacker, to: to}
	sdp := "v=0\r\no=- 1 1 IN IP4 " + e.Stranger.IP + "\r\ns=-\r\nc=IN IP4 " + e.Stranger.IP + "\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"

	const rate, seconds = 3000, 3
	flooded := make(chan struct{})
	go func() {
		defer close(flooded)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for sent := 0; sent < rate*seconds; {
			<-tick.C
			for range rate / 100 {
				msg := rawInvite(p, "flood-"+strconv.Itoa(sent), businessNumber, "application/sdp", sdp)
				_, _ = attacker.WriteToUDP([]byte(msg), to)
				sent++
			}
		}
	}()

	// A real call in the middle of the flood.
	time.Sleep(time.Second)
	ua, err := sipua.Listen(sipua.Config{Addr: e.Meta.IP + ":0", User: "meta"})
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	callSDP := "v=0\r\no=- 1 1 IN IP4 " + e.Meta.IP + "\r\ns=-\r\nc=IN IP4 " + e.Meta.IP + "\r\nt=0 0\r\nm=audio 4002 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	dlg, err := ua.Invite(ctx, sipua.InviteRequest{Target: to, RURI: "sip:" + businessNumber + "@" + w.SIPAddr,
		From: "sip:" + waUser + "@" + e.Meta.IP, To: "sip:" + businessNumber + "@" + w.SIPAddr, SDP: []byte(callSDP)})
	setup := time.Since(start)
	if err != nil {
		t.Fatalf("call during the flood: %v", err)
	}
	t.Logf("call answered %v after its INVITE, during the flood", setup.Round(time.Microsecond))
	if setup > floodSetupLimit {
		t.Errorf("call during the flood answered after %v, want under %v (no datagram of it lost)", setup.Round(time.Millisecond), floodSetupLimit)
	}
	<-flooded
	if _, err := dlg.Bye(ctx); err != nil {
		t.Errorf("BYE: %v", err)
	}
	pbx.requireOK()

	time.Sleep(500 * time.Millisecond)
	rssAfter := rssKiB(t, w)
	t.Logf("RSS %d KiB before the flood, %d KiB after", rssBefore, rssAfter)
	if rssAfter-rssBefore > 20<<10 {
		t.Errorf("RSS grew by %d KiB during the flood, want at most 20 MiB", rssAfter-rssBefore)
	}
	if n := back.Load(); n != 0 {
		t.Errorf("the flooding stranger got %d datagrams back, want none", n)
	}
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
	if got := s.Edge.Refused["stranger"]; got < rate*seconds {
		t.Errorf("refused.stranger = %d, want all %d of the flood counted", got, rate*seconds)
	}
}

// rssKiB is wagate's resident set size.
func rssKiB(t *testing.T, w *wagate) int {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", w.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
