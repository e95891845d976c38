// Number restrictions on the Redis store: pausing and resuming a business
// number, and listing the numbers paused (see restrict.go).

package permissions

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

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
		// The end in the same command (PXAT): a pause written without
		// it, by a failure between two commands, would never end.
		err = r.rdb.Do(ctx, "SET", key, reason, "PXAT", until.UnixMilli()).Err()
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
