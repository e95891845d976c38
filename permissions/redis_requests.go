// Permission requests on the Redis store: counting the requests a business
// sends a user, and resetting them when a user-initiated call connects
// (see requests.go).

package permissions

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// UICConnected resets the user's permission-request limits; while Redis
// cannot, the reset is kept and written when it returns.
func (r *Redis) UICConnected(k Key) {
	if err := r.resetRequests(k); err != nil {
		r.queue(pendingOp{k: k, reset: true})
	}
}

func (r *Redis) resetRequests(k Key) error {
	if !r.available() {
		return unavailable("uic connected", errors.New("redis down"))
	}
	ctx, cancel := r.opCtx()
	defer cancel()
	k, err := r.resolve(ctx, k)
	if err == nil {
		err = r.rdb.Del(ctx, r.keys(k).req).Err()
	}
	if err != nil {
		if errors.Is(err, ErrInvalidKey) {
			return nil
		}
		r.failed("uic connected", err)
		return unavailable("uic connected", err)
	}
	return nil
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
	member := strconv.FormatUint(r.resSeq.Add(1), 36) + "." + r.instance
	v, err := scriptRequest.Run(ctx, r.rdb, []string{ks.pair, ks.req, ks.restrict}, lims.RequestsPer24h, lims.RequestsPer7d,
		member).Slice()
	if err == nil && len(v) < 2 {
		err = errGarbage("request", v)
	}
	if err != nil {
		// The script may have counted the request (its answer lost):
		// the caller is told 503, so it was not sent, and must not
		// count. Taken back before the store is up again.
		r.uncount(ks.req, member)
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

// uncountedMax bounds the requests kept to take back while Redis is down.
const uncountedMax = 10_000

// uncount remembers a permission request or a call that may have been
// counted (member of the sorted set reqKey) although it was refused (see
// takeBack).
func (r *Redis) uncount(reqKey, member string) {
	r.local.mu.Lock()
	defer r.local.mu.Unlock()
	if len(r.local.uncounted) >= uncountedMax {
		r.local.uncounted = r.local.uncounted[1:]
	}
	r.local.uncounted = append(r.local.uncounted, uncounted{reqKey, member})
}

// takeBack removes the requests and calls that failed from Redis's counts
// (the script's own member, so at most what it added); the loop runs it before
// the store is up again, so that no retry is counted before. False when
// Redis failed.
func (r *Redis) takeBack(ctx context.Context) bool {
	r.local.mu.Lock()
	todo := append([]uncounted(nil), r.local.uncounted...)
	r.local.mu.Unlock()
	if len(todo) == 0 {
		return true
	}
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	_, err := r.rdb.Pipelined(cctx, func(p redis.Pipeliner) error {
		for _, u := range todo {
			p.ZRem(cctx, u.key, u.member)
		}
		return nil
	})
	if err != nil {
		r.failed("take back a refused permission request", err)
		return false
	}
	r.local.mu.Lock()
	r.local.uncounted = r.local.uncounted[min(len(todo), len(r.local.uncounted)):]
	r.local.mu.Unlock()
	return true
}
