// Command wagate is a SIP back-to-back user agent between WhatsApp Business
// Calling and contact-centre telephony.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/wagate/wagate/api"
	"github.com/wagate/wagate/configs"
	"github.com/wagate/wagate/media"
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
	)
	flag.Parse()
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
		if _, err := configs.Load(*check); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("%s: ok\n", *check)
		return 0
	}

	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	log := newLogger(cfg.Log)
	slog.SetDefault(log)

	mm, err := media.NewManager(cfg.Media, log)
	if err != nil {
		log.Error("media setup failed", "error", err)
		return 1
	}
	srv, err := sip.New(cfg, func(id string, l *slog.Logger) (sip.Bridge, error) {
		return mm.NewBridge(id, l)
	}, log)
	if err != nil {
		log.Error("sip setup failed", "error", err)
		return 1
	}

	var apiSrv *api.Server
	if cfg.API.Listen != "" {
		apiSrv, err = api.New(cfg.API.Listen, func() any { return status(srv, mm) }, log)
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

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
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
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				reload(srv, *cfgPath, log)
				continue
			}
			if *memProf != "" {
				writeHeapProfile(*memProf, log)
			}
			log.Info("draining", "signal", sig.String(), "timeout", drain.String())
			dctx, cancel := context.WithTimeout(context.Background(), *drain)
			go func() {
				// A second signal stops waiting for calls to end.
				select {
				case <-sigs:
					cancel()
				case <-dctx.Done():
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

// reload applies a changed config to new calls; a bad file changes nothing.
func reload(srv *sip.Server, path string, log *slog.Logger) {
	cfg, err := loadConfig(path)
	if err != nil {
		log.Error("reload rejected, keeping the running config", "error", err)
		return
	}
	srv.Reload(cfg)
	log.Info("config reloaded", "file", path)
}

type statusDoc struct {
	sip.Status
	PortsInUse int `json:"ports_in_use"`
	Bridges    int `json:"bridges"`
}

func status(srv *sip.Server, mm *media.Manager) statusDoc {
	ms := mm.Stats()
	return statusDoc{Status: srv.Status(), PortsInUse: ms.PortsInUse, Bridges: ms.Bridges}
}

func newLogger(c configs.Log) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
