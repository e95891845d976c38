// Reading the Redis store: one pair with its live counters, and the
// index-ordered listing of pairs (see list.go).

package permissions

import (
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

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
			if !f.Deadline.IsZero() && time.Now().After(f.Deadline) {
				return nil, ErrListTooLong
			}
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
