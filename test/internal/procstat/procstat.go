// Package procstat reads a process's CPU time and resident memory, and the
// machine's CPU, from /proc, for the load tools in test/load that report
// cost per call beside the load the machine was under.
package procstat

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// ClockTick is the kernel's USER_HZ: /proc reports CPU in these ticks.
var ClockTick = func() int {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && n > 0 {
			return n
		}
	}
	return 100
}()

// CPUTime is the user plus system time of process pid ("self" for this
// one).
func CPUTime(pid string) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	// The command name may hold spaces and parentheses; fields start after
	// the last ')'.
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("procstat: /proc/%s/stat: short", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / time.Duration(ClockTick), nil
}

// RSSKiB is process pid's resident set (VmRSS) in KiB.
func RSSKiB(pid int) (int64, error) {
	m, err := MemKiB(pid)
	return m.RSS, err
}

// Mem is a process's resident memory in KiB.
type Mem struct {
	// RSS is all of it (VmRSS).
	RSS int64
	// Anon is its anonymous part (RssAnon: heap, stacks, the runtime's
	// own), which is what calls cost. The rest is mostly the binary's
	// pages mapped from the page cache: shared, reclaimable, and moving
	// with what code has run and what the kernel read ahead (two builds
	// of the same code idled at 21.6 and 28.6 MiB of VmRSS with the same
	// 4.2 MiB of RssAnon), so a figure per call over idle takes Anon.
	Anon int64
}

// MemKiB reads process pid's resident memory from /proc/pid/status.
func MemKiB(pid int) (Mem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Mem{}, err
	}
	var m Mem
	var seen int
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "RssAnon") {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return Mem{}, fmt.Errorf("procstat: /proc/%d/status: %s: %w", pid, k, err)
		}
		if k == "VmRSS" {
			m.RSS = n
		} else {
			m.Anon = n
		}
		seen++
	}
	if seen < 2 {
		return m, fmt.Errorf("procstat: /proc/%d/status: no VmRSS or RssAnon", pid)
	}
	return m, nil
}

// MachineCPU is the time all CPUs spent busy and in total since boot
// (first line of /proc/stat; idle and iowait count as not busy).
func MachineCPU() (busy, total time.Duration, err error) {
	f, err := cpuLine()
	if err != nil {
		return 0, 0, err
	}
	var sum, idle int64
	for i, n := range f {
		sum += n
		if i == 3 || i == 4 {
			idle += n
		}
	}
	tick := time.Second / time.Duration(ClockTick)
	return time.Duration(sum-idle) * tick, time.Duration(sum) * tick, nil
}

// StealCPU is the time the hypervisor gave this machine's CPUs to others
// while they had work (the steal column of /proc/stat), and the total, since
// boot. On a virtual machine a load figure taken while steal was high says
// more about the host's other tenants than about the code measured.
func StealCPU() (steal, total time.Duration, err error) {
	f, err := cpuLine()
	if err != nil {
		return 0, 0, err
	}
	var sum int64
	for _, n := range f {
		sum += n
	}
	tick := time.Second / time.Duration(ClockTick)
	return time.Duration(f[7]) * tick, time.Duration(sum) * tick, nil
}

// cpuLine is the first eight columns of /proc/stat's cpu line, in ticks:
// user, nice, system, idle, iowait, irq, softirq, steal (guest time is
// already inside user).
func cpuLine() ([8]int64, error) {
	var f [8]int64
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return f, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	cols := strings.Fields(line)
	if len(cols) < 9 || cols[0] != "cpu" {
		return f, errors.New("procstat: /proc/stat: no cpu line with a steal column")
	}
	for i := range f {
		f[i], _ = strconv.ParseInt(cols[1+i], 10, 64)
	}
	return f, nil
}
