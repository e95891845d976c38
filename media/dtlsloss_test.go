package media

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"sync"
	"testing"
	"time"
)

// lossyPath sits between X's and Y's dtls ports (their SDPs' candidates
// are rewritten to its two sockets) and forwards everything but the DTLS
// datagrams drop says to lose; held ones are sent after the next one
// (reordering).
type lossyPath struct {
	toY, toX *net.UDPConn // toY: X's face toward Y (Y sends here); toX: Y's face toward X
	realX    netip.AddrPort
	realY    netip.AddrPort
	mu       sync.Mutex
	n        [2]int // DTLS datagrams seen: [0] X→Y, [1] Y→X
	// verdict for the i-th DTLS datagram (1-based) of direction dir.
	verdict func(dir, i int) string // "pass", "drop", "hold"
	held    [2][]byte
}

func newLossyPath(t *testing.T, verdict func(dir, i int) string) *lossyPath {
	t.Helper()
	l := &lossyPath{verdict: verdict}
	for _, c := range []**net.UDPConn{&l.toY, &l.toX} {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		*c = conn
		t.Cleanup(func() { conn.Close() })
	}
	return l
}

func (l *lossyPath) port(c *net.UDPConn) int { return c.LocalAddr().(*net.UDPAddr).Port }

// run forwards from in (to which the sender of dir sends) out of out to dst().
func (l *lossyPath) run(dir int, in, out *net.UDPConn, dst func() netip.AddrPort) {
	buf := make([]byte, 2048)
	for {
		n, _, err := in.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		pkt := append([]byte(nil), buf[:n]...)
		v := "pass"
		if demuxKind(pkt[0]) == kindDTLS {
			l.mu.Lock()
			l.n[dir]++
			v = l.verdict(dir, l.n[dir])
			l.mu.Unlock()
		}
		switch v {
		case "drop":
			continue
		case "hold":
			l.held[dir] = pkt
			continue
		}
		_, _ = out.WriteToUDPAddrPort(pkt, dst())
		if h := l.held[dir]; h != nil {
			l.held[dir] = nil
			_, _ = out.WriteToUDPAddrPort(h, dst())
		}
	}
}

var candRe = regexp.MustCompile(`(a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 )(\d+)( typ host)`)

// TestDTLSHandshakeLossyPath: DTLS datagrams of the handshake between two
// wagates' dtls legs are lost or reordered on the way (the first flight
// each way, the ClientHello's retransmissions, the server's last flight);
// the handshake recovers by retransmission within the handshake timeout
// and audio flows both ways.
func TestDTLSHandshakeLossyPath(t *testing.T) {
	cases := map[string]func(dir, i int) string{
		"first flight each way lost": func(_, i int) string {
			if i == 1 {
				return "drop"
			}
			return "pass"
		},
		"client's first three datagrams lost": func(dir, i int) string {
			if dir == 1 && i <= 3 {
				return "drop"
			}
			return "pass"
		},
		"server's later flights lost once": func(dir, i int) string {
			if dir == 0 && (i == 2 || i == 3) {
				return "drop"
			}
			return "pass"
		},
		"every DTLS datagram swapped with the next": func(_, i int) string {
			if i%2 == 1 {
				return "hold"
			}
			return "pass"
		},
	}
	for name, verdict := range cases {
		t.Run(name, func(t *testing.T) {
			m := newDTLSManager(t, 8, 12*time.Second, 30*time.Second)
			l := newLossyPath(t, verdict)
			var mu sync.Mutex
			// via rewrites the candidates of an SDP so that its reader
			// sends through the path (to face), noting the writer's real
			// address in real.
			via := func(real *netip.AddrPort, face *net.UDPConn) func([]byte) []byte {
				return func(b []byte) []byte {
					return candRe.ReplaceAllFunc(b, func(c []byte) []byte {
						sm := candRe.FindSubmatch(c)
						var p int
						fmt.Sscan(string(sm[2]), &p)
						mu.Lock()
						*real = netip.AddrPortFrom(loopback, uint16(p))
						mu.Unlock()
						return []byte(fmt.Sprintf("%s%d%s", sm[1], l.port(face), sm[3]))
					})
				}
			}
			offer := via(&l.realX, l.toY)  // X's offer as Y sees it
			answer := via(&l.realY, l.toX) // Y's answer as X sees it
			get := func(a *netip.AddrPort) func() netip.AddrPort {
				return func() netip.AddrPort { mu.Lock(); defer mu.Unlock(); return *a }
			}
			go l.run(0, l.toX, l.toY, get(&l.realY)) // X sends to toX: on to Y from toY
			go l.run(1, l.toY, l.toX, get(&l.realX)) // Y sends to toY: on to X from toX
			s := newB2B(t, m, offer, answer)
			if !flow(t, s.p1, s.xA, s.p2, 12*time.Second) {
				t.Fatalf("no audio A→B after a lossy handshake; stats X %+v Y %+v DTLS %+v", s.x.Stats(), s.y.Stats(), m.Stats().DTLS)
			}
			if !flow(t, s.p2, s.yB, s.p1, 2*time.Second) {
				t.Fatalf("no audio B→A after a lossy handshake; stats X %+v Y %+v", s.x.Stats(), s.y.Stats())
			}
			select {
			case err := <-s.failX:
				t.Fatalf("X ended with %v", err)
			case err := <-s.failY:
				t.Fatalf("Y ended with %v", err)
			default:
			}
			l.mu.Lock()
			t.Logf("DTLS datagrams X→Y %d, Y→X %d; keyed %+v", l.n[0], l.n[1], m.Stats().DTLS)
			l.mu.Unlock()
			s.x.Close()
			s.y.Close()
		})
	}
}
