package main

// A snapshot of wagate's cost counters at one moment, and the difference
// of two.

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/wagate/wagate/test/internal/procstat"
)

type snapshot struct {
	at       time.Time
	cpu      time.Duration // wagate's utime+stime
	self     time.Duration // this tool's
	rss, hwm int64         // KiB
	threads  int64
	fds      int
	logBytes int64
	// The whole machine's busy and total CPU time, to tell how much of it
	// other processes used.
	busy, total time.Duration
	// listenOverflows is the kernel's count of full accept queues.
	listenOverflows int64
}

func snap(w *wagateProc) snapshot {
	s := snapshot{at: time.Now(), fds: -1}
	pid := strconv.Itoa(w.pid)
	s.cpu, _ = procstat.CPUTime(pid)
	s.self, _ = procstat.CPUTime("self")
	s.rss, s.hwm, s.threads, _ = memKiB(w.pid)
	if n, err := fdCount(w.pid); err == nil {
		s.fds = n
	}
	s.logBytes = w.logSize()
	s.busy, s.total, _ = procstat.MachineCPU()
	s.listenOverflows, _ = listenOverflows()
	return s
}

func (s snapshot) String() string {
	return fmt.Sprintf("cpu %.2f s, RSS %.1f MiB (VmHWM %.1f), %d threads, %d fds, log %d bytes",
		s.cpu.Seconds(), mib(s.rss), mib(s.hwm), s.threads, s.fds, s.logBytes)
}

// cpuPct is wagate's CPU between a and b in % of one core.
func cpuPct(a, b snapshot) float64 {
	d := b.at.Sub(a.at)
	if d <= 0 {
		return 0
	}
	return 100 * float64(b.cpu-a.cpu) / float64(d)
}

func selfPct(a, b snapshot) float64 {
	d := b.at.Sub(a.at)
	if d <= 0 {
		return 0
	}
	return 100 * float64(b.self-a.self) / float64(d)
}

// others is how much CPU, in % of one core, processes other than wagate
// and this tool used between a and b: above a few %, the machine was
// shared and the numbers are less clean.
func others(a, b snapshot) float64 {
	d := b.at.Sub(a.at)
	if d <= 0 || b.total <= a.total {
		return 0
	}
	busy := (b.busy - a.busy) - (b.cpu - a.cpu) - (b.self - a.self)
	return max(0, 100*float64(busy)/float64(d))
}

// waitIdle waits (at most limit) until the machine's CPUs were less than
// 10 % of one core busy over 2 s, so other jobs do not skew the numbers.
func waitIdle(ctx context.Context, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for {
		b0, _, _ := procstat.MachineCPU()
		t0 := time.Now()
		if !wait(ctx, 2*time.Second) {
			return
		}
		b1, _, _ := procstat.MachineCPU()
		busy := 100 * float64(b1-b0) / float64(time.Since(t0))
		if busy < 10 {
			return
		}
		if time.Now().After(deadline) {
			fmt.Printf("# machine still %.0f%% of one core busy after waiting %v for it to be idle; measuring anyway\n", busy, limit)
			return
		}
	}
}
