package sip

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
)

func TestFrameMessage(t *testing.T) {
	one := options()
	withBody := strings.Replace(options(), "Content-Length: 0\r\n\r\n", "Content-Length: 5\r\n\r\nhello", 1)
	tests := []struct {
		name string
		in   string
		st   frameStatus
		n    int
	}{
		{"whole", one, frameOK, len(one)},
		{"two back to back", one + one, frameOK, len(one)},
		{"header not ended", one[:40], frameNeedMore, 0},
		{"body not all there", withBody[:len(withBody)-2], frameNeedMore, 0},
		{"body", withBody + "NEXT", frameOK, len(withBody)},
		{"bare LF header end", strings.ReplaceAll(one, "\r\n", "\n"), frameOK, len(strings.ReplaceAll(one, "\r\n", "\n"))},
		{"bad length", strings.Replace(one, "Content-Length: 0", "Content-Length: x", 1), frameBad, 0},
		{"two lengths that differ", strings.Replace(one, "Content-Length: 0", "Content-Length: 0\r\nl: 3", 1), frameBad, 0},
		{"length past the limit", strings.Replace(one, "Content-Length: 0", "Content-Length: 99999", 1), frameTooLarge, 0},
		{"header past the limit", "OPTIONS sip:x SIP/2.0\r\nX: " + strings.Repeat("a", 5000), frameTooLarge, 0},
	}
	for _, tt := range tests {
		_, n, st := frameMessage([]byte(tt.in), 4096)
		if st != tt.st || n != tt.n {
			t.Errorf("%s: status %d n %d, want %d %d", tt.name, st, n, tt.st, tt.n)
		}
	}
}

// pipeConn is an edgeConn over an in-memory connection, with the peer's
// end to write to and read from.
func pipeConn(t *testing.T, e *edge, src string) (*edgeConn, net.Conn) {
	t.Helper()
	ours, peer := net.Pipe()
	t.Cleanup(func() { ours.Close(); peer.Close() })
	c := newEdgeConn(ours, e, "TCP")
	c.src = netip.MustParseAddrPort(src)
	return c, peer
}

// readMessage reads one passed message from c as sipgo would.
func readMessage(t *testing.T, c *edgeConn) *sip.Request {
	t.Helper()
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	msg, err := sip.ParseMessage(buf[:n])
	if err != nil {
		t.Fatalf("passed message does not parse: %v\n%s", err, buf[:n])
	}
	return msg.(*sip.Request)
}

// TestEdgeConnStream: messages split across writes and glued together
// come out one by one; a double-CRLF ping gets a CRLF pong; a malformed
// message gets its 400 on the connection and the next one still passes.
func TestEdgeConnStream(t *testing.T) {
	e := testEdge(t, nil)
	c, peer := pipeConn(t, e, "127.0.0.2:40000")
	msg := options()
	bad := without(options(), "From:")
	go func() {
		_, _ = peer.Write([]byte("\r\n\r\n"))
		_, _ = peer.Write([]byte(msg[:30]))
		_, _ = peer.Write([]byte(msg[30:] + bad + msg))
	}()
	r := bufio.NewReader(peer)
	pong := make(chan string, 1)
	replies := make(chan string, 1)
	go func() {
		p := make([]byte, 2)
		_, _ = io.ReadFull(r, p)
		pong <- string(p)
		line, _ := r.ReadString('\n')
		replies <- line
		for { // drain the rest of the reply
			if l, err := r.ReadString('\n'); err != nil || l == "\r\n" {
				return
			}
		}
	}()
	readMessage(t, c)
	if got := <-pong; got != "\r\n" {
		t.Errorf("pong %q, want CRLF", got)
	}
	readMessage(t, c)
	if got := <-replies; !strings.HasPrefix(got, "SIP/2.0 400") {
		t.Errorf("malformed message on the stream got %q, want 400", got)
	}
}

// TestEdgeConnIdle: a connection with nothing pending is closed after the
// idle timeout unless a live call uses it; a message left half-sent is
// closed after the timeout even then (a slow sender).
func TestEdgeConnIdle(t *testing.T) {
	e := testEdge(t, func(c *configs.Config) { c.SIP.TCP.IdleTimeout = configs.Duration(150 * time.Millisecond) })
	busy := false
	e.busy = func(string) bool { return busy }

	// The clock starts before the connection does (its idle timer with
	// it): started after, a test goroutine held up in between would see
	// the timeout come early.
	start := time.Now()
	c, _ := pipeConn(t, e, "127.0.0.2:40001")
	if _, err := c.Read(make([]byte, 100)); !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection: read error %v, want EOF", err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("closed after %v, before the idle timeout", d)
	}

	busy = true
	c, peer := pipeConn(t, e, "127.0.0.2:40002")
	got := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 65535))
		got <- err
	}()
	time.Sleep(400 * time.Millisecond)
	select {
	case err := <-got:
		t.Fatalf("connection with a live call closed when idle: %v", err)
	default:
	}
	_, _ = peer.Write([]byte(options()[:20])) // and then stall
	select {
	case err := <-got:
		if !errors.Is(err, io.EOF) {
			t.Errorf("stalled message: read error %v, want EOF", err)
		}
	case <-time.After(10 * time.Second): // a wait, not a bound: the timeout is 150 ms
		t.Fatal("a half-sent message held the connection past the idle timeout")
	}
	if n := e.snapshot().Refused["idle_timeout"]; n != 2 {
		t.Errorf("refused.idle_timeout = %d, want 2", n)
	}
}

// TestEdgeListener: a stranger's connection is closed at accept; the
// per-source cap holds, and a closed connection gives its slot back.
func TestEdgeListener(t *testing.T) {
	e := testEdge(t, func(c *configs.Config) { c.SIP.TCP.MaxConnectionsPerSource = 2 })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	el := &edgeListener{Listener: ln, edge: e}
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := el.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func(from string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatalf("dial from %s: %v", from, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	closedByServer := func(c net.Conn) bool {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		_, err := c.Read(make([]byte, 1))
		return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || (err != nil && strings.Contains(err.Error(), "reset"))
	}
	if !closedByServer(dial("127.0.0.9")) {
		t.Errorf("stranger's connection not closed")
	}
	dial("127.0.0.2")
	dial("127.0.0.2")
	first := <-accepted
	<-accepted
	if !closedByServer(dial("127.0.0.2")) {
		t.Errorf("third connection from one source not closed (cap 2)")
	}
	first.Close()
	dial("127.0.0.2")
	select {
	case <-accepted:
	case <-time.After(10 * time.Second): // a wait for what must come
		t.Errorf("a slot freed by Close was not given back")
	}
}

// TestEdgeConnOutputBuffer: a connection writes each passed message into
// the buffer of the one before (read by sipgo by then); a large message
// then a smaller one, read in small pieces, come out exactly as the edge
// passes them on their own.
func TestEdgeConnOutputBuffer(t *testing.T) {
	e := testEdge(t, nil)
	c, peer := pipeConn(t, e, "127.0.0.2:40000")
	msgs := []string{string(benchInvite), benchACK, benchBYE, string(benchInvite)}
	go func() {
		for _, m := range msgs {
			_, _ = peer.Write([]byte(m))
		}
	}()
	for i, m := range msgs {
		want := e.inbound([]byte(m), c.src, "TCP")
		if want.act != actPass {
			t.Fatalf("message %d not passed on its own: %q", i, want.reply)
		}
		got := make([]byte, 0, len(want.msg))
		p := make([]byte, 100)
		for len(got) < len(want.msg) {
			n, err := c.Read(p[:min(len(p), len(want.msg)-len(got))])
			if err != nil {
				t.Fatalf("message %d: read: %v", i, err)
			}
			got = append(got, p[:n]...)
		}
		if !bytes.Equal(got, want.msg) {
			t.Fatalf("message %d through the connection:\n%q\nwant\n%q", i, got, want.msg)
		}
	}
}

// TestEdgePacketConnKeepsNoAlias: the edge reads a datagram in place, in a
// buffer the next datagram overwrites; what it keeps of a refused one (the
// sample the summary logs) must be its own copy.
func TestEdgePacketConnKeepsNoAlias(t *testing.T) {
	var logged strings.Builder
	e := testEdge(t, nil)
	e.summary.log = slog.New(slog.NewTextHandler(&logged, nil))
	bad := replaceLine(options(), "OPTIONS ", "OPTIONS sip:+15550100001@127.0.0.1:5072 SIP/7.7")
	pc := &replayConn{msg: []byte(bad), from: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 5060}}
	c := newEdgePacketConn(&oneThenGood{replayConn: pc, good: []byte(options())}, e)
	if _, _, err := c.ReadFrom(make([]byte, 65535)); err != nil {
		t.Fatal(err)
	}
	e.summary.flush(time.Second)
	if !strings.Contains(logged.String(), "SIP/7.7") {
		t.Errorf("the refusal's sample changed with the buffer:\n%s", logged.String())
	}
}

// oneThenGood reads its replayConn's message once, then good.
type oneThenGood struct {
	*replayConn
	good []byte
	n    int
}

func (c *oneThenGood) ReadFrom(p []byte) (int, net.Addr, error) {
	c.n++
	if c.n == 1 {
		return c.replayConn.ReadFrom(p)
	}
	return copy(p, c.good), c.from, nil
}

// TestEdgePacketConnCanonicalOverReadBuffer: a datagram within
// sip.limits.max_message_size whose canonical form (";rport" added to its
// Via, ": " after each name, a Content-Length) no longer fits sipgo's
// read buffer is refused as too large, as an over-limit one is: a request
// gets its 513, and nothing is counted as passed. It used to be counted
// passed, then dropped by the reader with no answer at all, the sender
// retransmitting into silence.
func TestEdgePacketConnCanonicalOverReadBuffer(t *testing.T) {
	padTo := func(msg string, size int) string {
		head, body, _ := strings.Cut(msg, "\r\n\r\n")
		// No space after the colon: the canonical form adds one.
		pad := size - len(msg) - len("X-Pad:\r\n")
		return head + "\r\nX-Pad:" + strings.Repeat("a", pad) + "\r\n\r\n" + body
	}
	for _, tc := range []struct {
		name string
		msg  string
		code string // the answer's status line, "" for none
	}{
		{"request", options(), "SIP/2.0 513 Message Too Large"},
		{"response", benchResponse, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := testEdge(t, nil)
			readBuf := int(sip.TransportBufferReadSize)
			big := padTo(tc.msg, e.cfg.Load().SIP.Limits.MaxMessageSize)
			if len(big) > e.cfg.Load().SIP.Limits.MaxMessageSize || len(big) > readBuf {
				t.Fatalf("test message of %d bytes is over the limit", len(big))
			}
			pc := &writeCapture{oneThenGood: oneThenGood{
				replayConn: &replayConn{msg: []byte(big), from: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 5060}},
				good:       []byte(options()),
			}}
			c := newEdgePacketConn(pc, e)
			p := make([]byte, readBuf)
			n, _, err := c.ReadFrom(p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(p[:n], []byte("OPTIONS ")) || !bytes.Contains(p[:n], []byte("Call-ID: edge-1\r\n")) || n > 1000 {
				t.Fatalf("read %d bytes, not the small OPTIONS after the large message", n)
			}
			if got := e.stats.passed.Load(); got != 1 {
				t.Errorf("%d messages counted as passed, want 1 (the small OPTIONS)", got)
			}
			if got := e.stats.reasons[reasonTooLarge].Load(); got != 1 {
				t.Errorf("%d refused as too large, want 1", got)
			}
			var first string
			if len(pc.written) > 0 {
				first, _, _ = strings.Cut(string(pc.written[0]), "\r\n")
			}
			if first != tc.code {
				t.Errorf("answer %q, want %q", first, tc.code)
			}
		})
	}
}

// writeCapture keeps what the edge writes back.
type writeCapture struct {
	oneThenGood
	written [][]byte
}

func (c *writeCapture) WriteTo(p []byte, _ net.Addr) (int, error) {
	c.written = append(c.written, bytes.Clone(p))
	return len(p), nil
}

// TestEdgeConnPeerNotReading: a peer that sends requests and never reads
// the answers is read from only while fewer than maxPendingWrites answers
// wait on it, and every write waiting on it fails once one has waited the
// idle timeout, closing the connection. Before, sipgo's goroutine per
// answer piled up for as long as the peer sent.
func TestEdgeConnPeerNotReading(t *testing.T) {
	e := testEdge(t, func(c *configs.Config) { c.SIP.TCP.IdleTimeout = configs.Duration(200 * time.Millisecond) })
	c, peer := pipeConn(t, e, "127.0.0.2:40003")
	const sent = 4 * maxPendingWrites
	go func() {
		for range sent {
			if _, err := peer.Write([]byte(options())); err != nil {
				return
			}
		}
	}()
	// As sipgo does: each message read is answered from a goroutine of
	// its own. The next read waits for that goroutine to be about to
	// write: on a loaded machine the goroutines were not scheduled before
	// the reader read on (85 of 128 read once), and what is tested is the
	// edge's count of writes waiting, not the scheduler.
	writes := make(chan error, sent)
	read := 0
	buf := make([]byte, 65535)
	for {
		if _, err := c.Read(buf); err != nil {
			break
		}
		read++
		began := make(chan struct{})
		go func() {
			close(began)
			_, err := c.Write([]byte("SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"))
			writes <- err
		}()
		<-began
	}
	// A message read just before its answer's goroutine entered Write is
	// not counted yet: the bound is loose, but a bound.
	if read > 2*maxPendingWrites {
		t.Errorf("%d of %d messages read from a peer that reads nothing, want at most %d", read, sent, 2*maxPendingWrites)
	}
	for i := range read {
		select {
		case err := <-writes:
			if err == nil {
				t.Fatalf("write %d to a peer that reads nothing succeeded", i)
			}
		case <-time.After(10 * time.Second): // a wait, not a bound: the timeout is 200 ms
			t.Fatalf("%d of %d writes to a peer that reads nothing still blocked", read-i, read)
		}
	}
	if n := e.snapshot().Refused["write_timeout"]; n != 1 {
		t.Errorf("refused.write_timeout = %d, want the connection counted once", n)
	}
}
