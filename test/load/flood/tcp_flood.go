package main

// Mode tcp-flood: strangers connect to wagate's SIP TCP port as fast as
// they can, optionally write something, and close.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type floodTally struct {
	mu       sync.Mutex
	ok       int
	fails    map[string]int
	connects []time.Duration
}

func (t *floodTally) fail(err error) {
	kind := "other"
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		kind = "refused"
	case errors.Is(err, syscall.ECONNRESET):
		kind = "reset"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		kind = "no local port"
	case errors.Is(err, syscall.EMFILE):
		kind = "out of fds"
	case errors.As(err, &ne) && ne.Timeout():
		kind = "timeout"
	}
	t.mu.Lock()
	t.fails[kind]++
	t.mu.Unlock()
}

func tcpFlood(ctx context.Context, o options, w *wagateProc) error {
	run := runID()
	dst := fmt.Sprintf("%s:%d", o.ip(1), o.sipPort)
	fmt.Printf("# strangers %s.1–.%d → wagate %s over TCP: at most %d connections for at most %v, %d at once, each writing %s and closing; then %v of tail; probe OPTIONS (UDP) from %s every %v\n",
		o.strangerNet, o.strangerIPs, dst, o.count, o.dur, o.workers, o.payload, o.tail, o.ip(3), o.probeEvery)
	// The bystander a stranger's Via names with -payload invite-via.
	vic, err := startVictim(o.strangerNet + ".250")
	if err != nil {
		return fmt.Errorf("bystander listener: %w", err)
	}
	if o.payload == "invite-via" {
		fmt.Printf("# each INVITE's Via names the bystander %v (a TCP listener of this tool), not the sender\n", vic.addr())
	}
	samp := startSampler(w.pid, "before")
	pr, err := startProber(ctx, o, run, "before flood")
	if err != nil {
		samp.stop()
		vic.stop()
		return err
	}
	stopped := false
	stopAll := func() {
		if !stopped {
			stopped = true
			pr.stop()
			samp.stop()
			vic.stop()
		}
	}
	defer stopAll()
	if !wait(ctx, o.settle) {
		return ctx.Err()
	}
	s0 := snap(w)
	samp.setPhase("flood")
	pr.setPhase("during flood")
	t := &floodTally{fails: map[string]int{}}
	var next atomic.Int64
	fctx, cancel := context.WithTimeout(ctx, o.dur)
	var wg sync.WaitGroup
	for range o.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, 2048)
			for {
				i := int(next.Add(1) - 1)
				if i >= o.count || fctx.Err() != nil {
					return
				}
				start := time.Now()
				c, err := dialFrom(fctx, o.strangerIP(i), dst, 2*time.Second)
				if err != nil {
					if fctx.Err() == nil {
						t.fail(err)
					}
					continue
				}
				took := time.Since(start)
				switch o.payload {
				case "crlf":
					_, _ = c.Write([]byte("\r\n\r\n"))
				case "invite":
					l := c.LocalAddr().(*net.TCPAddr)
					buf = inviteMsg(buf[:0], "TCP", run, i, l.IP.String(), l.Port, o.ip(1), o.sipPort)
					_, _ = c.Write(buf)
				case "invite-via":
					va := vic.addr()
					buf = inviteMsg(buf[:0], "TCP", run, i, va.IP.String(), va.Port, o.ip(1), o.sipPort)
					_, _ = c.Write(buf)
				}
				c.Close()
				t.mu.Lock()
				t.ok++
				t.connects = append(t.connects, took)
				t.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	cancel()
	s1 := snap(w)
	samp.setPhase("tail")
	pr.setPhase("after flood")
	wait(ctx, o.tail)
	s2 := snap(w)
	alive := w.alive()
	stopAll()
	peakRSS, peakFDs, _ := samp.peak("flood")
	// A short flood may fall between two samples: the snapshot at its end
	// counts too.
	peakRSS, peakFDs = max(peakRSS, s1.rss), max(peakFDs, s1.fds)
	took := s1.at.Sub(s0.at)

	fmt.Printf("before flood: %v\n", s0)
	fmt.Printf("after flood:  %v\n", s1)
	fmt.Printf("after tail:   %v\n", s2)
	fmt.Printf("flood: %d connections in %.2f s = %.0f/s; failures %v; connect latency p50 %.2f ms, max %.2f ms; this tool used %.0f%% of one core, other processes %.0f%%\n",
		t.ok, took.Seconds(), float64(t.ok)/took.Seconds(), t.fails, ms(quantile(t.connects, 0.5)), ms(quantile(t.connects, 1)), selfPct(s0, s1), others(s0, s1))
	fmt.Printf("kernel: %d connections dropped because an accept queue was full (TcpExt ListenOverflows, all listeners; a dropped SYN is retried after 1 s)\n", s1.listenOverflows-s0.listenOverflows)
	fmt.Printf("wagate CPU: %.2f s during the flood (%.0f%% of one core), %.1f µs per connection, %.2f s during the tail; RSS peak %.1f MiB, fds peak %d, fds after the tail %d\n",
		(s1.cpu - s0.cpu).Seconds(), cpuPct(s0, s1), float64((s1.cpu-s0.cpu).Microseconds())/float64(max(1, t.ok)), (s2.cpu - s1.cpu).Seconds(), mib(peakRSS), peakFDs, s2.fds)
	fmt.Printf("bystander (the address in -payload invite-via's Via): wagate opened %d connections to it and sent %d responses (%d bytes)\n", vic.conns.Load(), vic.resps.Load(), vic.bytes.Load())
	lines, msgs := w.logLines()
	fmt.Printf("wagate log: %d bytes during the flood and tail (%d lines in all; by message: %s)\n", s2.logBytes-s0.logBytes, lines, topMsgs(msgs, 6))
	stats := pr.stats()
	for _, s := range stats {
		fmt.Printf("probe %v\n", s)
	}
	if !alive {
		fmt.Printf("WAGATE EXITED during the run: %v\n%s\n", w.waitErr, w.logTail(2000))
	}
	var during probeStats
	for _, s := range stats {
		if s.phase == "during flood" {
			during = s
		}
	}
	nfail := 0
	for _, n := range t.fails {
		nfail += n
	}
	fmt.Printf("SUMMARY mode=tcp-flood count=%d d=%v payload=%s connections=%d per_s=%.0f failed=%d connect_p50_ms=%.2f connect_max_ms=%.2f listen_overflows=%d cpu_flood_s=%.2f cpu_tail_s=%.2f rss_before_mib=%.1f rss_peak_mib=%.1f fds_before=%d fds_peak=%d fds_after_tail=%d log_bytes=%d via_conns=%d via_responses=%d probe_p50_ms=%.2f probe_max_ms=%.2f probe_unanswered=%d others_pct=%.0f alive=%v\n",
		o.count, o.dur, o.payload, t.ok, float64(t.ok)/took.Seconds(), nfail, ms(quantile(t.connects, 0.5)), ms(quantile(t.connects, 1)), s1.listenOverflows-s0.listenOverflows,
		(s1.cpu - s0.cpu).Seconds(), (s2.cpu - s1.cpu).Seconds(), mib(s0.rss), mib(peakRSS), s0.fds, peakFDs, s2.fds,
		s2.logBytes-s0.logBytes, vic.conns.Load(), vic.resps.Load(), ms(during.p50), ms(during.max), during.unanswered, others(s0, s1), alive)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}
