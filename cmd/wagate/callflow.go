package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/wagate/wagate/b2bua"
	"github.com/wagate/wagate/callflow"
	"github.com/wagate/wagate/configs"
	"github.com/wagate/wagate/prompt"
)

// callFlows gives each call-flow and queue route its engine, built on first use
// from the route as the running config has it (a reload's new routes get
// new engines), all sharing one prompt library.
type callFlows struct {
	lib *prompt.Library
	log *slog.Logger

	mu      sync.Mutex
	engines map[any]*callflow.Engine

	// warming renders the fallback messages at start; Close ends and
	// waits for it.
	warmCtx    context.Context
	warmCancel context.CancelFunc
	warming    sync.WaitGroup
}

// maxEngines bounds the engines kept across reloads (each reload's
// routes are new keys); past it the map starts again.
const maxEngines = 1024

// newCallFlows builds the prompt library of cfg.prompts: its text-to-
// speech engine must be there (espeak-ng installed, or the HTTP URL well
// formed), or wagate does not start.
func newCallFlows(cfg *configs.Config, log *slog.Logger) (*callFlows, error) {
	p := cfg.Prompts
	var tts prompt.TTS
	var err error
	switch p.TTS {
	case configs.TTSHTTP:
		tts, err = prompt.NewHTTPTTS(prompt.HTTPTTSOptions{URL: p.TTSURL})
	default:
		tts, err = prompt.NewEspeak("", p.Voice)
	}
	if err != nil {
		return nil, fmt.Errorf("call flows: %w", err)
	}
	o := prompt.Options{TTS: tts, MemoryBytes: int64(p.MemoryMB) << 20, Logger: log}
	o.Files.Allow.Prefixes, o.Files.Allow.Hosts = p.FetchAllowList()
	if p.DiskMB > 0 {
		o.DiskDir, o.DiskBytes = filepath.Join(cfg.DataDir, "prompts"), int64(p.DiskMB)<<20
	}
	lib, err := prompt.New(o)
	if err != nil {
		return nil, fmt.Errorf("call flows: %w", err)
	}
	f := &callFlows{lib: lib, log: log, engines: map[any]*callflow.Engine{}}
	f.warmCtx, f.warmCancel = context.WithCancel(context.Background())
	return f, nil
}

// Close stops the renders and downloads in flight.
func (f *callFlows) Close() {
	f.warmCancel()
	f.warming.Wait()
	f.lib.Close()
}

// engine is b2bua.CallFlows.
func (f *callFlows) engine(num *configs.Number, r configs.Route) b2bua.FlowEngine {
	e, err := f.get(num, r)
	if err != nil {
		f.log.Error("call flow route not usable; its calls get 503", "number", num.Number, "error", err)
		return nil
	}
	if e == nil {
		return nil // a nil *callflow.Engine must not become a non-nil FlowEngine
	}
	return e
}

// get returns the engine of route r (num's route or after-hours route).
func (f *callFlows) get(num *configs.Number, r configs.Route) (*callflow.Engine, error) {
	var key any
	switch {
	case r.CallFlow != nil:
		key = r.CallFlow
	case r.Queue != nil:
		key = r.Queue
	default:
		return nil, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if e := f.engines[key]; e != nil {
		return e, nil
	}
	var o callflow.Options
	if cf := r.CallFlow; cf != nil {
		o = callflow.FromConfig(cf)
	} else {
		var err error
		if o, err = queueOptions(r.Queue); err != nil {
			return nil, err
		}
	}
	o.Prompts = f.lib
	if q := r.Queue; q != nil && q.Music != "" {
		o.Prompts = operatorMusic{Library: f.lib, url: q.Music}
	}
	o.Logger = f.log.With("business", num.Number)
	e, err := callflow.New(o)
	if err != nil {
		return nil, err
	}
	if len(f.engines) >= maxEngines {
		clear(f.engines)
	}
	f.engines[key] = e
	return e, nil
}

// operatorMusic is the prompts of a queue route: its music URL comes from
// the operator's config, not from a business, and is fetched wherever it
// points (prompts.fetch_allow is for businesses' URLs).
type operatorMusic struct {
	*prompt.Library
	url string
}

// File implements callflow.Prompts.
func (m operatorMusic) File(ctx context.Context, url string, rate int) (prompt.Audio, error) {
	if url == m.url {
		return m.Library.TrustedFile(ctx, url, rate)
	}
	return m.Library.File(ctx, url, rate)
}

// queueOptions runs a queue route on the call-flow engine: a built-in
// flow of one queue action, each caller at its priority (VIPs first),
// then the route's fallback extension (or hang-up) after limit_time.
func queueOptions(q *configs.QueueRoute) (callflow.Options, error) {
	announce := *q.AnnouncePosition
	base := callflow.Enqueue{Destination: q.Hunt, LimitTime: int(q.LimitTime.D().Milliseconds()),
		MusicURL: q.Music, AnnouncePosition: &announce, AnnounceEvery: int(q.AnnounceEvery.D().Milliseconds()),
		VoiceProfile: q.Voice}
	if _, err := callflow.QueueFlow(base); err != nil {
		return callflow.Options{}, err
	}
	o := callflow.Options{Flow: func(info callflow.Info) *callflow.Flow {
		a := base
		a.Priority = q.PriorityOf(info.User, info.UserID)
		flow, _ := callflow.QueueFlow(a) // checked above; the priority is 0–9
		return flow
	}}
	if fb := q.Fallback; fb != nil {
		o.Fallback = callflow.Target{Kind: callflow.TargetExtension, Endpoint: fb.Endpoint, Destination: fb.User,
			Timeout: 30 * time.Second}
	}
	return o, nil
}

// warm renders every route's fallback message at the calls' rate, so that
// a failing service costs the first caller no render time; it returns at
// once and logs what could not be rendered. Close waits for it.
func (f *callFlows) warm(cfg *configs.Config) {
	for i := range cfg.Numbers {
		num := &cfg.Numbers[i]
		routes := []configs.Route{num.Route}
		if h := num.Hours; h != nil && h.AfterHours != nil {
			routes = append(routes, *h.AfterHours)
		}
		for _, r := range routes {
			e, err := f.get(num, r)
			if err != nil || e == nil {
				if err != nil {
					f.log.Error("call flow route not usable; its calls get 503", "number", num.Number, "error", err)
				}
				continue
			}
			f.warming.Go(func() {
				ctx, cancel := context.WithTimeout(f.warmCtx, 30*time.Second)
				defer cancel()
				if err := e.Warm(ctx, prompt.Rate8k); err != nil {
					f.log.Warn("call flow fallback message not rendered at start; it will be at the first failure", "number", num.Number, "error", err)
				}
			})
		}
	}
}

// Stats are the prompt library's counters, for /v1/status.
func (f *callFlows) Stats() prompt.Stats { return f.lib.Stats() }

// promptStats is the metrics' source of prompt counters: nil without call
// flows (the metrics are then left out).
func promptStats(f *callFlows) func() prompt.Stats {
	if f == nil {
		return nil
	}
	return f.Stats
}
