// Webhook replay protection on the Redis store: the message ids already
// applied (see replay.go).

package permissions

import (
	"context"
	"errors"
	"fmt"
)

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
