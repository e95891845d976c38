package test

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// goroutines is wagate's go_goroutines from /metrics.
func goroutines(t *testing.T, e *env) int {
	t.Helper()
	v, ok := metricValue(scrapeMetrics(t, e), "go_goroutines", "")
	if !ok {
		t.Fatal("/metrics has no go_goroutines")
	}
	return int(v)
}

// TestTCPPeerNotReading: the PBX endpoint opens a TCP connection, sends
// 30,000 pipelined OPTIONS (about 10 MB) and never reads an answer. wagate
// stops reading from it while its answers wait (its goroutines grew by at
// most 461 in runs here; before, by one per unread answer: 18,850 here,
// 49,000 and 770 MB of RSS with 60,000 OPTIONS), closes it once a write
// has waited sip.tcp.idle_timeout, and answers the PBX's OPTIONS over UDP
// meanwhile.
func TestTCPPeerNotReading(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{SIPExtra: "\n  tcp: {idle_timeout: 3s}"})
	before := goroutines(t, e)

	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(e.PBX.IP)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp4", w.SIPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.(*net.TCPConn).SetReadBuffer(64 << 10)
	const n = 30000
	var all bytes.Buffer
	for i := range n {
		all.WriteString(viaOptions("TCP", c.LocalAddr().String(), fmt.Sprintf("noread-%d", i), w.SIPAddr))
	}
	wrote := make(chan error, 1)
	go func() {
		_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		_, err := c.Write(all.Bytes())
		wrote <- err
	}()

	// Sampled while the peer sends and after: the peak is what counts.
	peak := before
	for range 20 {
		time.Sleep(250 * time.Millisecond)
		peak = max(peak, goroutines(t, e))
	}
	t.Logf("goroutines: %d before, at most %d while the peer sent %d OPTIONS and read nothing", before, peak, n)
	if peak-before > 2000 {
		t.Errorf("goroutines grew by %d while a peer sent requests and read no answer, want at most 2000", peak-before)
	}

	// A legitimate OPTIONS from the same endpoint is answered meanwhile.
	p := newRawPeer(t, e.PBX.IP, w)
	if got := p.exchange(viaOptions("UDP", p.conn.LocalAddr().String(), "legit-during", w.SIPAddr), replyLimit); !strings.HasPrefix(got, "SIP/2.0 200") {
		t.Errorf("the PBX's OPTIONS over UDP during the abuse: got %q, want 200", got)
	}

	// The connection is closed: a write waited the idle timeout (3 s).
	deadline := time.Now().Add(30 * time.Second) // a wait, not a bound
	var s status
	for time.Now().Before(deadline) {
		if s = w.status(); s.Edge.Connections == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if s.Edge.Connections != 0 {
		t.Errorf("%d connections still open, want the one that reads nothing closed", s.Edge.Connections)
	}
	if s.Edge.Refused["write_timeout"] == 0 {
		t.Errorf("refused: %v, want write_timeout counted", s.Edge.Refused)
	}
	<-wrote
	if g := goroutines(t, e); g-before > 50 {
		t.Errorf("goroutines %d after the connection closed, %d before", g, before)
	}
}
