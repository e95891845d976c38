package permissions

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNotFound is returned by Revoke when there is no permission to revoke.
var ErrNotFound = errors.New("permission not found")

// ErrExpired is returned by Grant for a temporary expiry that is not in the
// future.
var ErrExpired = errors.New("expiry is not in the future")

// Windows of Meta's rules.
const (
	day  = 24 * time.Hour
	week = 7 * day
)

// revokedRetention is how long a revocation stays visible (Get, List) after
// it happened, so that an operator can see why a user cannot be called; the
// sweep then forgets it.
const revokedRetention = 30 * day

// sweepInterval is how often expired grants and idle counters are dropped.
// Correctness never waits for it: Admit and Get check expiry themselves.
const sweepInterval = time.Minute

// shardCount spreads the pairs over independently locked maps so that
// concurrent Admits for different users rarely meet on a lock.
const shardCount = 256

// Cache is the call-permission cache. All methods are safe for concurrent use.
type Cache struct {
	lim   atomic.Pointer[Limits] // swapped whole by SetLimits
	clock Clock
	log   *slog.Logger
	store *store // nil: memory only
	seed  maphash.Seed

	shards [shardCount]shard

	// numbers maps a phone-number-id to its *number. sync.Map because it
	// is read on every Admit and written once per business number.
	numbers sync.Map

	// writeMu orders every change of persistent state so that memory and
	// disk see grants and revocations in the same order. Admit never takes
	// it.
	writeMu sync.Mutex

	sources interner

	// obs hears about changes (SetObserver).
	obs observer
	// ext is the state beside the pairs (aliases, restrictions, webhook
	// message ids) and the counters of Stats.
	ext ext

	stop      context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

type shard struct {
	mu sync.Mutex
	m  map[mapKey]*entry
	_  [40]byte // keep neighbouring shards' locks off one cache line
}

// mapKey is a pair in memory: the business number by pointer (there are
// few, and this saves repeating the id in a million keys) and the user.
type mapKey struct {
	num  *number
	user string
}

// number is the per-business-number state: its rolling 24-hour count of
// new calls and its calls in progress.
type number struct {
	id   string
	hash uint64

	mu     sync.Mutex
	calls  window
	active int
}

// entry is one pair's state, guarded by its shard's lock. It is 64 bytes;
// the counters, which most pairs never need, hang off a pointer.
type entry struct {
	st          state
	persisted   bool   // a record for this pair is on disk
	expiryNoted bool   // the lapse of this temporary grant was reported
	streak      uint16 // consecutive unanswered or rejected calls
	active      int32  // calls in progress with this user
	gen         uint32 // bumped on every change of persistent state
	expires     int64  // Unix ns, temporary only
	granted     int64  // Unix ns
	updated     int64  // Unix ns of the last grant or revocation
	source      string
	ctr         *counters
}

type counters struct {
	calls    window // connected business-initiated calls, 24 h
	requests window // permission requests, 7 days
}

// Entry is a snapshot of one pair.
type Entry struct {
	Key       Key
	Status    Status
	ExpiresAt time.Time // temporary grants (also when expired: Status is then no_permission)
	GrantedAt time.Time // zero when never granted or revoked since
	UpdatedAt time.Time // last grant or revocation
	Source    string    // who made the last change: api, webhook:user_action, uic, unanswered, …

	ConnectedCalls24h int
	UnansweredStreak  int
	Requests24h       int
	Requests7d        int
	ActiveCalls       int
}

// Open loads the store at path (creating it) and starts the sweep. An empty
// path keeps everything in memory (tests, benchmarks). A nil clock is the
// wall clock; a nil log discards.
func Open(path string, lim Limits, clock Clock, log *slog.Logger) (*Cache, error) {
	if clock == nil {
		clock = SystemClock{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Cache{clock: clock, log: log, seed: maphash.MakeSeed(), done: make(chan struct{})}
	c.SetLimits(lim)
	for i := range c.shards {
		c.shards[i].m = make(map[mapKey]*entry)
	}
	c.sources.m = make(map[string]string)
	c.ext.init()
	if path != "" {
		st, err := openStore(path)
		if err != nil {
			return nil, err
		}
		c.store = st
		if err := c.loadAll(); err != nil {
			st.close()
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.stop = cancel
	go c.sweepLoop(ctx)
	return c, nil
}

// loadAll fills memory from the store: permissions, counters, aliases,
// restrictions and webhook message ids.
func (c *Cache) loadAll() error {
	c.store.db.MaxBatchDelay = batchDelay
	if err := c.store.openExtraBuckets(); err != nil {
		return fmt.Errorf("permission store: %w", err)
	}
	if err := c.load(); err != nil {
		return err
	}
	if err := c.loadCounters(); err != nil {
		return err
	}
	if err := c.loadExt(); err != nil {
		return fmt.Errorf("load permission store: %w", err)
	}
	return nil
}

// load fills memory from the store, dropping records that lapsed while
// wagate was down.
func (c *Cache) load() error {
	now := c.clock.Now().UnixNano()
	var stale []Key
	n := 0
	err := c.store.load(func(k Key, r record) {
		if lapsed(r, now) {
			stale = append(stale, k)
			if r.state == stTemporary {
				// Nobody has been told: SetObserver reports it.
				c.obs.keep(Change{Key: k, Status: StatusNone, Previous: StatusTemporary,
					ExpiresAt: unixTime(r.expires), Source: SourceExpired})
			}
			return
		}
		mk, sh := c.key(k, true)
		e := &entry{persisted: true}
		e.apply(r, c.sources.get(r.source))
		sh.m[mk] = e // single-threaded: Open has not returned
		n++
	}, func(key []byte, err error) {
		c.log.Error("permission store: skipping unreadable record", "key", string(key), "error", err)
	})
	if err != nil {
		return fmt.Errorf("load permission store: %w", err)
	}
	if err := c.store.deleteKeys(stale); err != nil {
		// Not fatal: they are lapsed in memory anyway; the sweep retries.
		c.log.Warn("permission store: could not drop lapsed records", "error", err)
	}
	c.log.Info("permission store loaded", "pairs", n, "lapsed", len(stale))
	return nil
}

// lapsed reports whether a record no longer means anything: a temporary
// grant past its expiry, or a revocation older than the retention.
func lapsed(r record, now int64) bool {
	switch r.state {
	case stTemporary:
		return r.expires <= now
	case stNone:
		return r.updated <= now-int64(revokedRetention)
	}
	return false
}

// Close stops the sweep and closes the store. Admit keeps answering from
// memory; Grant and Revoke fail after Close.
func (c *Cache) Close() error {
	c.closeOnce.Do(func() {
		c.stop()
		<-c.done
		if c.store != nil {
			c.closeErr = c.store.close()
		}
	})
	return c.closeErr
}

func (c *Cache) now() int64 { return c.clock.Now().UnixNano() }

// SetLimits replaces the limits (SIGHUP reload) without a restart, which
// would forget the counters. Counters already held are judged by the new
// limits from the next call on.
func (c *Cache) SetLimits(l Limits) { c.lim.Store(&l) }

// limits is the current Limits; one atomic load.
func (c *Cache) limits() *Limits { return c.lim.Load() }

// number finds the state of a business number, creating it when asked.
func (c *Cache) number(id string, create bool) *number {
	if v, ok := c.numbers.Load(id); ok {
		return v.(*number)
	}
	if !create {
		return nil
	}
	v, _ := c.numbers.LoadOrStore(id, &number{id: id, hash: maphash.String(c.seed, id)})
	return v.(*number)
}

// key maps a normalised Key to its map key and shard; num is nil (and the
// pair unknown) when the business number has never been seen and create is
// false.
func (c *Cache) key(k Key, create bool) (mapKey, *shard) {
	n := c.number(k.PhoneNumberID, create)
	if n == nil {
		return mapKey{}, nil
	}
	h := maphash.String(c.seed, k.User) ^ n.hash
	return mapKey{num: n, user: k.User}, &c.shards[h%shardCount]
}

func (sh *shard) getOrCreate(mk mapKey) *entry {
	e := sh.m[mk]
	if e == nil {
		e = &entry{}
		sh.m[mk] = e
	}
	return e
}

// apply sets the persistent half of an entry from a record.
func (e *entry) apply(r record, source string) {
	e.st, e.expires, e.granted, e.updated, e.source = r.state, r.expires, r.granted, r.updated, source
	e.expiryNoted = false
}

// state is the permission as it stands at now: a temporary grant past its
// expiry is no permission, whether or not the sweep has dropped it yet.
func (e *entry) state(now int64) state {
	if e.st == stTemporary && e.expires <= now {
		return stNone
	}
	return e.st
}

func (e *entry) counters() *counters {
	if e.ctr == nil {
		e.ctr = &counters{}
	}
	return e.ctr
}

// prune drops counter events that left their windows and frees empty
// counters.
func (e *entry) prune(now int64) {
	if e.ctr == nil {
		return
	}
	e.ctr.calls.prune(now - int64(day))
	e.ctr.requests.prune(now - int64(week))
	if e.ctr.calls.len() == 0 && e.ctr.requests.len() == 0 {
		e.ctr = nil
	}
}

// idle reports whether the entry carries nothing worth keeping in memory.
func (e *entry) idle() bool {
	return e.st == stNone && !e.persisted && e.active == 0 && e.streak == 0 && e.ctr == nil
}

func (c *Cache) snapshot(mk mapKey, e *entry, now int64) Entry {
	e.prune(now)
	en := Entry{
		Key:              Key{PhoneNumberID: mk.num.id, User: mk.user},
		Status:           e.state(now).status(),
		ExpiresAt:        unixTime(e.expires),
		GrantedAt:        unixTime(e.granted),
		UpdatedAt:        unixTime(e.updated),
		Source:           e.source,
		UnansweredStreak: int(e.streak),
		ActiveCalls:      int(e.active),
	}
	if e.ctr != nil {
		en.ConnectedCalls24h = e.ctr.calls.len()
		en.Requests7d = e.ctr.requests.len()
		en.Requests24h = e.ctr.requests.countAfter(now - int64(day))
	}
	return en
}

func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// Get returns the pair's state; false when the cache knows nothing of it.
func (c *Cache) Get(k Key) (Entry, bool) {
	k, err := c.resolve(k).Normalize()
	if err != nil {
		return Entry{}, false
	}
	mk, sh := c.key(k, false)
	if sh == nil {
		return Entry{}, false
	}
	now := c.now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[mk]
	if e == nil {
		return Entry{}, false
	}
	c.noteExpiry(mk, e, now)
	return c.snapshot(mk, e, now), true
}

// Grant records an approval. A temporary grant expires at expires, or
// TemporaryTTL from now when expires is zero; a permanent one never. The
// grant is on disk (fsynced) when Grant returns. It also starts a fresh
// unanswered streak: the user has just said yes.
func (c *Cache) Grant(k Key, permanent bool, expires time.Time, source string) error {
	k, err := c.resolve(k).Normalize()
	if err != nil {
		return fmt.Errorf("grant: %w", err)
	}
	now := c.now()
	r := record{state: stPermanent, granted: now, updated: now, source: source}
	if !permanent {
		r.state = stTemporary
		if expires.IsZero() {
			r.expires = now + int64(c.limits().ttl())
		} else if r.expires = expires.UnixNano(); r.expires <= now {
			return fmt.Errorf("grant %s until %s: %w", k, expires.UTC().Format(time.RFC3339), ErrExpired)
		}
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	return c.commit(k, r)
}

// Revoke withdraws a permission (Meta's reject, or an operator). The
// revocation is on disk when Revoke returns. ErrNotFound when the pair has
// no grant to revoke.
func (c *Cache) Revoke(k Key, source string) error {
	k, err := c.resolve(k).Normalize()
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	mk, sh := c.key(k, false)
	if sh == nil {
		return fmt.Errorf("revoke %s: %w", k, ErrNotFound)
	}
	sh.mu.Lock()
	e := sh.m[mk]
	granted := e != nil && e.st != stNone
	sh.mu.Unlock()
	if !granted {
		return fmt.Errorf("revoke %s: %w", k, ErrNotFound)
	}
	now := c.now()
	return c.commit(k, record{state: stNone, updated: now, source: source})
}

// uicRefreshSlack spares the disk a write for every call of a user who
// calls again and again: a temporary grant that still has all but this
// much of its TTL is left alone.
const uicRefreshSlack = time.Minute

// GrantFromUIC records the temporary permission a user-initiated call grants
// when callback permission is enabled for the number. It never shortens a
// longer grant or downgrades a permanent one. Errors are logged: the call
// goes on either way.
func (c *Cache) GrantFromUIC(k Key) {
	k, err := c.resolve(k).Normalize()
	if err != nil {
		c.log.Warn("permission from user-initiated call not recorded", "error", err)
		return
	}
	now := c.now()
	exp := now + int64(c.limits().ttl())
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if mk, sh := c.key(k, false); sh != nil {
		sh.mu.Lock()
		e := sh.m[mk]
		keep := e != nil && (e.state(now) == stPermanent ||
			(e.state(now) == stTemporary && e.expires >= exp-int64(uicRefreshSlack)))
		sh.mu.Unlock()
		if keep {
			return
		}
	}
	r := record{state: stTemporary, expires: exp, granted: now, updated: now, source: SourceUIC}
	if err := c.commit(k, r); err != nil {
		c.log.Error("permission from user-initiated call not persisted", "key", k.String(), "error", err)
	}
}

// Sources the cache itself writes.
const (
	SourceUIC        = "uic"
	SourceUnanswered = "unanswered"
)

// commit writes a record to disk, then to memory; the caller holds writeMu.
// Disk first: a failed write changes nothing.
func (c *Cache) commit(k Key, r record) error {
	r.source = c.sources.get(r.source)
	if c.store != nil {
		if err := c.store.put(k, r); err != nil {
			return err
		}
	}
	mk, sh := c.key(k, true)
	sh.mu.Lock()
	e := sh.getOrCreate(mk)
	// A lapse nobody noticed yet is reported before what replaces it.
	c.noteExpiry(mk, e, r.updated)
	prev, prevExp := e.state(r.updated), e.expires
	e.apply(r, r.source)
	e.persisted = true
	hadStreak := e.streak != 0
	e.streak = 0
	e.gen++
	c.reportCommit(mk, prev, prevExp, r)
	sh.mu.Unlock()
	if hadStreak {
		c.persistPair(mk, sh)
	}
	return nil
}

// Len is the number of pairs held in memory.
func (c *Cache) Len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// interner shares one copy of each source string among all entries; there
// are a handful of distinct sources and a million entries.
type interner struct {
	mu sync.Mutex
	m  map[string]string
}

// maxSource bounds a source string; maxSources bounds the table in case a
// caller makes sources up.
const (
	maxSource  = 64
	maxSources = 1024
)

func (in *interner) get(s string) string {
	if len(s) > maxSource {
		s = s[:maxSource]
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if v, ok := in.m[s]; ok {
		return v
	}
	if len(in.m) < maxSources {
		in.m[s] = s
	}
	return s
}
