package main

import (
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wagate/wagate/configs"
	"github.com/wagate/wagate/metrics"
	"github.com/wagate/wagate/permissions"
	"github.com/wagate/wagate/sip"
)

// running holds the configuration in force: the one start-up loaded, or
// the last one a SIGHUP applied. Readers (the API's number check) load it
// per request.
type running struct {
	cfg   atomic.Pointer[configs.Config]
	level *slog.LevelVar
	// noFlows is why the prompt library did not start (nil: it runs);
	// without it a call-flow or queue route would answer every call 503.
	noFlows error

	// What came of the reloads, for /metrics (stats).
	mu          sync.Mutex
	applied     uint64
	refused     uint64
	lastOK      bool
	lastSuccess time.Time
}

// newRunning starts with cfg, loaded now.
func newRunning(cfg *configs.Config) *running {
	r := &running{level: new(slog.LevelVar), lastOK: true, lastSuccess: time.Now()}
	r.cfg.Store(cfg)
	r.level.Set(logLevel(cfg.Log))
	return r
}

// stats is what came of the reloads so far.
func (r *running) stats() metrics.ReloadStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return metrics.ReloadStats{Applied: r.applied, Refused: r.refused, LastOK: r.lastOK, LastSuccess: r.lastSuccess}
}

// counted records what came of one reload.
func (r *running) counted(ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastOK = ok
	if ok {
		r.applied++
		r.lastSuccess = time.Now()
	} else {
		r.refused++
	}
}

// knownNumber reports whether a phone_number_id belongs to a number of
// the running configuration.
func (r *running) knownNumber(id string) bool {
	return r.cfg.Load().NumberByPhoneNumberID(id) != nil
}

// reload applies the config file at path to a running wagate, or refuses
// it as a whole and keeps the running config: when the file does not load,
// or when it changes a key that only a restart applies (listeners, media
// ports, the API, the stores …; configs.RestartKeys). A refusal names each
// such key, so that nobody believes a change is live that is not.
func (r *running) reload(srv *sip.Server, perms permissions.Store, path string, log *slog.Logger) {
	old := r.cfg.Load()
	applied := false
	defer func() { r.counted(applied) }()
	cfg, err := loadConfig(path)
	if err != nil {
		log.Error("reload refused, the running config stays", "file", path, "error", err)
		return
	}
	if r.noFlows != nil && cfg.CallFlowUsed() {
		log.Error("reload refused: call-flow routes need the prompt library, which did not start; nothing was applied, the running config stays",
			"file", cfg.Source(), "sha256", cfg.SHA256(), "error", r.noFlows)
		return
	}
	if keys := configs.RestartKeys(old, cfg); len(keys) > 0 {
		log.Error("reload refused: changed keys take a restart; nothing was applied, the running config stays",
			"file", cfg.Source(), "sha256", cfg.SHA256(), "restart_keys", strings.Join(keys, ", "))
		return
	}
	changed := configs.Diff(old, cfg)
	srv.Reload(cfg)
	if perms != nil {
		perms.SetLimits(permissions.LimitsFrom(cfg.Permissions.Limits))
	}
	r.level.Set(logLevel(cfg.Log))
	r.cfg.Store(cfg)
	what := strings.Join(changed, ", ")
	if what == "" {
		what = "(nothing)"
	}
	applied = true
	log.Info("config reloaded", "file", cfg.Source(), "sha256", cfg.SHA256(), "changed", what)
	logAdvice(cfg, log)
}

// logLevel is the slog level of c (validated at load; info otherwise).
func logLevel(c configs.Log) slog.Level {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		return slog.LevelInfo
	}
	return level
}
