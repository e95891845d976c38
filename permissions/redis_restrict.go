// Number restrictions on the Redis store: pausing and resuming a business
// number, and listing the numbers paused (see restrict.go).

package permissions

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Restrict pauses (or, with a zero until, resumes) a number's
// business-initiated calls (see Cache.Restrict: a resume is an operator's,
// and it is kept with the end of the pause it lifted).
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
	lifting := until.IsZero() || !until.After(time.Now())
	if lifting {
		// The operator's lift, for RestrictFromMeta, in one script with
		// the pause's end it reads.
		err = scriptLift.Run(ctx, r.rdb, []string{key, r.restrictIdx(), r.prefix + "m:" + liftKey(id)},
			id, messageRetention.Milliseconds()).Err()
	} else {
		// The pause and its place in the list change together (MULTI).
		// The end in the same command (PXAT): a pause written without
		// it, by a failure between two commands, would never end.
		_, err = r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Do(ctx, "SET", key, reason, "PXAT", until.UnixMilli())
			p.SAdd(ctx, r.restrictIdx(), id)
			return nil
		})
	}
	if err != nil {
		r.failed("restrict", err)
		return unavailable("restrict", err)
	}
	if lifting {
		r.log.Info("business-initiated calling restriction lifted", "phone_number_id", id)
	} else {
		r.log.Warn("business-initiated calling restriction recorded", "phone_number_id", id, "until", until.UTC().Format(time.RFC3339), "reason", reason)
	}
	return r.durable(ctx)
}

// scriptLift: KEYS the number's pause, the pauses' index, the operator's
// last lift; ARGV id, the lift's retention (ms). Ends the pause and keeps
// the lift as "<time ms>:<lifted end ms>" (see Cache's lift): the end is
// the pause's in force, or an earlier lift's when later (a second lift,
// with nothing in force, keeps the first's); empty when unknown. A record
// of the time alone is a wagate's before the end was kept.
var scriptLift = redis.NewScript(luaNow + `
local ended = nil
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then ended = now + ttl end
local prev = redis.call('GET', KEYS[3])
if prev then
  local pe = tonumber(string.match(prev, '^%d+:(%d+)$') or '')
  if pe and (not ended or pe > ended) then ended = pe end
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
local rec = string.format('%.0f:', now)
if ended then rec = rec .. string.format('%.0f', ended) end
redis.call('SET', KEYS[3], rec, 'PX', ARGV[2])
return 1
`)

// RestrictFromMeta records Meta's pause, or its lift, unless Meta sent it
// before the update in force or an operator lifted the number's pause
// after it was sent (see Cache.RestrictFromMeta), in one script so that
// neither another node's update nor a lift can slip between the checks
// and the write.
func (r *Redis) RestrictFromMeta(phoneNumberID string, until, at time.Time, reason string) (MetaResult, error) {
	id, err := NormalizePhoneNumberID(phoneNumberID)
	if err != nil {
		return MetaResult{}, fmt.Errorf("restrict: %w", err)
	}
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	if reason == "" {
		reason = "restricted"
	}
	if !r.available() {
		return MetaResult{}, unavailable("restrict", errors.New("redis down"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout+r.waitT)
	defer cancel()
	sent := ""
	if !at.IsZero() {
		sent = strconv.FormatInt(at.UnixMilli(), 10)
	}
	v, err := scriptMetaPause.Run(ctx, r.rdb,
		[]string{r.prefix + "r:" + id, r.restrictIdx(), r.prefix + "m:" + liftKey(id), r.prefix + "m:" + metaSentKey(id)},
		id, reason, until.UnixMilli(), sent, metaPauseLength.Milliseconds(), liftSkew.Milliseconds(), liftEndSlack.Milliseconds(),
		messageRetention.Milliseconds()).Int64Slice()
	if err == nil && (len(v) != 2 || v[0] < int64(MetaPaused) || v[0] > int64(MetaSuperseded)) {
		err = errGarbage("restrict", v)
	}
	if err != nil {
		r.failed("restrict", err)
		return MetaResult{}, unavailable("restrict", err)
	}
	res := MetaResult{Outcome: MetaOutcome(v[0])}
	switch res.Outcome {
	case MetaSuperseded:
		r.stats.staleMeta.Add(1)
		res.InForceSent = time.UnixMilli(v[1]).UTC()
		return res, nil
	case MetaOperatorLifted:
		return res, nil
	case MetaLifted:
		r.log.Info("business-initiated calling restriction lifted by Meta", "phone_number_id", id)
	default:
		r.log.Warn("business-initiated calling restriction recorded", "phone_number_id", id, "until", until.UTC().Format(time.RFC3339), "reason", reason)
	}
	return res, r.durable(ctx)
}

// scriptMetaPause: KEYS the number's pause, the pauses' index, the
// operator's last lift (scriptLift), when Meta sent the update in force
// (m:metasent:<id>, ms; see Cache's metaSent); ARGV id, reason, until
// (ms), sent (ms, or "" unknown), Meta's pause length, liftSkew,
// liftEndSlack, the retention of the sent time (ms). Answers {outcome,
// the sent time in force}, the outcome a MetaOutcome: superseded when
// sent before the update in force, operator-lifted when it is the pause
// the operator lifted (pauseLifted), else paused (written) or lifted
// (its end has passed), the sent time then kept ("" forgets it: unknown).
var scriptMetaPause = redis.NewScript(luaNow + `
local sent = tonumber(ARGV[4])
local inForce = tonumber(redis.call('GET', KEYS[4]) or '')
if sent and inForce and sent < inForce then return {4, inForce} end
local rec = redis.call('GET', KEYS[3])
local untilMs = tonumber(ARGV[3])
local skew = tonumber(ARGV[6])
if rec then
  local l, e = string.match(rec, '^(%d+):?(%d*)$')
  l, e = tonumber(l), tonumber(e)
  if l and e then
    if untilMs <= e + tonumber(ARGV[7]) and (not sent or sent <= l + skew) then return {3, 0} end
  elseif l then
    if sent then
      if sent + skew <= l then return {3, 0} end
    elseif untilMs + skew <= l + tonumber(ARGV[5]) then
      return {3, 0}
    end
  end
end
if sent then
  redis.call('SET', KEYS[4], ARGV[4], 'PX', ARGV[8])
else
  redis.call('DEL', KEYS[4])
end
if untilMs <= now then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[1])
  return {2, 0}
end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', untilMs)
redis.call('SADD', KEYS[2], ARGV[1])
return {1, 0}
`)

// restrictIdx is the set of the numbers that have (or had) a pause, so
// that listing them reads those, not the whole keyspace.
func (r *Redis) restrictIdx() string { return r.prefix + "rs" }

// Restrictions lists the numbers paused now, from the index; the numbers
// whose pause ended leave it on the way.
func (r *Redis) Restrictions() ([]Restriction, error) {
	if !r.available() {
		return nil, unavailable("restrictions", errors.New("redis down"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*r.timeout)
	defer cancel()
	ids, err := r.rdb.SMembers(ctx, r.restrictIdx()).Result()
	if err != nil {
		r.failed("restrictions", err)
		return nil, unavailable("restrictions", err)
	}
	var out []Restriction
	for len(ids) > 0 {
		batch := ids[:min(len(ids), 500)]
		ids = ids[len(batch):]
		reasons := make([]*redis.StringCmd, len(batch))
		ttls := make([]*redis.DurationCmd, len(batch))
		_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, id := range batch {
				reasons[i] = p.Get(ctx, r.prefix+"r:"+id)
				ttls[i] = p.PTTL(ctx, r.prefix+"r:"+id)
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			r.failed("restrictions", err)
			return nil, unavailable("restrictions", err)
		}
		var ended []any
		for i, id := range batch {
			reason, rerr := reasons[i].Result()
			ttl, terr := ttls[i].Result()
			if rerr != nil || terr != nil || ttl <= 0 {
				ended = append(ended, id)
				continue
			}
			out = append(out, Restriction{PhoneNumberID: id, Until: time.Now().Add(ttl).UTC().Truncate(time.Second), Reason: reason})
		}
		if len(ended) > 0 {
			_ = r.rdb.SRem(ctx, r.restrictIdx(), ended...).Err()
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PhoneNumberID < out[j].PhoneNumberID })
	return out, nil
}

// indexRestrictions adds to the index the pauses written before it
// existed (wagate before this index), once per start, in the
// background: it scans the keyspace, which takes as long as it takes and
// must not count as Redis failing.
func (r *Redis) indexRestrictions(ctx context.Context) {
	done := r.restrictIdx() + ":complete"
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	had, err := r.rdb.Exists(cctx, done).Result()
	cancel()
	if err != nil || had > 0 {
		return // indexed by an earlier start (or Redis is failing: next start)
	}
	// One SCAN step and the SADD of what it found at a time, each
	// within the timeout; a step that fails is tried again (a busy
	// Redis), up to 10 times in a row.
	var cursor uint64
	n, fails := 0, 0
	for {
		cctx, cancel := context.WithTimeout(ctx, r.timeout)
		keys, next, err := r.rdb.Scan(cctx, cursor, r.prefix+"r:*", 1000).Result()
		var ids []any
		for _, key := range keys {
			if id := strings.TrimPrefix(key, r.prefix+"r:"); id != key {
				if _, nerr := NormalizePhoneNumberID(id); nerr == nil {
					ids = append(ids, id)
				}
			}
		}
		if err == nil && len(ids) > 0 {
			err = r.rdb.SAdd(cctx, r.restrictIdx(), ids...).Err()
		}
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if fails++; fails > 10 {
				r.log.Warn("indexing the pauses of business numbers stopped; pauses recorded before this version may be missing from GET /v1/restrictions until the next start",
					"error", err)
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		fails = 0
		n += len(ids)
		if cursor = next; cursor == 0 {
			break
		}
	}
	cctx, cancel = context.WithTimeout(ctx, r.timeout)
	_ = r.rdb.Set(cctx, done, 1, 0).Err()
	cancel()
	if n > 0 {
		r.log.Info("pauses of business numbers recorded before their index indexed", "numbers", n)
	}
}
