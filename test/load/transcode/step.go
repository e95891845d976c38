// One step: hold N calls through wagate for the measuring window and
// collect what they cost and how the audio came through.

package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/wagate/wagate/test/internal/sipua"
)

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
