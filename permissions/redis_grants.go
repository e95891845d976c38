// Grants on the Redis store: approvals, revocations, the temporary
// permission of a user-initiated call, and call_permission_reply webhooks.

package permissions

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

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
		r.sourceOf(source), at, mode, revokedRetention.Milliseconds(), ks.member, uicRefreshSlack.Milliseconds(),
		r.sourceOf(SourceUIC)).Slice()
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

// uicQueue bounds the user-initiated calls' grants waiting for the
// writer; more wait with the outcomes for the next flush.
const uicQueue = 4096

// GrantFromUIC records the temporary permission of a user-initiated call,
// beside the call rather than in its way: the call goes on to ring the
// agent while the grant is written (uicWriter), from the time of the
// call. While Redis cannot take it, it is kept and written when Redis
// returns: the user called, and the business's call back must not be
// refused for an outage of ours.
func (r *Redis) GrantFromUIC(k Key) {
	op := pendingOp{k: k, uic: true, at: nowMs()}
	if r.available() {
		select {
		case r.uicQ <- op:
			return
		default:
		}
	}
	// Redis known down (or the writer behind): kept for the flush, and
	// known here at once for on_down: cache.
	r.queue(op)
	r.rememberUIC(k, op.at+r.limits().ttl().Milliseconds())
}

// uicWriter writes the grants of user-initiated calls until ctx ends,
// then hands those still queued to the flush.
func (r *Redis) uicWriter(ctx context.Context) {
	for {
		select {
		case op := <-r.uicQ:
			r.grantUIC(op)
		case <-ctx.Done():
			for {
				select {
				case op := <-r.uicQ:
					r.queue(op)
				default:
					return
				}
			}
		}
	}
}

func (r *Redis) grantUIC(op pendingOp) {
	_, err := r.change(op.k, stTemporary, 0, SourceUIC, strconv.FormatInt(op.at, 10), "uic")
	switch {
	case err == nil:
	case errors.Is(err, ErrUnavailable):
		r.queue(op)
		r.rememberUIC(op.k, op.at+r.limits().ttl().Milliseconds())
		r.log.Warn("permission from user-initiated call kept until redis answers", "key", op.k.String(), "error", err)
	default:
		r.log.Error("permission from user-initiated call not recorded", "key", op.k.String(), "error", err)
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

// rememberUIC lets on_down: cache admit the call back of a user who called
// while Redis was down, unless this node knows a longer grant.
func (r *Redis) rememberUIC(k Key, exp int64) {
	nk, err := k.Normalize()
	if err != nil || r.onDown != OnDownCache {
		return
	}
	r.local.mu.Lock()
	p, ok := r.local.seen[nk]
	r.local.mu.Unlock()
	if ok && (p.st == stPermanent || (p.st == stTemporary && p.exp >= exp)) {
		return
	}
	r.remember(nk, stTemporary, exp)
}
