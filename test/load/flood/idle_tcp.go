package main

// Mode idle-tcp: strangers (and, for comparison, the pbx endpoint) open
// TCP connections to wagate's SIP port and hold them without sending a
// request. Each connection is read for the whole hold, so the moment
// wagate closes one is seen.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// openTimeout bounds the opening of all connections.
const openTimeout = 60 * time.Second

type heldConn struct {
	c        *net.TCPConn
	stranger bool
	opened   time.Time
	// Filled by the reader when the hold ends.
	closedAfter time.Duration // 0: still open
	how         string        // "eof" or "reset" when closed
	bytes       int           // what wagate sent on it
}

// dialFrom connects to wagate's SIP TCP port from src.
func dialFrom(ctx context.Context, src, dst string, timeout time.Duration) (*net.TCPConn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp4", dst)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// openConns opens n connections with a few dials in flight at once;
// src(i) is the source address of the i-th.
func openConns(ctx context.Context, n int, src func(int) string, dst string, stranger, crlf bool) ([]*heldConn, int, error) {
	ctx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	conns := make([]*heldConn, n)
	var failed atomic.Int64
	var firstErr atomic.Value
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := dialFrom(ctx, src(i), dst, 3*time.Second)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				if crlf {
					_, _ = c.Write([]byte("\r\n\r\n"))
				}
				conns[i] = &heldConn{c: c, stranger: stranger, opened: time.Now()}
			}
		}()
	}
	wg.Wait()
	var out []*heldConn
	for _, c := range conns {
		if c != nil {
			out = append(out, c)
		}
	}
	err, _ := firstErr.Load().(error)
	return out, int(failed.Load()), err
}

// watch reads c until the deadline: EOF or a reset means wagate closed it.
func (h *heldConn) watch(deadline time.Time) {
	_ = h.c.SetReadDeadline(deadline)
	buf := make([]byte, 4096)
	for {
		n, err := h.c.Read(buf)
		h.bytes += n
		if err == nil {
			continue
		}
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			return // still open at the deadline
		case errors.Is(err, io.EOF):
			h.how = "eof"
		case errors.Is(err, syscall.ECONNRESET):
			h.how = "reset"
		default:
			h.how = err.Error()
		}
		h.closedAfter = max(time.Since(h.opened), time.Nanosecond)
		return
	}
}

type connTally struct {
	opened, failed, open, closed int
	closedAfter                  []time.Duration
	hows                         map[string]int
	bytes                        int
}

func tally(cs []*heldConn, stranger bool, failed int) connTally {
	t := connTally{failed: failed, hows: map[string]int{}}
	for _, c := range cs {
		if c.stranger != stranger {
			continue
		}
		t.opened++
		t.bytes += c.bytes
		if c.closedAfter == 0 {
			t.open++
			continue
		}
		t.closed++
		t.hows[c.how]++
		t.closedAfter = append(t.closedAfter, c.closedAfter)
	}
	return t
}

func (t connTally) String() string {
	s := fmt.Sprintf("%d opened (%d failed to open), %d still open at the end, %d closed by wagate", t.opened, t.failed, t.open, t.closed)
	if t.closed > 0 {
		s += fmt.Sprintf(" (%v; after %.1f s median, %.1f s min, %.1f s max)", t.hows,
			quantile(t.closedAfter, 0.5).Seconds(), quantile(t.closedAfter, 0).Seconds(), quantile(t.closedAfter, 1).Seconds())
	}
	if t.bytes > 0 {
		s += fmt.Sprintf(", %d bytes received from wagate", t.bytes)
	}
	return s
}

func idleTCP(ctx context.Context, o options, w *wagateProc) error {
	run := runID()
	dst := fmt.Sprintf("%s:%d", o.ip(1), o.sipPort)
	fmt.Printf("# %d connections from strangers %s.1–.%d and %d from the pbx endpoint %s → wagate %s over TCP, sending %s, held %v; probe OPTIONS (UDP) from %s every %v\n",
		o.conns, o.strangerNet, o.strangerIPs, o.endpointConns, o.ip(3), dst, map[bool]string{true: "one CRLF", false: "nothing"}[o.crlf], o.dur, o.ip(3), o.probeEvery)
	samp := startSampler(w.pid, "before")
	pr, err := startProber(ctx, o, run, "before")
	if err != nil {
		samp.stop()
		return err
	}
	var all []*heldConn
	stopped := false
	cleanup := func() {
		for _, c := range all {
			c.c.Close()
		}
		all = nil
		if !stopped {
			stopped = true
			pr.stop()
			samp.stop()
		}
	}
	defer cleanup()
	if !wait(ctx, o.settle) {
		return ctx.Err()
	}
	s0 := snap(w)
	samp.setPhase("open")
	pr.setPhase("while opening and holding")
	t0 := time.Now()
	strangers, sFailed, sErr := openConns(ctx, o.conns, o.strangerIP, dst, true, o.crlf)
	all = append(all, strangers...)
	endpoint, eFailed, eErr := openConns(ctx, o.endpointConns, func(int) string { return o.ip(3) }, dst, false, o.crlf)
	all = append(all, endpoint...)
	openTook := time.Since(t0)
	if sErr != nil || eErr != nil {
		fmt.Printf("# failures opening connections: strangers %d (first: %v), endpoint %d (first: %v)\n", sFailed, sErr, eFailed, eErr)
	}
	if errors.Is(sErr, syscall.EMFILE) || errors.Is(eErr, syscall.EMFILE) {
		return fmt.Errorf("out of file descriptors in this tool (%v); raise `ulimit -n`", firstNonNil(sErr, eErr))
	}
	time.Sleep(200 * time.Millisecond) // let wagate accept the last ones
	s1 := snap(w)
	holdEnd := time.Now().Add(o.dur)
	var wg sync.WaitGroup
	for _, c := range all {
		wg.Add(1)
		go func() { defer wg.Done(); c.watch(holdEnd) }()
	}
	samp.setPhase("hold")
	wait(ctx, time.Until(holdEnd))
	wg.Wait()
	s2 := snap(w)
	st, en := tally(all, true, sFailed), tally(all, false, eFailed)
	alive := w.alive()
	// Close them all from this side; does wagate let go of its ends?
	for _, c := range all {
		c.c.Close()
	}
	all = nil
	samp.setPhase("after close")
	pr.setPhase("after close")
	wait(ctx, 2*time.Second)
	s3 := snap(w)
	stopped = true
	pr.stop()
	samp.stop()
	peakRSS, peakFDs, peakThr := samp.peak("open", "hold")
	peakRSS, peakFDs = max(peakRSS, s1.rss, s2.rss), max(peakFDs, s1.fds, s2.fds)

	fmt.Printf("before:          %v\n", s0)
	fmt.Printf("after opening:   %v (opening took %.2f s)\n", s1, openTook.Seconds())
	fmt.Printf("end of hold:     %v\n", s2)
	fmt.Printf("2 s after close: %v\n", s3)
	fmt.Printf("kernel: %d connections dropped while opening because an accept queue was full (TcpExt ListenOverflows, all listeners)\n", s1.listenOverflows-s0.listenOverflows)
	fmt.Printf("strangers: %v\n", st)
	fmt.Printf("endpoint:  %v\n", en)
	fmt.Printf("wagate CPU: %.2f s while opening, %.2f s during the %v hold (%.1f%% of one core); RSS peak %.1f MiB, fds peak %d, threads peak %d\n",
		(s1.cpu - s0.cpu).Seconds(), (s2.cpu - s1.cpu).Seconds(), o.dur, cpuPct(s1, s2), mib(peakRSS), peakFDs, peakThr)
	fmt.Printf("wagate log: %d bytes (opening and hold); other processes used %.0f%% of one core during the hold\n", s2.logBytes-s0.logBytes, others(s1, s2))
	stats := pr.stats()
	for _, s := range stats {
		fmt.Printf("probe %v\n", s)
	}
	if !alive {
		fmt.Printf("WAGATE EXITED during the run: %v\n%s\n", w.waitErr, w.logTail(2000))
	}
	var held probeStats
	for _, s := range stats {
		if s.phase == "while opening and holding" {
			held = s
		}
	}
	fmt.Printf("SUMMARY mode=idle-tcp conns=%d endpoint_conns=%d d=%v crlf=%v stranger_opened=%d stranger_open_at_end=%d stranger_closed=%d stranger_close_median_s=%.1f endpoint_opened=%d endpoint_open_at_end=%d cpu_open_s=%.2f cpu_hold_s=%.2f rss_before_mib=%.1f rss_peak_mib=%.1f rss_end_mib=%.1f fds_before=%d fds_held=%d fds_end=%d fds_after_close=%d threads_before=%d threads_end=%d log_bytes=%d probe_p50_ms=%.2f probe_max_ms=%.2f probe_unanswered=%d others_pct=%.0f alive=%v\n",
		o.conns, o.endpointConns, o.dur, o.crlf, st.opened, st.open, st.closed, quantile(st.closedAfter, 0.5).Seconds(), en.opened, en.open,
		(s1.cpu - s0.cpu).Seconds(), (s2.cpu - s1.cpu).Seconds(), mib(s0.rss), mib(peakRSS), mib(s2.rss), s0.fds, s1.fds, s2.fds, s3.fds,
		s0.threads, s2.threads, s2.logBytes-s0.logBytes, ms(held.p50), ms(held.max), held.unanswered, others(s1, s2), alive)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

func firstNonNil(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
