// Command held measures what held calls cost wagate when no audio flows:
// N user-initiated calls through the real binary, neither side sending
// any media, so all wagate does is send silence toward the WhatsApp leg
// (-silence dtx, the default: a frame every 400 ms; continuous: every
// 20 ms) and RTCP every 5 s to both legs. With -audio (and -meta pcmu)
// both sides send PCMU every 20 ms instead (audio.go), for relayed calls
// with audio. It reports wagate's CPU
// per held call-second, its RSS per call, and how close to its 20 ms grid
// each silence packet arrives (the pacing error).
//
// The WhatsApp side plays Meta's SIP (INVITE with Record-Route and
// x-wa-meta-* headers) with an Opus offer over SDES-SRTP (-meta opus, the
// default: wagate transcodes to the PBX's PCMU, and its silence toward
// Meta is Opus) or a plain PCMU offer (-meta pcmu: wagate relays, as in
// the SIPp load runs); the PBX answers PCMU. Every call's SDP names one
// shared socket per side, so the tool receives all of wagate's packets
// toward Meta on one socket with recvmmsg, with the kernel's arrival
// times (SO_TIMESTAMPNS); it reads only RTP headers (SRTP leaves them in
// the clear), never decrypts.
//
// Pacing error: for each stream, every packet's (arrival − media time of
// its timestamp) less the smallest such value of the stream over the
// window: 0 for a packet as early as the earliest, and how late it was
// against the stream's own timeline otherwise (with DTX each frame is
// timestamped at its own time, so the same measure holds). Beside it the
// tool prints wagate's own view, read from its /metrics before and after
// the window: how late its media pacer began each job
// (wagate_media_pacer_lateness_seconds), which leaves out the kernel's
// and the receiver's share.
//
// Usage (from the repository root):
//
//	go build -o /tmp/wagate-bin ./cmd/wagate
//	go run ./test/load/held -wagate /tmp/wagate-bin -n 1000,2000 -d 30s
//	go run ./test/load/held -wagate /tmp/wagate-bin -n 1000 -meta pcmu
//
// Everything is bounded: N ≤ 2500, -d ≤ 10m, every wait has a limit, and
// the wagate it starts is stopped when it exits.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wagate/wagate/test/internal/procstat"

	"github.com/wagate/wagate/test/internal/rtppeer"
	"github.com/wagate/wagate/test/internal/sipua"
)

const (
	maxCalls       = 2500
	maxDuration    = 10 * time.Minute
	businessNumber = "+15550100001"
	batch          = 64
	pktSize        = 1500
	oobSize        = 64
)

type options struct {
	ns         []int
	dur        time.Duration
	meta       string
	rate       int
	wagate     string
	wagateArgs string
	out        string
	netPrefix  string
	sipPort    int
	apiPort    int
	portMin    int
	portMax    int
	silence    string
	audio      bool
	wagateCPU  int
}

func main() {
	var o options
	var ns string
	flag.StringVar(&ns, "n", "1000", "held calls; a comma-separated list runs one step per value (e.g. 1000,2000)")
	flag.DurationVar(&o.dur, "d", 30*time.Second, "measured window of each step")
	flag.StringVar(&o.meta, "meta", "opus", "the WhatsApp side's offer: opus (SDES-SRTP; wagate transcodes to the PBX's PCMU) or pcmu (plain RTP; wagate relays)")
	flag.IntVar(&o.rate, "rate", 200, "call set-up rate, calls/s")
	flag.StringVar(&o.wagate, "wagate", "", "wagate binary (default: go build ./cmd/wagate into the output dir)")
	flag.StringVar(&o.wagateArgs, "wagate-args", "", "extra wagate flags, split on spaces; {n} becomes the step's N (e.g. '-cpuprofile /tmp/held-{n}.prof')")
	flag.StringVar(&o.out, "out", "", "directory for configs and logs (default: a new temp dir, kept)")
	flag.StringVar(&o.netPrefix, "net", "127.0.61", "loopback /24 to use: wagate .1, Meta .2, PBX .3")
	flag.IntVar(&o.sipPort, "sip-port", 15072, "wagate's SIP port")
	flag.IntVar(&o.apiPort, "api-port", 18082, "wagate's status API port")
	flag.IntVar(&o.portMin, "port-min", 30000, "wagate's RTP port range start")
	flag.IntVar(&o.portMax, "port-max", 40000, "wagate's RTP port range end")
	flag.BoolVar(&o.audio, "audio", false, "both sides send PCMU every 20 ms on every call (with -meta pcmu): RSS and CPU of relayed calls with audio, and the pacing of the relayed audio toward Meta")
	flag.StringVar(&o.silence, "silence", "dtx", "wagate's media.silence: dtx (a silence frame every 400 ms) or continuous (every 20 ms)")
	flag.IntVar(&o.wagateCPU, "wagate-cpu", -1, "run wagate on this CPU alone (taskset, GOMAXPROCS=1) and the tool on the others: the pacing of one core's worth of calls without the generator taking turns on it (-1: no pinning)")
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
	if o.meta != "opus" && o.meta != "pcmu" {
		fatalf("-meta must be opus or pcmu")
	}
	if o.audio && o.meta != "pcmu" {
		fatalf("-audio needs -meta pcmu (the tool does not encrypt SRTP)")
	}
	if o.rate < 1 || o.rate > 1000 {
		fatalf("-rate must be in 1..1000")
	}
	if ip := net.ParseIP(o.netPrefix + ".1"); ip == nil || !ip.IsLoopback() {
		fatalf("-net %q: must be a loopback /24 such as 127.0.61", o.netPrefix)
	}
	if o.wagateCPU >= 0 {
		if o.wagateCPU >= runtime.NumCPU() {
			fatalf("-wagate-cpu %d: this machine has CPUs 0..%d", o.wagateCPU, runtime.NumCPU()-1)
		}
		if err := pinSelfAway(o.wagateCPU); err != nil {
			fatalf("%v", err)
		}
	}
	if o.out == "" {
		d, err := os.MkdirTemp("", "wagate-held.")
		if err != nil {
			fatalf("%v", err)
		}
		o.out = d
	}
	fmt.Printf("# output in %s\n", o.out)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.wagate == "" {
		o.wagate = filepath.Join(o.out, "wagate")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", o.wagate, "./cmd/wagate")
		if b, err := cmd.CombinedOutput(); err != nil {
			fatalf("build wagate: %v\n%s", err, b)
		}
	}
	pin := ""
	if o.wagateCPU >= 0 {
		pin = fmt.Sprintf(", wagate alone on CPU %d (GOMAXPROCS=1)", o.wagateCPU)
	}
	fmt.Printf("# meta=%s window=%v set-up %d calls/s, %d CPU(s)%s\n", o.meta, o.dur, o.rate, runtime.NumCPU(), pin)
	fmt.Printf("%5s %5s %8s %12s %9s %9s %8s %8s %8s %8s %8s %9s %6s\n",
		"N", "up", "cpu%", "ms/call-s", "KiB/call", "pkts/c/s", "p50 ms", "p99 ms", "p99.9", "max ms", "≤1ms %", "gen cpu%", "lost")
	failed := false
	for i, n := range o.ns {
		if ctx.Err() != nil {
			break
		}
		if i > 0 {
			time.Sleep(3 * time.Second)
		}
		r, err := runStep(ctx, o, n)
		if err != nil {
			fmt.Fprintf(os.Stderr, "step N=%d: %v\n", n, err)
			failed = true
			continue
		}
		r.print()
		if r.up < n {
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "held: "+format+"\n", args...)
	os.Exit(2)
}

type result struct {
	n, up    int
	window   time.Duration
	cpu, gen time.Duration
	// Resident memory idle and at its most in the window (each field's
	// maximum): the figure per call takes the anonymous part (see
	// procstat.Mem).
	memIdle, memMax procstat.Mem
	packets, lost   uint64
	streams         int
	late            []time.Duration // sorted
	failReasons     map[string]int
	stopErr         error
	// pacer is wagate's own count of how late its pacer ran jobs in the
	// window (nil: not read).
	pacer    pacerHist
	pacerErr error
	// steal is the share of the machine's CPU time the hypervisor gave to
	// others in the window (-1: not known).
	steal float64
}

func (r result) print() {
	calls := float64(max(1, r.up))
	secs := r.window.Seconds()
	pct := func(p float64) float64 {
		if len(r.late) == 0 {
			return 0
		}
		i := min(len(r.late)-1, int(p/100*float64(len(r.late))))
		return float64(r.late[i]) / 1e6
	}
	within := 0
	for _, l := range r.late {
		if l <= time.Millisecond {
			within++
		}
	}
	fmt.Printf("%5d %5d %8.1f %12.3f %9.1f %9.1f %8.3f %8.3f %8.3f %8.3f %8.2f %9.1f %6d\n",
		r.n, r.up, 100*r.cpu.Seconds()/secs, float64(r.cpu.Milliseconds())/calls/secs,
		float64(r.memMax.Anon-r.memIdle.Anon)/calls, float64(r.packets)/calls/secs,
		pct(50), pct(99), pct(99.9), pct(100), 100*float64(within)/float64(max(1, len(r.late))),
		100*r.gen.Seconds()/secs, r.lost)
	if len(r.failReasons) > 0 {
		fmt.Printf("      ! calls that failed to set up: %v\n", r.failReasons)
	}
	if r.stopErr != nil {
		fmt.Printf("      ! wagate stop: %v\n", r.stopErr)
	}
	if r.pacer != nil {
		fmt.Printf("      wagate's pacer (its own /metrics): %d jobs, %.1f %% within 1 ms, %.1f %% within 5 ms, p99 ≤ %g ms\n",
			r.pacer[math.Inf(1)], 100*r.pacer.share(0.001), 100*r.pacer.share(0.005), 1000*r.pacer.quantile(0.99))
	} else if r.pacerErr != nil {
		fmt.Printf("      ! wagate's pacer histogram: %v\n", r.pacerErr)
	}
	if r.steal >= 0 {
		warn := ""
		if r.steal > 0.05 {
			warn = " (!: the host's other tenants took CPU; compare with care)"
		}
		fmt.Printf("      host: %.1f %% of CPU time stolen by the hypervisor in the window%s\n", 100*r.steal, warn)
	}
	fmt.Printf("      %d streams toward Meta seen in the window; RSS %.1f MiB idle, %.1f MiB held (anonymous: %.1f and %.1f MiB; KiB/call is over the anonymous part: the rest is the binary's own pages)\n",
		r.streams, float64(r.memIdle.RSS)/1024, float64(r.memMax.RSS)/1024, float64(r.memIdle.Anon)/1024, float64(r.memMax.Anon)/1024)
}

func runStep(ctx context.Context, o options, n int) (result, error) {
	r := result{n: n, failReasons: map[string]int{}}
	w, err := startWagate(ctx, o, n)
	if err != nil {
		return r, err
	}
	defer func() {
		if w != nil {
			w.stop()
		}
	}()
	pid := w.cmd.Process.Pid
	time.Sleep(500 * time.Millisecond)
	r.memIdle, _ = procstat.MemKiB(pid)

	ip := func(h int) string { return fmt.Sprintf("%s.%d", o.netPrefix, h) }
	metaUA, err := sipua.Listen(sipua.Config{Addr: ip(2) + ":5060", User: "meta"})
	if err != nil {
		return r, err
	}
	defer metaUA.Close()
	pbxUA, err := sipua.Listen(sipua.Config{Addr: ip(3) + ":5060", User: "1001"})
	if err != nil {
		return r, err
	}
	defer pbxUA.Close()
	rx, err := listenReceiver(ip(2))
	if err != nil {
		return r, err
	}
	defer rx.close()
	pbxMedia, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip(3))})
	if err != nil {
		return r, err
	}
	defer pbxMedia.Close()
	pbxPort := pbxMedia.LocalAddr().(*net.UDPAddr).Port

	stepCtx, cancel := context.WithTimeout(ctx, o.dur+5*time.Minute)
	defer cancel()

	// PBX: answer every INVITE with PCMU naming the shared socket.
	var pwg sync.WaitGroup
	var pmu sync.Mutex
	var pbxDialogs []*sipua.Dialog
	go func() {
		for {
			in, err := pbxUA.Accept(stepCtx)
			if err != nil {
				return
			}
			pwg.Add(1)
			go func() {
				defer pwg.Done()
				desc := rtppeer.Desc{IP: ip(3), Port: pbxPort, Codecs: []rtppeer.Codec{rtppeer.PCMU}, Ptime: 20}
				d, err := in.Answer(desc.Marshal())
				if err == nil {
					pmu.Lock()
					pbxDialogs = append(pbxDialogs, d)
					pmu.Unlock()
				}
			}()
		}
	}()

	// Meta: n calls at the set-up rate.
	target := fmt.Sprintf("%s:%d", ip(1), o.sipPort)
	taddr, err := net.ResolveUDPAddr("udp4", target)
	if err != nil {
		return r, err
	}
	desc := rtppeer.Desc{IP: ip(2), Port: rx.port, Codecs: []rtppeer.Codec{rtppeer.PCMU}, Ptime: 20}
	if o.meta == "opus" {
		desc = rtppeer.Desc{IP: ip(2), Port: rx.port, Codecs: []rtppeer.Codec{rtppeer.Opus},
			Fmtp: map[uint8]string{rtppeer.Opus.PT: rtppeer.MetaOpusFmtp}, EventPT: 126, NoEventFmtp: true,
			Crypto: rtppeer.NewCrypto(), RTCPMux: true, Ptime: 20}
	}
	offer := desc.Marshal()
	var mmu sync.Mutex
	var metaDialogs []*sipua.Dialog
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(o.rate))
	for i := 0; i < n && stepCtx.Err() == nil; i++ {
		<-tick.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			wacid := fmt.Sprintf("wacid.%s.%d", strconv.FormatInt(time.Now().UnixNano(), 36), i)
			d, err := metaUA.Invite(stepCtx, sipua.InviteRequest{
				Target: taddr,
				RURI:   fmt.Sprintf("sip:%s@%s;transport=udp", businessNumber, target),
				To:     fmt.Sprintf("sip:%s@%s", businessNumber, target),
				From:   fmt.Sprintf("sip:+4477009%05d@wa.meta.vc", i),
				CallID: "outgoing:" + wacid,
				Headers: []sipua.Header{
					{Name: "Record-Route", Value: fmt.Sprintf("<sip:%s;transport=udp;lr>", metaUA.Addr())},
					{Name: "x-wa-meta-wacid", Value: wacid},
				},
				SDP: offer,
			})
			mmu.Lock()
			defer mmu.Unlock()
			if err != nil {
				reason := err.Error()
				var se *sipua.StatusError
				if errors.As(err, &se) {
					reason = fmt.Sprintf("%d %s", se.Code, se.Reason)
				}
				r.failReasons[reason]++
				return
			}
			metaDialogs = append(metaDialogs, d)
		}()
	}
	tick.Stop()
	wg.Wait()
	r.up = len(metaDialogs)
	if r.up == 0 {
		return r, fmt.Errorf("no call was set up (%v); see %s", r.failReasons, w.log)
	}

	if o.audio {
		streams, err := audioStreams(metaDialogs, rx.conn, pbxDialogs, &pmu, pbxMedia)
		if err != nil {
			return r, err
		}
		actx, acancel := context.WithCancel(stepCtx)
		waitAudio := sendAudio(actx, streams)
		defer waitAudio()
		defer acancel()
	}

	// Settle (every call's first silence is out), then measure.
	time.Sleep(2 * time.Second)
	c0, err := procstat.CPUTime(strconv.Itoa(pid))
	if err != nil {
		return r, err
	}
	g0, _ := procstat.CPUTime("self")
	p0, p0err := w.pacerLateness()
	s0, t0cpu, s0err := procstat.StealCPU()
	rx.startWindow()
	t0 := time.Now()
	sample := time.NewTicker(time.Second)
	end := time.After(o.dur)
loop:
	for {
		select {
		case <-end:
			break loop
		case <-stepCtx.Done():
			break loop
		case <-sample.C:
			if m, err := procstat.MemKiB(pid); err == nil {
				r.memMax.RSS, r.memMax.Anon = max(r.memMax.RSS, m.RSS), max(r.memMax.Anon, m.Anon)
			}
		}
	}
	sample.Stop()
	c1, _ := procstat.CPUTime(strconv.Itoa(pid))
	g1, _ := procstat.CPUTime("self")
	r.window = time.Since(t0)
	r.cpu, r.gen = c1-c0, g1-g0
	r.late, r.packets, r.lost, r.streams = rx.endWindow()
	r.steal = -1
	if s1, t1cpu, err := procstat.StealCPU(); err == nil && s0err == nil && t1cpu > t0cpu {
		r.steal = float64(s1-s0) / float64(t1cpu-t0cpu)
	}
	if p1, err := w.pacerLateness(); err != nil || p0err != nil {
		r.pacerErr = errors.Join(p0err, err)
	} else {
		r.pacer = p1.since(p0)
	}

	// Hang up, 100 at a time.
	sem := make(chan struct{}, 100)
	var hw sync.WaitGroup
	for _, d := range metaDialogs {
		hw.Add(1)
		sem <- struct{}{}
		go func() {
			defer hw.Done()
			defer func() { <-sem }()
			hctx, hcancel := context.WithTimeout(context.Background(), 35*time.Second)
			defer hcancel()
			_, _ = d.Bye(hctx)
		}()
	}
	hw.Wait()
	cancel()
	pwg.Wait()
	for i := 0; i < 200; i++ {
		if s, err := w.calls(); err == nil && s == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.stopErr = w.stop()
	w = nil
	return r, nil
}
