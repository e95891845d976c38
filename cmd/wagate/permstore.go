package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/wagate/wagate/configs"
	"github.com/wagate/wagate/events"
	"github.com/wagate/wagate/permissions"
)

// openPermissions opens the configured permission store: the embedded
// bbolt file (one node) or Redis (several nodes behind a dispatcher).
func openPermissions(cfg *configs.Config, log *slog.Logger) (permissions.Store, error) {
	pm := cfg.Permissions
	lim := permissions.LimitsFrom(pm.Limits)
	if pm.Backend != configs.PermissionBackendRedis {
		c, err := permissions.Open(pm.Store, lim, permissions.SystemClock{}, log)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	r := pm.Redis
	// Bounded: a dead node's id is waited for (slot_ttl) before giving up.
	ctx, cancel := context.WithTimeout(context.Background(), r.SlotTTL.D()+30*time.Second)
	defer cancel()
	st, err := permissions.OpenRedis(ctx, permissions.RedisOptions{
		Addr: r.Address, Username: r.Username, Password: r.Password.Resolve(), DB: r.DB, Prefix: r.Prefix,
		NodeID: cfg.NodeID, SlotTTL: r.SlotTTL.D(), Timeout: r.Timeout.D(), OnDown: r.OnDown,
		WaitReplicas: r.WaitReplicas, WaitTimeout: r.WaitTimeout.D(), AllowNonDurable: r.AllowNonDurable,
		Limits: lim, Log: log,
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}

// numberIDResolver maps a business number as Meta displays it in
// account_update (digits, maybe with '+') to its phone-number-id, in the
// configuration running at the time (cfg, read per call): numbers are
// live keys, so a number a reload adds must resolve, and one it removes
// must not.
func numberIDResolver(cfg func() *configs.Config) func(string) (string, bool) {
	return func(display string) (string, bool) {
		n := cfg().NumberByE164("+" + strings.TrimPrefix(strings.TrimSpace(display), "+"))
		if n == nil {
			return "", false
		}
		return n.PhoneNumberID, true
	}
}

// uicResets tells the permission store about answered user-initiated
// calls: a connected call resets the user's permission-request limits.
// It is a call observer, so it must not block the call path: the store
// is written from one goroutine, fed through a bounded queue (a full
// queue drops the reset, logged).
type uicResets struct {
	s    permissions.Store
	log  *slog.Logger
	q    chan permissions.Key
	done chan struct{}
	once sync.Once
}

func newUICResets(s permissions.Store, log *slog.Logger) *uicResets {
	u := &uicResets{s: s, log: log, q: make(chan permissions.Key, 1024), done: make(chan struct{})}
	go u.run()
	return u
}

func (u *uicResets) run() {
	defer close(u.done)
	for k := range u.q {
		u.s.UICConnected(k)
	}
}

// Close writes what is queued and stops.
func (u *uicResets) Close() {
	u.once.Do(func() {
		close(u.q)
		<-u.done
	})
}

// CallAnswered queues the reset for an answered user-initiated call.
func (u *uicResets) CallAnswered(c events.Call) {
	if c.Direction != events.UIC || c.User == "" || c.PhoneNumberID == "" {
		return
	}
	select {
	case u.q <- permissions.Key{PhoneNumberID: c.PhoneNumberID, User: c.User}:
	default:
		u.log.Warn("permission-request reset after an answered user-initiated call dropped: queue full",
			"phone_number_id", c.PhoneNumberID, "user", c.User)
	}
}

func (u *uicResets) CallStarted(events.Call) {}
func (u *uicResets) CallRinging(events.Call) {}
func (u *uicResets) CallEnded(events.CDR)    {}
func (u *uicResets) CallRefused(events.CDR)  {}

// nodeRecordingDir is the recordings directory of this node when several
// nodes run (permissions in Redis): each node writes, repairs and serves
// only its own <directory>/<node_id>, so that two nodes sharing storage
// never "repair" each other's files in progress.
func nodeRecordingDir(cfg *configs.Config) string {
	if cfg.Permissions.Backend != configs.PermissionBackendRedis || !cfg.Permissions.Enabled {
		return cfg.Recording.Directory
	}
	return filepath.Join(cfg.Recording.Directory, cfg.NodeID)
}

// retentionOwed reports whether recordings left from when recording was on
// must still be swept: a retention is set and the directory exists.
func retentionOwed(r configs.Recording) bool {
	if r.RetentionDays <= 0 {
		return false
	}
	st, err := os.Stat(r.Directory)
	return err == nil && st.IsDir()
}
