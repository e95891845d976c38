// Permission requests on the Redis store: counting the requests a business
// sends a user, and resetting them when a user-initiated call connects
// (see requests.go).

package permissions

import (
	"strconv"
	"time"
)

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
