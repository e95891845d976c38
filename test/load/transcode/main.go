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
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wagate/wagate/test/internal/audio"
	"github.com/wagate/wagate/test/internal/rtppeer"
	"github.com/wagate/wagate/test/internal/sipua"
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

// ---------------------------------------------------------------------------
// Latency

// baselineRTT is the median round trip of a burst onset from a Meta
// stream to the generator's own echo and back, without wagate: what the
// peers' decoding, loopback and the echo's scheduling cost.
func baselineRTT(ctx context.Context, o options, ls *loops) (time.Duration, error) {
	p := newPacer()
	defer p.close()
	ea, err := listenEndpoint(o.netPrefix+".2", true)
	if err != nil {
		return 0, err
	}
	defer ea.close()
	p.addEndpoint(ea)
	eb, err := listenEndpoint(o.netPrefix+".3", false)
	if err != nil {
		return 0, err
	}
	defer eb.close()
	a, err := newStream(ea, sideMeta, true, false, o.srtp)
	if err != nil {
		return 0, err
	}
	// The echo returns a's (S)RTP packets untouched: an Opus-typed echo.
	b, err := newStream(eb, sideMeta, false, true, false)
	if err != nil {
		return 0, err
	}
	var key *rtppeer.Crypto
	if o.srtp {
		key = rtppeer.NewCrypto() // a decrypts its own packets
	}
	if err := b.start(ea.addr, 111, nil, nil); err != nil {
		return 0, err
	}
	if err := a.start(eb.addr, 111, key, key); err != nil {
		return 0, err
	}
	p.add(a, ls.opusBursts)
	select {
	case <-time.After(5500 * time.Millisecond):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	a.muted.Store(true)
	b.muted.Store(true)
	sent := p.sentOnsets(a)
	time.Sleep(300 * time.Millisecond)
	ea.close()
	eb.close()
	rtts := pairOnsets(sent, a.recvOnsets)
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

func percentileF(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	t := 0.0
	for _, x := range v {
		t += x
	}
	return t / float64(len(v))
}

// ---------------------------------------------------------------------------
// Calls

type metaCall struct {
	idx           int
	s             *stream
	d             *sipua.Dialog
	answered, end time.Time
}

type pbxCall struct {
	idx int
	s   *stream
	d   *sipua.Dialog
}

func userOf(i int) string { return fmt.Sprintf("+4477009%05d", i) }

// userIndex is i of userOf(i), or -1.
func userIndex(u string) int {
	u = strings.TrimSpace(u)
	if !strings.HasPrefix(u, "+4477009") || len(u) != len("+4477009")+5 {
		return -1
	}
	n, err := strconv.Atoi(u[len("+4477009"):])
	if err != nil {
		return -1
	}
	return n
}

// placeCall places call i as Meta does and starts its media.
func placeCall(ctx context.Context, ua *sipua.UA, ep *endpoint, o options, ls *loops, p *pacer, i int, sampled bool) (*metaCall, error) {
	ip2 := o.netPrefix + ".2"
	s, err := newStream(ep, sideMeta, sampled, false, o.srtp && (o.authAll || sampled))
	if err != nil {
		return nil, err
	}
	var key *rtppeer.Crypto
	if o.srtp {
		key = rtppeer.NewCrypto()
	}
	desc := rtppeer.Desc{IP: ip2, Port: ep.port(), Codecs: []rtppeer.Codec{rtppeer.Opus},
		Fmtp: map[uint8]string{rtppeer.Opus.PT: rtppeer.MetaOpusFmtp}, EventPT: 126, NoEventFmtp: true,
		Crypto: key, RTCPMux: true, Ptime: 20}
	target := fmt.Sprintf("%s.1:%d", o.netPrefix, o.sipPort)
	taddr, err := net.ResolveUDPAddr("udp4", target)
	if err != nil {
		return nil, err
	}
	wacid := fmt.Sprintf("wacid.%s.%d", strconv.FormatInt(time.Now().UnixNano(), 36), i)
	req := sipua.InviteRequest{
		Target: taddr,
		RURI:   fmt.Sprintf("sip:%s@%s;transport=udp", businessNumber, target),
		To:     fmt.Sprintf("sip:%s@%s", businessNumber, target),
		From:   fmt.Sprintf("sip:%s@wa.meta.vc", userOf(i)),
		CallID: "outgoing:" + wacid,
		Headers: []sipua.Header{
			{Name: "Record-Route", Value: fmt.Sprintf("<sip:%s;transport=udp;lr>", ua.Addr())},
			{Name: "x-wa-meta-wacid", Value: wacid},
		},
		SDP: desc.Marshal(),
	}
	d, err := ua.Invite(ctx, req)
	if err != nil {
		return nil, err
	}
	c := &metaCall{idx: i, s: s, d: d, answered: time.Now()}
	fail := func(err error) (*metaCall, error) {
		bctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d.Bye(bctx)
		s.stop()
		return nil, err
	}
	ans, err := rtppeer.ParseSDP(d.RemoteSDP)
	if err != nil {
		return fail(fmt.Errorf("answer: %v", err))
	}
	pt, ok := ans.FindCodec("opus", 48000)
	if !ok {
		return fail(fmt.Errorf("answer has no opus/48000:\n%s", d.RemoteSDP))
	}
	var rkey *rtppeer.Crypto
	if o.srtp {
		if rkey, err = ans.Crypto(); err != nil {
			return fail(fmt.Errorf("answer: %v", err))
		}
	}
	addr, err := netip.ParseAddr(ans.IP)
	if err != nil {
		return fail(err)
	}
	if err := s.start(netip.AddrPortFrom(addr, uint16(ans.Port)), pt, key, rkey); err != nil {
		return fail(err)
	}
	lp := ls.metaAudio
	if sampled {
		lp = ls.opusBursts
	}
	p.add(s, lp)
	return c, nil
}

// answerCall answers one INVITE at the PBX with PCMU and starts its media
// once the ACK is in: its own 440 Hz, or an echo for a sampled call.
func answerCall(in *sipua.Incoming, ep, echoEP *endpoint, o options, ls *loops, p *pacer, sampledSet map[int]bool) (*pbxCall, error) {
	offer, err := rtppeer.ParseSDP(in.Req.Body)
	if err != nil {
		in.Reject(488, "Not Acceptable Here")
		return nil, fmt.Errorf("offer: %v", err)
	}
	pt, ok := offer.FindCodec("PCMU", 8000)
	if !ok {
		in.Reject(488, "Not Acceptable Here")
		return nil, fmt.Errorf("offer has no PCMU:\n%s", in.Req.Body)
	}
	evPT, hasEv := offer.FindCodec("telephone-event", 8000)
	if !hasEv {
		evPT = 0
	}
	idx := userIndex(in.Req.Get("X-WABA-User"))
	echo := o.pbxMode == "echo" && sampledSet[idx]
	ip3 := o.netPrefix + ".3"
	if echo {
		ep = echoEP
	}
	s, err := newStream(ep, sidePBX, echo, echo, false)
	if err != nil {
		in.Reject(500, "Server Internal Error")
		return nil, err
	}
	addr, err := netip.ParseAddr(offer.IP)
	if err == nil {
		err = s.start(netip.AddrPortFrom(addr, uint16(offer.Port)), pt, nil, nil)
	}
	if err != nil {
		in.Reject(488, "Not Acceptable Here")
		s.stop()
		return nil, err
	}
	desc := rtppeer.Desc{IP: ip3, Port: ep.port(), Codecs: []rtppeer.Codec{{Name: "PCMU", PT: pt, Rate: 8000, Channels: 1}},
		EventPT: evPT, Ptime: 20}
	d, err := in.Answer(desc.Marshal())
	if err != nil {
		s.stop()
		return nil, err
	}
	select {
	case <-d.Acked():
	case <-time.After(5 * time.Second):
		s.stop()
		return nil, errors.New("no ACK for the PBX's 200 within 5 s")
	}
	if !echo {
		lp := ls.pbxAudio
		if sampledSet[idx] {
			lp = ls.pcmuTone // -pbx tone: the sampled calls check 440 Hz
		}
		p.add(s, lp)
	}
	return &pbxCall{idx: idx, s: s, d: d}, nil
}

// ---------------------------------------------------------------------------
// One step

type result struct {
	n, up, failedCalls int
	failReasons        map[string]int
	window             time.Duration
	// CPU over the window, % of one core.
	cpuPct, genPct, machinePct float64
	softirqPct                 float64 // of machinePct
	rssIdle, rssLoaded, rssHWM int64
	// Window packet counts.
	wMetaSent, wPBXRecv, wPBXSent, wMetaRecv uint64
	// Whole-call packet counts, generator side.
	metaSent, pbxRecv, pbxSent, metaRecv uint64
	// Silence toward Meta while the PBX was sending, over the unsampled
	// calls (≈: see silenceInCall).
	silInCall, silAfter           float64
	silCalls                      int
	unmatchedMeta, unmatchedPBX   uint64 // arrived before the call's stream was registered
	genSockDrops, wagateSockDrops uint64 // UDP receive-queue drops (/proc/net/udp)
	genSendErrs                   uint64 // packets the generator could not send
	lostAtPBX, lostAtMeta         int64  // RFC 3550 expected − received
	metaRecvSeq                   uint64 // audio packets Meta received, sequence-tracked
	authFail, rtcpAtMeta          uint64
	wg                            bridgeTotals
	// Jitter (ms): inputs to wagate and what it sends, mean and p95 over
	// (stream, second) samples of the unsampled streams.
	jitInMeta, jitOutPBX, jitInPBX, jitOutMeta []float64
	// Latency (sampled, echo mode).
	rttP50, rttP95, added time.Duration
	rttN                  int
	tones                 toneStats
	toneWant              float64
	// Generator health in the window.
	pacedStreams                     int
	maxLate                          time.Duration
	late5, frames, resyncs, expected uint64
	// Recording.
	rec                       *recStats
	wavFiles                  int
	wavBytes                  int64
	wavDur, callDur           time.Duration
	statusAfter               status
	statusErr                 error
	stopErr                   error
	pbxNoBye                  int
	echoMode                  bool
	sampledMeta, sampledEchos int
}

func runStep(ctx context.Context, o options, ls *loops, n int, base time.Duration) (result, error) {
	r := result{n: n, echoMode: o.pbxMode == "echo", failReasons: map[string]int{}}
	w, err := startWagate(ctx, o, n)
	if err != nil {
		return r, err
	}
	stopped := false
	defer func() {
		if !stopped {
			w.stop()
		}
	}()
	pid := w.cmd.Process.Pid
	time.Sleep(300 * time.Millisecond)
	r.rssIdle, _, _ = rssKiB(pid)

	var logf func(string, ...any)
	if o.verbose {
		logf = func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
	}
	ip := func(h int) string { return fmt.Sprintf("%s.%d", o.netPrefix, h) }
	pbxUA, err := sipua.Listen(sipua.Config{Addr: ip(3) + ":5060", User: "1001", Logf: logf})
	if err != nil {
		return r, fmt.Errorf("PBX UA: %v", err)
	}
	defer pbxUA.Close()
	metaUA, err := sipua.Listen(sipua.Config{Addr: ip(2) + ":5060", User: "meta", Logf: logf})
	if err != nil {
		return r, fmt.Errorf("Meta UA: %v", err)
	}
	defer metaUA.Close()
	p := newPacer()
	defer p.close()
	metaEP, err := listenEndpoint(ip(2), true)
	if err != nil {
		return r, err
	}
	defer metaEP.close()
	pbxEP, err := listenEndpoint(ip(3), true)
	if err != nil {
		return r, err
	}
	defer pbxEP.close()
	echoEP, err := listenEndpoint(ip(3), false) // the sampled calls' echo: read at once
	if err != nil {
		return r, err
	}
	defer echoEP.close()
	p.addEndpoint(metaEP)
	p.addEndpoint(pbxEP)

	// Which calls are sampled: spread over the N.
	ns := min(o.sample, n/2)
	sampledSet := map[int]bool{}
	for k := 0; k < ns; k++ {
		sampledSet[k*n/ns] = true
	}

	stepCtx, cancel := context.WithTimeout(ctx, o.dur+3*time.Minute)
	defer cancel()

	// PBX: accept every INVITE at once and answer it on its own goroutine.
	// (The UA answers 486 by itself when 16 INVITEs wait to be accepted; an
	// accept loop that did the answering work in line was the 486s seen
	// at N=150 with the first version of this tool.)
	var pmu sync.Mutex
	var pbxCalls []*pbxCall
	var pbxErrs []string
	var pwg sync.WaitGroup
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		for {
			in, err := pbxUA.Accept(stepCtx)
			if err != nil {
				return
			}
			pwg.Add(1)
			go func() {
				defer pwg.Done()
				c, err := answerCall(in, pbxEP, echoEP, o, ls, p, sampledSet)
				pmu.Lock()
				defer pmu.Unlock()
				if err != nil {
					pbxErrs = append(pbxErrs, err.Error())
					return
				}
				pbxCalls = append(pbxCalls, c)
			}()
		}
	}()

	// Meta: place n calls at the set-up rate.
	var mmu sync.Mutex
	var metaCalls []*metaCall
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(o.setupRate))
	for i := 0; i < n && stepCtx.Err() == nil; i++ {
		<-tick.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := placeCall(stepCtx, metaUA, metaEP, o, ls, p, i, sampledSet[i])
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
			metaCalls = append(metaCalls, c)
		}()
	}
	tick.Stop()
	wg.Wait()
	r.up = len(metaCalls)
	r.failedCalls = n - r.up
	// Every answered call's PBX side has its ACK by now or within 5 s.
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		pmu.Lock()
		k := len(pbxCalls) + len(pbxErrs)
		pmu.Unlock()
		if k >= r.up {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r.up == 0 {
		return r, fmt.Errorf("no call was set up (%v); see %s", r.failReasons, w.log)
	}

	// Settle, then measure over o.dur.
	time.Sleep(time.Second)
	pmu.Lock()
	pbxSnap := append([]*pbxCall(nil), pbxCalls...)
	pmu.Unlock()
	var metaTone, pbxTone []*stream // unsampled: the jitter samples
	var sampledMeta []*metaCall
	for _, c := range metaCalls {
		if c.s.sampled {
			sampledMeta = append(sampledMeta, c)
			c.s.recording.Store(true)
		} else {
			metaTone = append(metaTone, c.s)
		}
	}
	for _, c := range pbxSnap {
		if c.s.echo {
			r.sampledEchos++
		} else if !sampledSet[c.idx] {
			pbxTone = append(pbxTone, c.s)
		}
	}
	r.sampledMeta = len(sampledMeta)
	r.pacedStreams = len(metaCalls) + len(pbxSnap) - r.sampledEchos
	count := func() (ms, pr, ps, mr uint64) {
		for _, c := range metaCalls {
			ms += c.s.sent.Load()
			mr += c.s.recv.Load()
		}
		for _, c := range pbxSnap {
			ps += c.s.sent.Load()
			pr += c.s.recv.Load()
		}
		return
	}
	ms0, pr0, ps0, mr0 := count()
	c0, err := cpuTime(strconv.Itoa(pid))
	if err != nil {
		return r, err
	}
	g0, _ := cpuTime("self")
	mb0, mt0, ms0soft, _ := machineCPU()
	wip := netip.MustParseAddr(ip(1))
	_, wd0, _ := udpDrops(wip)
	p.health() // reset
	t0 := time.Now()
	rssMax := int64(0)
	end := time.After(o.dur)
	sample := time.NewTicker(time.Second)
loop:
	for {
		select {
		case <-end:
			break loop
		case <-stepCtx.Done():
			break loop
		case <-sample.C:
			if rss, _, err := rssKiB(pid); err == nil && rss > rssMax {
				rssMax = rss
			}
			for _, s := range metaTone {
				r.jitInMeta = append(r.jitInMeta, s.sendJitter())
				r.jitOutMeta = append(r.jitOutMeta, s.recvJitter())
			}
			for _, s := range pbxTone {
				r.jitInPBX = append(r.jitInPBX, s.sendJitter())
				r.jitOutPBX = append(r.jitOutPBX, s.recvJitter())
			}
		}
	}
	sample.Stop()
	c1, _ := cpuTime(strconv.Itoa(pid))
	g1, _ := cpuTime("self")
	mb1, mt1, ms1soft, _ := machineCPU()
	wall := time.Since(t0)
	_, wd1, _ := udpDrops(wip)
	r.wagateSockDrops = wd1 - wd0
	r.window = wall
	r.maxLate, r.late5, r.frames, r.resyncs = p.health()
	r.expected = uint64(float64(r.pacedStreams) * wall.Seconds() * 50)
	ms1, pr1, ps1, mr1 := count()
	r.wMetaSent, r.wPBXRecv, r.wPBXSent, r.wMetaRecv = ms1-ms0, pr1-pr0, ps1-ps0, mr1-mr0
	r.cpuPct = 100 * float64(c1-c0) / float64(wall)
	r.genPct = 100 * float64(g1-g0) / float64(wall)
	if mt1 > mt0 {
		// % of one core, like the others: busy share × number of CPUs.
		r.machinePct = 100 * float64(mb1-mb0) / float64(mt1-mt0) * float64(runtime.NumCPU())
		r.softirqPct = 100 * float64(ms1soft-ms0soft) / float64(mt1-mt0) * float64(runtime.NumCPU())
	}
	r.rssLoaded = rssMax
	_, r.rssHWM, _ = rssKiB(pid)

	// Stop sending; let the last packets arrive. What Meta receives from
	// here on is wagate's silence (the PBX has stopped), bar a packet or
	// two per call in flight: counted, to tell the silence of the teardown
	// from silence during the call.
	for _, c := range pbxSnap {
		c.s.muted.Store(true)
	}
	for _, c := range metaCalls {
		c.s.recording.Store(false)
		c.s.muted.Store(true)
	}
	var sentOnsets [][]time.Time
	for _, c := range sampledMeta {
		sentOnsets = append(sentOnsets, p.sentOnsets(c.s))
	}
	time.Sleep(500 * time.Millisecond)

	if d, _, err := udpDrops(metaEP.addr.Addr()); err == nil {
		r.genSockDrops += d[metaEP.addr.Port()]
	}
	if d, _, err := udpDrops(pbxEP.addr.Addr()); err == nil {
		r.genSockDrops += d[pbxEP.addr.Port()] + d[echoEP.addr.Port()]
	}
	r.unmatchedMeta, r.unmatchedPBX = metaEP.unmatched.Load(), pbxEP.unmatched.Load()+echoEP.unmatched.Load()
	p.mu.Lock() // the pacer's counters
	r.genSendErrs = metaEP.sendErrs + pbxEP.sendErrs
	p.mu.Unlock()

	// Hang up (Meta sends BYE) and wait for the PBX side's BYE.
	var hw sync.WaitGroup
	for _, c := range metaCalls {
		hw.Add(1)
		go func() {
			defer hw.Done()
			hctx, hcancel := context.WithTimeout(context.Background(), 35*time.Second)
			defer hcancel()
			if code, err := c.d.Bye(hctx); err != nil || code != 200 {
				fmt.Fprintf(os.Stderr, "hangup %s: %d %v\n", userOf(c.idx), code, err)
			}
			c.end = time.Now()
		}()
	}
	hw.Wait()
	for _, c := range metaCalls {
		c.s.stop()
	}
	pwg.Wait()
	pmu.Lock()
	byeBy := time.Now().Add(10 * time.Second) // one deadline for all of them
	for _, c := range pbxCalls {
		select {
		case <-c.d.Done():
		case <-time.After(time.Until(byeBy)):
			r.pbxNoBye++
		}
		c.s.stop()
	}
	pmu.Unlock()
	cancel()
	<-acceptDone

	// Whole-call counts (the readers have stopped).
	for _, c := range metaCalls {
		r.metaSent += c.s.sent.Load()
		r.metaRecv += c.s.recv.Load()
		r.lostAtMeta += c.s.seqs.lost()
		r.metaRecvSeq += c.s.seqs.received
		r.authFail += c.s.authFail.Load()
		r.rtcpAtMeta += c.s.recvRTCP.Load()
		r.callDur += c.end.Sub(c.answered)
	}
	for _, c := range pbxCalls {
		r.pbxSent += c.s.sent.Load()
		r.pbxRecv += c.s.recv.Load()
		r.lostAtPBX += c.s.seqs.lost()
	}
	if len(pbxErrs) > 0 {
		r.failReasons["PBX side: "+pbxErrs[0]] += len(pbxErrs)
	}

	// Latency and tone of the sampled calls.
	var rtts []time.Duration
	r.toneWant = 440
	if r.echoMode {
		r.toneWant = 1000
	}
	for i, c := range sampledMeta {
		var sent []time.Time
		for _, t := range sentOnsets[i] {
			if !t.Before(t0) && t.Before(t0.Add(wall)) {
				sent = append(sent, t)
			}
		}
		if r.echoMode {
			rtts = append(rtts, pairOnsets(sent, c.s.recvOnsets)...)
		}
		r.tones.add(c.s.rec, 48000, r.toneWant, !r.echoMode)
	}
	r.rttN = len(rtts)
	r.rttP50, r.rttP95 = percentile(rtts, 50), percentile(rtts, 95)
	if r.rttN > 0 {
		r.added = r.rttP50 - base
	}

	// wagate idle, then stopped; its counters from the log.
	idle := time.Now().Add(20 * time.Second)
	for {
		s, err := w.status()
		r.statusAfter, r.statusErr = s, err
		if err == nil && s.Calls == 0 {
			break
		}
		if time.Now().After(idle) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Recordings are finished (headers written, synced) after the calls
	// end: wait (bounded) for none to be active.
	for i := 0; i < 100 && r.statusAfter.Recordings != nil && r.statusAfter.Recordings.Active > 0; i++ {
		time.Sleep(100 * time.Millisecond)
		if s, err := w.status(); err == nil {
			r.statusAfter = s
		}
	}
	r.rec = r.statusAfter.Recordings
	r.stopErr = w.stop()
	stopped = true
	if r.wg, err = readBridgeTotals(w.log); err != nil {
		return r, err
	}
	r.silenceInCall(metaCalls)
	if w.recDir != "" {
		r.wavFiles, r.wavBytes, r.wavDur, err = wavTotals(w.recDir)
		if err != nil {
			return r, err
		}
	}
	return r, nil
}

// ---------------------------------------------------------------------------
// Report

func printHeader() {
	fmt.Printf("%5s %5s %7s %9s %7s %7s %8s %8s %8s %8s %7s %13s %13s %11s %8s\n",
		"N", "up", "cpu%", "cpu%/call", "gen%", "both%", "rss_MiB", "KiB/call",
		"fwd→pbx", "fwd→meta", "sil/call", "jit→pbx ms", "jit→meta ms", "rtt p50/95", "added")
}

// other is the CPU (% of one core) that neither wagate nor the generator
// nor the kernel's softirq work (the loopback network stack) used during
// the window: other jobs on the machine.
// silenceInCall splits wagate's silence toward Meta, per unsampled call,
// into what it sent while the PBX was sending (wagate late, or the call's
// first moments) and after the PBX stopped at the end of the window: the
// packets Meta got after the last large (non-silence) payload are
// silence, and so are the two before them, which carry the encoder's tail
// (Opus silence frames after audio measure about 50, 45, then 6-8 bytes).
// Sampled calls are left out: their echoed bursts have silence of their
// own.
func (r *result) silenceInCall(calls []*metaCall) {
	var in, after float64
	for _, c := range calls {
		if c.s.sampled {
			continue
		}
		total, ok := r.wg.silenceByCall[c.idx]
		if !ok {
			continue
		}
		post := float64(c.s.recv.Load()-c.s.recvAtLastBig.Load()) + 2
		post = math.Min(post, float64(total))
		after += post
		in += float64(total) - post
		r.silCalls++
	}
	if r.silCalls > 0 {
		r.silInCall, r.silAfter = in/float64(r.silCalls), after/float64(r.silCalls)
	}
}

func (r result) other() float64 { return r.machinePct - r.cpuPct - r.genPct - r.softirqPct }

// toneStats checks the decoded audio of the sampled calls piece by piece:
// each echoed burst (echo mode), or each second of the PBX's continuous
// tone.
type toneStats struct {
	unit                   string
	pieces, clean, short   int
	fmin, fmax, lmin, lmax float64
}

func (t *toneStats) add(rec []int16, rate int, want float64, continuous bool) {
	frame := rate / 50
	note := func(seg []int16) {
		trim := rate * 40 / 1000
		if len(seg) > 4*trim {
			seg = seg[trim : len(seg)-trim]
		}
		f, l := audio.Frequency(seg, rate), audio.DBFS(seg)
		if t.pieces == 0 {
			t.fmin, t.fmax, t.lmin, t.lmax = f, f, l, l
		}
		t.pieces++
		t.fmin, t.fmax = math.Min(t.fmin, f), math.Max(t.fmax, f)
		t.lmin, t.lmax = math.Min(t.lmin, l), math.Max(t.lmax, l)
		if audio.Within(f, want, 1, 2) && l >= -25 {
			t.clean++
		}
	}
	if continuous {
		t.unit = "seconds"
		for off := 0; off+rate <= len(rec); off += rate {
			note(rec[off : off+rate])
		}
		return
	}
	// Bursts: runs of 20 ms frames at or above −25 dBFS. A burst is 200 ms;
	// a run under 120 ms is a burst broken by a gap (or the recording's
	// edge), counted apart.
	t.unit = "bursts"
	start := -1
	flush := func(end int) {
		if start < 0 {
			return
		}
		if end-start < rate*120/1000 {
			t.short++
		} else {
			note(rec[start:end])
		}
		start = -1
	}
	for off := 0; off+frame <= len(rec); off += frame {
		if audio.DBFS(rec[off:off+frame]) >= -25 {
			if start < 0 {
				start = off
			}
		} else {
			flush(off)
		}
	}
	flush(len(rec) / frame * frame)
}

func ratio(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func (r result) print(o options) {
	rtt, added := "n/a", "n/a"
	if r.rttN > 0 {
		rtt = fmt.Sprintf("%.0f/%.0f", ms(r.rttP50), ms(r.rttP95))
		added = fmt.Sprintf("%.1f", ms(r.added))
	}
	perCall := float64(r.rssLoaded-r.rssIdle) / float64(max(1, r.up))
	// Forwarding, whole call: toward the PBX what the PBX got of what Meta
	// sent (wagate sends the PBX nothing of its own); toward Meta the PBX's
	// packets wagate turned into audio packets (its own count, silence
	// excluded) times the share of wagate's numbered packets that reached
	// Meta (RFC 3550 expected − lost).
	fwdPBX := ratio(r.pbxRecv, r.metaSent)
	delivered := 1.0
	if exp := float64(r.metaRecvSeq) + float64(r.lostAtMeta); exp > 0 {
		delivered = 1 - float64(r.lostAtMeta)/exp
	}
	fwdMeta := ratio(r.wg.bToA, r.pbxSent) * delivered
	// Silence toward Meta while both sides were sending (set-up included),
	// per call: wagate's count less what Meta got after the PBX stopped.
	fmt.Printf("%5d %5d %7.1f %9.3f %7.1f %7.1f %8.1f %8.0f %8.4f %8.4f %7.2f %6.2f→%-6.2f %6.2f→%-6.2f %11s %8s\n",
		r.n, r.up, r.cpuPct, r.cpuPct/float64(max(1, r.up)), r.genPct, r.cpuPct+r.genPct,
		float64(r.rssLoaded)/1024, perCall, fwdPBX, fwdMeta, r.silInCall,
		mean(r.jitInMeta), mean(r.jitOutPBX), mean(r.jitInPBX), mean(r.jitOutMeta), rtt, added)
	if r.failedCalls > 0 {
		fmt.Printf("      ! %d call(s) failed to set up: %v\n", r.failedCalls, r.failReasons)
	}
	fmt.Printf("      whole calls: meta sent %d → wagate a→b %d → pbx got %d (lost on the way out %d); pbx sent %d → wagate b→a %d + silence %d → meta got %d (lost on the way out %d)\n",
		r.metaSent, r.wg.aToB, r.pbxRecv, r.lostAtPBX, r.pbxSent, r.wg.bToA, r.wg.silence, r.metaRecv, r.lostAtMeta)
	fmt.Printf("      silence toward Meta per unsampled call (%d calls): ≈%.2f while the PBX was sending, ≈%.1f after it stopped (the last 500 ms before the BYE)\n",
		r.silCalls, r.silInCall, r.silAfter)
	fmt.Printf("      window %.1f s: meta sent %d → pbx got %d (%.4f); pbx sent %d → meta got %d incl. silence (%.4f); jitter p95 in→out: →pbx %.2f→%.2f, →meta %.2f→%.2f ms\n",
		r.window.Seconds(), r.wMetaSent, r.wPBXRecv, ratio(r.wPBXRecv, r.wMetaSent), r.wPBXSent, r.wMetaRecv, ratio(r.wMetaRecv, r.wPBXSent),
		percentileF(r.jitInMeta, 95), percentileF(r.jitOutPBX, 95), percentileF(r.jitInPBX, 95), percentileF(r.jitOutMeta, 95))
	fmt.Printf("      generator: %d paced streams sent %.2f%% of their frames (%d of %d), max lateness %.1f ms, %d frames >5 ms late, %d resyncs; wagate+generator %.0f%% of one core; machine (tick-sampled /proc/stat, approximate) %.0f%% of %d00%%: softirq %.0f%%, other processes %.0f%%\n",
		r.pacedStreams, 100*ratio(r.frames, r.expected), r.frames, r.expected, ms(r.maxLate), r.late5, r.resyncs,
		r.cpuPct+r.genPct, r.machinePct, runtime.NumCPU(), r.softirqPct, r.other())
	fmt.Printf("      UDP receive drops in the window: wagate's sockets %d, the generator's %d (whole step); generator send errors %d; packets before their stream was registered: at Meta %d, at the PBX %d\n",
		r.wagateSockDrops, r.genSockDrops, r.genSendErrs, r.unmatchedMeta, r.unmatchedPBX)
	fmt.Printf("      wagate: %d bridges logged; dropped source %d invalid %d auth %d replay %d late %d; RTCP sent %d received %d; %d warnings (%d relay ended); peak RSS %.1f MiB (idle %.1f MiB)\n",
		r.wg.bridges, r.wg.droppedSource, r.wg.droppedInvalid, r.wg.droppedAuth, r.wg.droppedReplay, r.wg.droppedLate,
		r.wg.rtcpSent, r.wg.rtcpReceived, r.wg.warnings, r.wg.relayEnded, float64(r.rssHWM)/1024, float64(r.rssIdle)/1024)
	if r.wg.firstWarning != "" {
		fmt.Printf("      first warning: %.300s\n", r.wg.firstWarning)
	}
	if r.authFail > 0 || r.pbxNoBye > 0 || r.stopErr != nil || r.statusErr != nil || r.statusAfter.Calls != 0 {
		fmt.Printf("      ! SRTP from wagate failing authentication %d; PBX calls without BYE %d; wagate after: %+v %v; stop: %v\n",
			r.authFail, r.pbxNoBye, r.statusAfter, r.statusErr, r.stopErr)
	}
	if r.tones.pieces > 0 {
		t := r.tones
		fmt.Printf("      sampled: %d Meta calls decoded, %d PBX echoes; %d onset round trips; tone %g Hz: %d of %d %s clean (within ±1 %% and ≥ −25 dBFS; frequency %.1f–%.1f Hz, level %.1f–%.1f dBFS), %d short (a gap inside)\n",
			r.sampledMeta, r.sampledEchos, r.rttN, r.toneWant, t.clean, t.pieces, t.unit, t.fmin, t.fmax, t.lmin, t.lmax, t.short)
	}
	if o.record {
		perCallSec := float64(r.wavBytes) / math.Max(1, r.callDur.Seconds())
		fmt.Printf("      recording: %d .wav files, %.1f MiB, %.1f s of audio for %.1f s of calls (answer→BYE at Meta); %.0f bytes/s per call",
			r.wavFiles, float64(r.wavBytes)/(1<<20), r.wavDur.Seconds(), r.callDur.Seconds(), perCallSec)
		if r.rec != nil {
			fmt.Printf("; wagate: completed %d failed %d dropped chunks %d, %d bytes written", r.rec.Completed, r.rec.Failed, r.rec.DroppedChunks, r.rec.BytesWritten)
		}
		fmt.Println()
	}
}
