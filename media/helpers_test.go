package media

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wagate/wagate/codec"
	"github.com/wagate/wagate/configs"
	"github.com/wagate/wagate/internal/kstamp"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// freePortRange finds n consecutive ports (from an even one) that bind on
// 127.0.0.1 now, below Linux's ephemeral range so other sockets of the test
// run are unlikely to take them meanwhile.
func freePortRange(t testing.TB, n int) int {
	t.Helper()
	for range 100 {
		base := 20000 + 2*rand.IntN(4500)
		var conns []*net.UDPConn
		ok := true
		for p := base; p < base+n; p++ {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p})
			if err != nil {
				ok = false
				break
			}
			conns = append(conns, c)
		}
		for _, c := range conns {
			c.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatalf("no %d free consecutive UDP ports", n)
	return 0
}

// testLogger discards logs unless -v, where it writes them to t.Log.
func testLogger(t testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// newTestManager returns a manager on 127.0.0.1 with room for pairs port
// pairs and the given timeouts, no quarantine.
func newTestManager(t testing.TB, pairs int, startTimeout, timeout time.Duration) *Manager {
	t.Helper()
	base := freePortRange(t, 2*pairs)
	m, err := NewManager(configs.Media{
		BindIP:          "127.0.0.1",
		PortMin:         base,
		PortMax:         base + 2*pairs - 1,
		RTPStartTimeout: configs.Duration(startTimeout),
		RTPTimeout:      configs.Duration(timeout),
	}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// relayGoroutines counts goroutines running a bridge's relay loop.
func relayGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "media.(*Bridge).runDirection") + strings.Count(string(buf), "media.(*Bridge).runCall")
}

// readersPerCall is how many reader goroutines a started bridge runs:
// one for the call on Linux (callreader_linux.go), else one a direction.
func readersPerCall() int {
	if runtime.GOOS != "linux" {
		return 2
	}
	return 1
}

// checkNoRelayGoroutines fails t if relay goroutines outlive their
// bridges. Close waits for them, so this only allows for a goroutine that
// has finished its work but not yet returned.
func checkNoRelayGoroutines(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for relayGoroutines() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d relay goroutines left running", relayGoroutines())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// peer is a fake SIP endpoint's RTP socket.
type peer struct {
	t    testing.TB
	conn *net.UDPConn
	seq  atomic.Uint32 // the last RTP sequence number flow sent
}

func newPeer(t testing.TB) *peer {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// The kernel's arrival stamps, which recvAt reads: a test goroutine
	// that waits for a core on a busy machine reads a packet late, and
	// time.Now() then says the packet came late.
	if raw, err := c.SyscallConn(); err == nil {
		_ = raw.Control(func(fd uintptr) { _ = kstamp.Enable(fd) })
	}
	return &peer{t: t, conn: c}
}

func (p *peer) port() int { return p.conn.LocalAddr().(*net.UDPAddr).Port }

func (p *peer) addr() netip.AddrPort { return netip.AddrPortFrom(loopback, uint16(p.port())) }

func (p *peer) send(to netip.AddrPort, pkt []byte) {
	p.t.Helper()
	if _, err := p.conn.WriteToUDPAddrPort(pkt, to); err != nil {
		p.t.Fatal(err)
	}
}

// recv returns the next packet, or nil if none arrives within d.
func (p *peer) recv(d time.Duration) []byte {
	p.t.Helper()
	pkt, _ := p.recvAt(d)
	return pkt
}

// recvAt is recv that also returns when the packet arrived: the kernel's
// stamp where there is one (Linux), else when it was read.
func (p *peer) recvAt(d time.Duration) ([]byte, time.Time) {
	p.t.Helper()
	buf := make([]byte, 2048)
	oob := make([]byte, 128)
	_ = p.conn.SetReadDeadline(time.Now().Add(d))
	n, oobn, _, _, err := p.conn.ReadMsgUDPAddrPort(buf, oob)
	if err != nil {
		return nil, time.Time{}
	}
	return buf[:n], kstamp.Arrival(oob[:oobn], time.Now())
}

// sdpOffer is an offer from a SIPp/PBX-like or Meta-like endpoint at port.
func sdpOffer(port int, proto, formats string, attrs ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d %s %s\r\n", port, proto, formats)
	for _, a := range attrs {
		b.WriteString("a=" + a + "\r\n")
	}
	return []byte(b.String())
}

// socketlessManager is a manager with default media settings and no port
// range: for negotiation and socketless directions.
func socketlessManager() *Manager {
	return &Manager{
		advertise:    netip.MustParseAddr("192.0.2.1"),
		log:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		rtcpInterval: defaultRTCPInterval,
		jbMin:        defaultJitterMin,
		jbMax:        defaultJitterMax,
		pacer:        NewPacer(1),
		opusSilence:  testOpusSilence,
		opus:         codec.DefaultOptions(),
	}
}

// testOpusSilence is the silence frame of the default Opus settings.
var testOpusSilence = func() []byte {
	f, err := codec.OpusSilence(codec.DefaultOptions())
	if err != nil {
		panic(err)
	}
	return f
}()

// socketlessBridge is a bridge between legs a and b without sockets
// (ports 30000 facing A, 30002 facing B).
func socketlessBridge(a, b LegConfig) *Bridge {
	m := socketlessManager()
	a, err := a.normalize(SideA)
	if err != nil {
		panic(err)
	}
	if b, err = b.normalize(SideB); err != nil {
		panic(err)
	}
	return newBridge(m, m.log, &portPair{port: 30000}, &portPair{port: 30002}, a, b)
}

// captureWriter records what a direction writes.
type captureWriter struct {
	pkts [][]byte
	to   []netip.AddrPort
}

func (c *captureWriter) WriteToUDPAddrPort(b []byte, a netip.AddrPort) (int, error) {
	c.pkts = append(c.pkts, bytes.Clone(b))
	c.to = append(c.to, a)
	return len(b), nil
}

// nopWriter counts writes, for benchmarks.
type nopWriter struct{ n int }

func (w *nopWriter) WriteToUDPAddrPort(b []byte, _ netip.AddrPort) (int, error) {
	w.n++
	return len(b), nil
}

// testDirection is the direction that reads side of br, without sockets:
// what it writes is captured.
type testDirection struct {
	*direction
	dst, src, srcRTCP *captureWriter
}

func newTestDirection(br *Bridge, side Side) *testDirection {
	rt, fw := &br.routeAB, &br.aToB
	if side == SideB {
		rt, fw = &br.routeBA, &br.bToA
	}
	d := newDirection(br, side, rt, fw)
	td := &testDirection{direction: d, dst: &captureWriter{}, src: &captureWriter{}, srcRTCP: &captureWriter{}}
	d.toDst, d.toSrc, d.toSrcRTCP = td.dst, td.src, td.srcRTCP
	return td
}

// feed hands pkt to the direction as if read from from.
func (d *testDirection) feed(pkt []byte, from netip.AddrPort) {
	feedAt(d.direction, pkt, from, d.clock())
}

// feedAt hands pkt to d as if read from from at now (the direction's
// clock), in a pooled buffer as the reader does.
func feedAt(d *direction, pkt []byte, from netip.AddrPort, now time.Duration) {
	buf := getBuf()
	n := copy(buf.b[:packetBufSize], pkt)
	if !d.handle(buf, n, from, now) {
		putBuf(buf)
	}
}

// tickAt runs the direction's play job as the pacer would at now (the
// direction's clock) and returns when the next tick is due (0: idle).
func tickAt(d *direction, now time.Duration) time.Duration {
	d.mu.Lock()
	if d.playAt == 0 {
		d.playAt = now
	}
	d.mu.Unlock()
	d.playTick(d.epoch.Add(now))
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.playAt
}

// pairSocket is either socket of a port pair, for the tests that read
// them.
type pairSocket interface {
	SyscallConn() (syscall.RawConn, error)
	LocalAddr() net.Addr
}

// readSocket reads one datagram from a pair's socket through its raw
// handle, waiting up to d: on Linux an RTP socket has no waiting read of
// its own (rtpconn_linux.go).
func readSocket(c pairSocket, buf []byte, d time.Duration) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	for deadline := time.Now().Add(d); ; time.Sleep(time.Millisecond) {
		var n int
		var rerr error
		if err := raw.Control(func(fd uintptr) {
			n, _, rerr = syscall.Recvfrom(int(fd), buf, syscall.MSG_DONTWAIT)
		}); err != nil {
			return 0, err
		}
		switch {
		case rerr == nil:
			return n, nil
		case rerr != syscall.EAGAIN:
			return 0, rerr
		case time.Now().After(deadline):
			return 0, os.ErrDeadlineExceeded
		}
	}
}
