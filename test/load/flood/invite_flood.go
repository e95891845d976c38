package main

// Mode invite-flood: a stranger sends INVITEs over UDP at a fixed rate and
// counts what wagate sends back, during the flood and for -tail after it.

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// collector reads the attacker's socket and counts wagate's responses.
type collector struct {
	run     string
	from    netip.AddrPort // wagate's SIP address
	start   time.Time      // of the flood; responses are bucketed per second from it
	inTail  atomic.Bool
	mu      sync.Mutex
	perCall []uint16          // responses per INVITE index
	sentAt  []atomic.Int64    // when each INVITE was sent (UnixNano), set by the sender
	firstIn []time.Duration   // from sending an INVITE to its first response
	perCode map[uint64]uint16 // index<<10 | code → responses
	byCode  map[int]int
	flood   int // responses while the flood was sent
	tail    int // responses after it
	foreign int // datagrams that are not a response to this run's INVITEs
	bytes   int64
	perSec  []int
	last    time.Time
	done    chan struct{}
}

func newCollector(run string, n int, from netip.AddrPort, start time.Time) *collector {
	return &collector{run: run, from: from, start: start, perCall: make([]uint16, n), sentAt: make([]atomic.Int64, n),
		perCode: map[uint64]uint16{}, byCode: map[int]int{}, done: make(chan struct{})}
}

// read counts responses until conn is closed.
func (c *collector) read(conn *net.UDPConn) {
	defer close(c.done)
	buf := make([]byte, 65536)
	for {
		n, addr, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		now := time.Now()
		r, ok := parseResponse(buf[:n])
		i := -1
		if ok {
			i = callIndex(r.callID, floodPrefix, c.run)
		}
		c.mu.Lock()
		if addr.Addr().Unmap() != c.from.Addr() || i < 0 || i >= len(c.perCall) {
			c.foreign++
			c.mu.Unlock()
			continue
		}
		if c.perCall[i] == 0 {
			if at := c.sentAt[i].Load(); at > 0 {
				c.firstIn = append(c.firstIn, now.Sub(time.Unix(0, at)))
			}
		}
		c.perCall[i]++
		c.bytes += int64(n)
		c.perCode[uint64(i)<<10|uint64(r.code&0x3ff)]++
		c.byCode[r.code]++
		if c.inTail.Load() {
			c.tail++
		} else {
			c.flood++
		}
		s := int(now.Sub(c.start) / time.Second)
		for len(c.perSec) <= s {
			c.perSec = append(c.perSec, 0)
		}
		c.perSec[s]++
		c.last = now
		c.mu.Unlock()
	}
}

// floodResult is the sender's side.
type floodResult struct {
	sent, errors int
	firstErr     error
	took         time.Duration
	size         int
}

// sendFlood sends up to total INVITEs at rate per second, for at most d:
// every millisecond it catches up with the count due by then.
func sendFlood(ctx context.Context, conn *net.UDPConn, o options, run string, total int, sentAt []atomic.Int64) floodResult {
	var r floodResult
	local := conn.LocalAddr().(*net.UDPAddr)
	src := local.IP.String()
	dst := &net.UDPAddr{IP: net.ParseIP(o.ip(1)), Port: o.sipPort}
	dstIP := dst.IP.String()
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	start := time.Now()
	end := start.Add(o.dur)
	buf := make([]byte, 0, 2048)
	for r.sent < total {
		now := time.Now()
		if !now.Before(end) {
			break
		}
		// What is due by the end of this tick, so the last tick before
		// the deadline completes the count.
		due := min(total, int(float64(o.rate)*(now.Sub(start)+time.Millisecond).Seconds()))
		for ; r.sent < due; r.sent++ {
			buf = inviteMsg(buf[:0], "UDP", run, r.sent, src, local.Port, dstIP, o.sipPort)
			r.size = len(buf)
			sentAt[r.sent].Store(time.Now().UnixNano())
			if _, err := conn.WriteToUDP(buf, dst); err != nil {
				r.errors++
				if r.firstErr == nil {
					r.firstErr = err
				}
			}
		}
		select {
		case <-ctx.Done():
			r.took = time.Since(start)
			return r
		case <-t.C:
		}
	}
	r.took = time.Since(start)
	return r
}

func inviteFlood(ctx context.Context, o options, w *wagateProc) error {
	run := runID()
	total := int(float64(o.rate) * o.dur.Seconds())
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(o.ip(9))})
	if err != nil {
		return fmt.Errorf("attacker socket on %s: %w", o.ip(9), err)
	}
	defer conn.Close()
	// Large buffers so the attacker itself drops nothing; capped by
	// net.core.rmem_max/wmem_max, and its drops are reported anyway.
	_ = conn.SetReadBuffer(16 << 20)
	_ = conn.SetWriteBuffer(16 << 20)
	attacker := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	wagateAddr := netip.AddrPortFrom(netip.MustParseAddr(o.ip(1)), uint16(o.sipPort))
	fmt.Printf("# attacker %v (a stranger) → wagate %v over UDP: %d INVITEs at %d/s for at most %v, then %v of tail; probe OPTIONS from %s every %v\n",
		attacker, wagateAddr, total, o.rate, o.dur, o.tail, o.ip(3), o.probeEvery)

	samp := startSampler(w.pid, "before")
	pr, err := startProber(ctx, o, run, "before flood")
	if err != nil {
		samp.stop()
		return err
	}
	// The prober and sampler are ended on every path below.
	stopped := false
	stopAll := func() {
		if !stopped {
			stopped = true
			pr.stop()
			samp.stop()
		}
	}
	defer stopAll()
	if !wait(ctx, o.settle) {
		return ctx.Err()
	}
	drops0, _, _ := udpDrops(wagateAddr)
	s0 := snap(w)
	col := newCollector(run, total, wagateAddr, s0.at)
	go col.read(conn)
	samp.setPhase("flood")
	pr.setPhase("during flood")
	fr := sendFlood(ctx, conn, o, run, total, col.sentAt)
	s1 := snap(w)
	col.inTail.Store(true)
	samp.setPhase("tail")
	pr.setPhase("after flood")
	wait(ctx, o.tail)
	s2 := snap(w)
	drops1, _, _ := udpDrops(wagateAddr)
	ourDrops, _, _ := udpDrops(attacker)
	alive := w.alive()
	stopAll()
	conn.Close()
	<-col.done

	peakFlood, _, thrFlood := samp.peak("flood")
	peakTail, _, _ := samp.peak("tail")
	lines, msgs := w.logLines()

	// Per Call-ID: the first response of each INVITE, responses beyond
	// it, and of those the repeats of a status code already received.
	answered, beyond, retrans, maxPer := 0, 0, 0, 0
	for _, n := range col.perCall {
		if n > 0 {
			answered++
			beyond += int(n) - 1
			maxPer = max(maxPer, int(n))
		}
	}
	for _, n := range col.perCode {
		retrans += int(n) - 1
	}
	responses := col.flood + col.tail
	lastAfter := time.Duration(0)
	if !col.last.IsZero() {
		lastAfter = col.last.Sub(s1.at)
	}

	fmt.Printf("before flood:  %v\n", s0)
	fmt.Printf("after flood:   %v\n", s1)
	fmt.Printf("after tail:    %v\n", s2)
	fmt.Printf("flood: sent %d INVITEs (%d bytes each) in %.2f s = %.0f/s, %d send errors%s; this tool used %.0f%% of one core, other processes %.0f%% (tail: %.0f%%)\n",
		fr.sent, fr.size, fr.took.Seconds(), float64(fr.sent)/fr.took.Seconds(), fr.errors, errSuffix(fr.firstErr), selfPct(s0, s1), others(s0, s1), others(s1, s2))
	fmt.Printf("wagate CPU: %.2f s during the flood (%.0f%% of one core), %.2f s during the %v tail (%.0f%%), %.1f µs per INVITE (flood+tail)\n",
		(s1.cpu - s0.cpu).Seconds(), cpuPct(s0, s1), (s2.cpu - s1.cpu).Seconds(), o.tail, cpuPct(s1, s2),
		float64((s2.cpu-s0.cpu).Microseconds())/float64(max(1, fr.sent)))
	fmt.Printf("wagate RSS: %.1f MiB before, peak %.1f MiB during the flood, peak %.1f MiB during the tail, VmHWM %.1f MiB, %.1f MiB at the end of the tail; threads peak %d\n",
		mib(s0.rss), mib(peakFlood), mib(peakTail), mib(s2.hwm), mib(s2.rss), thrFlood)
	fmt.Printf("wagate log: %d bytes during the flood, %d during the tail (%d lines in all; by message: %s)\n",
		s1.logBytes-s0.logBytes, s2.logBytes-s1.logBytes, lines, topMsgs(msgs, 6))
	fmt.Printf("kernel drops: %d datagrams on wagate's SIP socket (receive queue full), %d on the attacker's\n", drops1-drops0, ourDrops)
	fmt.Printf("responses to the attacker: %d (%d during the flood, %d after it), %d bytes = %.2f× the bytes of the INVITEs; by code: %s; %d other datagrams\n",
		responses, col.flood, col.tail, col.bytes, float64(col.bytes)/float64(max(1, fr.sent*fr.size)), codes(col.byCode), col.foreign)
	fmt.Printf("per Call-ID: %d of %d INVITEs answered; %d responses beyond the first per Call-ID, of which %d repeat a status already sent (retransmissions); at most %d responses to one INVITE; last response %.1f s after the flood ended\n",
		answered, fr.sent, beyond, retrans, maxPer, lastAfter.Seconds())
	fmt.Printf("time from an INVITE to its first response: p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
		ms(quantile(col.firstIn, 0.5)), ms(quantile(col.firstIn, 0.99)), ms(quantile(col.firstIn, 1)))
	fmt.Printf("responses per second from the flood's start: %v\n", col.perSec)
	stats := pr.stats()
	for _, s := range stats {
		fmt.Printf("probe %v\n", s)
	}
	if !alive {
		fmt.Printf("WAGATE EXITED during the run: %v\n%s\n", w.waitErr, w.logTail(2000))
	}
	during := probeStats{}
	for _, s := range stats {
		if s.phase == "during flood" {
			during = s
		}
	}
	fmt.Printf("SUMMARY mode=invite-flood rate=%d d=%v sent=%d invite_bytes=%d responses=%d response_bytes=%d responses_after_flood=%d answered_callids=%d first_response_p50_ms=%.1f first_response_max_ms=%.1f beyond_first=%d retransmissions=%d cpu_flood_s=%.2f cpu_tail_s=%.2f rss_before_mib=%.1f rss_peak_mib=%.1f hwm_mib=%.1f rss_after_tail_mib=%.1f log_bytes=%d wagate_udp_drops=%d probe_sent=%d probe_p50_ms=%.2f probe_max_ms=%.2f probe_unanswered=%d others_pct=%.0f alive=%v\n",
		o.rate, o.dur, fr.sent, fr.size, responses, col.bytes, col.tail, answered, ms(quantile(col.firstIn, 0.5)), ms(quantile(col.firstIn, 1)), beyond, retrans,
		(s1.cpu - s0.cpu).Seconds(), (s2.cpu - s1.cpu).Seconds(), mib(s0.rss), mib(max(peakFlood, peakTail)), mib(s2.hwm), mib(s2.rss),
		s2.logBytes-s0.logBytes, drops1-drops0, during.sent, ms(during.p50), ms(during.max), during.unanswered, others(s0, s1), alive)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return " (first: " + err.Error() + ")"
}

// codes lists counts by status code, in code order.
func codes(m map[int]int) string {
	if len(m) == 0 {
		return "none"
	}
	ks := make([]int, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Ints(ks)
	var b strings.Builder
	for i, k := range ks {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d: %d", k, m[k])
	}
	return b.String()
}

// topMsgs is the n most frequent log messages with their counts.
func topMsgs(m map[string]int, n int) string {
	type kv struct {
		k string
		v int
	}
	var s []kv
	for k, v := range m {
		s = append(s, kv{k, v})
	}
	sort.Slice(s, func(i, j int) bool { return s[i].v > s[j].v || s[i].v == s[j].v && s[i].k < s[j].k })
	var b strings.Builder
	for i, x := range s {
		if i == n {
			fmt.Fprintf(&b, ", … %d more kinds", len(s)-n)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q×%d", x.k, x.v)
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}
