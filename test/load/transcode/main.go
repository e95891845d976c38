// Command transcode is a load tool for wagate's transcoding media path,
// over loopback only. For each N asked for it starts the real wagate
// binary and holds N concurrent user-initiated calls through it: the
// WhatsApp side plays Meta (its SIP INVITE with Record-Route and
// x-wa-meta-* headers, its SDES offer, Opus 48 kHz mono 20 ms frames over
// SRTP with rtcp-mux and an RTCP sender report every 5 s), the PBX side
// answers PCMU on plain RTP. Both send 50 packets/s per call for the whole
// call; wagate transcodes every packet both ways.
//
// The generator is built to cost little next to wagate (see media.go):
// audio is encoded once into loops replayed with fresh RTP headers (SRTP
// protection per packet), each side's streams share one socket and move
// in batches (sendmmsg/recvmmsg) from one pacing goroutine, arrival times
// are the kernel's, and only a few sampled calls decode audio. Its own CPU
// and the machine's are reported beside wagate's, so a saturated machine
// shows.
//
// Unsampled calls send speech-like audio both ways (-audio speech, the
// codec benchmark's signal, so the codec work matches BenchmarkCall; or
// -audio tone: 1 kHz from Meta, 440 Hz from the PBX). Sampled calls
// (-sample, spread over the N): Meta sends 200 ms 1 kHz bursts every
// second and decodes what comes back; the PBX echoes every packet (-pbx
// echo, the default), so each burst's onset is timed Meta → wagate → PBX
// → wagate → Meta and each burst's frequency and level are checked; the
// same round trip without wagate (a Meta stream against the same Go echo)
// is measured first, and the difference is the latency wagate adds. With
// -pbx tone the sampled calls' PBX sends 440 Hz instead and no latency is
// measured.
//
// Per N it reports: wagate's CPU (utime+stime from /proc over the
// measured window) in total and per call, the generator's and the whole
// machine's CPU over the same window, wagate's RSS per call, the packet
// forwarding ratio per direction (whole calls: the generator's counts and
// wagate's own, logged per bridge at debug level), wagate's silence toward
// Meta, the RFC 3550 jitter of the streams going into wagate and of those
// it sends, and the latency it adds. With -record wagate records every
// call and the recordings are counted and measured.
//
// Usage (from the repository root):
//
//	go build -o /tmp/wagate-bin ./cmd/wagate
//	go run ./test/load/transcode -wagate /tmp/wagate-bin -n 10,50,100,150 -d 30s
//	go run ./test/load/transcode -wagate /tmp/wagate-bin -n 100 -d 30s -record
//	go run ./test/load/transcode -wagate /tmp/wagate-bin -n 100 -wagate-args '-cpuprofile /tmp/cpu-{n}.prof'
//	go run ./test/load/transcode -h
//
// Everything is bounded: N ≤ 500, -d ≤ 10m, every wait has a limit, and
// the processes it starts are stopped by pid when it exits.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	maxCalls    = 500
	maxDuration = 10 * time.Minute
	// Tone bursts of the sampled calls: 200 ms of 1 kHz every second, so
	// each burst's onset can be timed leaving and coming back.
	burstOn, burstPeriod = 200 * time.Millisecond, time.Second
	toneAmp              = 0.3
	businessNumber       = "+15550100001"
)

type options struct {
	ns         []int
	dur        time.Duration
	pbxMode    string
	srtp       bool
	authAll    bool
	sample     int
	setupRate  int
	record     bool
	wagate     string
	wagateArgs string
	sipExtra   string
	out        string
	netPrefix  string
	sipPort    int
	apiPort    int
	portMin    int
	portMax    int
	verbose    bool
	genProfile string
	waitIdle   time.Duration
	retries    int
	audio      string
}

func main() {
	var o options
	var ns string
	flag.StringVar(&ns, "n", "10", "concurrent calls; a comma-separated list runs one step per value (e.g. 10,50,100,150)")
	flag.DurationVar(&o.dur, "d", 10*time.Second, "measured window of each step (the calls are held for it, after 1 s of settling)")
	flag.StringVar(&o.pbxMode, "pbx", "echo", "sampled PBX calls: echo (echo RTP back; latency measured) or tone (send 440 Hz; no latency)")
	flag.StringVar(&o.audio, "audio", "speech", "what the unsampled calls send both ways: speech (the codec benchmark's speech-like signal, 5 s loop) or tone (1 kHz from Meta, 440 Hz from the PBX); Opus costs more on speech")
	flag.BoolVar(&o.srtp, "srtp", true, "SDES-SRTP on the WhatsApp leg (false: plain RTP, media_encryption none)")
	flag.BoolVar(&o.authAll, "auth-all", true, "authenticate and decrypt every SRTP packet wagate sends to Meta (false: only the sampled calls')")
	flag.IntVar(&o.sample, "sample", 5, "calls whose audio is decoded and timed (at most N/2)")
	flag.IntVar(&o.setupRate, "rate", 50, "call set-up rate, calls/s")
	flag.BoolVar(&o.record, "record", false, "turn recording on (files under -out/rec-N, counted after each step)")
	flag.StringVar(&o.wagate, "wagate", "", "wagate binary (default: go build ./cmd/wagate into the output dir)")
	flag.StringVar(&o.sipExtra, "sip", "", "more keys of wagate's sip section, one YAML line each, separated by ';' (e.g. 'max_late_media_percent: 20')")
	flag.StringVar(&o.wagateArgs, "wagate-args", "", "extra wagate flags, split on spaces; {n} becomes the step's N (e.g. '-cpuprofile /tmp/cpu-{n}.prof')")
	flag.StringVar(&o.out, "out", "", "directory for configs, logs and recordings (default: a new temp dir, kept)")
	flag.StringVar(&o.netPrefix, "net", "127.0.60", "loopback /24 to use: wagate .1, Meta peers .2, PBX .3")
	flag.IntVar(&o.sipPort, "sip-port", 15072, "wagate's SIP port")
	flag.IntVar(&o.apiPort, "api-port", 18081, "wagate's status API port")
	flag.IntVar(&o.portMin, "port-min", 30000, "wagate's RTP port range start")
	flag.IntVar(&o.portMax, "port-max", 40000, "wagate's RTP port range end")
	flag.BoolVar(&o.verbose, "v", false, "log every SIP message the peers send and receive")
	flag.StringVar(&o.genProfile, "genprofile", "", "write a CPU profile of this tool (the generator) to `file`")
	flag.IntVar(&o.retries, "retries", 0, "run a step again, up to this many times, when other processes used more than 15 % of one core during its window; the least disturbed run is reported")
	flag.DurationVar(&o.waitIdle, "wait-idle", 0, "before each step, wait up to this long for the machine to be idle (under 10 % of one core busy over 2 s), so other jobs do not skew the numbers")
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
	if o.audio != "speech" && o.audio != "tone" {
		fatalf("-audio must be speech or tone")
	}
	if o.sample < 0 || o.setupRate < 1 || o.setupRate > 500 {
		fatalf("-sample must be ≥ 0 and -rate in 1..500")
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
	if o.genProfile != "" {
		f, err := os.Create(o.genProfile)
		if err != nil {
			fatalf("%v", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fatalf("%v", err)
		}
		defer pprof.StopCPUProfile()
	}
	ls, err := makeLoops(o.audio == "speech")
	if err != nil {
		fatalf("encoding the audio loops: %v", err)
	}
	base := time.Duration(0)
	if o.pbxMode == "echo" && o.sample > 0 {
		if base, err = baselineRTT(ctx, o, ls); err != nil {
			fatalf("baseline: %v", err)
		}
		fmt.Printf("# direct echo round trip without wagate (Opus decode, loopback, Go echo): median %.1f ms\n", ms(base))
	}
	fmt.Printf("# audio=%s pbx=%s srtp=%v auth-all=%v sample=%d record=%v window=%v, set-up %d calls/s, %d CPU(s), clock tick %d/s\n",
		o.audio, o.pbxMode, o.srtp, o.authAll, o.sample, o.record, o.dur, o.setupRate, runtime.NumCPU(), clkTck)
	printHeader()
	failed := false
	for i, n := range o.ns {
		if ctx.Err() != nil {
			break
		}
		if i > 0 {
			time.Sleep(3 * time.Second) // quarantined ports come back, sockets drain
		}
		var best *result
		for attempt := 0; attempt <= o.retries && ctx.Err() == nil; attempt++ {
			if attempt > 0 {
				fmt.Printf("# N=%d: other processes used %.0f%% of one core during the window; running it again\n", n, best.other())
				time.Sleep(3 * time.Second)
			}
			if o.waitIdle > 0 {
				waitIdle(ctx, o.waitIdle)
			}
			r, err := runStep(ctx, o, ls, n, base)
			if err != nil {
				fmt.Fprintf(os.Stderr, "step N=%d: %v\n", n, err)
				break
			}
			if best == nil || r.other() < best.other() {
				best = &r
			}
			if best.other() <= 15 {
				break
			}
		}
		if best == nil {
			failed = true
			continue
		}
		r := *best
		r.print(o)
		if r.failedCalls > 0 {
			failed = true
		}
	}
	if failed {
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// waitIdle waits (at most limit) until the machine's CPUs were less than
// 10 % of one core busy over 2 s.
func waitIdle(ctx context.Context, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for {
		b0, t0, _, _ := machineCPU()
		select {
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
			return
		}
		b1, t1, _, _ := machineCPU()
		busy := 0.0
		if t1 > t0 {
			busy = 100 * float64(b1-b0) / float64(t1-t0) * float64(runtime.NumCPU())
		}
		if busy < 10 {
			return
		}
		if time.Now().After(deadline) {
			fmt.Printf("# machine still %.0f%% of one core busy after waiting %v for it to be idle; measuring anyway\n", busy, limit)
			return
		}
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "transcode: "+format+"\n", args...)
	os.Exit(2)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
