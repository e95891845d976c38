package permissions

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// pairKeys are the Redis keys of one pair and its number.
type pairKeys struct {
	pair, calls, req, busy, ncalls, nact, restrict string
	member                                         string // in the index: "pnid/user"
}

func (r *Redis) keys(k Key) pairKeys {
	s := k.PhoneNumberID + ":" + k.User
	return pairKeys{
		pair: r.prefix + "p:" + s, calls: r.prefix + "c:" + s, req: r.prefix + "q:" + s, busy: r.prefix + "b:" + s,
		ncalls: r.prefix + "n:" + k.PhoneNumberID, nact: r.prefix + "a:" + k.PhoneNumberID,
		restrict: r.prefix + "r:" + k.PhoneNumberID,
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
		// node's own count when Redis answers again.
		r.markDirty(ks.busy, ks.nact)
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
		return decide(Allow, 0), &redisTicket{r: r, k: nk, ks: ks, resid: resid}
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
	valid := ok && (p.st == stPermanent || (p.st == stTemporary && p.exp > nowMs()))
	if !valid {
		// Nothing known here: the cache can only admit what it saw.
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
	return decide(Allow, 0), &redisTicket{r: r, k: k, ks: ks, resid: resid, local: true}
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
		return
	}
	if err := t.r.runConnected(t.ks, t.resid, ""); err != nil {
		t.r.failed("connected", err)
		t.r.queue(pendingOp{k: t.k, resid: t.resid, connect: true, at: at})
	}
}

func (r *Redis) runConnected(ks pairKeys, resid, at string) error {
	ctx, cancel := r.opCtx()
	defer cancel()
	return scriptConnected.Run(ctx, r.rdb, []string{ks.pair, ks.calls, ks.req}, r.limits().ConnectedPerUser24h, resid, at).Err()
}

// Finish releases the reservation and applies the outcome.
func (t *redisTicket) Finish(o Outcome) {
	if !t.done.CompareAndSwap(false, true) {
		return
	}
	if o == Answered {
		t.connect()
	}
	r := t.r
	what := "none"
	switch {
	case t.connected.Load():
	case o == Unanswered || o == Rejected:
		what = "counts"
	case o == MetaNoPermission:
		what = "learn"
	}
	r.local.mu.Lock()
	dec(r.local.busy, t.ks.busy)
	dec(r.local.active, t.ks.nact)
	r.local.mu.Unlock()
	if t.local || !r.available() {
		r.markDirty(t.ks.busy, t.ks.nact)
		if what != "none" {
			r.queue(pendingOp{k: t.k, resid: t.resid, outcome: what})
		}
		return
	}
	if err := r.runFinish(t.k, t.ks, what, true); err != nil {
		r.failed("finish", err)
		r.markDirty(t.ks.busy, t.ks.nact)
		if what != "none" {
			r.queue(pendingOp{k: t.k, resid: t.resid, outcome: what})
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

func (r *Redis) runFinish(k Key, ks pairKeys, what string, release bool) error {
	ctx, cancel := r.opCtx()
	defer cancel()
	lims := r.limits()
	rel := "0"
	if release {
		rel = "1"
	}
	v, err := scriptFinish.Run(ctx, r.rdb, []string{ks.pair, ks.busy, ks.nact}, r.instance, what,
		lims.UnansweredRevoke, rel, revokedRetention.Milliseconds()).Slice()
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
	default:
		if lim := lims.UnansweredNudge; what == "counts" && lim > 0 && streak == int64(lim) {
			r.log.Warn("call permission nudge: consecutive unanswered business-initiated calls; Meta nudges the user to reconsider",
				"phone_number_id", k.PhoneNumberID, "user", k.User, "streak", streak, "revoke_at", lims.UnansweredRevoke)
		}
	}
	return nil
}

// queue keeps an outcome for when Redis returns.
func (r *Redis) queue(op pendingOp) {
	r.local.mu.Lock()
	defer r.local.mu.Unlock()
	if len(r.local.pending) >= maxPending {
		r.local.pending = r.local.pending[1:]
		r.log.Error("redis down too long: an old call outcome was dropped", "limit", maxPending)
	}
	r.local.pending = append(r.local.pending, op)
}

func (r *Redis) markDirty(keys ...string) {
	r.local.mu.Lock()
	for _, k := range keys {
		r.local.dirty[k] = true
	}
	r.local.mu.Unlock()
}

// markAllDirty: the instance key had lapsed, so Redis may have dropped
// every slot this node holds.
func (r *Redis) markAllDirty() {
	r.local.mu.Lock()
	for k := range r.local.busy {
		r.local.dirty[k] = true
	}
	for k := range r.local.active {
		r.local.dirty[k] = true
	}
	r.local.mu.Unlock()
}

// flush rewrites this node's slots that may be wrong in Redis from its
// own count, then writes the outcomes kept during an outage. It stops at
// the first failure; what is left stays for the next try.
func (r *Redis) flush(ctx context.Context) {
	r.local.mu.Lock()
	type slot struct {
		key string
		n   int
	}
	var slots []slot
	for k := range r.local.dirty {
		n := r.local.busy[k]
		if strings.HasPrefix(k, r.prefix+"a:") {
			n = r.local.active[k]
		}
		slots = append(slots, slot{k, n})
	}
	ops := append([]pendingOp(nil), r.local.pending...)
	r.local.mu.Unlock()
	if len(slots) == 0 && len(ops) == 0 {
		return
	}
	for _, s := range slots {
		cctx, cancel := context.WithTimeout(ctx, r.timeout)
		var err error
		if s.n > 0 {
			err = r.rdb.HSet(cctx, s.key, r.instance, s.n).Err()
		} else {
			err = r.rdb.HDel(cctx, s.key, r.instance).Err()
		}
		cancel()
		if err != nil {
			r.failed("resync", err)
			return
		}
		r.local.mu.Lock()
		delete(r.local.dirty, s.key)
		r.local.mu.Unlock()
	}
	done := 0
	for _, op := range ops {
		var err error
		if op.connect {
			err = r.runConnected(r.keys(op.k), op.resid, strconv.FormatInt(op.at, 10))
		} else {
			err = r.runFinish(op.k, r.keys(op.k), op.outcome, false)
		}
		if err != nil {
			r.failed("write back", err)
			break
		}
		done++
	}
	r.local.mu.Lock()
	r.local.pending = r.local.pending[min(done, len(r.local.pending)):]
	r.local.mu.Unlock()
	if done > 0 {
		r.log.Info("call outcomes made while redis was down written back", "outcomes", done)
	}
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

// change runs scriptChange and turns its answer into an error.
func (r *Redis) change(k Key, st state, expires int64, source, at, mode string) (applied bool, err error) {
	if !r.available() {
		return false, unavailable(mode, errors.New("redis down"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout+r.waitT)
	defer cancel()
	k, err = r.resolve(ctx, k)
	if err != nil {
		if errors.Is(err, ErrInvalidKey) {
			return false, fmt.Errorf("%s: %w", mode, err)
		}
		r.failed(mode, err)
		return false, unavailable(mode, err)
	}
	ks := r.keys(k)
	v, err := scriptChange.Run(ctx, r.rdb, []string{ks.pair, r.idxKey()}, int(st), expires, r.limits().ttl().Milliseconds(),
		r.sourceOf(source), at, mode, revokedRetention.Milliseconds(), ks.member, uicRefreshSlack.Milliseconds()).Slice()
	if err == nil && len(v) == 0 {
		err = errGarbage(mode, v)
	}
	if err != nil {
		r.failed(mode, err)
		return false, unavailable(mode, err)
	}
	switch asString(v[0]) {
	case "ok":
		if len(v) >= 3 {
			r.remember(k, state(asInt(v[1])), asInt(v[2]))
		}
		if err := r.durable(ctx); err != nil {
			r.stats.errors.Add(1)
			return false, fmt.Errorf("%s %s: %w", mode, k, err)
		}
		return true, nil
	case "notfound":
		return false, fmt.Errorf("revoke %s: %w", k, ErrNotFound)
	case "stale":
		r.stats.stale.Add(1)
		return false, nil
	case "expired":
		return false, fmt.Errorf("grant %s: %w", k, ErrExpired)
	case "kept":
		return false, nil
	}
	err = errGarbage(mode, v)
	r.failed(mode, err)
	return false, unavailable(mode, err)
}

func (r *Redis) sourceOf(s string) string {
	if len(s) > maxSource {
		return s[:maxSource]
	}
	return s
}

// Grant records an approval (see Cache.Grant); durable when it returns nil.
func (r *Redis) Grant(k Key, permanent bool, expires time.Time, source string) error {
	st, exp := stPermanent, int64(0)
	if !permanent {
		st = stTemporary
		if !expires.IsZero() {
			if exp = expires.UnixMilli(); exp <= 0 {
				return fmt.Errorf("grant %s: %w", k, ErrExpired)
			}
		}
	}
	_, err := r.change(k, st, exp, source, "", "grant")
	return err
}

// Revoke withdraws a permission; ErrNotFound when there is none.
func (r *Redis) Revoke(k Key, source string) error {
	_, err := r.change(k, stNone, 0, source, "", "revoke")
	return err
}

// GrantFromUIC records the temporary permission of a user-initiated call.
func (r *Redis) GrantFromUIC(k Key) {
	if _, err := r.change(k, stTemporary, 0, SourceUIC, "", "uic"); err != nil {
		r.log.Error("permission from user-initiated call not recorded", "key", k.String(), "error", err)
	}
}

// ApplyReply applies a call_permission_reply (see Store).
func (r *Redis) ApplyReply(rep Reply) (bool, error) {
	if rep.BSUID != "" && !IsBSUID(rep.Key.User) {
		if err := r.link(rep.Key.PhoneNumberID, rep.BSUID, rep.Key.User); err != nil && !errors.Is(err, ErrInvalidKey) {
			return false, err
		}
	}
	at := ""
	if !rep.At.IsZero() {
		at = strconv.FormatInt(rep.At.UnixMilli(), 10)
	}
	st, exp := stNone, int64(0)
	if rep.Accept {
		st = stPermanent
		if !rep.Permanent {
			st = stTemporary
			if !rep.Expires.IsZero() {
				if exp = rep.Expires.UnixMilli(); exp <= 0 {
					return false, fmt.Errorf("reply %s: %w", rep.Key, ErrExpired)
				}
			}
		}
	}
	return r.change(rep.Key, st, exp, rep.Source, at, "reply")
}

// link records that a BSUID and a phone number are one user.
func (r *Redis) link(pnid, bsuid, phone string) error {
	bk, err := NormalizeKey(pnid, bsuid)
	if err != nil {
		return fmt.Errorf("link: %w", err)
	}
	pk, err := NormalizeKey(pnid, phone)
	if err != nil {
		return fmt.Errorf("link: %w", err)
	}
	if !IsBSUID(bk.User) || IsBSUID(pk.User) {
		return fmt.Errorf("link %s to %s: %w: want a BSUID and a phone number", bk.User, pk.User, ErrInvalidKey)
	}
	if !r.available() {
		return unavailable("link", errors.New("redis down"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout+r.waitT)
	defer cancel()
	bks, pks := r.keys(bk), r.keys(pk)
	if err := scriptLink.Run(ctx, r.rdb, []string{r.prefix + "l:" + pnid, bks.pair, pks.pair, r.idxKey()},
		bk.User, pk.User, bks.member).Err(); err != nil {
		r.failed("link", err)
		return unavailable("link", err)
	}
	return r.durable(ctx)
}

// UICConnected resets the user's permission-request limits.
func (r *Redis) UICConnected(k Key) {
	if !r.available() {
		return
	}
	ctx, cancel := r.opCtx()
	defer cancel()
	k, err := r.resolve(ctx, k)
	if err != nil {
		return
	}
	if err := r.rdb.Del(ctx, r.keys(k).req).Err(); err != nil {
		r.failed("uic connected", err)
	}
}

// RecordPermissionRequest counts a permission request when it may be sent.
func (r *Redis) RecordPermissionRequest(k Key) Decision {
	if _, err := k.Normalize(); err != nil {
		return decide(RequestCapHit, 0)
	}
	if !r.available() {
		r.stats.refused.Add(1)
		return decide(Unavailable, 0)
	}
	ctx, cancel := r.opCtx()
	defer cancel()
	k, err := r.resolve(ctx, k)
	if err != nil {
		r.failed("request", err)
		r.stats.refused.Add(1)
		return decide(Unavailable, 0)
	}
	ks := r.keys(k)
	lims := r.limits()
	v, err := scriptRequest.Run(ctx, r.rdb, []string{ks.pair, ks.req, ks.restrict}, lims.RequestsPer24h, lims.RequestsPer7d,
		strconv.FormatUint(r.resSeq.Add(1), 36)+"."+r.instance).Slice()
	if err == nil && len(v) < 2 {
		err = errGarbage("request", v)
	}
	if err != nil {
		r.failed("request", err)
		r.stats.refused.Add(1)
		return decide(Unavailable, 0)
	}
	retry := time.Duration(asInt(v[1])) * time.Millisecond
	switch asString(v[0]) {
	case "ok":
		return decide(Allow, 0)
	case "cap":
		return decide(RequestCapHit, retry)
	case "permanent":
		return decide(AlreadyPermanent, 0)
	case "restricted":
		return decide(Restricted, retry)
	}
	r.failed("request", errGarbage("request", v))
	r.stats.refused.Add(1)
	return decide(Unavailable, 0)
}

// Lookup reads a pair with its live counters.
func (r *Redis) Lookup(k Key) (Entry, bool, error) {
	if _, err := k.Normalize(); err != nil {
		return Entry{}, false, nil
	}
	if !r.available() {
		return Entry{}, false, unavailable("lookup", errors.New("redis down"))
	}
	ctx, cancel := r.opCtx()
	defer cancel()
	k, err := r.resolve(ctx, k)
	if err != nil {
		r.failed("lookup", err)
		return Entry{}, false, unavailable("lookup", err)
	}
	ks := r.keys(k)
	v, err := scriptLookup.Run(ctx, r.rdb, []string{ks.pair, ks.calls, ks.req, ks.busy}, r.prefix).Slice()
	if err == nil && len(v) < 12 {
		err = errGarbage("lookup", v)
	}
	if err != nil {
		r.failed("lookup", err)
		return Entry{}, false, unavailable("lookup", err)
	}
	if asInt(v[11]) == 0 {
		return Entry{}, false, nil
	}
	now := asInt(v[0])
	st := state(asInt(v[1]))
	exp := asInt(v[2])
	if st > stPermanent {
		return Entry{}, false, unavailable("lookup", errGarbage("lookup", v))
	}
	en := Entry{
		Key: k, ExpiresAt: msTime(exp), GrantedAt: msTime(asInt(v[3])), UpdatedAt: msTime(asInt(v[4])), Source: asString(v[5]),
		UnansweredStreak: int(asInt(v[6])), ConnectedCalls24h: int(asInt(v[7])), Requests24h: int(asInt(v[8])),
		Requests7d: int(asInt(v[9])), ActiveCalls: int(asInt(v[10])),
	}
	if st == stTemporary && exp <= now {
		st = stNone
	}
	en.Status = st.status()
	return en, true, nil
}

// Entries lists pairs from the index, in (phone-number-id, user) order.
// Index members whose pair is gone (expired) are dropped on the way.
func (r *Redis) Entries(f Filter) ([]Entry, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)
	offset := max(f.Offset, 0)
	lo, hi := "-", "+"
	if f.PhoneNumberID != "" {
		id, err := NormalizePhoneNumberID(f.PhoneNumberID)
		if err != nil {
			return nil, nil
		}
		// '/' sorts just below '0': every "id/…" lies between.
		lo, hi = "["+id+"/", "("+id+"0"
	}
	if !r.available() {
		return nil, unavailable("list", errors.New("redis down"))
	}
	var out []Entry
	skipped := 0
	const batch = 500
	for {
		ctx, cancel := r.opCtx()
		ms, err := r.rdb.ZRangeByLex(ctx, r.idxKey(), &redis.ZRangeBy{Min: lo, Max: hi, Count: batch}).Result()
		cancel()
		if err != nil {
			r.failed("list", err)
			return nil, unavailable("list", err)
		}
		for _, m := range ms {
			k, err := parseStoreKey(m)
			if err != nil {
				continue
			}
			en, ok, err := r.Lookup(k)
			if err != nil {
				return nil, err
			}
			if !ok || en.Key != k {
				ctx, cancel := r.opCtx()
				_ = r.rdb.ZRem(ctx, r.idxKey(), m).Err()
				cancel()
				continue
			}
			if f.Status != "" && en.Status != f.Status {
				continue
			}
			if skipped < offset {
				skipped++
				continue
			}
			out = append(out, en)
			if len(out) == limit {
				return out, nil
			}
		}
		if len(ms) < batch {
			return out, nil
		}
		lo = "(" + ms[len(ms)-1]
	}
}

// Restrict pauses (or, with a zero until, resumes) a number's
// business-initiated calls.
func (r *Redis) Restrict(phoneNumberID string, until time.Time, reason string) error {
	id, err := NormalizePhoneNumberID(phoneNumberID)
	if err != nil {
		return fmt.Errorf("restrict: %w", err)
	}
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	if reason == "" {
		reason = "restricted"
	}
	if !r.available() {
		return unavailable("restrict", errors.New("redis down"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout+r.waitT)
	defer cancel()
	key := r.prefix + "r:" + id
	if until.IsZero() || !until.After(time.Now()) {
		err = r.rdb.Del(ctx, key).Err()
	} else {
		err = r.rdb.Set(ctx, key, reason, 0).Err()
		if err == nil {
			err = r.rdb.PExpireAt(ctx, key, until).Err()
		}
	}
	if err != nil {
		r.failed("restrict", err)
		return unavailable("restrict", err)
	}
	r.log.Warn("business-initiated calling restriction recorded", "phone_number_id", id, "until", until.UTC().Format(time.RFC3339), "reason", reason)
	return r.durable(ctx)
}

// Restrictions lists the numbers paused now.
func (r *Redis) Restrictions() ([]Restriction, error) {
	if !r.available() {
		return nil, unavailable("restrictions", errors.New("redis down"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*r.timeout)
	defer cancel()
	var out []Restriction
	iter := r.rdb.Scan(ctx, 0, r.prefix+"r:*", 200).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		reason, err := r.rdb.Get(ctx, key).Result()
		if err != nil {
			continue
		}
		ttl, err := r.rdb.PTTL(ctx, key).Result()
		if err != nil || ttl <= 0 {
			continue
		}
		out = append(out, Restriction{PhoneNumberID: strings.TrimPrefix(key, r.prefix+"r:"), Until: time.Now().Add(ttl).UTC().Truncate(time.Second), Reason: reason})
	}
	if err := iter.Err(); err != nil {
		r.failed("restrictions", err)
		return nil, unavailable("restrictions", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PhoneNumberID < out[j].PhoneNumberID })
	return out, nil
}

// MessageSeen reports whether a webhook message id was applied.
func (r *Redis) MessageSeen(id string) (bool, error) {
	if id == "" {
		return false, nil
	}
	if !r.available() {
		return false, unavailable("message", errors.New("redis down"))
	}
	ctx, cancel := r.opCtx()
	defer cancel()
	n, err := r.rdb.Exists(ctx, r.prefix+"m:"+id).Result()
	if err != nil {
		r.failed("message", err)
		return false, unavailable("message", err)
	}
	if n > 0 {
		r.stats.replayed.Add(1)
	}
	return n > 0, nil
}

// MarkMessage records an applied webhook message id for the retention.
func (r *Redis) MarkMessage(id string) error {
	if id == "" {
		return nil
	}
	if len(id) > maxMessageID {
		return fmt.Errorf("webhook message id of %d bytes: longer than %d", len(id), maxMessageID)
	}
	if !r.available() {
		return unavailable("message", errors.New("redis down"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout+r.waitT)
	defer cancel()
	if err := r.rdb.Set(ctx, r.prefix+"m:"+id, 1, messageRetention).Err(); err != nil {
		r.failed("message", err)
		return unavailable("message", err)
	}
	return r.durable(ctx)
}

var _ Store = (*Redis)(nil)
