package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/rtppeer"
)

// TestCallFlowLoad is a load tool, not a check: N simultaneous call-flow
// calls from the Go Meta peer, first all hearing prompts (a greeting,
// then a 10 s 440 Hz WAV three times), then all connected by their flow
// to a SIPp agent that echoes (relaying). It reports wagate's CPU per
// call in each case, the generator's CPU beside it (so a saturated
// machine shows), the prompt start latency (200 OK to the first audio
// packet, with and without the webhook round trip), and every audio gap
// the callers heard while the file played. It runs only when asked:
//
//	WAGATE_CALLFLOW_LOAD=100 WAGATE_TEST_RACE=0 go test -count=1 -timeout 10m -run TestCallFlowLoad -v ./test/
//
// WAGATE_CALLFLOW_SECONDS (default 15, at most 20) is the measured window.
func TestCallFlowLoad(t *testing.T) {
	ns := os.Getenv("WAGATE_CALLFLOW_LOAD")
	if ns == "" {
		t.Skip("a load tool: set WAGATE_CALLFLOW_LOAD=100 (docs/callflow.md)")
	}
	n, err := strconv.Atoi(ns)
	if err != nil || n < 1 || n > 300 {
		t.Fatalf("WAGATE_CALLFLOW_LOAD=%q: want 1–300 calls", ns)
	}
	secs, err := strconv.Atoi(envOr("WAGATE_CALLFLOW_SECONDS", "15"))
	if err != nil || secs < 1 || secs > 20 {
		t.Fatalf("WAGATE_CALLFLOW_SECONDS: want 1–20")
	}
	window := time.Duration(secs) * time.Second
	t.Run("prompts", func(t *testing.T) { flowLoad(t, n, window, false) })
	t.Run("relay", func(t *testing.T) { flowLoad(t, n, window, true) })
}

// opusAudible: the callers do not decode what they hear (the generator
// must cost little next to wagate); an Opus frame of this many bytes or
// more carries sound. wagate's frames of silence are 3 bytes; a tone's
// are 40–60, and 15–16 where a file loops back (the encoder's transient
// at the jump in phase).
const opusAudible = 10

// flowUser is the WhatsApp user of load call i.
func flowUser(i int) string { return fmt.Sprintf("+4477009%05d", i) }

func flowLoad(t *testing.T, n int, window time.Duration, relay bool) {
	e := newEnv(t)
	const greeting = "Welcome. Please hold."
	tone := toneWAV(440, 8000, 10*time.Second)
	var fs *flowService
	fs = newFlowService(t, e, func(r flowReq) flowReply {
		if relay {
			return flowReply{Body: flowJSON("relay", action("connect", map[string]any{"destination": "1001"}))}
		}
		return flowReply{Body: flowJSON("prompts",
			action("say", map[string]any{"text": greeting}),
			action("playFile", map[string]any{"fileUrl": fs.fileURL("hold.wav", tone), "repetition": 3}),
			action("hangup", nil))}
	})
	w := e.startWagate(wagateOpts{MetaEncryption: "sdes", Route: fs.route("3s", "Sorry."), LogLevel: "warn"})
	if relay {
		e.startSipp(sippSpec{Name: "agent", Scenario: "uas.xml", Peer: e.PBX, Calls: n, Args: []string{"-rtp_echo"}, NoTrace: true})
	}
	meta := newGoPeer(t, e.Meta, metapeer.Config{KeepFrames: true, NoRecord: true, NoDecode: true})

	// Calls at 25/s, each sending 500 Hz (wagate decodes A in both cases),
	// encoded once for all.
	callerAudio, err := rtppeer.EncodeLoop(rtppeer.Opus, rtppeer.NewTone(500, toneAmp, 48000), 50)
	if err != nil {
		t.Fatal(err)
	}
	calls := make([]*metapeer.Call, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var fails []string
	tick := time.NewTicker(40 * time.Millisecond)
	for i := range n {
		<-tick.C
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, err := meta.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: businessNumber, From: flowUser(i)})
			if err != nil {
				mu.Lock()
				fails = append(fails, err.Error())
				mu.Unlock()
				return
			}
			c.Media.SetEncodedLoop(callerAudio)
			calls[i] = c
		})
	}
	tick.Stop()
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range calls {
			if c != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				c.Hangup(ctx)
				cancel()
			}
		}
	})
	if len(fails) > 0 {
		t.Fatalf("%d of %d calls failed, first: %s", len(fails), n, fails[0])
	}

	// Settle (the last calls' greeting, or their agent's answer), then
	// measure.
	time.Sleep(3 * time.Second)
	pid := w.cmd.Process.Pid
	w0, g0, t0 := procTicks(pid), procTicks(os.Getpid()), time.Now()
	time.Sleep(window)
	w1, g1, t1 := procTicks(pid), procTicks(os.Getpid()), time.Now()
	secs := t1.Sub(t0).Seconds()
	wPct := float64(w1-w0) / 100 / secs * 100 // clock ticks are 1/100 s
	gPct := float64(g1-g0) / 100 / secs * 100
	what := "playing prompts"
	if relay {
		what = "relaying (connected to an echoing agent)"
	}
	t.Logf("%d calls %s: wagate %.1f %% of a core (%.2f %% per call), generator %.1f %%, over %v", n, what, wPct, wPct/float64(n), gPct, t1.Sub(t0).Round(time.Millisecond))

	// What the callers heard in the window.
	var quiet, seqGaps, tsJumps, stalls, frames int
	var worst time.Duration
	var lat, latNoHook []time.Duration
	starts := map[string]flowReq{}
	for _, r := range fs.all() {
		if r.Event == "start" {
			starts[r.User] = r
		}
	}
	for i, c := range calls {
		h := hear(c)
		from, to := h.afterTime(t0), h.afterTime(t1)
		frames += to - from
		for k := max(from, 1); k < to; k++ {
			f := h.frames[k]
			if f.Size < opusAudible {
				quiet++
			}
			if f.Seq != h.frames[k-1].Seq+1 {
				seqGaps++
			}
			// A sender that skips its 20 ms turns without a sequence gap
			// shows in the timestamps (Opus: 960 per 20 ms).
			if f.TS-h.frames[k-1].TS != 960 {
				tsJumps++
			}
			if d := f.At.Sub(h.frames[k-1].At); d > 60*time.Millisecond {
				stalls++
				worst = max(worst, d)
			}
		}
		if relay {
			continue
		}
		if k := slices.IndexFunc(h.frames, func(f rtppeer.Frame) bool { return f.Size >= opusAudible }); k >= 0 {
			lat = append(lat, h.frames[k].At.Sub(c.Dialog.AnsweredAt))
			if r, ok := starts[flowUser(i)]; ok {
				latNoHook = append(latNoHook, h.frames[k].At.Sub(r.at))
			}
		}
	}
	want := n * int(window/(20*time.Millisecond))
	t.Logf("heard in the window: %d frames (%.4f of %d), %d quiet (Opus frames under %d bytes), %d sequence gaps, %d timestamp jumps, %d arrival gaps > 60 ms (worst %v); machine load %s",
		frames, float64(frames)/float64(want), want, quiet, opusAudible, seqGaps, tsJumps, stalls, worst.Round(time.Millisecond), loadAvg())
	if !relay {
		pct := func(d []time.Duration, p int) time.Duration {
			if len(d) == 0 {
				return 0
			}
			s := slices.Clone(d)
			slices.Sort(s)
			return s[min(len(s)-1, len(s)*p/100)].Round(100 * time.Microsecond)
		}
		t.Logf("prompt start latency, 200 OK to first audio packet (webhook round trip included), %d calls: p50 %v, p95 %v, max %v", len(lat), pct(lat, 50), pct(lat, 95), pct(lat, 100))
		t.Logf("the same from the service's receipt of the start request (webhook round trip excluded): p50 %v, p95 %v, max %v", pct(latNoHook, 50), pct(latNoHook, 95), pct(latNoHook, 100))
	}
	if relay {
		// Hang up from the caller's side so the agents get their BYEs.
		for i, c := range calls {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			c.Hangup(ctx)
			cancel()
			calls[i] = nil
		}
	}
	if !relay {
		logPromptStats(t, w)
	}
	fs.checkSigned(t)
}

// logPromptStats logs the prompt cache's counters from /v1/status.
func logPromptStats(t *testing.T, w *wagate) {
	resp, err := httpClient.Get(w.apiURL)
	if err != nil {
		t.Logf("status: %v", err)
		return
	}
	defer resp.Body.Close()
	var st struct {
		Prompts *struct {
			Hits      uint64 `json:"hits"`
			DiskHits  uint64 `json:"disk_hits"`
			Misses    uint64 `json:"misses"`
			Renders   uint64 `json:"renders"`
			Downloads uint64 `json:"downloads"`
		} `json:"prompts"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil || st.Prompts == nil {
		t.Logf("status: no prompt counters (%v)", err)
		return
	}
	p := st.Prompts
	total := p.Hits + p.DiskHits + p.Misses
	t.Logf("prompt cache: %d hits, %d disk hits, %d misses (hit rate %.1f %%), %d renders, %d downloads",
		p.Hits, p.DiskHits, p.Misses, 100*float64(p.Hits+p.DiskHits)/float64(max(total, 1)), p.Renders, p.Downloads)
}

// loadAvg is /proc/loadavg's 1-minute figure: other work on the machine.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}
