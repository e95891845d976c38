// Command wagate is a SIP back-to-back user agent between WhatsApp Business
// Calling and contact-centre telephony.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/wagate/wagate/api"
	"github.com/wagate/wagate/b2bua"
	"github.com/wagate/wagate/configs"
	"github.com/wagate/wagate/events"
	"github.com/wagate/wagate/media"
	"github.com/wagate/wagate/metrics"
	"github.com/wagate/wagate/permissions"
	"github.com/wagate/wagate/prompt"
	"github.com/wagate/wagate/recording"
	"github.com/wagate/wagate/sip"
)

func main() {
	os.Exit(run())
}

func run() int {
	var (
		cfgPath  = flag.String("config", "", "configuration `file` (default: the embedded loopback config)")
		check    = flag.String("check-config", "", "validate configuration `file` and exit")
		drain    = flag.Duration("drain-timeout", 30*time.Second, "on SIGTERM, how long live calls may continue before they are hung up")
		printDef = flag.Bool("print-default-config", false, "print the embedded default config and exit")
		cpuProf  = flag.String("cpuprofile", "", "write a CPU profile to `file` until exit (for load tests)")
		memProf  = flag.String("memprofile", "", "write a heap profile to `file` when a stop signal arrives (for load tests)")
		memAfter = flag.Duration("memprofile-after", 0, "with -memprofile, write the heap profile this long after start instead (a load test's peak, while calls are up)")
		showVer  = flag.Bool("version", false, "print the version, commit, Go and libopus versions and exit")
	)
	flag.Parse()
	if *showVer {
		readBuildInfo().write(os.Stdout)
		return 0
	}
	if *cpuProf != "" {
		f, err := os.Create(*cpuProf)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}

	if *printDef {
		os.Stdout.Write(configs.DefaultYAML())
		return 0
	}
	if *check != "" {
		return checkConfig(*check)
	}

	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// SIGHUP is caught from here on, so that a reload sent while wagate
	// starts (systemd's ExecReload, a test) is applied once it runs
	// instead of killing it; the stop signals keep their default until
	// wagate can drain.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGHUP)
	rt := newRunning(cfg)
	log := newLogger(cfg.Log, rt.level)
	slog.SetDefault(log)
	bi := readBuildInfo()
	log.Info("wagate starting", "version", bi.Version, "commit", bi.commitString(), "go", bi.Go, "libopus", bi.Opus,
		"config", cfg.Source(), "config_sha256", cfg.SHA256())
	logAdvice(cfg, log)

	lock, err := claimDataDir(cfg, log)
	if err != nil {
		log.Error("data directory", "error", err)
		return 1
	}
	defer lock.Close()

	checkDescriptorLimit(cfg.Media, media.OpenFilesLimit(), log)
	mm, err := media.NewManager(cfg.Media, log)
	if err != nil {
		log.Error("media setup failed", "error", err)
		return 1
	}
	// Made on first start and kept, so the fingerprint of dtls legs stays
	// the same across restarts.
	cert, err := media.LoadOrCreateCertificate(filepath.Join(cfg.DataDir, "dtls"))
	if err != nil {
		log.Error("media setup failed", "error", err)
		return 1
	}
	mm.SetCertificate(cert)
	log.Info("DTLS certificate", "path", cert.Path, "fingerprint", cert.Fingerprint)
	srv, err := sip.New(cfg, log)
	if err != nil {
		log.Error("sip setup failed", "error", err)
		return 1
	}
	now, fakeNow, err := routingClock()
	if err != nil {
		log.Error("clock", "error", err)
		return 1
	}
	if fakeNow != "" {
		log.Warn("test hook: business hours are read on a fake clock", "var", fakeNowVar, "starting_at", fakeNow)
	}
	srv.SetNow(now)
	calls := b2bua.New(srv, func(id string, l *slog.Logger, a, b media.LegConfig) (b2bua.Bridge, error) {
		br, err := mm.NewCallBridge(id, l, a, b)
		if err != nil {
			// A nil *media.Bridge must not become a non-nil b2bua.Bridge.
			return nil, err
		}
		return br, nil
	}, log)
	srv.SetCalls(calls)
	calls.SetPacerStats(mm.PacerStats)
	if f := cfg.Media.MusicOnHold; f != "" {
		clip, err := media.LoadWAV(f)
		if err != nil {
			log.Error("music on hold", "error", err)
			return 1
		}
		calls.SetMusicOnHold(clip)
		log.Info("music on hold loaded", "file", f, "seconds", clip.Duration())
	}

	journal, err := b2bua.OpenJournal(filepath.Join(cfg.DataDir, "live-calls.journal"))
	if err != nil {
		log.Error("call journal failed", "error", err)
		return 1
	}
	defer journal.Close()
	calls.SetJournal(journal)

	var perms permissions.Store
	var agents *permissions.AgentBoard
	if cfg.Permissions.Enabled {
		perms, err = openPermissions(cfg, log)
		if err != nil {
			log.Error("permission store failed", "error", err)
			return 1
		}
		// Deferred first, so it closes last: after the drain, the last
		// calls' outcomes still reach the store.
		defer perms.Close()
		calls.SetPermissionGate(permissionGate{perms})
		agents = shareAgents(perms, calls)
		resets := newUICResets(perms, log)
		defer resets.Close()
		calls.AddObserver(resets)
	}

	var rec *recording.Manager
	// Call flows record voicemail into the recordings store. With
	// recording turned off, the recordings made before still owe their
	// retention: the store runs its sweep (and records nothing) when the
	// directory is there.
	rcfg := cfg.Recording
	rcfg.Directory = nodeRecordingDir(cfg)
	if cfg.RecordingUsed() || cfg.CallFlowUsed() || retentionOwed(rcfg) {
		rec, err = recording.New(rcfg, log, recording.WithNodeID(cfg.NodeID))
		if err != nil {
			log.Error("recording setup failed", "error", err)
			return 1
		}
		defer rec.Close()
		calls.SetRecorder(rec)
	}

	// Call-flow routes: the prompt library and an engine per route. Without
	// such a route a missing text-to-speech engine is no error (a reload
	// adding one is refused, saying why).
	var flows *callFlows
	if f, err := newCallFlows(cfg, log); err == nil {
		flows = f
		defer flows.Close()
		calls.SetCallFlows(flows.engine)
		flows.warm(cfg)
	} else if cfg.CallFlowUsed() {
		log.Error("call flow setup failed", "error", err)
		return 1
	} else {
		rt.noFlows = err
		log.Debug("call flows not available", "error", err)
	}

	// The events store (CDRs and the webhook outbox) opens before the
	// call path can use it and closes after the drain, so that the last
	// calls' records are written.
	var sink *events.Sink
	if cfg.EventsUsed() {
		octx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		sink, err = events.Open(octx, events.OptionsFrom(cfg, log))
		cancel()
		if err != nil {
			log.Error("events store failed", "error", err)
			return 1
		}
		defer closeEvents(sink, perms, rec, log)
		if cfg.CDR.Enabled {
			// The journal keeps each ended call's record until the
			// store has it: a crash right after a call ended (the
			// store commits a moment later) no longer loses it.
			sink.OnCDRStored(journal.Stored)
			calls.SetCDRStore(func(ctx context.Context, callID string) (bool, error) {
				_, err := sink.CDR(ctx, callID)
				if errors.Is(err, events.ErrNotFound) {
					return false, nil
				}
				return err == nil, err
			})
		}
		calls.AddObserver(sink)
		order := newReadyAfterEnd(sink.RecordingReady)
		calls.AddObserver(order) // after the sink: call.ended first
		wireEvents(sink, perms, rec, order.ready, log)
	}

	// What Meta reports of numbers' calling settings (webhook), kept
	// across restarts; BICs consult it (refuse_keying_mismatch).
	metaSet, err := newMetaSettings(cfg.DataDir, rt.cfg.Load, sink, log)
	if err != nil {
		log.Error("meta settings failed", "error", err)
		return 1
	}
	calls.SetMetaKeying(metaSet)

	var apiSrv *api.Server
	mx := newMetrics(srv, calls, mm, rec, sink, perms, agents, func() uint64 {
		if apiSrv == nil {
			return 0
		}
		return apiSrv.Stats().WebhookUnknownNumber
	}, func() metrics.MetaWebhookStats {
		st := metaSet.stats()
		if apiSrv != nil {
			as := apiSrv.Stats()
			st.CallReports, st.TooOld = as.WebhookCallReports, as.WebhookTooOld
		}
		return st
	}, promptStats(flows), rt.stats)

	if cfg.API.Listen != "" {
		opts := api.Options{
			Addr: cfg.API.Listen,
			Status: func() any {
				d := status(srv, calls, mm, rec, sink, perms)
				if flows != nil {
					ps := flows.Stats()
					d.Prompts = &ps
				}
				if apiSrv != nil {
					st := apiSrv.Stats()
					d.API = &st
				}
				return d
			},
			NumberID:     numberIDResolver(rt.cfg.Load),
			Token:        cfg.API.Token.Resolve(),
			ReadToken:    cfg.API.ReadToken.Resolve(),
			AppSecret:    cfg.API.Webhook.AppSecret.Resolve(),
			VerifyToken:  cfg.API.Webhook.VerifyToken.Resolve(),
			Metrics:      mx.Handler(),
			Ready:        readiness(srv),
			KnownNumber:  rt.knownNumber,
			Calls:        callControl{calls},
			Originate:    callControl{calls},
			MetaSettings: metaSet.apply,
			Log:          log,
		}
		if perms != nil {
			opts.Permissions = perms
			// With the Redis backend the nodes share click-to-call
			// Idempotency-Keys as well as permissions.
			if shared, ok := perms.(api.SharedIdempotency); ok {
				opts.Idempotency, opts.NodeID = shared, cfg.NodeID
			}
		}
		if rec != nil {
			opts.Recordings = rec.Handler()
		}
		if sink != nil {
			if cfg.CDR.Enabled {
				opts.CDRs = sink
				opts.MetaCalls = sink
			}
			opts.Events = sink
		}
		apiSrv, err = api.New(opts)
		if err != nil {
			log.Error("api setup failed", "error", err)
			return 1
		}
		go func() {
			if err := apiSrv.Serve(); err != nil {
				log.Error("api stopped", "error", err)
			}
		}()
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()

	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	var memAt <-chan time.Time
	if *memProf != "" && *memAfter > 0 {
		t := time.NewTimer(*memAfter)
		defer t.Stop()
		memAt = t.C
	}
	code := 0
loop:
	for {
		select {
		case err := <-errc:
			if err != nil {
				log.Error("sip stopped", "error", err)
				code = 1
			}
			break loop
		case <-memAt:
			// At a set time, not at the stop signal: a load run's calls
			// have ended by then, and what they held with them.
			writeHeapProfile(*memProf, log)
			log.Info("heap profile written", "file", *memProf)
			memAt = nil
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				rt.reload(srv, perms, *cfgPath, log)
				continue
			}
			if *memProf != "" && *memAfter == 0 {
				writeHeapProfile(*memProf, log)
			}
			srv.StopAdmitting()
			log.Info("draining", "signal", sig.String(), "timeout", drain.String())
			dctx, cancel := context.WithTimeout(context.Background(), *drain)
			go func() {
				// A second stop signal stops waiting for calls to end;
				// a SIGHUP (a reload, a log rotation) must not.
				for {
					select {
					case sig := <-sigs:
						if sig == syscall.SIGHUP {
							log.Warn("reload ignored: wagate is draining")
							continue
						}
						cancel()
					case <-dctx.Done():
					}
					return
				}
			}()
			srv.Shutdown(dctx)
			cancel()
			break loop
		}
	}
	stop()
	if apiSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = apiSrv.Shutdown(sctx)
		cancel()
	}
	log.Info("stopped")
	return code
}

func writeHeapProfile(path string, log *slog.Logger) {
	f, err := os.Create(path)
	if err != nil {
		log.Error("heap profile", "error", err)
		return
	}
	defer f.Close()
	// The profile is of the heap at the last collection, which in a
	// steady state (held calls) may be long past: collect now.
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		log.Error("heap profile", "error", err)
	}
}

func loadConfig(path string) (*configs.Config, error) {
	if path == "" {
		return configs.Default()
	}
	return configs.Load(path)
}

// logAdvice logs, once per load, what cfg sets validly but likely by
// mistake.
func logAdvice(cfg *configs.Config, log *slog.Logger) {
	for _, a := range cfg.Advice() {
		log.Warn("config: likely a mistake", "file", a.File, "line", a.Line, "key", a.Path, "advice", a.Msg)
	}
}

// checkConfig is -check-config: 0 when path would load, else 1 with
// every problem. Secrets whose environment variable is unset here are
// warnings, not failures: the check may run in another environment than
// the service, which refuses to start without them.
func checkConfig(path string) int {
	cfg, warnings, err := configs.Check(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// What start-up reads beyond the config package: the file must be a
	// WAV wagate plays, or wagate -config stops at start.
	if f := cfg.Media.MusicOnHold; f != "" {
		if _, err := media.LoadWAV(f); err != nil {
			fmt.Fprintln(os.Stderr, cfg.ProblemAt("media.music_on_hold", strings.TrimPrefix(err.Error(), "media: ")).String())
			return 1
		}
	}
	for _, w := range warnings {
		fmt.Fprintf(os.Stderr, "warning: %s\n", w)
	}
	for _, a := range cfg.Advice() {
		fmt.Fprintf(os.Stderr, "warning: %s\n", a)
	}
	if len(warnings) > 0 {
		fmt.Printf("%s: ok, with %d warning(s): wagate -config refuses to start unless those variables are set in its environment\n", path, len(warnings)+len(cfg.Advice()))
		return 0
	}
	if n := len(cfg.Advice()); n > 0 {
		fmt.Printf("%s: ok, with %d warning(s)\n", path, n)
		return 0
	}
	fmt.Printf("%s: ok\n", path)
	return 0
}

// The status document keeps the flat shape it had before the B2BUA left
// the sip package: both snapshots' fields at the top level.
type (
	edgeStatus  = sip.Status
	callsStatus = b2bua.Status
)

type statusDoc struct {
	edgeStatus
	callsStatus
	PortsInUse  int                `json:"ports_in_use"`
	PortsBound  int                `json:"ports_bound"`
	Bridges     int                `json:"bridges"`
	Recordings  *recording.Stats   `json:"recordings,omitempty"`
	Events      *events.Stats      `json:"events,omitempty"`
	API         *api.Stats         `json:"api,omitempty"`
	Permissions *permissions.Stats `json:"permissions,omitempty"`
	Prompts     *prompt.Stats      `json:"prompts,omitempty"`
}

func status(srv *sip.Server, calls *b2bua.Engine, mm *media.Manager, rec *recording.Manager, sink *events.Sink, perms permissions.Store) statusDoc {
	ms := mm.Stats()
	d := statusDoc{edgeStatus: srv.Status(), callsStatus: calls.Status(), PortsInUse: ms.PortsInUse, PortsBound: ms.PortsBound, Bridges: ms.Bridges}
	if perms != nil {
		ps := perms.Stats()
		d.Permissions = &ps
	}
	if rec != nil {
		rs := rec.Stats()
		d.Recordings = &rs
	}
	if sink != nil {
		es := sink.Stats()
		d.Events = &es
	}
	return d
}

// newLogger logs at level, which a reload may change; the format is fixed
// at start.
func newLogger(c configs.Log, level *slog.LevelVar) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
