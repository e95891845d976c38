package test

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"sync"
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
// 60,000 pipelined OPTIONS (about 20 MB) and never reads an answer. wagate
// stops reading from it once its answers wait (before, it read them all
// and held a goroutine per unread answer: 18,850 here with 30,000, 49,000
// and 770 MB of RSS with 60,000), closes it once a write has waited
// sip.tcp.idle_timeout, and answers the PBX's OPTIONS over UDP meanwhile.
func TestTCPPeerNotReading(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{SIPExtra: "\n  tcp: {idle_timeout: 3s}"})
	before := goroutines(t, e)
	passedBefore := w.status().Edge.Passed

	// The 20 MB are built before the connection opens: built after it, on
	// a loaded machine with -race, they took longer than the idle timeout
	// and wagate rightly closed the silent connection as idle.
	local := &net.TCPAddr{IP: net.ParseIP(e.PBX.IP), Port: freeTCPPort(t, e.PBX.IP)}
	const n = 60000
	var all bytes.Buffer
	for i := range n {
		all.WriteString(viaOptions("TCP", local.String(), fmt.Sprintf("noread-%d", i), w.SIPAddr))
	}
	d := net.Dialer{LocalAddr: local, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp4", w.SIPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.(*net.TCPConn).SetReadBuffer(64 << 10)
	wrote := make(chan error, 1)
	go func() {
		_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		_, err := c.Write(all.Bytes())
		wrote <- err
	}()

	// wagate stops reading: the requests it passed on stop growing short
	// of the 60,000 sent, once the socket buffers are full of answers
	// (about 11,300 here) and what it read meanwhile is handled (11,301
	// to 14,810 read in runs here). Before the fix it read them all.
	// Sampled until the count has not moved for 1 s (a wait, not a
	// bound), with the goroutines' peak.
	peak, read := before, uint64(0)
	for deadline, still := time.Now().Add(60*time.Second), 0; still < 4 && time.Now().Before(deadline); {
		time.Sleep(250 * time.Millisecond)
		peak = max(peak, goroutines(t, e))
		if p := w.status().Edge.Passed - passedBefore; p != read {
			read, still = p, 0
		} else if read > 0 {
			still++
		}
	}
	t.Logf("goroutines: %d before, at most %d while the peer sent %d OPTIONS and read nothing; %d read", before, peak, n, read)
	if read == 0 || read >= n {
		t.Errorf("wagate read %d of the %d requests of a peer that reads no answer, want it to stop reading once answers wait", read, n)
	}
	// The peak also holds the requests read and not yet handled: sipgo
	// starts a goroutine per message, and they queue on its transaction
	// table (docs/security.md, "Pipelined requests"). How many
	// depends on how much CPU wagate gets: 92–461 alone, up to 4,578 with
	// the machine busy (30,000 sent; the backlog does not grow with the
	// requests sent, as wagate stops reading). The fault held one per
	// unread answer past the socket buffers and kept reading: 18,850 with
	// 30,000 sent, 49,000 with 60,000. A third of the requests sent lies
	// well between the two.
	if peak-before > n/3 {
		t.Errorf("goroutines grew by %d while a peer sent requests and read no answer, want at most %d", peak-before, n/3)
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
	if s.Edge.Refused["write_timeout"] != 1 {
		t.Errorf("refused: %v, want write_timeout counted once", s.Edge.Refused)
	}
	<-wrote
	if g := goroutines(t, e); g-before > 50 {
		t.Errorf("goroutines %d after the connection closed, %d before", g, before)
	}
}

// stray200 is a 200 to an INVITE wagate never sent (or has forgotten),
// with a Call-ID shaped like wagate's B-legs, from the peer at from.
func stray200(wagateIP, callID string, i int, from *net.UDPAddr) string {
	return fmt.Sprintf("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP %s:5060;branch=z9hG4bK-stray%d\r\n"+
		"From: <sip:wagate@%s>;tag=wt%d\r\nTo: <sip:1001@%s>;tag=pt%d\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\n"+
		"Contact: <sip:1001@%s>\r\nContent-Length: 0\r\n\r\n", wagateIP, i, wagateIP, i, from.IP, i, callID, from)
}

// TestStray2xxBounded: 2xx responses to no INVITE of wagate's, from the
// PBX's address (UDP: anyone can send them as the PBX). Each copy is ACKed,
// but a retransmitted one gets no second BYE, and a burst of 400 with
// distinct Call-IDs gets at most 64 BYEs under way at once. Before, every
// copy started a BYE (resent 10 times, a goroutine for 32 s each): 12
// requests back per response.
func TestStray2xxBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{})
	before := goroutines(t, e)
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(e.PBX.IP)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	_ = pc.SetReadBuffer(4 << 20)
	me := pc.LocalAddr().(*net.UDPAddr)
	to, _ := net.ResolveUDPAddr("udp4", w.SIPAddr)

	// What wagate sends back: ACKs per Call-ID, and BYE transactions
	// (a retransmitted BYE keeps its branch) per Call-ID.
	type tally struct {
		acks int
		byes map[string]bool
	}
	var mu sync.Mutex
	got := map[string]*tally{}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFromUDP(buf)
			if err != nil {
				return
			}
			msg := string(buf[:n])
			method, _, _ := strings.Cut(msg, " ")
			callID, branch := headerValue(msg, "Call-ID"), ""
			if _, b, ok := strings.Cut(headerValue(msg, "Via"), "branch="); ok {
				branch, _, _ = strings.Cut(b, ";")
			}
			mu.Lock()
			tl := got[callID]
			if tl == nil {
				tl = &tally{byes: map[string]bool{}}
				got[callID] = tl
			}
			switch method {
			case "ACK":
				tl.acks++
			case "BYE":
				tl.byes[branch] = true
			}
			mu.Unlock()
		}
	}()
	callID := func(i int) string { return fmt.Sprintf("%024x@wagate", 0xabc000+i) }

	// A 2xx retransmitted 20 times: 20 ACKs, one BYE.
	for range 20 {
		_, _ = pc.WriteToUDP([]byte(stray200(e.WagateIP, callID(0), 0, me)), to)
		time.Sleep(20 * time.Millisecond)
	}
	// Then 400 distinct ones at once.
	const burst = 400
	for i := 1; i <= burst; i++ {
		_, _ = pc.WriteToUDP([]byte(stray200(e.WagateIP, callID(i), i, me)), to)
	}
	// A legitimate OPTIONS from the PBX is answered meanwhile.
	p := newRawPeer(t, e.PBX.IP, w)
	if r := p.exchange(viaOptions("UDP", p.conn.LocalAddr().String(), "legit-strays", w.SIPAddr), replyLimit); !strings.HasPrefix(r, "SIP/2.0 200") {
		t.Errorf("the PBX's OPTIONS during the stray 2xx: got %q, want 200", r)
	}
	peak := before
	deadline := time.Now().Add(20 * time.Second) // a wait, not a bound: until every copy is ACKed
	for time.Now().Before(deadline) {
		peak = max(peak, goroutines(t, e))
		mu.Lock()
		acked := 0
		for i := 1; i <= burst; i++ {
			if tl := got[callID(i)]; tl != nil && tl.acks > 0 {
				acked++
			}
		}
		first := got[callID(0)]
		done := acked == burst && first != nil && first.acks == 20
		mu.Unlock()
		if done {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second) // let any BYE that would be sent leave
	mu.Lock()
	defer mu.Unlock()
	first := got[callID(0)]
	if first == nil || first.acks != 20 || len(first.byes) != 1 {
		t.Errorf("a stray 2xx sent 20 times: got %+v, want 20 ACKs and 1 BYE", first)
	}
	acked, byes := 0, 0
	for i := 0; i <= burst; i++ {
		if tl := got[callID(i)]; tl != nil {
			byes += len(tl.byes)
			if i > 0 && tl.acks == 1 {
				acked++
			}
		}
	}
	t.Logf("%d stray 2xx: %d ACKed once, %d BYEs; goroutines %d before, at most %d", 20+burst, acked, byes, before, peak)
	if acked != burst {
		t.Errorf("%d of %d distinct stray 2xx ACKed once", acked, burst)
	}
	if byes > 64 {
		t.Errorf("%d BYEs for %d stray 2xx, want at most 64 under way at once", byes, 20+burst)
	}
	if peak-before > 200 {
		t.Errorf("goroutines grew by %d, want at most 200", peak-before)
	}
}

// headerValue is the value of the first header line named name in msg.
func headerValue(msg, name string) string {
	for _, l := range strings.Split(msg, "\r\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
