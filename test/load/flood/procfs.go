package main

// What /proc says about a process (wagate, or this tool as "self"): CPU
// time, resident memory, open file descriptors, and the datagrams the
// kernel dropped on a UDP socket.

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// memKiB is VmRSS and VmHWM of pid, and its thread count.
func memKiB(pid int) (rss, hwm, threads int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(fs[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			hwm = n
		case "Threads":
			threads = n
		}
	}
	return rss, hwm, threads, sc.Err()
}

// fdCount is the number of open file descriptors of pid.
func fdCount(pid int) (int, error) {
	d, err := os.Open(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	return len(names), err
}

// udpDrops is the drop counter of the IPv4 UDP socket bound to addr
// (/proc/net/udp): datagrams the kernel threw away because the socket's
// receive queue was full. ok is false when no such socket exists.
func udpDrops(addr netip.AddrPort) (drops uint64, ok bool, err error) {
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return 0, false, err
	}
	a := addr.Addr().As4()
	// The kernel prints the address as a native-endian u32.
	want := fmt.Sprintf("%02X%02X%02X%02X:%04X", a[3], a[2], a[1], a[0], addr.Port())
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 13 || f[1] != want {
			continue
		}
		n, err := strconv.ParseUint(f[len(f)-1], 10, 64)
		return n, err == nil, err
	}
	return 0, false, nil
}

// checkFDLimit makes sure this process can hold need descriptors. Go
// raises its own soft limit to the hard limit at start-up, so the hard
// limit is what counts (wagate, also Go, does the same).
func checkFDLimit(need int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("reading the open-file limit: %w", err)
	}
	if lim.Cur < uint64(need) {
		return fmt.Errorf("open-file limit too low: this run needs about %d descriptors in this tool and as many in wagate, the limit is %d (hard %d); raise it first, e.g. `ulimit -n %d` in the shell that runs the tool", need, lim.Cur, lim.Max, need+1024)
	}
	return nil
}

// listenOverflows is the kernel's count of connections dropped because a
// listening socket's accept queue was full (TcpExt ListenOverflows in
// /proc/net/netstat). It counts every listener of the network namespace,
// not only wagate's.
func listenOverflows() (int64, error) {
	b, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		return 0, err
	}
	lines := strings.Split(string(b), "\n")
	for i := 0; i+1 < len(lines); i++ {
		names, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || names[0] != "TcpExt:" || len(vals) != len(names) {
			continue
		}
		for j, n := range names {
			if n == "ListenOverflows" {
				return strconv.ParseInt(vals[j], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("/proc/net/netstat: no TcpExt ListenOverflows")
}

func mib(kib int64) float64 { return float64(kib) / 1024 }
