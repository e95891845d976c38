package permissions

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// pairKeys are the Redis keys of one pair and its number.
type pairKeys struct {
	pair, calls, req, busy, ncalls, nact, restrict string
	// cleared holds when an operator last cleared the pair's connected
	// calls (Redis's clock, ms; a day): outcomes older than it that a
	// node writes back late do not fill the window again.
	cleared string
	member  string // in the index: "pnid/user"
}

func (r *Redis) keys(k Key) pairKeys {
	s := k.PhoneNumberID + ":" + k.User
	return pairKeys{
		pair: r.prefix + "p:" + s, calls: r.prefix + "c:" + s, req: r.prefix + "q:" + s, busy: r.prefix + "b:" + s,
		ncalls: r.prefix + "n:" + k.PhoneNumberID, nact: r.prefix + "a:" + k.PhoneNumberID,
		restrict: r.prefix + "r:" + k.PhoneNumberID,
		cleared:  r.prefix + "x:" + s,
		member:   k.String(),
	}
}

func (r *Redis) idxKey() string { return r.prefix + "idx" }

func nowMs() int64 { return time.Now().UnixMilli() }

func msTime(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// resolve maps a BSUID to its linked phone number (one read, only for
// BSUIDs) and normalises the key.
func (r *Redis) resolve(ctx context.Context, k Key) (Key, error) {
	k, err := k.Normalize()
	if err != nil || !IsBSUID(k.User) {
		return k, err
	}
	phone, err := r.rdb.HGet(ctx, r.prefix+"l:"+k.PhoneNumberID, k.User).Result()
	if errors.Is(err, redis.Nil) {
		return k, nil
	}
	if err != nil {
		return k, err
	}
	if _, perr := NormalizeUser(phone); perr != nil || IsBSUID(phone) {
		return k, errGarbage("alias", phone)
	}
	return Key{PhoneNumberID: k.PhoneNumberID, User: phone}, nil
}

// Reserve decides a business-initiated call in one script and reserves it.
func (r *Redis) Reserve(k Key) (Decision, Reservation) {
	nk, err := k.Normalize()
	if err != nil {
		return decide(NoPermission, 0), nil
	}
	// Redis's count of this node's slots and the node's own move together
	// (see Redis.slots).
	r.slots.RLock()
	defer r.slots.RUnlock()
	if !r.available() {
		return r.reserveDown(nk, errors.New("redis down"))
	}
	ctx, cancel := r.opCtx()
	defer cancel()
	nk, err = r.resolve(ctx, nk)
	if err != nil {
		r.failed("resolve", err)
		return r.reserveDown(nk, err)
	}
	ks := r.keys(nk)
	lims := r.limits()
	resid := r.instance + ":" + strconv.FormatUint(r.resSeq.Add(1), 36)
	v, err := scriptAdmit.Run(ctx, r.rdb, []string{ks.pair, ks.calls, ks.busy, ks.ncalls, ks.nact, ks.restrict},
		r.prefix, r.instance, lims.ConnectedPerUser24h, lims.NewCallsPerNumber24h, lims.ConcurrentPerNumber, resid).Slice()
	if err == nil && len(v) == 0 {
		err = errGarbage("admit", v)
	}
	if err != nil {
		// The script may have run even so (a timeout after Redis took
		// it): the slots it may have taken are rewritten from this
		// node's own count when Redis answers again, and the call it
		// may have counted toward the number's 24 h is taken back (it
		// was refused, never placed).
		r.markDirty(ks.busy, ks.nact)
		r.uncount(ks.ncalls, resid)
		r.failed("admit", err)
		return r.reserveDown(nk, err)
	}
	switch asString(v[0]) {
	case "ok":
		if len(v) < 3 {
			break
		}
		r.remember(nk, state(asInt(v[1])), asInt(v[2]))
		r.local.mu.Lock()
		r.local.busy[ks.busy]++
		r.local.active[ks.nact]++
		r.local.mu.Unlock()
		return decide(Allow, 0), &redisTicket{r: r, k: nk, ks: ks, resid: resid, wrote: make(chan struct{})}
	case "none":
		r.remember(nk, stNone, 0)
		return decide(NoPermission, 0), nil
	case "cap":
		if len(v) >= 2 {
			return decide(DailyCapHit, time.Duration(asInt(v[1]))*time.Millisecond), nil
		}
	case "busy":
		return decide(Busy, 0), nil
	case "rate":
		if len(v) >= 2 {
			return decide(NumberRateCap, time.Duration(asInt(v[1]))*time.Millisecond), nil
		}
	case "conc":
		return decide(NumberConcurrencyCap, concurrencyRetryAfter), nil
	case "restricted":
		if len(v) >= 2 {
			r.stats.restricted.Add(1)
			return decide(Restricted, time.Duration(asInt(v[1]))*time.Millisecond), nil
		}
	}
	err = errGarbage("admit", v)
	r.failed("admit", err)
	return r.reserveDown(nk, err)
}

// reserveDown answers while Redis cannot: refuse (503), or admit from what
// this node last saw of the pair.
func (r *Redis) reserveDown(k Key, cause error) (Decision, Reservation) {
	if r.onDown != OnDownCache {
		r.stats.refused.Add(1)
		return decide(Unavailable, 0), nil
	}
	r.local.mu.Lock()
	defer r.local.mu.Unlock()
	p, ok := r.local.seen[k]
	if !ok {
		// Nothing known here: the cache can only admit what it saw, and
		// it cannot say the user has no permission either. A 403 with
		// Meta's 138006 would tell the dialer to ask the user again;
		// this is wagate's trouble, to retry after it.
		r.stats.refused.Add(1)
		return decide(Unavailable, 0), nil
	}
	if valid := p.st == stPermanent || (p.st == stTemporary && p.exp > nowMs()); !valid {
		// Seen without a permission (or it has expired since).
		return decide(NoPermission, 0), nil
	}
	ks := r.keys(k)
	if r.local.busy[ks.busy] > 0 {
		return decide(Busy, 0), nil
	}
	if lim := r.limits().ConcurrentPerNumber; lim > 0 && r.local.active[ks.nact] >= lim {
		return decide(NumberConcurrencyCap, concurrencyRetryAfter), nil
	}
	r.local.busy[ks.busy]++
	r.local.active[ks.nact]++
	r.local.dirty[ks.busy] = true
	r.local.dirty[ks.nact] = true
	r.stats.fromCache.Add(1)
	r.log.Warn("redis down: business-initiated call admitted from this node's cache (on_down: cache)",
		"phone_number_id", k.PhoneNumberID, "user", k.User, "error", cause)
	resid := r.instance + ":" + strconv.FormatUint(r.resSeq.Add(1), 36)
	return decide(Allow, 0), &redisTicket{r: r, k: k, ks: ks, resid: resid, local: true, wrote: make(chan struct{})}
}

// remember keeps what this node saw of a pair, for OnDownCache.
func (r *Redis) remember(k Key, st state, exp int64) {
	if r.onDown != OnDownCache {
		return
	}
	r.local.mu.Lock()
	if _, ok := r.local.seen[k]; !ok && len(r.local.seen) >= r.local.maxSeen {
		for old := range r.local.seen { // any one: a map's order is random
			delete(r.local.seen, old)
			break
		}
	}
	r.local.seen[k] = cachedPair{st: st, exp: exp}
	r.local.mu.Unlock()
}

// redisTicket is a reservation in Redis (or, local, one admitted from the
// cache while Redis was down).
type redisTicket struct {
	r         *Redis
	k         Key
	ks        pairKeys
	resid     string
	local     bool
	connected atomic.Bool
	done      atomic.Bool
	// wrote is closed once the connected call's count is written (or
	// kept for the flush): Finish releases the user's busy slot only
	// after it, so the next call to the user sees the count and the daily
	// cap stays exact.
	wrote chan struct{}
}

func (t *redisTicket) Key() Key { return t.k }

// Connected counts the call toward the user's daily cap and resets the
// streak and the request limits.
func (t *redisTicket) Connected() {
	if t.done.Load() {
		return
	}
	t.connect()
}

func (t *redisTicket) connect() {
	if !t.connected.CompareAndSwap(false, true) {
		return
	}
	at := nowMs()
	if t.local || !t.r.available() {
		t.r.queue(pendingOp{k: t.k, resid: t.resid, connect: true, at: at})
		close(t.wrote)
		return
	}
	// Beside the call, not in its way: wagate ACKs Meta's 200 and
	// answers the dialer meanwhile. The count carries the time of the
	// connection.
	t.r.aside(func() {
		defer close(t.wrote)
		if err := t.r.runConnected(t.ks, t.resid, strconv.FormatInt(at, 10)); err != nil {
			t.r.failed("connected", err)
			t.r.queue(pendingOp{k: t.k, resid: t.resid, connect: true, at: at})
		}
	})
}

// aside runs a write on its own goroutine, which Close waits for; after
// Close it runs in the caller's.
func (r *Redis) aside(f func()) {
	r.writesMu.Lock()
	if r.closing {
		r.writesMu.Unlock()
		f()
		return
	}
	r.writes.Add(1)
	r.writesMu.Unlock()
	go func() {
		defer r.writes.Done()
		f()
	}()
}

func (r *Redis) runConnected(ks pairKeys, resid, at string) error {
	ctx, cancel := r.opCtx()
	defer cancel()
	return scriptConnected.Run(ctx, r.rdb, []string{ks.pair, ks.calls, ks.req, ks.cleared}, r.limits().ConnectedPerUser24h, resid, at).Err()
}

// Finish releases the reservation and applies the outcome.
func (t *redisTicket) Finish(o Outcome) {
	if !t.done.CompareAndSwap(false, true) {
		return
	}
	if o == Answered {
		t.connect()
	}
	if t.connected.Load() {
		<-t.wrote // bounded: the write has the operation's timeout
	}
	r := t.r
	r.slots.RLock()
	defer r.slots.RUnlock()
	// The outcome's time: written back after an outage, an outcome older
	// than an operator's clear of the pair's connected calls is not
	// counted again (scriptFinish).
	at := nowMs()
	what := "none"
	switch {
	case t.connected.Load():
	case o == Unanswered || o == Rejected:
		what = "counts"
	case o == MetaNoPermission:
		what = "learn"
	case o == MetaDailyCap:
		what = "cap"
	}
	// A call Meta never saw gives back its count toward the number's 24
	// hours (the admission added the reservation id; one admitted from
	// the cache while Redis was down added nothing).
	unsent := o == NotSent && !t.connected.Load() && !t.local
	r.local.mu.Lock()
	dec(r.local.busy, t.ks.busy)
	dec(r.local.active, t.ks.nact)
	r.local.mu.Unlock()
	if t.local || !r.available() {
		r.markDirty(t.ks.busy, t.ks.nact)
		if what != "none" {
			r.queue(pendingOp{k: t.k, resid: t.resid, outcome: what, at: at})
		}
		if unsent {
			r.uncount(t.ks.ncalls, t.resid)
		}
		return
	}
	if err := r.runFinish(t.k, t.ks, t.resid, what, "", true, unsent); err != nil {
		r.failed("finish", err)
		r.markDirty(t.ks.busy, t.ks.nact)
		if what != "none" {
			r.queue(pendingOp{k: t.k, resid: t.resid, outcome: what, at: at})
		}
		if unsent {
			// Taken back when Redis answers again (takeBack), before
			// the store is up.
			r.uncount(t.ks.ncalls, t.resid)
		}
	}
}

func dec(m map[string]int, k string) {
	if m[k] <= 1 {
		delete(m, k)
	} else {
		m[k]--
	}
}

// outcomeMarkLife is how long Redis remembers that a reservation's
// outcome was applied: longer than an outcome waits in a node for Redis
// to return, in practice.
const outcomeMarkLife = 2 * 24 * time.Hour

// runFinish applies an outcome; at is its time (Unix ms) for a write-back
// after an outage, "" for now.
func (r *Redis) runFinish(k Key, ks pairKeys, resid, what, at string, release, unsent bool) error {
	ctx, cancel := r.opCtx()
	defer cancel()
	lims := r.limits()
	rel, uns := "0", "0"
	if release {
		rel = "1"
	}
	if unsent {
		uns = "1"
	}
	v, err := scriptFinish.Run(ctx, r.rdb, []string{ks.pair, ks.busy, ks.nact, r.prefix + "o:" + resid, ks.ncalls, ks.calls, ks.cleared}, r.instance, what,
		lims.UnansweredRevoke, rel, revokedRetention.Milliseconds(), outcomeMarkLife.Milliseconds(), resid, uns,
		lims.ConnectedPerUser24h, at).Slice()
	if err != nil {
		return err
	}
	if len(v) < 2 {
		return errGarbage("finish", v)
	}
	streak := asInt(v[0])
	switch asInt(v[1]) {
	case 1:
		r.remember(k, stNone, 0)
		r.log.Warn("call permission revoked after consecutive unanswered or rejected calls",
			"phone_number_id", k.PhoneNumberID, "user", k.User, "streak", streak)
	case 2:
		r.remember(k, stNone, 0)
		r.stats.learned.Add(1)
		r.log.Warn("call permission revoked: Meta answered 403 No Approved Call Permission Found; later calls to this user are refused here",
			"phone_number_id", k.PhoneNumberID, "user", k.User)
	case 3:
		r.stats.learnedCap.Add(1)
		r.log.Warn("daily connected-call cap learned: Meta answered 403 Business Initiated Connected Call Per Day Limit Hit; later calls to this user are refused here until a slot frees",
			"phone_number_id", k.PhoneNumberID, "user", k.User, "cap", lims.ConnectedPerUser24h)
	default:
		if lim := lims.UnansweredNudge; what == "counts" && lim > 0 && streak == int64(lim) {
			r.log.Warn("call permission nudge: consecutive unanswered business-initiated calls; Meta nudges the user to reconsider",
				"phone_number_id", k.PhoneNumberID, "user", k.User, "streak", streak, "revoke_at", lims.UnansweredRevoke)
		}
	}
	return nil
}

// durable waits for replicas when configured.
func (r *Redis) durable(ctx context.Context) error {
	if r.waitN <= 0 {
		return nil
	}
	n, err := r.rdb.Wait(ctx, r.waitN, r.waitT).Result()
	if err != nil {
		return err
	}
	if n < int64(r.waitN) {
		return fmt.Errorf("written on the primary but confirmed by %d of %d replicas within %v", n, r.waitN, r.waitT)
	}
	return nil
}

// unavailable wraps an operation's error.
func unavailable(op string, err error) error {
	return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
}

var _ Store = (*Redis)(nil)
