// Command probe measures what OPTIONS probing of PBX endpoints costs
// wagate, over loopback only. It starts the real wagate binary with -n pbx
// endpoints, each with `probe: {interval: -interval}`, at 127.0.<net>.10
// and up, and a Go responder per endpoint that answers every OPTIONS with
// 200 (or, for the -silent share of them, nothing: probes that time out).
// After -warmup it reads wagate's CPU time (/proc/PID/stat) over -d and
// the probes the responders answered, then does the same with the same
// endpoints and no probe (the baseline: an idle wagate). It prints both,
// the difference as a share of one core, and the CPU per probe.
//
// Usage (from the repository root):
//
//	go build -o /tmp/wagate-bin ./cmd/wagate
//	go run ./test/load/probe -wagate /tmp/wagate-bin -n 100 -interval 1s -d 30s
//	go run ./test/load/probe -wagate /tmp/wagate-bin -n 100 -interval 10s -d 60s
//	go run ./test/load/probe -wagate /tmp/wagate-bin -n 100 -interval 1s -silent 0.2
//
// Bounded: n ≤ 250, interval ≥ 100 ms, d ≤ 5 m; every socket is on
// 127.0.0.0/8; wagate is stopped on exit and killed by the kernel should
// this tool die first.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wagate/wagate/test/internal/procstat"
)

type options struct {
	wagate   string
	n        int
	interval time.Duration
	d        time.Duration
	warmup   time.Duration
	silent   float64
	net      int
	out      string
}

func main() {
	var o options
	flag.StringVar(&o.wagate, "wagate", "", "wagate binary (default: build ./cmd/wagate)")
	flag.IntVar(&o.n, "n", 100, "probed pbx endpoints (1–250)")
	flag.DurationVar(&o.interval, "interval", time.Second, "probe.interval of every endpoint (≥ 100ms)")
	flag.DurationVar(&o.d, "d", 30*time.Second, "measured time per run (≤ 5m)")
	flag.DurationVar(&o.warmup, "warmup", 3*time.Second, "time before measuring")
	flag.Float64Var(&o.silent, "silent", 0, "share of endpoints that never answer (0–1)")
	flag.IntVar(&o.net, "net", 78, "N of the loopback /24 127.0.N.0 used")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	switch {
	case o.n < 1 || o.n > 250:
		return errors.New("-n must be 1–250")
	case o.interval < 100*time.Millisecond:
		return errors.New("-interval must be at least 100ms")
	case o.d <= 0 || o.d > 5*time.Minute:
		return errors.New("-d must be in (0, 5m]")
	case o.silent < 0 || o.silent > 1:
		return errors.New("-silent must be 0–1")
	case o.net < 1 || o.net > 254:
		return errors.New("-net must be 1–254")
	}
	out, err := os.MkdirTemp("", "wagate-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(out)
	o.out = out
	if o.wagate == "" {
		bin, err := build(out)
		if err != nil {
			return err
		}
		o.wagate = bin
	}
	var answered atomic.Int64
	silentFrom := o.n - int(float64(o.n)*o.silent)
	stop, err := responders(o, silentFrom, &answered)
	if err != nil {
		return err
	}
	defer stop()

	probing, err := measure(o, true, &answered)
	if err != nil {
		return err
	}
	idle, err := measure(o, false, &answered)
	if err != nil {
		return err
	}
	extra := probing.cpu - idle.cpu
	sent := float64(o.n) * o.d.Seconds() / o.interval.Seconds()
	fmt.Printf("endpoints %d, interval %v, %d silent, measured %v each\n", o.n, o.interval, o.n-silentFrom, o.d)
	fmt.Printf("probing:  wagate CPU %v (%.2f%% of one core), OPTIONS answered %d, probes in /v1/status %d\n",
		probing.cpu.Round(time.Millisecond), pct(probing.cpu, o.d), probing.answered, probing.probes)
	fmt.Printf("baseline: wagate CPU %v (%.2f%% of one core), no probes\n", idle.cpu.Round(time.Millisecond), pct(idle.cpu, o.d))
	fmt.Printf("SUMMARY n=%d interval=%v silent=%d probes_per_s=%.1f extra_cpu_pct_of_core=%.2f cpu_per_probe_us=%.1f\n",
		o.n, o.interval, o.n-silentFrom, sent/o.d.Seconds(), pct(extra, o.d), float64(extra.Microseconds())/sent)
	return nil
}

func pct(cpu, d time.Duration) float64 { return 100 * cpu.Seconds() / d.Seconds() }

type sample struct {
	cpu      time.Duration
	answered int64
	probes   uint64
}

// measure runs one wagate (probing or not) and samples it.
func measure(o options, probing bool, answered *atomic.Int64) (sample, error) {
	var s sample
	cfg, api, err := writeConfig(o, probing)
	if err != nil {
		return s, err
	}
	logf, err := os.Create(filepath.Join(o.out, "wagate.log"))
	if err != nil {
		return s, err
	}
	defer logf.Close()
	cmd := exec.Command(o.wagate, "-config", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return s, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	pid := strconv.Itoa(cmd.Process.Pid)
	if err := waitAPI(api, exited); err != nil {
		return s, err
	}
	time.Sleep(o.warmup)
	c0, err := procstat.CPUTime(pid)
	if err != nil {
		return s, err
	}
	a0, p0 := answered.Load(), probes(api)
	time.Sleep(o.d)
	c1, err := procstat.CPUTime(pid)
	if err != nil {
		return s, err
	}
	s.cpu, s.answered, s.probes = c1-c0, answered.Load()-a0, probes(api)-p0
	return s, nil
}

func ip(o options, host int) string { return fmt.Sprintf("127.0.%d.%d", o.net, host) }

const pbxPort = 15060

func writeConfig(o options, probing bool) (string, string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "data_dir: %q\nsip:\n  listen: [{transport: udp, address: \"%s:15072\"}]\n  host: %s\nendpoints:\n",
		filepath.Join(o.out, "data"), ip(o, 1), ip(o, 1))
	for i := range o.n {
		fmt.Fprintf(&b, "  - {name: pbx%d, kind: pbx, host: %s, port: %d, source_cidrs: [%s/32]", i, ip(o, 10+i), pbxPort, ip(o, 10+i))
		if probing {
			fmt.Fprintf(&b, ", probe: {interval: %s}", o.interval)
		}
		b.WriteString("}\n")
	}
	api := ip(o, 1) + ":18080"
	fmt.Fprintf(&b, "media: {bind_ip: %s}\napi: {listen: %q}\ncdr: {enabled: false}\nlog: {level: warn}\n", ip(o, 1), api)
	path := filepath.Join(o.out, "wagate.yaml")
	return path, api, os.WriteFile(path, []byte(b.String()), 0o644)
}

// responders answer OPTIONS at every endpoint address but the silent ones
// (index ≥ silentFrom), counting the answers.
func responders(o options, silentFrom int, answered *atomic.Int64) (func(), error) {
	var conns []*net.UDPConn
	var wg sync.WaitGroup
	stop := func() {
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	}
	for i := range o.n {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip(o, 10+i)), Port: pbxPort})
		if err != nil {
			stop()
			return nil, err
		}
		conns = append(conns, c)
		silent := i >= silentFrom
		wg.Go(func() {
			buf := make([]byte, 65535)
			for {
				n, from, err := c.ReadFromUDP(buf)
				if err != nil {
					return
				}
				if silent || !strings.HasPrefix(string(buf[:n]), "OPTIONS ") {
					continue
				}
				if _, err := c.WriteToUDP([]byte(okFor(string(buf[:n]))), from); err == nil {
					answered.Add(1)
				}
			}
		})
	}
	return stop, nil
}

// okFor is a 200 to the raw request msg.
func okFor(msg string) string {
	var b strings.Builder
	b.WriteString("SIP/2.0 200 OK\r\n")
	for _, l := range strings.Split(msg, "\r\n") {
		if l == "" {
			break
		}
		name, _, _ := strings.Cut(l, ":")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "via", "from", "call-id", "cseq":
			b.WriteString(l + "\r\n")
		case "to":
			b.WriteString(l + ";tag=r\r\n")
		}
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.String()
}

func waitAPI(api string, exited <-chan struct{}) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if r, err := http.Get("http://" + api + "/v1/status"); err == nil {
			r.Body.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("wagate exited at start-up (see its log)")
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New("wagate's API did not answer within 15s")
}

// probes sums the probes /v1/status counts.
func probes(api string) uint64 {
	r, err := http.Get("http://" + api + "/v1/status")
	if err != nil {
		return 0
	}
	defer r.Body.Close()
	var s struct {
		Endpoints []struct {
			Probes uint64 `json:"probes"`
		} `json:"endpoints"`
	}
	if json.NewDecoder(r.Body).Decode(&s) != nil {
		return 0
	}
	var n uint64
	for _, e := range s.Endpoints {
		n += e.Probes
	}
	return n
}

func build(out string) (string, error) {
	bin := filepath.Join(out, "wagate")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/wagate")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build (run from the repository root): %v\n%s", err, b)
	}
	return bin, nil
}
