package permissions

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// ClearConnectedCalls forgets the user's connected calls of the last 24
// hours for every node (see Cache.ClearConnectedCalls).
func (r *Redis) ClearConnectedCalls(k Key) error {
	if _, err := k.Normalize(); err != nil {
		return fmt.Errorf("clear connected calls: %w", err)
	}
	if !r.available() {
		return unavailable("clear connected calls", errors.New("redis down"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout+r.waitT)
	defer cancel()
	k, err := r.resolve(ctx, k)
	if err != nil {
		r.failed("clear connected calls", err)
		return unavailable("clear connected calls", err)
	}
	ks := r.keys(k)
	var exists, deleted *redis.IntCmd
	_, err = r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		exists = p.Exists(ctx, ks.pair, ks.req)
		deleted = p.Del(ctx, ks.calls)
		return nil
	})
	if err != nil {
		r.failed("clear connected calls", err)
		return unavailable("clear connected calls", err)
	}
	if deleted.Val() == 0 {
		if exists.Val() == 0 {
			return fmt.Errorf("clear connected calls of %s: %w", k, ErrNotFound)
		}
		return nil
	}
	r.log.Warn("connected calls of the last 24 h cleared by an operator; the daily cap counts from zero", "phone_number_id", k.PhoneNumberID, "user", k.User)
	if err := r.durable(ctx); err != nil {
		return unavailable("clear connected calls", err)
	}
	return nil
}
