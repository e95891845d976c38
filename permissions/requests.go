package permissions

import "time"

// RecordPermissionRequest asks whether the business may send this user a
// call-permission request now and, when it may, counts it. Meta allows
// RequestsPer24h in any 24 hours and RequestsPer7d in any 7 days; a
// connected call resets both. A refused request is not counted; its
// Retry-After is when both windows have room again.
func (c *Cache) RecordPermissionRequest(k Key) Decision {
	k, err := c.resolve(k).Normalize()
	if err != nil {
		return decide(RequestCapHit, 0)
	}
	now := c.now()
	if r, ok := c.restricted(k.PhoneNumberID, now); ok {
		return restrictedDecision(r, now)
	}
	lims := c.limits()
	lim24, lim7 := lims.RequestsPer24h, lims.RequestsPer7d
	keep := max(lim24, lim7)
	mk, sh := c.key(k, true)
	sh.mu.Lock()
	e := sh.getOrCreate(mk)
	if e.state(now) == stPermanent {
		// Meta refuses to ask a user who already said "always" (138017).
		sh.mu.Unlock()
		return decide(AlreadyPermanent, 0)
	}
	if keep <= 0 {
		if e.idle() {
			delete(sh.m, mk)
		}
		sh.mu.Unlock()
		return decide(Allow, 0)
	}
	d := c.countRequest(e, now, lim24, lim7, keep)
	sh.mu.Unlock()
	if d.Allowed() {
		c.persistPair(mk, sh)
	}
	return d
}

// countRequest applies the request windows to a pair whose shard lock the
// caller holds.
func (c *Cache) countRequest(e *entry, now int64, lim24, lim7, keep int) Decision {
	w := &e.counters().requests
	w.prune(now - int64(week))
	n := w.len()
	var retry time.Duration
	refused := false
	if lim24 > 0 && w.countAfter(now-int64(day)) >= lim24 {
		// The (n-lim24)th event is inside the last 24 hours because at
		// least lim24 of them are; when it ages out there is room.
		refused = true
		retry = max(retry, time.Duration(w.at(n-lim24)+int64(day)-now))
	}
	if lim7 > 0 && n >= lim7 {
		refused = true
		retry = max(retry, time.Duration(w.at(n-lim7)+int64(week)-now))
	}
	if refused {
		e.prune(now) // drops the counters created for nothing
		return decide(RequestCapHit, retry)
	}
	w.add(now, keep)
	return decide(Allow, 0)
}
