// Command dtls compares wagate's cost per call with DTLS-SRTP keying
// (ICE and a DTLS handshake per call, Meta's default) and with SDES, over
// loopback only. For each keying asked for it starts the real wagate
// binary and holds N concurrent user-initiated calls: the WhatsApp side
// is the Go Meta peer (test/internal/metapeer: in DTLS mode pion's
// ICE-lite agent and DTLS server on each call's port; in SDES mode Meta's
// a=crypto offer), sending a 1 kHz tone as Opus 20 ms frames; the PBX is
// the same peer's G.711 profile echoing what it gets. wagate transcodes
// every packet both ways.
//
// Per keying it reports, for the same N and window: wagate's CPU
// (utime+stime from /proc) per call, its RSS per call (at N calls minus
// before the first call, over N), the generator's and the machine's CPU
// beside it, and the time from each INVITE to the first packet the Meta
// peer decrypted and to the peer's SRTP keys (median, p95, max) — for
// DTLS that includes ICE and the handshake. The CPU of set-up is left to
// BenchmarkLegPairKeying (media): here it drowns in the media of the
// calls already up.
//
// Usage (from the repository root):
//
//	go build -o /tmp/wagate-bin ./cmd/wagate
//	go run ./test/load/dtls -wagate /tmp/wagate-bin -n 100 -d 20s
//	go run ./test/load/dtls -wagate /tmp/wagate-bin -n 100 -enc dtls
//
// Everything is bounded: N ≤ 200, -d ≤ 5m, every wait has a limit; the
// wagate it starts is stopped by pid.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wagate/wagate/test/internal/procstat"

	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/rtppeer"
)

const (
	maxCalls       = 200
	maxDuration    = 5 * time.Minute
	businessNumber = "+15550100001"
	callLimit      = 20 * time.Second
)

type options struct {
	n        int
	dur      time.Duration
	encs     []string
	wagate   string
	out      string
	net      string
	sipPort  int
	apiPort  int
	rate     int
	waitIdle time.Duration
}

func main() {
	var o options
	var encs string
	flag.IntVar(&o.n, "n", 100, "concurrent calls")
	flag.DurationVar(&o.dur, "d", 20*time.Second, "measured window (after all calls are up and 2 s of settling)")
	flag.StringVar(&encs, "enc", "sdes,dtls", "keyings to run, in order: sdes, dtls")
	flag.StringVar(&o.wagate, "wagate", "", "wagate binary (default: go build ./cmd/wagate into the output dir)")
	flag.StringVar(&o.out, "out", "", "directory for configs and logs (default: a new temp dir, kept)")
	flag.StringVar(&o.net, "net", "127.0.62", "loopback /24: wagate .1, Meta .2, PBX .3")
	flag.IntVar(&o.sipPort, "sip-port", 15074, "wagate's SIP port")
	flag.IntVar(&o.apiPort, "api-port", 18083, "wagate's status API port")
	flag.IntVar(&o.rate, "rate", 20, "call set-up rate, calls/s")
	flag.DurationVar(&o.waitIdle, "wait-idle", 30*time.Second, "before each run, wait up to this long for the machine to be idle (<10 % of a core over 2 s)")
	flag.Parse()
	if o.n < 1 || o.n > maxCalls || o.dur <= 0 || o.dur > maxDuration || o.rate < 1 || o.rate > 200 {
		fatalf("-n must be 1..%d, -d in (0, %v], -rate 1..200", maxCalls, maxDuration)
	}
	for _, e := range strings.Split(encs, ",") {
		if e = strings.TrimSpace(e); e != "sdes" && e != "dtls" {
			fatalf("-enc: %q is not sdes or dtls", e)
		}
		o.encs = append(o.encs, strings.TrimSpace(e))
	}
	if o.out == "" {
		d, err := os.MkdirTemp("", "wagate-dtls.")
		if err != nil {
			fatalf("%v", err)
		}
		o.out = d
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.wagate == "" {
		o.wagate = filepath.Join(o.out, "wagate")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", o.wagate, "./cmd/wagate")
		if b, err := cmd.CombinedOutput(); err != nil {
			fatalf("build wagate: %v\n%s", err, b)
		}
	}
	fmt.Printf("# output in %s; N=%d, window %v, set-up %d calls/s, %d CPU(s)\n", o.out, o.n, o.dur, o.rate, runtime.NumCPU())
	fmt.Printf("%-5s %5s %12s %12s %10s %10s %12s %12s %14s %14s %9s\n", "keying", "calls", "wagate_cpu%", "cpu%/call", "rss_MiB", "KiB/call", "gen_cpu%", "machine%", "invite→1st ms", "handshake ms", "failed")
	failed := false
	for i, enc := range o.encs {
		if i > 0 {
			time.Sleep(3 * time.Second)
		}
		waitIdle(ctx, o.waitIdle)
		r, err := run(ctx, o, enc)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", enc, err)
			failed = true
			continue
		}
		fmt.Printf("%-6s %5d %12.1f %12.3f %10.1f %10.1f %12.1f %12.1f %4.0f/%4.0f/%4.0f %4.0f/%4.0f/%4.0f %9d\n", enc, r.calls, r.cpu, r.cpu/float64(r.calls),
			float64(r.rss)/1024, float64(r.rss-r.rss0)/float64(r.calls), r.gen, r.machine, r.first[0], r.first[1], r.first[2],
			r.hand[0], r.hand[1], r.hand[2], r.failed)
		if r.failed > 0 {
			failed = true
		}
	}
	fmt.Println("# invite→1st: median/p95/max ms from the Meta peer's INVITE to the first packet it decrypted (DTLS: ICE and the handshake included); handshake: from the INVITE to the peer's SRTP keys (DTLS only); the CPU of the handshakes themselves: go test -bench LegPairKeying ./media/")
	if failed {
		os.Exit(1)
	}
}

type result struct {
	calls, failed     int
	cpu, gen, machine float64    // percent of one core over the window
	rss0, rss         int64      // KiB before the calls and at N calls
	first, hand       [3]float64 // median, p95, max in ms
}

// quantiles is the median, p95 and max of xs (sorted in place).
func quantiles(xs []float64) [3]float64 {
	sort.Float64s(xs)
	n := len(xs)
	if n == 0 {
		return [3]float64{}
	}
	return [3]float64{xs[n/2], xs[min(n-1, n*95/100)], xs[n-1]}
}

func run(ctx context.Context, o options, enc string) (result, error) {
	var r result
	w, err := startWagate(ctx, o, enc)
	if err != nil {
		return r, err
	}
	defer w.stop()
	ip := func(h int) string { return fmt.Sprintf("%s.%d", o.net, h) }
	meta, err := metapeer.New(metapeer.Config{SIP: ip(2) + ":5060", DTLS: enc == "dtls", NoRecord: true})
	if err != nil {
		return r, err
	}
	defer meta.Close()
	pbx, err := metapeer.New(metapeer.Config{SIP: ip(3) + ":5060", Profile: metapeer.ProfileG711, Echo: true, NoRecord: true})
	if err != nil {
		return r, err
	}
	defer pbx.Close()
	time.Sleep(500 * time.Millisecond) // wagate settled after start
	r.rss0, _ = procstat.RSSKiB(w.cmd.Process.Pid)

	pid := strconv.Itoa(w.cmd.Process.Pid)
	cctx, cancel := context.WithTimeout(ctx, time.Duration(o.n)*time.Second/time.Duration(o.rate)+2*callLimit)
	defer cancel()
	var mu sync.Mutex
	var pbxCalls, metaCalls []*metapeer.Call
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the PBX answers every call
		defer wg.Done()
		for range o.n {
			c, _, err := pbx.Answer(cctx, metapeer.AnswerSpec{})
			if err != nil {
				return
			}
			mu.Lock()
			pbxCalls = append(pbxCalls, c)
			mu.Unlock()
		}
	}()
	tick := time.NewTicker(time.Second / time.Duration(o.rate))
	var firsts, hands []float64
	var placed sync.WaitGroup
	for i := range o.n {
		<-tick.C
		placed.Add(1)
		go func() {
			defer placed.Done()
			c, err := meta.Call(cctx, metapeer.CallSpec{Target: ip(1) + ":" + strconv.Itoa(o.sipPort), To: businessNumber, From: fmt.Sprintf("+4477009%05d", i)})
			if err != nil {
				mu.Lock()
				r.failed++
				mu.Unlock()
				return
			}
			mu.Lock()
			metaCalls = append(metaCalls, c)
			mu.Unlock()
			if err := c.WaitKeyed(cctx); err != nil {
				mu.Lock()
				r.failed++
				mu.Unlock()
				return
			}
			if c.Handshake > 0 {
				mu.Lock()
				hands = append(hands, float64(c.Handshake)/float64(time.Millisecond))
				mu.Unlock()
			}
			c.Media.SetSource(rtppeer.NewTone(1000, 0.3, 48000))
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				if st := c.Media.Stats(); !st.FirstRecv.IsZero() {
					mu.Lock()
					firsts = append(firsts, float64(st.FirstRecv.Sub(c.Invited))/float64(time.Millisecond))
					mu.Unlock()
					return
				}
			}
		}()
	}
	tick.Stop()
	placed.Wait()
	r.calls = len(metaCalls) - r.failed
	time.Sleep(2 * time.Second)

	w0, _ := procstat.CPUTime(pid)
	g0, _ := procstat.CPUTime("self")
	b0, t0, _ := procstat.MachineCPU()
	began := time.Now()
	select {
	case <-time.After(o.dur):
	case <-ctx.Done():
		return r, ctx.Err()
	}
	el := time.Since(began)
	w1, _ := procstat.CPUTime(pid)
	g1, _ := procstat.CPUTime("self")
	b1, t1, _ := procstat.MachineCPU()
	r.rss, _ = procstat.RSSKiB(w.cmd.Process.Pid)
	pct := func(d time.Duration) float64 { return 100 * float64(d) / float64(el) }
	r.cpu, r.gen = pct(w1-w0), pct(g1-g0)

	if t1 > t0 {
		r.machine = 100 * float64(b1-b0) / float64(t1-t0) * float64(runtime.NumCPU())
	}
	r.first, r.hand = quantiles(firsts), quantiles(hands)

	hctx, hcancel := context.WithTimeout(ctx, callLimit)
	defer hcancel()
	for _, c := range metaCalls {
		_ = c.Hangup(hctx)
	}
	cancel()
	wg.Wait()
	for _, c := range pbxCalls {
		_ = c.Hangup(hctx)
	}
	deadline := time.Now().Add(callLimit)
	for s, err := w.status(); err != nil || s.Calls > 0; s, err = w.status() {
		if time.Now().After(deadline) {
			return r, fmt.Errorf("wagate still has calls after hanging up (%+v, %v)", s, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return r, nil
}

// ---------------------------------------------------------------------------
// wagate

type wagateProc struct {
	cmd    *exec.Cmd
	api    string
	exited chan struct{}
	err    error
}

func startWagate(ctx context.Context, o options, enc string) (*wagateProc, error) {
	ip := func(h int) string { return fmt.Sprintf("%s.%d", o.net, h) }
	cfg := fmt.Sprintf(`# generated by test/load/dtls (%s)
data_dir: %q
sip:
  listen:
    - {transport: udp, address: "%s:%d"}
  host: %s
endpoints:
  - {name: meta, kind: whatsapp, host: %s, port: 5060, transport: udp, source_cidrs: [%s/32], codecs: [opus], media_encryption: %s}
  - {name: pbx, kind: pbx, host: %s, port: 5060, transport: udp, source_cidrs: [%s/32], codecs: [PCMU]}
numbers:
  - {number: %q, phone_number_id: "100000000000001", route: {endpoint: pbx, user: "1001"}}
media: {bind_ip: %s, port_min: 30000, port_max: 40000, port_quarantine: 2s}
api: {listen: "%s:%d"}
log: {level: warn, format: json}
`, enc, filepath.Join(o.out, "data-"+enc), ip(1), o.sipPort, ip(1), ip(2), ip(2), enc, ip(3), ip(3), businessNumber, ip(1), ip(1), o.apiPort)
	path := filepath.Join(o.out, "wagate-"+enc+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(o.out, "wagate-"+enc+".log"))
	if err != nil {
		return nil, err
	}
	w := &wagateProc{api: fmt.Sprintf("http://%s:%d/v1/status", ip(1), o.apiPort), exited: make(chan struct{})}
	w.cmd = exec.Command(o.wagate, "-config", path)
	w.cmd.Stdout, w.cmd.Stderr = logf, logf
	if err := w.cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() {
		w.err = w.cmd.Wait()
		logf.Close()
		close(w.exited)
	}()
	for deadline := time.Now().Add(15 * time.Second); ; {
		if _, err := w.status(); err == nil {
			return w, nil
		}
		select {
		case <-w.exited:
			return nil, fmt.Errorf("wagate exited at start-up (%v); see %s", w.err, logf.Name())
		case <-ctx.Done():
			w.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			w.stop()
			return nil, errors.New("wagate's status API did not answer within 15 s")
		}
	}
}

type status struct {
	Calls int `json:"calls"`
}

var httpClient = &http.Client{Timeout: 2 * time.Second}

func (w *wagateProc) status() (status, error) {
	var s status
	resp, err := httpClient.Get(w.api)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(b, &s)
}

func (w *wagateProc) stop() {
	select {
	case <-w.exited:
		return
	default:
	}
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.exited:
	case <-time.After(15 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.exited
	}
}

// ---------------------------------------------------------------------------
// /proc

func waitIdle(ctx context.Context, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for {
		b0, t0, _ := procstat.MachineCPU()
		select {
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
			return
		}
		b1, t1, _ := procstat.MachineCPU()
		busy := 0.0
		if t1 > t0 {
			busy = 100 * float64(b1-b0) / float64(t1-t0) * float64(runtime.NumCPU())
		}
		if busy < 10 || time.Now().After(deadline) {
			if busy >= 10 {
				fmt.Printf("# machine still %.0f%% of one core busy; measuring anyway\n", busy)
			}
			return
		}
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "dtls: "+format+"\n", args...)
	os.Exit(2)
}
