// Command transcode is a load tool for wagate's transcoding media path,
// over loopback only. It starts the real wagate binary, then for each N
// asked for holds N concurrent user-initiated calls through it: the
// WhatsApp side is N Go Meta peers (Meta's SDES offer, Opus 48 kHz mono
// 20 ms frames over SRTP, rtcp-mux) that send 1 kHz tone bursts; the PBX
// side is a Go UAS that answers PCMU and echoes every RTP packet back
// (-pbx echo) or sends its own 440 Hz PCMU stream at 50 packets/s (-pbx
// tone). While the calls are up it reads wagate's CPU time
// (/proc/PID/stat) and RSS (/proc/PID/status), and from the peers' RTP
// statistics it reports, per direction, the packet forwarding ratio
// (received/sent), the RFC 3550 interarrival jitter of the stream wagate
// sends against that of its input, and (echo mode) the latency wagate adds:
// the round trip of each tone burst's onset (Meta → wagate → PBX echo →
// wagate → Meta) minus the same round trip without wagate (a Meta peer
// against a Go Opus echo, measured first).
//
// Usage (from the repository root):
//
//	go run ./test/load/transcode -n 10 -d 10s
//	go run ./test/load/transcode -n 10,50,100,150 -d 30s -out /tmp/tl
//	go run ./test/load/transcode -n 50 -pbx tone -wagate ./bin/wagate
//
// Everything is bounded: N ≤ 500, -d ≤ 10m, every wait has a limit, and
// the processes it starts are stopped by pid when it exits.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
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

	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/rtppeer"
)

const (
	maxCalls    = 500
	maxDuration = 10 * time.Minute
	setupRate   = 50 // calls placed per second
	// Tone bursts: 200 ms of 1 kHz every second, so each burst's onset
	// can be timed leaving and coming back.
	burstOn, burstPeriod = 200 * time.Millisecond, time.Second
	toneAmp              = 0.3
)

type options struct {
	ns        []int
	dur       time.Duration
	pbxMode   string
	srtp      bool
	wagate    string
	out       string
	netPrefix string
	sipPort   int
	apiPort   int
	portMin   int
	portMax   int
	verbose   bool
}

func main() {
	var o options
	var ns string
	flag.StringVar(&ns, "n", "10", "concurrent calls; a comma-separated list runs one step per value (e.g. 10,50,100,150)")
	flag.DurationVar(&o.dur, "d", 10*time.Second, "how long the N calls are held in each step (measured window)")
	flag.StringVar(&o.pbxMode, "pbx", "echo", "PBX side: echo (echo RTP back; latency measured) or tone (its own 440 Hz PCMU stream)")
	flag.BoolVar(&o.srtp, "srtp", true, "SDES-SRTP on the WhatsApp leg (false: plain RTP, media_encryption none)")
	flag.StringVar(&o.wagate, "wagate", "", "wagate binary (default: go build ./cmd/wagate into the output dir)")
	flag.StringVar(&o.out, "out", "", "directory for configs and logs (default: a new temp dir, kept)")
	flag.StringVar(&o.netPrefix, "net", "127.0.60", "loopback /24 to use: wagate .1, Meta peers .2, PBX .3")
	flag.IntVar(&o.sipPort, "sip-port", 15072, "wagate's SIP port")
	flag.IntVar(&o.apiPort, "api-port", 18081, "wagate's status API port")
	flag.IntVar(&o.portMin, "port-min", 30000, "wagate's RTP port range start")
	flag.IntVar(&o.portMax, "port-max", 40000, "wagate's RTP port range end")
	flag.BoolVar(&o.verbose, "v", false, "log every SIP message")
	flag.Parse()
	for _, f := range strings.Split(ns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > maxCalls {
			fatalf("-n: %q is not a number of calls in 1..%d", f, maxCalls)
		}
		o.ns = append(o.ns, n)
	}
	if o.dur <= 0 || o.dur > maxDuration {
		fatalf("-d must be in (0, %v]", maxDuration)
	}
	if o.pbxMode != "echo" && o.pbxMode != "tone" {
		fatalf("-pbx must be echo or tone")
	}
	if ip := net.ParseIP(o.netPrefix + ".1"); ip == nil || !ip.IsLoopback() {
		fatalf("-net %q: must be a loopback /24 such as 127.0.60", o.netPrefix)
	}
	if o.out == "" {
		d, err := os.MkdirTemp("", "wagate-transcode.")
		if err != nil {
			fatalf("%v", err)
		}
		o.out = d
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		fatalf("%v", err)
	}
	fmt.Printf("# output in %s\n", o.out)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if o.wagate == "" {
		bin, err := buildWagate(ctx, o.out)
		if err != nil {
			fatalf("build wagate: %v", err)
		}
		o.wagate = bin
	}

	base, err := baselineRTT(ctx, o.netPrefix+".2")
	if err != nil {
		fatalf("baseline: %v", err)
	}
	fmt.Printf("# direct echo round trip without wagate (Opus encode+decode, loopback): median %.1f ms\n", ms(base))
	fmt.Printf("# pbx=%s srtp=%v duration=%v, %d CPU(s), clock tick %d/s\n", o.pbxMode, o.srtp, o.dur, runtime.NumCPU(), clkTck)
	printHeader()
	failed := false
	for _, n := range o.ns {
		if ctx.Err() != nil {
			break
		}
		r, err := runStep(ctx, o, n, base)
		if err != nil {
			fmt.Fprintf(os.Stderr, "step N=%d: %v\n", n, err)
			failed = true
			continue
		}
		r.print()
		if r.failedCalls > 0 {
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "transcode: "+format+"\n", args...)
	os.Exit(2)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ---------------------------------------------------------------------------
// wagate

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/wagate/wagate\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the wagate repository (no go.mod of github.com/wagate/wagate above the working directory)")
		}
		dir = parent
	}
}

func buildWagate(ctx context.Context, out string) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(out, "wagate")
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/wagate")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%v\n%s", err, b)
	}
	return bin, nil
}

type wagateProc struct {
	cmd     *exec.Cmd
	api     string
	exited  chan struct{}
	waitErr error
	log     string
}

func startWagate(ctx context.Context, o options, n int) (*wagateProc, error) {
	enc := "sdes"
	if !o.srtp {
		enc = "none"
	}
	ip := func(h int) string { return fmt.Sprintf("%s.%d", o.netPrefix, h) }
	cfg := fmt.Sprintf(`# generated by test/load/transcode, N=%d
sip:
  listen:
    - {transport: udp, address: "%s:%d"}
  host: %s
  ring_timeout: 60s
endpoints:
  - {name: meta, kind: whatsapp, host: %s, port: 5060, transport: udp, source_cidrs: [%s/32], codecs: [opus], media_encryption: %s}
  - {name: pbx, kind: pbx, host: %s, port: 5060, transport: udp, source_cidrs: [%s/32], codecs: [PCMU, PCMA]}
numbers:
  - {number: "+15550100001", phone_number_id: "100000000000001", route: {endpoint: pbx, user: "1001"}}
media: {bind_ip: %s, port_min: %d, port_max: %d, rtp_timeout: 30s, rtp_start_timeout: 60s, port_quarantine: 2s}
api: {listen: "%s:%d"}
log: {level: warn, format: json}
`, n, ip(1), o.sipPort, ip(1), ip(2), ip(2), enc, ip(3), ip(3), ip(1), o.portMin, o.portMax, ip(1), o.apiPort)
	path := filepath.Join(o.out, fmt.Sprintf("wagate-%d.yaml", n))
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	w := &wagateProc{api: fmt.Sprintf("http://%s:%d/v1/status", ip(1), o.apiPort), exited: make(chan struct{}),
		log: filepath.Join(o.out, fmt.Sprintf("wagate-%d.log", n))}
	logf, err := os.Create(w.log)
	if err != nil {
		return nil, err
	}
	w.cmd = exec.Command(o.wagate, "-config", path)
	w.cmd.Stdout, w.cmd.Stderr = logf, logf
	if err := w.cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() {
		w.waitErr = w.cmd.Wait()
		logf.Close()
		close(w.exited)
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := w.status(); err == nil {
			return w, nil
		}
		select {
		case <-w.exited:
			return nil, fmt.Errorf("wagate exited at start-up (%v); see %s", w.waitErr, w.log)
		case <-ctx.Done():
			w.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			w.stop()
			return nil, fmt.Errorf("wagate's status API did not answer within 15 s; see %s", w.log)
		}
	}
}

type status struct {
	Calls        int    `json:"calls"`
	PortsInUse   int    `json:"ports_in_use"`
	CallsStarted uint64 `json:"calls_started"`
	CallsEnded   uint64 `json:"calls_ended"`
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
	if resp.StatusCode != 200 {
		return s, fmt.Errorf("%s: %s", w.api, resp.Status)
	}
	return s, json.Unmarshal(b, &s)
}

func (w *wagateProc) stop() error {
	select {
	case <-w.exited:
		return fmt.Errorf("wagate had exited: %v", w.waitErr)
	default:
	}
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.exited:
		return w.waitErr
	case <-time.After(15 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.exited
		return errors.New("wagate did not exit within 15 s of SIGTERM; killed")
	}
}

// ---------------------------------------------------------------------------
// /proc

var clkTck = func() int {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && n > 0 {
			return n
		}
	}
	return 100
}()

// cpuTime is utime+stime of pid.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the parenthesised command name; utime and stime are
	// fields 14 and 15 of the whole line.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / time.Duration(clkTck), nil
}

// rssKiB is VmRSS (and VmHWM) of pid.
func rssKiB(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
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
		}
	}
	return rss, hwm, sc.Err()
}

// ---------------------------------------------------------------------------
// Latency

// baselineRTT is the median round trip of a burst onset from a Meta peer
// session to an Opus echo and back, without wagate: what the peers' own
// codec chain and loopback cost.
func baselineRTT(ctx context.Context, ip string) (time.Duration, error) {
	a, err := rtppeer.Listen(rtppeer.Config{IP: ip, Codec: rtppeer.Opus, Local: rtppeer.NewCrypto(), RTCPMux: true, NoRecord: true})
	if err != nil {
		return 0, err
	}
	defer a.Close()
	b, err := rtppeer.Listen(rtppeer.Config{IP: ip, Codec: rtppeer.Opus, RTCPMux: true, Echo: true, NoRecord: true})
	if err != nil {
		return 0, err
	}
	defer b.Close()
	// Plain RTP on the echo side: it returns a's SRTP packets untouched,
	// so a decrypts its own packets with its own key.
	ak := a.Config().Local
	if err := a.Start(&net.UDPAddr{IP: net.ParseIP(ip), Port: b.Port()}, ak); err != nil {
		return 0, err
	}
	if err := b.Start(&net.UDPAddr{IP: net.ParseIP(ip), Port: a.Port()}, nil); err != nil {
		return 0, err
	}
	a.SetSource(&rtppeer.Bursts{Freq: 1000, Amp: toneAmp, Rate: 48000, On: burstOn, Period: burstPeriod})
	select {
	case <-time.After(3500 * time.Millisecond):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	sent, recv := a.Onsets()
	rtts := pairOnsets(sent, recv)
	if len(rtts) == 0 {
		return 0, errors.New("no burst came back from the direct echo")
	}
	return percentile(rtts, 50), nil
}

// pairOnsets matches each sent onset with the first received onset after
// it (within 800 ms) and returns the delays.
func pairOnsets(sent, recv []time.Time) []time.Duration {
	var out []time.Duration
	j := 0
	for _, s := range sent {
		for j < len(recv) && !recv[j].After(s) {
			j++
		}
		if j < len(recv) && recv[j].Sub(s) < 800*time.Millisecond {
			out = append(out, recv[j].Sub(s))
			j++
		}
	}
	return out
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// ---------------------------------------------------------------------------
// One step

type result struct {
	n, up, failedCalls         int
	cpuPct                     float64
	rssIdle, rssLoaded, rssHWM int64
	fwdToPBX, fwdToMeta        float64
	sentMeta, recvPBX          uint64
	sentPBX, recvMeta          uint64
	authFail                   uint64
	jitInMeta, jitOutPBX       float64 // Meta's send jitter; jitter of wagate's stream at the PBX
	jitInPBX, jitOutMeta       float64 // PBX's (send or echo) jitter; jitter of wagate's stream at Meta
	rttP50, rttP95             time.Duration
	rttN                       int
	added                      time.Duration
	echo                       bool
}

// packetCounts are the RTP packets the peers sent and received so far.
type packetCounts struct{ sentMeta, recvMeta, sentPBX, recvPBX uint64 }

func countPackets(meta, pbx []*metapeer.Call) packetCounts {
	var p packetCounts
	for _, c := range meta {
		st := c.Media.Stats()
		p.sentMeta += st.Sent
		p.recvMeta += st.ReceivedAudio
	}
	for _, c := range pbx {
		st := c.Media.Stats()
		p.sentPBX += st.Sent
		p.recvPBX += st.ReceivedAudio
	}
	return p
}

func printHeader() {
	fmt.Printf("%5s %5s %7s %9s %8s %9s %9s %9s %13s %13s %14s %9s\n",
		"N", "up", "cpu%", "cpu%/call", "rss_MiB", "KiB/call", "fwd→pbx", "fwd→meta",
		"jit→pbx ms", "jit→meta ms", "rtt p50/p95", "added_ms")
}

func (r result) print() {
	rtt, added := "n/a", "n/a"
	if r.echo && r.rttN > 0 {
		rtt = fmt.Sprintf("%.0f/%.0f", ms(r.rttP50), ms(r.rttP95))
		added = fmt.Sprintf("%.1f", ms(r.added))
	}
	perCall := float64(r.rssLoaded-r.rssIdle) / float64(max(1, r.up))
	fmt.Printf("%5d %5d %7.1f %9.2f %8.1f %9.0f %9.3f %9.3f %6.2f→%-6.2f %6.2f→%-6.2f %14s %9s\n",
		r.n, r.up, r.cpuPct, r.cpuPct/float64(max(1, r.up)), float64(r.rssLoaded)/1024, perCall,
		r.fwdToPBX, r.fwdToMeta, r.jitInMeta, r.jitOutPBX, r.jitInPBX, r.jitOutMeta, rtt, added)
	if r.failedCalls > 0 || r.authFail > 0 {
		fmt.Printf("      ! %d call(s) failed to set up, %d SRTP packets from wagate failed authentication\n", r.failedCalls, r.authFail)
	}
	fmt.Printf("      packets in the window: meta sent %d → pbx got %d; pbx sent %d → meta got %d; peak RSS %.1f MiB\n",
		r.sentMeta, r.recvPBX, r.sentPBX, r.recvMeta, float64(r.rssHWM)/1024)
}

func runStep(ctx context.Context, o options, n int, base time.Duration) (result, error) {
	r := result{n: n, echo: o.pbxMode == "echo"}
	w, err := startWagate(ctx, o, n)
	if err != nil {
		return r, err
	}
	defer w.stop()
	pid := w.cmd.Process.Pid
	time.Sleep(300 * time.Millisecond)
	r.rssIdle, _, _ = rssKiB(pid)

	var logf func(string, ...any)
	if o.verbose {
		logf = func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
	}
	ip := func(h int) string { return fmt.Sprintf("%s.%d", o.netPrefix, h) }
	pbx, err := metapeer.New(metapeer.Config{SIP: ip(3) + ":5060", Profile: metapeer.ProfileG711, Echo: r.echo, NoRecord: true, Logf: logf})
	if err != nil {
		return r, fmt.Errorf("PBX peer: %v", err)
	}
	defer pbx.Close()
	meta, err := metapeer.New(metapeer.Config{SIP: ip(2) + ":5060", Plain: !o.srtp, NoRecord: true, Logf: logf})
	if err != nil {
		return r, fmt.Errorf("Meta peer: %v", err)
	}
	defer meta.Close()

	stepCtx, cancel := context.WithTimeout(ctx, o.dur+2*time.Minute)
	defer cancel()

	// PBX: answer every call.
	var pmu sync.Mutex
	var pbxCalls []*metapeer.Call
	pbxDone := make(chan struct{})
	go func() {
		defer close(pbxDone)
		for i := 0; i < n; i++ {
			c, _, err := pbx.Answer(stepCtx, metapeer.AnswerSpec{})
			if err != nil {
				if stepCtx.Err() != nil {
					return
				}
				continue
			}
			if !r.echo {
				c.Media.SetSource(rtppeer.NewTone(440, toneAmp, 8000))
			}
			pmu.Lock()
			pbxCalls = append(pbxCalls, c)
			pmu.Unlock()
		}
	}()

	// Meta: place n calls at setupRate per second.
	var mmu sync.Mutex
	var metaCalls []*metapeer.Call
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / setupRate)
	for i := 0; i < n; i++ {
		<-tick.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := meta.Call(stepCtx, metapeer.CallSpec{Target: fmt.Sprintf("%s:%d", ip(1), o.sipPort), To: "+15550100001", From: fmt.Sprintf("+4477009%05d", i)})
			if err != nil {
				fmt.Fprintf(os.Stderr, "call %d: %v\n", i, err)
				return
			}
			c.Media.SetSource(&rtppeer.Bursts{Freq: 1000, Amp: toneAmp, Rate: 48000, On: burstOn, Period: burstPeriod})
			mmu.Lock()
			metaCalls = append(metaCalls, c)
			mmu.Unlock()
		}()
	}
	tick.Stop()
	wg.Wait()
	r.up = len(metaCalls)
	r.failedCalls = n - r.up
	if r.up == 0 {
		return r, fmt.Errorf("no call was set up; see %s", w.log)
	}

	// Let every stream settle, then measure over o.dur.
	time.Sleep(time.Second)
	pmu.Lock()
	pbxSnapshot := append([]*metapeer.Call(nil), pbxCalls...)
	pmu.Unlock()
	before := countPackets(metaCalls, pbxSnapshot)
	c0, err := cpuTime(pid)
	if err != nil {
		return r, err
	}
	t0 := time.Now()
	rssMax := int64(0)
	end := time.After(o.dur)
	sample := time.NewTicker(time.Second)
loop:
	for {
		select {
		case <-end:
			break loop
		case <-ctx.Done():
			break loop
		case <-sample.C:
			if rss, _, err := rssKiB(pid); err == nil && rss > rssMax {
				rssMax = rss
			}
		}
	}
	sample.Stop()
	c1, _ := cpuTime(pid)
	wall := time.Since(t0)
	r.cpuPct = 100 * float64(c1-c0) / float64(wall)
	r.rssLoaded = rssMax
	_, r.rssHWM, _ = rssKiB(pid)
	after := countPackets(metaCalls, pbxSnapshot)
	r.sentMeta, r.recvPBX = after.sentMeta-before.sentMeta, after.recvPBX-before.recvPBX
	r.sentPBX, r.recvMeta = after.sentPBX-before.sentPBX, after.recvMeta-before.recvMeta

	// Stop sending, let the last packets arrive, then read the counters.
	for _, c := range metaCalls {
		c.Media.SetSource(nil)
	}
	pmu.Lock()
	for _, c := range pbxCalls {
		c.Media.SetSource(nil)
	}
	pmu.Unlock()
	time.Sleep(500 * time.Millisecond)

	var rtts []time.Duration
	var jm, jp, jom, jop float64
	for _, c := range metaCalls {
		st := c.Media.Stats()
		r.authFail += st.AuthFailures
		jm += st.SendJitter
		jom += st.Jitter
		s, rv := c.Media.Onsets()
		rtts = append(rtts, pairOnsets(s, rv)...)
	}
	pmu.Lock()
	for _, c := range pbxCalls {
		st := c.Media.Stats()
		jop += st.Jitter
		if r.echo {
			// The echo's input jitter is what it received: it sends each
			// packet back the moment it arrives.
			jp += st.Jitter
		} else {
			jp += st.SendJitter
		}
	}
	np := len(pbxCalls)
	pmu.Unlock()
	r.jitInMeta, r.jitOutMeta = jm/float64(r.up), jom/float64(r.up)
	if np > 0 {
		r.jitOutPBX, r.jitInPBX = jop/float64(np), jp/float64(np)
	}
	if r.sentMeta > 0 {
		r.fwdToPBX = float64(r.recvPBX) / float64(r.sentMeta)
	}
	if r.sentPBX > 0 {
		r.fwdToMeta = float64(r.recvMeta) / float64(r.sentPBX)
	}
	r.rttN = len(rtts)
	r.rttP50, r.rttP95 = percentile(rtts, 50), percentile(rtts, 95)
	r.added = r.rttP50 - base

	// Hang up and wait for wagate to be idle.
	var hw sync.WaitGroup
	for _, c := range metaCalls {
		hw.Add(1)
		go func() {
			defer hw.Done()
			hctx, hcancel := context.WithTimeout(context.Background(), 35*time.Second)
			defer hcancel()
			if err := c.Hangup(hctx); err != nil {
				fmt.Fprintf(os.Stderr, "hangup: %v\n", err)
			}
		}()
	}
	hw.Wait()
	pmu.Lock()
	for _, c := range pbxCalls {
		select {
		case <-c.Dialog.Done():
		case <-time.After(5 * time.Second):
			fmt.Fprintln(os.Stderr, "a PBX call got no BYE within 5 s")
		}
		c.Media.Close()
	}
	pmu.Unlock()
	cancel()
	<-pbxDone
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := w.status()
		if err == nil && s.Calls == 0 {
			break
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "wagate not idle 20 s after the hangups: %+v %v\n", s, err)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := w.stop(); err != nil {
		fmt.Fprintf(os.Stderr, "wagate stop: %v (log %s)\n", err, w.log)
	}
	return r, nil
}
