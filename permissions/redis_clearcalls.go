package permissions

import (
	"context"
	"errors"
	"fmt"
)

// ClearConnectedCalls forgets the user's connected calls of the last 24
// hours for every node (see Cache.ClearConnectedCalls). Outcomes from
// before the clear that a node kept while it could not reach Redis, and
// writes back later, are not counted again (scriptConnected, scriptFinish):
// the operator's clear wins over them.
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
	v, err := scriptClear.Run(ctx, r.rdb, []string{ks.pair, ks.req, ks.calls, ks.cleared}).Int64Slice()
	if err != nil {
		r.failed("clear connected calls", err)
		return unavailable("clear connected calls", err)
	}
	if len(v) < 2 {
		return unavailable("clear connected calls", errGarbage("clear connected calls", v))
	}
	if v[1] == 0 {
		if v[0] == 0 {
			return fmt.Errorf("clear connected calls of %s: %w", k, ErrNotFound)
		}
		// Nothing counted yet, but the clear's time is written: a node
		// that could not reach Redis may still write back a connected
		// call or Meta's daily-cap 403 from before it.
		if err := r.durable(ctx); err != nil {
			return unavailable("clear connected calls", err)
		}
		return nil
	}
	r.log.Warn("connected calls of the last 24 h cleared by an operator; the daily cap counts from zero", "phone_number_id", k.PhoneNumberID, "user", k.User)
	if err := r.durable(ctx); err != nil {
		return unavailable("clear connected calls", err)
	}
	return nil
}
