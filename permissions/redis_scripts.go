package permissions

import "github.com/redis/go-redis/v9"

// The Redis store's operations, each one Lua script: Redis runs a script
// alone, so an admission on one node and an outcome on another never
// interleave, and N nodes admit exactly what one node would. Every script
// reads the time from Redis (TIME), so that windows and expiries do not
// depend on the nodes' clocks.
//
// Times are Unix milliseconds. Keys (see Redis.keys): a pair's hash p: (st
// 0 none / 1 temporary / 2 permanent, exp, gr, up, src, stk the unanswered
// streak), its connected calls c: and permission requests q: (sorted sets
// of times), its calls in progress b: (hash instance → count); a number's
// new calls n: (sorted set), calls in progress a: (hash instance → count),
// restriction r: (string, expiring); inst:<instance> lives while its node
// refreshes it.

// luaNow is the head of every script: now in ms from Redis's clock.
const luaNow = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local DAY = 86400000
local WEEK = 7 * DAY
`

// luaLive sums the counts of a hash of instance → count whose instances are
// alive, dropping the fields of dead ones: a node that died does not hold
// its calls' slots past its instance key's expiry.
const luaLive = `
local function live(key, prefix)
  local total = 0
  local f = redis.call('HGETALL', key)
  for i = 1, #f, 2 do
    if redis.call('EXISTS', prefix .. 'inst:' .. f[i]) == 1 then
      total = total + tonumber(f[i + 1])
    else
      redis.call('HDEL', key, f[i])
    end
  end
  return total
end
`

// scriptAdmit: KEYS pair, calls, busy, ncalls, nact, restrict; ARGV prefix,
// instance, connected-per-user cap, new-calls-per-number cap, concurrency
// cap, reservation id. Answers {verdict, …}.
var scriptAdmit = redis.NewScript(luaNow + luaLive + `
local rs = redis.call('GET', KEYS[6])
if rs then
  return {'restricted', redis.call('PTTL', KEYS[6]), rs}
end
local h = redis.call('HMGET', KEYS[1], 'st', 'exp')
local st = tonumber(h[1]) or 0
local exp = tonumber(h[2]) or 0
if st == 0 or (st == 1 and exp <= now) then
  return {'none'}
end
local lim = tonumber(ARGV[3])
if lim > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - DAY)
  local n = redis.call('ZCARD', KEYS[2])
  if n >= lim then
    local o = redis.call('ZRANGE', KEYS[2], n - lim, n - lim, 'WITHSCORES')
    return {'cap', tonumber(o[2]) + DAY - now}
  end
end
if live(KEYS[3], ARGV[1]) > 0 then
  return {'busy'}
end
local rate = tonumber(ARGV[4])
if rate > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - DAY)
  local n = redis.call('ZCARD', KEYS[4])
  if n >= rate then
    local o = redis.call('ZRANGE', KEYS[4], n - rate, n - rate, 'WITHSCORES')
    return {'rate', tonumber(o[2]) + DAY - now}
  end
end
lim = tonumber(ARGV[5])
if lim > 0 and live(KEYS[5], ARGV[1]) >= lim then
  return {'conc'}
end
if rate > 0 then
  redis.call('ZADD', KEYS[4], now, ARGV[6])
  redis.call('PEXPIRE', KEYS[4], DAY)
end
redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
redis.call('PEXPIRE', KEYS[3], 2 * DAY)
redis.call('HINCRBY', KEYS[5], ARGV[2], 1)
redis.call('PEXPIRE', KEYS[5], 2 * DAY)
return {'ok', st, exp}
`)

// scriptConnected: KEYS pair, calls, req, cleared; ARGV cap, reservation
// id, at (ms, or "" for now: a replay after an outage gives the call's own
// time). The reservation id as member makes a retried write count once. A
// connection older than an operator's clear of the pair's connected calls
// (cleared) is not counted: written late (a node that could not reach
// Redis), it would undo the clear; it still resets the streak and the
// request limits, which the clear leaves alone.
var scriptConnected = redis.NewScript(luaNow + `
local at = now
if ARGV[3] ~= '' then at = math.min(tonumber(ARGV[3]), now) end
local clr = tonumber(redis.call('GET', KEYS[4]) or '0')
if tonumber(ARGV[1]) > 0 and at > clr then
  redis.call('ZADD', KEYS[2], at, ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - DAY)
  redis.call('PEXPIRE', KEYS[2], DAY)
end
redis.call('DEL', KEYS[3])
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'stk', 0)
end
return 1
`)

// scriptFinish: KEYS pair, busy, nact, the outcome's mark (o:<reservation
// id>), the number's new calls (ncalls), the pair's connected calls
// (calls), when they were last cleared (cleared); ARGV instance, outcome (none | counts | learn | cap),
// revoke-at streak, release (1: give back this instance's busy and
// concurrency slot; 0: a replay), revoked retention (ms), mark's life
// (ms), the reservation id, unsent (1: the call never reached Meta: its
// count toward the number's 24 hours is given back, in the same step as
// its slots), the connected-per-user cap (cap: Meta said the pair is at
// its daily cap; its connected calls are filled up to the cap, at the
// outcome's time), the outcome's time (ms, or "" for now: a write-back
// after an outage gives its own; a cap older than an operator's clear of
// the pair's connected calls, KEYS[7], is not learned again). Answers {streak, what}: what 1 revoked by the streak, 2 revoked because
// Meta said no permission, 3 the daily cap learned. An outcome is
// applied once per reservation: a node whose answer was lost (a timeout
// after Redis ran the script) writes it again, and a second count would
// revoke early (or revoke a newer grant).
var scriptFinish = redis.NewScript(luaNow + `
if ARGV[4] == '1' then
  for i = 2, 3 do
    local v = tonumber(redis.call('HGET', KEYS[i], ARGV[1]) or '0')
    if v <= 1 then
      redis.call('HDEL', KEYS[i], ARGV[1])
    else
      redis.call('HINCRBY', KEYS[i], ARGV[1], -1)
    end
  end
end
if ARGV[8] == '1' then
  redis.call('ZREM', KEYS[5], ARGV[7])
end
local o = ARGV[2]
if o == 'none' or redis.call('EXISTS', KEYS[1]) == 0 then
  return {0, 0}
end
if not redis.call('SET', KEYS[4], 1, 'PX', tonumber(ARGV[6]), 'NX') then
  return {tonumber(redis.call('HGET', KEYS[1], 'stk') or '0'), 0}
end
local h = redis.call('HMGET', KEYS[1], 'st', 'exp')
local st = tonumber(h[1]) or 0
local exp = tonumber(h[2]) or 0
local valid = st == 2 or (st == 1 and exp > now)
local function revoke(src)
  redis.call('HSET', KEYS[1], 'st', 0, 'up', now, 'src', src, 'stk', 0)
  redis.call('HDEL', KEYS[1], 'exp', 'gr')
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]))
end
if o == 'learn' then
  if valid then
    revoke('meta:no_permission')
    return {0, 2}
  end
  return {0, 0}
end
if o == 'cap' then
  local lim = tonumber(ARGV[9])
  local stk = tonumber(redis.call('HGET', KEYS[1], 'stk') or '0')
  if lim <= 0 then
    return {stk, 0}
  end
  local at = now
  if ARGV[10] ~= '' then at = math.min(tonumber(ARGV[10]), now) end
  if at <= tonumber(redis.call('GET', KEYS[7]) or '0') then
    return {stk, 0}
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now - DAY)
  local n = redis.call('ZCARD', KEYS[6])
  for i = n + 1, lim do
    redis.call('ZADD', KEYS[6], at, ARGV[7] .. ':meta-cap:' .. i)
  end
  redis.call('PEXPIRE', KEYS[6], DAY)
  if n < lim then
    return {stk, 3}
  end
  return {stk, 0}
end
local s = redis.call('HINCRBY', KEYS[1], 'stk', 1)
local lim = tonumber(ARGV[3])
if valid and lim > 0 and s >= lim then
  revoke('unanswered')
  return {s, 1}
end
return {s, 0}
`)

// scriptClear: an operator's clear of a pair's connected calls. KEYS pair,
// req, calls, cleared. Answers {known, deleted}: known whether anything is
// known of the pair, deleted whether it had connected calls. The clear's
// time stays a day (the window's length: an older outcome is out of the
// window anyway), so that outcomes from before it written back late do not
// fill the window again.
var scriptClear = redis.NewScript(luaNow + `
local known = redis.call('EXISTS', KEYS[1], KEYS[2])
local deleted = redis.call('DEL', KEYS[3])
if known > 0 or deleted > 0 then
  redis.call('SET', KEYS[4], now, 'PX', DAY)
end
return {known, deleted}
`)

// scriptChange: a grant or revocation. KEYS pair, idx; ARGV state (0 1 2),
// expiry (ms, 0: at + ttl), ttl (ms), source, at (ms or ""), mode (grant |
// revoke | reply | uic), revoked retention (ms), index member, UIC slack
// (ms), the source of a UIC's callback grant. Answers {result, st, exp,
// at}: result ok, notfound (revoke of nothing), stale (a reply older than
// the last change, unless it is an accept granting more than the callback
// grant of a later user-initiated call: Cache.ApplyReply), expired, kept
// (a UIC that would not lengthen the grant).
var scriptChange = redis.NewScript(luaNow + `
local mode = ARGV[6]
local cur = redis.call('HMGET', KEYS[1], 'st', 'exp', 'up', 'src')
local cst = tonumber(cur[1]) or 0
local cexp = tonumber(cur[2]) or 0
local cup = tonumber(cur[3])
local at = now
if ARGV[5] ~= '' then at = math.min(tonumber(ARGV[5]), now) end
local up = at
local st = tonumber(ARGV[1])
local exp = 0
if st == 1 then
  exp = tonumber(ARGV[2])
  if exp == 0 then exp = at + tonumber(ARGV[3]) end
end
if mode == 'reply' and cup and at < cup then
  if cur[4] == ARGV[10] and cst == 1 and cexp > now and (st == 2 or (st == 1 and exp > cexp)) then
    up = cup
  else
    return {'stale'}
  end
end
if mode == 'revoke' and cst == 0 then
  return {'notfound'}
end
if st == 1 and exp <= now then
  return {'expired'}
end
if mode == 'uic' and (cst == 2 or (cst == 1 and cexp >= exp - tonumber(ARGV[9]))) then
  return {'kept'}
end
if st == 0 then
  redis.call('HSET', KEYS[1], 'st', 0, 'up', at, 'src', ARGV[4], 'stk', 0)
  redis.call('HDEL', KEYS[1], 'exp', 'gr')
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[7]))
else
  redis.call('HSET', KEYS[1], 'st', st, 'gr', at, 'up', up, 'src', ARGV[4], 'stk', 0)
  if st == 1 then
    redis.call('HSET', KEYS[1], 'exp', exp)
    redis.call('PEXPIREAT', KEYS[1], exp)
  else
    redis.call('HDEL', KEYS[1], 'exp')
    redis.call('PERSIST', KEYS[1])
  end
end
redis.call('ZADD', KEYS[2], 0, ARGV[8])
return {'ok', st, exp, at}
`)

// scriptRequest: KEYS pair, req, restrict; ARGV per-24h cap, per-7d cap,
// member. Answers {result, retry ms}: ok, cap, permanent, restricted.
var scriptRequest = redis.NewScript(luaNow + `
local rs = redis.call('GET', KEYS[3])
if rs then
  return {'restricted', redis.call('PTTL', KEYS[3]), rs}
end
if tonumber(redis.call('HGET', KEYS[1], 'st') or '0') == 2 then
  return {'permanent', 0}
end
local l24 = tonumber(ARGV[1])
local l7 = tonumber(ARGV[2])
if l24 <= 0 and l7 <= 0 then
  return {'ok', 0}
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - WEEK)
local n = redis.call('ZCARD', KEYS[2])
local n24 = redis.call('ZCOUNT', KEYS[2], '(' .. (now - DAY), '+inf')
local retry = -1
if l24 > 0 and n24 >= l24 then
  local o = redis.call('ZRANGE', KEYS[2], n - l24, n - l24, 'WITHSCORES')
  retry = math.max(retry, tonumber(o[2]) + DAY - now)
end
if l7 > 0 and n >= l7 then
  local o = redis.call('ZRANGE', KEYS[2], n - l7, n - l7, 'WITHSCORES')
  retry = math.max(retry, tonumber(o[2]) + WEEK - now)
end
if retry >= 0 then
  return {'cap', retry}
end
redis.call('ZADD', KEYS[2], now, ARGV[3])
redis.call('PEXPIRE', KEYS[2], WEEK)
return {'ok', 0}
`)

// scriptLookup: KEYS pair, calls, req, busy; ARGV prefix. Answers {now,
// st, exp, gr, up, src, stk, calls24h, req24h, req7d, active, exists}.
var scriptLookup = redis.NewScript(luaNow + luaLive + `
local h = redis.call('HMGET', KEYS[1], 'st', 'exp', 'gr', 'up', 'src', 'stk')
local calls = redis.call('ZCOUNT', KEYS[2], '(' .. (now - DAY), '+inf')
local r24 = redis.call('ZCOUNT', KEYS[3], '(' .. (now - DAY), '+inf')
local r7 = redis.call('ZCOUNT', KEYS[3], '(' .. (now - WEEK), '+inf')
local active = live(KEYS[4], ARGV[1])
local exists = 0
if h[1] or calls > 0 or r7 > 0 or active > 0 then exists = 1 end
return {now, h[1] or '0', h[2] or '0', h[3] or '0', h[4] or '0', h[5] or '', h[6] or '0', calls, r24, r7, active, exists}
`)

// scriptLink: KEYS alias hash, BSUID pair, phone pair, idx; ARGV BSUID,
// phone, BSUID member. Records the link and moves the BSUID's permission to
// the phone number when it is the newer.
var scriptLink = redis.NewScript(`
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 0 then
  return 0
end
local b = redis.call('HMGET', KEYS[2], 'st', 'exp', 'gr', 'up', 'src')
local pup = tonumber(redis.call('HGET', KEYS[3], 'up') or '-1')
local moved = 0
if b[4] and tonumber(b[4]) > pup then
  redis.call('HSET', KEYS[3], 'st', b[1], 'up', b[4], 'src', b[5] or '', 'stk', 0)
  if b[3] then redis.call('HSET', KEYS[3], 'gr', b[3]) else redis.call('HDEL', KEYS[3], 'gr') end
  if b[2] then redis.call('HSET', KEYS[3], 'exp', b[2]) else redis.call('HDEL', KEYS[3], 'exp') end
  local ttl = redis.call('PTTL', KEYS[2])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[3], ttl) else redis.call('PERSIST', KEYS[3]) end
  moved = 1
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[4], ARGV[3])
return moved
`)

// scriptClaim: KEYS node key, instance key, epoch; ARGV instance, ttl
// (ms), node id, a new epoch. Holds the node id for this instance and
// refreshes the instance's life. The epoch names Redis's data set: set
// once, it changes only when Redis lost its data. Answers {1, instance key
// existed before, epoch} or {0, holder, its ttl}.
var scriptClaim = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then
  return {0, cur, redis.call('PTTL', KEYS[1])}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local existed = redis.call('EXISTS', KEYS[2])
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
local epoch = redis.call('GET', KEYS[3])
if not epoch then
  epoch = ARGV[4]
  redis.call('SET', KEYS[3], epoch)
end
return {1, existed, epoch}
`)

// scriptRelease: KEYS node key, instance key; ARGV instance. A node that
// stops cleanly gives its id and slots back at once.
var scriptRelease = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
redis.call('DEL', KEYS[2])
return 1
`)
