package permissions

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Click-to-call Idempotency-Keys, shared by the nodes through the same
// Redis as the permissions (key idem:<Idempotency-Key>): a CRM behind a
// load balancer retries wherever its request lands, and a second node
// that did not know the key would call the customer a second time. The
// api package gives the records their meaning; here they are bytes.

// ErrRedisDown is returned by the shared keys' operations while Redis is
// marked down: they fail at once instead of waiting for the timeout.
var ErrRedisDown = errors.New("permissions: redis is down")

// scriptIdemClaim: KEYS key; ARGV record, ttl ms. Sets the record unless
// the key is held, atomically; answers the record held, or nil.
var scriptIdemClaim = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
`)

// scriptIdemRelease: KEYS key; ARGV record. Deletes the key if it still
// holds the record: a claim that lapsed and was taken by another request
// is not this one's to drop.
var scriptIdemRelease = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
`)

func (r *Redis) idemKey(key string) string { return r.prefix + "idem:" + key }

// ClaimIdempotency stores rec under key for ttl unless the key is held,
// and then returns the record held (api.SharedIdempotency).
func (r *Redis) ClaimIdempotency(ctx context.Context, key string, rec []byte, ttl time.Duration) ([]byte, bool, error) {
	if !r.available() {
		return nil, false, ErrRedisDown
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	v, err := scriptIdemClaim.Run(ctx, r.rdb, []string{r.idemKey(key)}, rec, ttl.Milliseconds()).Text()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, true, nil
	case err != nil:
		r.failed("idempotency claim", err)
		return nil, false, fmt.Errorf("permissions: claim idempotency key: %w", err)
	}
	return []byte(v), false, nil
}

// FinishIdempotency replaces key's record with rec for ttl.
func (r *Redis) FinishIdempotency(ctx context.Context, key string, rec []byte, ttl time.Duration) error {
	if !r.available() {
		return ErrRedisDown
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if err := r.rdb.Set(ctx, r.idemKey(key), rec, ttl).Err(); err != nil {
		r.failed("idempotency keep", err)
		return fmt.Errorf("permissions: keep idempotency key: %w", err)
	}
	return nil
}

// ReleaseIdempotency drops key if it still holds rec.
func (r *Redis) ReleaseIdempotency(ctx context.Context, key string, rec []byte) error {
	if !r.available() {
		return ErrRedisDown
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if err := scriptIdemRelease.Run(ctx, r.rdb, []string{r.idemKey(key)}, rec).Err(); err != nil {
		r.failed("idempotency release", err)
		return fmt.Errorf("permissions: release idempotency key: %w", err)
	}
	return nil
}

// GetIdempotency returns key's record, if any.
func (r *Redis) GetIdempotency(ctx context.Context, key string) ([]byte, bool, error) {
	if !r.available() {
		return nil, false, ErrRedisDown
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	v, err := r.rdb.Get(ctx, r.idemKey(key)).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, false, nil
	case err != nil:
		r.failed("idempotency read", err)
		return nil, false, fmt.Errorf("permissions: read idempotency key: %w", err)
	}
	return v, true, nil
}
