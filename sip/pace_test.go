package sip

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/configs"
)

// pacedClock stands in for the pacer's clock and sleep: a sleep advances
// the clock at once and is added up, so what is tested is how long the
// edge makes a pipelining peer wait, not the machine's speed.
type pacedClock struct {
	mu    sync.Mutex
	now   time.Time
	slept time.Duration
}

func (c *pacedClock) install(p *streamPacer) {
	c.now = time.Unix(1_700_000_000, 0)
	p.now = func() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
	p.sleep = func(d time.Duration, _ <-chan struct{}) {
		c.mu.Lock()
		c.now = c.now.Add(d)
		c.slept += d
		c.mu.Unlock()
	}
}

func (c *pacedClock) total() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.slept
}

// readN reads n passed messages from c, as sipgo's reader does.
func readN(t *testing.T, c *edgeConn, n int) {
	t.Helper()
	buf := make([]byte, 65535)
	for i := range n {
		if _, err := c.Read(buf); err != nil {
			t.Fatalf("read %d of %d: %v", i, n, err)
		}
	}
}

// TestStreamPacing: a peer pipelining requests over TCP as fast as it
// can is read from at sip.tcp.paced_request_rate once its burst (two
// seconds' worth) is spent: 500 requests at 100/s cost it 3 s of waiting,
// and a second connection from the same address shares the budget. Before,
// nothing bounded it by default: sipgo got every request as fast as the
// stream delivered it, a goroutine each (60 such connections: 249,000
// goroutines, 2.2 GB). Another address is not slowed, and nothing is
// dropped.
func TestStreamPacing(t *testing.T) {
	e := testEdge(t, func(c *configs.Config) { c.SIP.TCP.PacedRequestRate = 100 })
	var clk pacedClock
	clk.install(e.pace)
	send := func(peer interface{ Write([]byte) (int, error) }, n int) {
		go func() {
			for range n {
				if _, err := peer.Write([]byte(options())); err != nil {
					return
				}
			}
		}()
	}
	c, peer := pipeConn(t, e, "127.0.0.2:40020")
	send(peer, 500)
	readN(t, c, 500)
	// The 500th request is charged as it passes; the wait it sets is
	// served before the next read: 299 waits of 10 ms.
	if got, want := clk.total(), 2990*time.Millisecond; got < want-20*time.Millisecond || got > want+20*time.Millisecond {
		t.Errorf("500 pipelined requests at 100/s with a burst of 200: the peer waited %v, want about %v", got, want)
	}
	// The operator sees it: a counter (wagate_sip_edge_paced_total) and a
	// warn line in the edge's summary naming the source.
	if n := e.snapshot().Paced; n != 300 {
		t.Errorf("paced = %d after 300 requests read late, want 300", n)
	}
	var logged bytes.Buffer
	e.summary.log = slog.New(slog.NewTextHandler(&logged, nil))
	e.summary.flush(10 * time.Second)
	if l := logged.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "paced_request_rate") || !strings.Contains(l, "source=127.0.0.2") || !strings.Contains(l, "count=300") {
		t.Errorf("summary after pacing: %q, want a warn line naming the source, the count and the setting", l)
	}

	// A second connection from the same address: no new burst.
	before := clk.total()
	c2, peer2 := pipeConn(t, e, "127.0.0.2:40021")
	send(peer2, 3)
	readN(t, c2, 3)
	if d := clk.total() - before; d < 10*time.Millisecond {
		t.Errorf("a second connection from the same address waited %v for 3 requests, want the shared budget to slow it", d)
	}

	// Another endpoint's address has a budget of its own.
	before = clk.total()
	c3, peer3 := pipeConn(t, e, "127.0.0.3:40022")
	send(peer3, 50)
	readN(t, c3, 50)
	if d := clk.total() - before; d != 0 {
		t.Errorf("another address waited %v for 50 requests, within its burst", d)
	}
}

// TestStreamPacingOff: 0 turns pacing off; and a connection closed while
// it waits for its pace ends the wait (sipgo's reader returns).
func TestStreamPacingOff(t *testing.T) {
	e := testEdge(t, func(c *configs.Config) { c.SIP.TCP.PacedRequestRate = 0 })
	var clk pacedClock
	clk.install(e.pace)
	c, peer := pipeConn(t, e, "127.0.0.2:40023")
	go func() {
		for range 300 {
			if _, err := peer.Write([]byte(options())); err != nil {
				return
			}
		}
	}()
	readN(t, c, 300)
	if d := clk.total(); d != 0 || e.pace.size() != 0 {
		t.Errorf("pacing off: waited %v, %d sources tracked", d, e.pace.size())
	}

	e = testEdge(t, func(c *configs.Config) { c.SIP.TCP.PacedRequestRate = 1 })
	waiting := make(chan struct{})
	e.pace.sleep = func(_ time.Duration, stop <-chan struct{}) {
		close(waiting)
		<-stop // only the close ends it
	}
	c, peer = pipeConn(t, e, "127.0.0.2:40024")
	go func() {
		for range 4 {
			if _, err := peer.Write([]byte(options())); err != nil {
				return
			}
		}
	}()
	readN(t, c, 3) // the burst of 2, and the third sets a wait
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 65535))
		done <- err
	}()
	<-waiting
	c.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("read after the close returned a message")
		}
	case <-time.After(10 * time.Second): // a wait, not a bound
		t.Fatal("a connection closed while it waited for its pace: the read never returned")
	}
}

// TestStreamPacingSparesResponses: responses answer wagate's own requests
// (a trunk's 200s to a burst of INVITEs or OPTIONS) and are never charged:
// pacing them would hold up wagate's own calls.
func TestStreamPacingSparesResponses(t *testing.T) {
	e := testEdge(t, func(c *configs.Config) { c.SIP.TCP.PacedRequestRate = 100 })
	var clk pacedClock
	clk.install(e.pace)
	res := msgLines("", "SIP/2.0 200 OK",
		"Via: SIP/2.0/TCP 127.0.0.1:5072;branch=z9hG4bK-r1",
		"From: <sip:+15550100001@127.0.0.1>;tag=a1", "To: <sip:meta@127.0.0.2>;tag=b1",
		"Call-ID: edge-r1", "CSeq: 7 OPTIONS", "Content-Length: 0")
	c, peer := pipeConn(t, e, "127.0.0.2:40030")
	go func() {
		for range 500 {
			if _, err := peer.Write([]byte(res)); err != nil {
				return
			}
		}
	}()
	readN(t, c, 500)
	if d, n := clk.total(), e.snapshot().Paced; d != 0 || n != 0 {
		t.Errorf("500 responses at a paced rate of 100/s: waited %v, %d paced; want none", d, n)
	}
}
