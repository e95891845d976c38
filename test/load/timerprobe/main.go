// Command timerprobe measures how late this host wakes a sleeping thread:
// the floor under wagate's pacing. wagate's media pacer sleeps until a
// packet's millisecond on a timerfd read through Go's network poller; no
// pacer can send earlier than the kernel and the hypervisor wake it. On a
// virtual machine an idle vCPU's wake-up goes through the host's scheduler,
// and that alone can be milliseconds.
//
// It sleeps -n times until the next multiple of -period, three ways, one
// after another, and prints each way's lateness (wake-up time less due
// time): p50, p90, p99, p99.9, max and the share within 1 ms, and how
// much CPU time the hypervisor stole meanwhile.
//
//	poller    a timerfd read through Go's poller (wagate's pacer on Linux)
//	blocking  a blocking read of a timerfd (one thread, no poller)
//	sleep     time.Sleep (the Go runtime's timers)
//
// Usage: go run ./test/load/timerprobe [-n 2000] [-period 10ms]
// Bounded: n ≤ 100,000 and n × period ≤ 10 minutes. No network.
package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/wagate/wagate/test/internal/procstat"
	"golang.org/x/sys/unix"
)

func main() {
	n := flag.Int("n", 2000, "wake-ups per way")
	period := flag.Duration("period", 10*time.Millisecond, "interval between due times (wagate's DTX silence and RTCP share a 10 ms grid; audio is every 20 ms)")
	flag.Parse()
	if *n < 1 || *n > 100000 || *period < 100*time.Microsecond || time.Duration(*n)**period > 10*time.Minute {
		fmt.Fprintln(os.Stderr, "timerprobe: need 1 ≤ -n ≤ 100000, -period ≥ 100µs and n × period ≤ 10m")
		os.Exit(2)
	}
	fmt.Printf("# %d wake-ups every %v per way\n", *n, *period)
	fmt.Printf("%-9s %9s %9s %9s %9s %9s %8s\n", "way", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "≤1ms %")
	s0, t0, err0 := procstat.StealCPU()
	for _, way := range []string{"poller", "blocking", "sleep"} {
		late, err := probe(way, *n, *period)
		if err != nil {
			fmt.Fprintf(os.Stderr, "timerprobe: %s: %v\n", way, err)
			os.Exit(1)
		}
		report(way, late)
	}
	if s1, t1, err := procstat.StealCPU(); err == nil && err0 == nil && t1 > t0 {
		fmt.Printf("# the hypervisor stole %.1f %% of this machine's CPU time meanwhile\n", 100*float64(s1-s0)/float64(t1-t0))
	}
}

// probe sleeps n times until successive due times period apart and
// returns how late each wake-up was.
func probe(way string, n int, period time.Duration) ([]time.Duration, error) {
	flags := unix.TFD_CLOEXEC
	if way == "poller" {
		flags |= unix.TFD_NONBLOCK // os.NewFile then registers it with the poller
	}
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, flags)
	if err != nil {
		return nil, fmt.Errorf("timerfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "timerprobe")
	defer f.Close()
	var buf [8]byte
	late := make([]time.Duration, 0, n)
	due := time.Now().Add(period)
	for range n {
		d := max(time.Until(due), 1) // zero would disarm the timer
		switch way {
		case "sleep":
			time.Sleep(d)
		default:
			spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
			if err := unix.TimerfdSettime(fd, 0, &spec, nil); err != nil {
				return nil, fmt.Errorf("arm: %w", err)
			}
			if way == "poller" {
				_, err = f.Read(buf[:])
			} else {
				_, err = unix.Read(fd, buf[:])
			}
			if err != nil {
				return nil, fmt.Errorf("read: %w", err)
			}
		}
		late = append(late, time.Since(due))
		due = due.Add(period)
		if now := time.Now(); due.Before(now) {
			// A wake-up later than a period: skip the missed due times
			// rather than count one late wake-up many times.
			due = now.Add(period - now.Sub(due)%period)
		}
	}
	return late, nil
}

func report(way string, late []time.Duration) {
	slices.Sort(late)
	q := func(p float64) float64 {
		return float64(late[min(len(late)-1, int(p*float64(len(late))))]) / 1e6
	}
	within := 0
	for _, l := range late {
		if l <= time.Millisecond {
			within++
		}
	}
	fmt.Printf("%-9s %9.3f %9.3f %9.3f %9.3f %9.3f %8.1f\n", way, q(0.5), q(0.9), q(0.99), q(0.999),
		float64(late[len(late)-1])/1e6, 100*float64(within)/float64(len(late)))
}
