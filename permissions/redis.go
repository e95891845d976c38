package permissions

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// What a node does with a business-initiated call while Redis cannot be
// reached.
const (
	// OnDownRefuse answers 503 Service Unavailable (the default): no call
	// is placed that the shared state has not admitted.
	OnDownRefuse = "refuse"
	// OnDownCache admits from what this node last saw of the pair (a valid
	// grant, the user not busy here, the number under its concurrency cap
	// here) and writes the calls' outcomes back when Redis returns.
	OnDownCache = "cache"
)

// RedisOptions configure the Redis store.
type RedisOptions struct {
	// Addr is host:port of the Redis primary.
	Addr     string
	Username string
	Password string
	DB       int
	// Prefix starts every key (default "wagate:"), so that several
	// wagate clusters can share one Redis.
	Prefix string
	// NodeID names this node; one running node per id.
	NodeID string
	// SlotTTL is how long a node's calls in progress hold their slots
	// after the node stops refreshing them (it died). Default 15 s.
	SlotTTL time.Duration
	// Timeout bounds each operation (default 300 ms): a slow Redis is a
	// down Redis.
	Timeout time.Duration
	// OnDown is OnDownRefuse (default) or OnDownCache.
	OnDown string
	// WaitReplicas, when above 0, makes every change wait until that many
	// replicas have it (WAIT), up to WaitTimeout (default 1 s).
	WaitReplicas int
	WaitTimeout  time.Duration
	// AllowNonDurable starts even when Redis does not fsync its
	// append-only file on every write and no replica is waited for; a
	// grant acknowledged then can be lost by a crash of Redis.
	AllowNonDurable bool
	// CacheSize bounds the pairs remembered for OnDownCache (default
	// 100,000).
	CacheSize int
	Limits    Limits
	Log       *slog.Logger
}

// Defaults of RedisOptions.
const (
	DefaultRedisPrefix  = "wagate:"
	DefaultSlotTTL      = 15 * time.Second
	DefaultRedisTimeout = 300 * time.Millisecond
	defaultWaitTimeout  = time.Second
	defaultCacheSize    = 100_000
	// maxPending bounds the outcomes kept while Redis is down.
	maxPending = 100_000
	// probeInterval is how often a down Redis is tried again.
	probeInterval = 250 * time.Millisecond
)

// Redis is the permission store shared by several wagate nodes. All
// methods are safe for concurrent use.
type Redis struct {
	rdb      *redis.Client
	prefix   string
	nodeID   string
	instance string
	slotTTL  time.Duration
	timeout  time.Duration
	onDown   string
	waitN    int
	waitT    time.Duration
	lim      atomic.Pointer[Limits]
	log      *slog.Logger

	// slots orders the rewrite of this node's slots (flush, exclusive)
	// against its admissions and releases (shared), each of which changes
	// Redis's count and the node's own together: a rewrite between the
	// two would write a count one call off — a phantom call that keeps
	// the user "busy" (486) until the node restarts, or a call the other
	// nodes do not see.
	slots   sync.RWMutex
	up      atomic.Bool
	downLog atomic.Int64 // Unix ns of the last "down" warning
	resSeq  atomic.Uint64
	local   local
	stats   redisStats
	// allowNonDurable is RedisOptions.AllowNonDurable, for the checks of
	// a node that started while Redis was unreachable.
	allowNonDurable bool
	// heldLog is when claimLate last said the node id is held (the loop's
	// goroutine only).
	heldLog time.Time
	// uicQ feeds uicWriter the grants of user-initiated calls.
	uicQ chan pendingOp
	// epoch is the last epoch of Redis's data this node saw (checkEpoch).
	epoch string
	// writes are the connected calls' counts in flight (aside); closing
	// stops new ones from going aside.
	writesMu sync.Mutex
	closing  bool
	writes   sync.WaitGroup
	// agents is the agent board (ShareAgents), closed first by Close.
	agents atomic.Pointer[AgentBoard]
	// bg is the background work (indexRestrictions, uicWriter).
	bg       sync.WaitGroup
	stop     context.CancelFunc
	done     chan struct{}
	closeErr error
	once     sync.Once
}

type redisStats struct {
	errors, refused, fromCache, learned, learnedCap, stale, replayed, restricted, dataLost, staleMeta atomic.Uint64
}

// local is what this node alone knows: its calls in progress (the truth
// its Redis slots are rewritten from after an outage), what it last saw of
// pairs (OnDownCache), and the outcomes Redis has not taken yet.
type local struct {
	mu      sync.Mutex
	busy    map[string]int // busy key → this node's calls with the user
	active  map[string]int // number's active key → this node's calls
	dirty   map[string]bool
	seen    map[Key]cachedPair
	maxSeen int
	pending []pendingOp
	// uncounted are permission requests and calls refused because Redis
	// failed, which Redis may have counted all the same (takeBack).
	uncounted []uncounted
}

// uncounted is a permission request or call to take back: its counter's
// key (a sorted set) and the script's member.
type uncounted struct{ key, member string }

type cachedPair struct {
	st  state
	exp int64 // Unix ms
}

// pendingOp is an outcome (or a user-initiated call's permission) made
// while Redis was down, written when it returns.
type pendingOp struct {
	k       Key
	resid   string
	connect bool
	// uic: the temporary permission of a user-initiated call; reset:
	// its answer's reset of the permission-request limits.
	uic, reset bool
	at         int64 // Unix ms of the connection (connect), the call (uic) or the outcome
	outcome    string
}

// OpenRedis connects, checks that Redis keeps grants durably, claims the
// node id and starts refreshing this node's life. A node id held by
// another running node is an error; one held by a previous run of this
// node that died is waited for (at most SlotTTL) so that its slots expire
// first.
func OpenRedis(ctx context.Context, o RedisOptions) (*Redis, error) {
	if o.Addr == "" {
		return nil, errors.New("permissions: redis: no address")
	}
	if o.NodeID == "" {
		return nil, errors.New("permissions: redis: no node id")
	}
	if o.Prefix == "" {
		o.Prefix = DefaultRedisPrefix
	}
	if o.SlotTTL <= 0 {
		o.SlotTTL = DefaultSlotTTL
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultRedisTimeout
	}
	if o.WaitTimeout <= 0 {
		o.WaitTimeout = defaultWaitTimeout
	}
	if o.CacheSize <= 0 {
		o.CacheSize = defaultCacheSize
	}
	switch o.OnDown {
	case "":
		o.OnDown = OnDownRefuse
	case OnDownRefuse, OnDownCache:
	default:
		return nil, fmt.Errorf("permissions: redis: on_down %q: want refuse or cache", o.OnDown)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	quietRedisLog.Do(func() { redis.SetLogger(redisLog{o.Log}) })
	var tok [8]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return nil, fmt.Errorf("permissions: redis: instance id: %w", err)
	}
	r := &Redis{
		rdb: redis.NewClient(&redis.Options{
			Addr: o.Addr, Username: o.Username, Password: o.Password, DB: o.DB,
			DialTimeout: o.Timeout, ReadTimeout: o.Timeout, WriteTimeout: o.Timeout,
			// A script that ran but whose answer was lost must not run
			// twice (an admission would reserve two slots).
			MaxRetries:      -1,
			DisableIdentity: true,
			Protocol:        2,
		}),
		prefix:   o.Prefix,
		nodeID:   o.NodeID,
		instance: o.NodeID + "." + hex.EncodeToString(tok[:]),
		slotTTL:  o.SlotTTL,
		timeout:  o.Timeout,
		onDown:   o.OnDown,
		waitN:    o.WaitReplicas,
		waitT:    o.WaitTimeout,
		log:      o.Log.With("store", "redis", "redis", o.Addr),
		done:     make(chan struct{}),
	}
	r.lim.Store(&o.Limits)
	r.local.busy = make(map[string]int)
	r.local.active = make(map[string]int)
	r.local.dirty = make(map[string]bool)
	r.local.seen = make(map[Key]cachedPair)
	r.local.maxSeen = o.CacheSize
	r.uicQ = make(chan pendingOp, uicQueue)
	r.allowNonDurable = o.AllowNonDurable
	claimed := true
	switch err := r.checkDurable(ctx, o.AllowNonDurable); {
	case errors.Is(err, ErrUnavailable):
		// Start all the same, with the store down: the node's calls that
		// need no Redis (users calling the business) must not wait for
		// it, and business-initiated calls follow on_down as they would
		// in an outage. Nothing is written before the checks and the
		// claim pass (the loop makes them).
		claimed = false
		r.stats.errors.Add(1)
		r.downLog.Store(time.Now().UnixNano())
		r.log.Error("redis unreachable at start: the node starts with the permission store down; business-initiated calls follow "+
			"permissions.redis.on_down until redis answers and the node id is claimed", "node_id", r.nodeID, "on_down", r.onDown, "error", err)
	case err != nil:
		r.rdb.Close()
		return nil, err
	default:
		if err := r.claimAtStart(ctx); err != nil {
			r.rdb.Close()
			return nil, err
		}
		r.up.Store(true)
	}
	lctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	go r.loop(lctx, claimed)
	r.bg.Go(func() { r.uicWriter(lctx) })
	r.log.Info("permission store: redis", "node_id", r.nodeID, "instance", r.instance, "slot_ttl", r.slotTTL.String(),
		"on_down", r.onDown, "wait_replicas", r.waitN, "up", claimed)
	return r, nil
}

// claimLate makes the start-up checks and the claim of a node that
// started while Redis was unreachable; true once the node id is this
// instance's. A Redis that does not keep grants durably, or a node id held
// by another instance (a previous run, until it expires; another running
// node, for good), keeps the store down, logged at most every 10 s.
func (r *Redis) claimLate(ctx context.Context) bool {
	err := r.checkDurable(ctx, r.allowNonDurable)
	if err == nil {
		var ok bool
		var holder string
		var ttl time.Duration
		ok, holder, ttl, _, err = r.claim(ctx)
		switch {
		case err == nil && ok:
			return true
		case err == nil:
			// Redis answers: not an outage, so said at once (and then
			// every 10 s), not behind the down warning's pace.
			r.stats.errors.Add(1)
			if time.Since(r.heldLog) > 10*time.Second {
				r.heldLog = time.Now()
				r.log.Error("node_id is held by another instance: a previous run of this node (waiting for it to expire), or another running node "+
					"with this node_id (give each node its own); the permission store stays down until it is free",
					"node_id", r.nodeID, "holder", holder, "expires_in", ttl.String())
			}
			return false
		}
	}
	r.failed("start", err)
	return false
}

// quietRedisLog installs redisLog once per process (go-redis has one
// logger for all clients).
var quietRedisLog sync.Once

// redisLog takes go-redis's own messages at debug: they would otherwise go
// to stderr, one per failed dial — four a second for as long as Redis is
// down — beside the store's own warning, which says it every 10 s.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "go-redis: "+fmt.Sprintf(format, v...))
}

// checkDurable makes sure an acknowledged grant survives a crash of Redis:
// the append-only file fsynced on every write (appendfsync always), or
// replicas waited for. Redis that hides CONFIG (managed services) is
// trusted, with a warning.
func (r *Redis) checkDurable(ctx context.Context, allow bool) error {
	cctx, cancel := context.WithTimeout(ctx, 5*r.timeout)
	defer cancel()
	if err := r.rdb.Ping(cctx).Err(); err != nil {
		return fmt.Errorf("permissions: redis %s: %w: %w", r.rdb.Options().Addr, ErrUnavailable, err)
	}
	if r.waitN > 0 {
		return nil
	}
	cfg, err := r.rdb.ConfigGet(cctx, "append*").Result()
	if err != nil {
		r.log.Warn("redis does not show its persistence settings (CONFIG GET refused); make sure it runs appendonly yes and appendfsync always, or grants may be lost", "error", err)
		return nil
	}
	if cfg["appendonly"] == "yes" && cfg["appendfsync"] == "always" {
		return nil
	}
	msg := fmt.Sprintf("redis %s runs appendonly %s, appendfsync %s: a grant it acknowledges can be lost if it crashes; "+
		"set appendonly yes and appendfsync always, or permissions.redis.wait_replicas, or permissions.redis.allow_non_durable",
		r.rdb.Options().Addr, cfg["appendonly"], cfg["appendfsync"])
	if !allow {
		return errors.New("permissions: " + msg)
	}
	r.log.Warn(msg)
	return nil
}

// claimAtStart takes the node id. A holder that does not let go within
// SlotTTL (plus a second) is another running node. A claim that fails (a
// Redis slow to answer, an fsync that outlasts the timeout) is tried
// again until then too: the claim is idempotent for this instance, and a
// node that exits at its first slow answer turns a busy Redis into a node
// out of service.
func (r *Redis) claimAtStart(ctx context.Context) error {
	deadline := time.Now().Add(r.slotTTL + time.Second)
	warned, failed := false, false
	for {
		ok, holder, ttl, _, err := r.claim(ctx)
		if err != nil {
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("permissions: redis: claim node id %q: %w", r.nodeID, err)
			}
			if !failed {
				r.log.Warn("claiming node_id failed; trying again until slot_ttl has passed", "node_id", r.nodeID, "error", err)
				failed = true
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("permissions: redis: node_id %q is held by another running wagate (instance %s): give each node its own node_id", r.nodeID, holder)
		}
		if !warned {
			r.log.Warn("node_id held by another instance: a previous run that died, or another node with this node_id; waiting for it to expire",
				"node_id", r.nodeID, "holder", holder, "expires_in", ttl.String())
			warned = true
		}
		wait := min(max(ttl, 50*time.Millisecond), 500*time.Millisecond)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// claim refreshes the node id and the instance's life. existed is false
// when the instance key had lapsed (its slots may have been dropped).
func (r *Redis) claim(ctx context.Context) (ok bool, holder string, ttl time.Duration, existed bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	v, err := scriptClaim.Run(cctx, r.rdb, []string{r.prefix + "node:" + r.nodeID, r.instKey(), r.prefix + "epoch"},
		r.instance, r.slotTTL.Milliseconds(), r.nodeID, r.instance+"@"+strconv.FormatInt(time.Now().UnixMilli(), 10)).Slice()
	if err != nil {
		return false, "", 0, false, err
	}
	if len(v) < 2 {
		return false, "", 0, false, errGarbage("claim", v)
	}
	if asInt(v[0]) == 1 {
		if len(v) >= 3 {
			r.checkEpoch(asString(v[2]))
		}
		return true, "", 0, asInt(v[1]) == 1, nil
	}
	if len(v) < 3 {
		return false, "", 0, false, errGarbage("claim", v)
	}
	return false, asString(v[1]), time.Duration(asInt(v[2])) * time.Millisecond, false, nil
}

func (r *Redis) instKey() string { return r.prefix + "inst:" + r.instance }

// checkEpoch compares Redis's epoch with the one this node saw last: a
// new one means Redis lost its data meanwhile, which nothing else would
// tell (every pair just reads as never granted). Called from the claims
// only, one at a time.
func (r *Redis) checkEpoch(epoch string) {
	if epoch == "" || epoch == r.epoch {
		return
	}
	if r.epoch != "" {
		r.stats.dataLost.Add(1)
		r.log.Error("redis lost its data since this node last looked (its epoch changed): every grant, revocation and counter written "+
			"before is gone, and business-initiated calls to those users are refused 403 No Approved Call Permission Found until they "+
			"are granted again; restore Redis from a backup, and check that it runs appendonly yes and that replicas are waited for",
			"epoch_was", r.epoch, "epoch", epoch)
	}
	r.epoch = epoch
}

// loop refreshes the node's life every third of SlotTTL and, while Redis
// is down, probes it; when it returns, the node's slots are rewritten from
// its own calls and the outcomes it kept are written.
//
// claimed is false for a node that started while Redis was unreachable:
// it makes its start-up checks and claim first (claimLate).
func (r *Redis) loop(ctx context.Context, claimed bool) {
	defer close(r.done)
	indexed := false
	beat := r.slotTTL / 3
	last := time.Now()
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !claimed {
			if claimed = r.claimLate(ctx); !claimed {
				continue
			}
		}
		if !indexed {
			indexed = true
			r.bg.Go(func() { r.indexRestrictions(ctx) })
		}
		if r.up.Load() && time.Since(last) < beat {
			continue
		}
		ok, holder, _, existed, err := r.claim(ctx)
		if err != nil {
			r.failed("heartbeat", err)
			continue
		}
		last = time.Now()
		if !ok {
			r.log.Error("node_id taken over by another instance while this one could not refresh it: two nodes run with one node_id",
				"node_id", r.nodeID, "holder", holder)
			continue
		}
		if !r.up.Load() && !r.takeBack(ctx) {
			continue
		}
		wasDown := !r.up.Swap(true)
		if wasDown {
			r.log.Warn("redis reachable again; writing back what this node did meanwhile")
		}
		if !existed {
			r.markAllDirty()
		}
		r.flush(ctx)
	}
}

// failed records an operation's failure: counted, Redis marked down (ops
// fail fast until the next probe succeeds), logged at most every 10 s.
func (r *Redis) failed(op string, err error) {
	r.stats.errors.Add(1)
	r.up.Store(false)
	now := time.Now().UnixNano()
	if last := r.downLog.Load(); now-last > int64(10*time.Second) && r.downLog.CompareAndSwap(last, now) {
		r.log.Error("redis unreachable or failing: business-initiated calls follow permissions.redis.on_down",
			"op", op, "on_down", r.onDown, "error", err)
	}
}

// ctx is the context of one operation.
func (r *Redis) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), r.timeout)
}

// available says whether to try Redis at all: while it is down, operations
// fail fast and the loop probes it.
func (r *Redis) available() bool { return r.up.Load() }

// Close stops refreshing, gives the node id back and closes the
// connections.
func (r *Redis) Close() error {
	r.once.Do(func() {
		if b := r.agents.Load(); b != nil {
			b.Close()
		}
		r.stop()
		<-r.done
		r.bg.Wait()
		r.writesMu.Lock()
		r.closing = true
		r.writesMu.Unlock()
		r.writes.Wait()
		ctx, cancel := r.opCtx()
		r.flush(ctx)
		_ = scriptRelease.Run(ctx, r.rdb, []string{r.prefix + "node:" + r.nodeID, r.instKey()}, r.instance).Err()
		cancel()
		r.closeErr = r.rdb.Close()
	})
	return r.closeErr
}

// SetLimits replaces the limits; counters are in Redis and stay.
func (r *Redis) SetLimits(l Limits) { r.lim.Store(&l) }

func (r *Redis) limits() *Limits { return r.lim.Load() }

// Stats are the Redis store's counters.
func (r *Redis) Stats() Stats {
	r.local.mu.Lock()
	pending := len(r.local.pending)
	r.local.mu.Unlock()
	return Stats{
		Backend:             "redis",
		Up:                  r.up.Load(),
		Errors:              r.stats.errors.Load(),
		RefusedUnavailable:  r.stats.refused.Load(),
		AdmittedFromCache:   r.stats.fromCache.Load(),
		LearnedNoPermission: r.stats.learned.Load(),
		LearnedDailyCap:     r.stats.learnedCap.Load(),
		StaleReplies:        r.stats.stale.Load(),
		ReplayedMessages:    r.stats.replayed.Load(),
		StaleAccountUpdates: r.stats.staleMeta.Load(),
		RestrictedRefusals:  r.stats.restricted.Load(),
		PendingOutcomes:     pending,
		DataLost:            r.stats.dataLost.Load(),
	}
}

// NodeID is the node id this store holds.
func (r *Redis) NodeID() string { return r.nodeID }

// errGarbage is the error of an answer of an unexpected shape.
func errGarbage(op string, v any) error {
	s := fmt.Sprintf("%v", v)
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return fmt.Errorf("redis %s: unexpected answer %s", op, s)
}

func asInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case string:
		var n int64
		neg := strings.HasPrefix(x, "-")
		for _, c := range strings.TrimPrefix(x, "-") {
			if c < '0' || c > '9' {
				return 0
			}
			n = n*10 + int64(c-'0')
		}
		if neg {
			n = -n
		}
		return n
	}
	return 0
}

func asString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return fmt.Sprint(x)
	}
	return ""
}
