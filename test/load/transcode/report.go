// Report: the table header, one printed row per step, and the audio
// checks (tone level and continuity, silence in a call) behind it.

package main

import (
	"fmt"
	"math"
	"runtime"

	"github.com/wagate/wagate/test/internal/audio"
)

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
