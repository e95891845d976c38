package permissions

import (
	"errors"
	"fmt"
)

// SourceMetaRefused marks a permission wagate learned was gone because Meta
// answered a call with 403 No Approved Call Permission Found.
const SourceMetaRefused = "meta:no_permission"

// ApplyReply applies one call_permission_reply (see Store). The reply's
// time becomes the pair's updated_at, so that replies are ordered by when
// the user answered, not by when the webhook arrived: a late or replayed
// reply older than the pair's last change is ignored (applied false).
func (c *Cache) ApplyReply(r Reply) (bool, error) {
	if r.BSUID != "" && !IsBSUID(r.Key.User) {
		if err := c.link(r.Key.PhoneNumberID, r.BSUID, r.Key.User); err != nil && !errors.Is(err, ErrInvalidKey) {
			return false, err
		}
	}
	k, err := c.resolve(r.Key).Normalize()
	if err != nil {
		return false, fmt.Errorf("reply: %w", err)
	}
	now := c.now()
	at := now
	if !r.At.IsZero() {
		at = min(r.At.UnixNano(), now)
	}
	rec := record{state: stPermanent, granted: at, updated: at, source: r.Source}
	switch {
	case !r.Accept:
		// Recorded even when there was no grant: its time orders a late
		// accept the user sent before it.
		rec = record{state: stNone, updated: at, source: r.Source}
	case !r.Permanent:
		rec.state = stTemporary
		if r.Expires.IsZero() {
			rec.expires = at + int64(c.limits().ttl())
		} else {
			rec.expires = r.Expires.UnixNano()
		}
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if mk, sh := c.key(k, false); sh != nil {
		sh.mu.Lock()
		e := sh.m[mk]
		stale := e != nil && e.persisted && at < e.updated
		if stale && lateAcceptOverUIC(e, rec, now) {
			// The user accepted before calling in, and Meta delivered the
			// accept after the call's callback grant: the grant is our
			// inference, the accept the user's word. It keeps the later
			// time, so that replies are still ordered after it.
			stale, rec.updated = false, e.updated
		}
		sh.mu.Unlock()
		if stale {
			c.ext.stale.Add(1)
			return false, nil
		}
	}
	if rec.state == stTemporary && rec.expires <= now {
		return false, fmt.Errorf("grant %s: %w", k, ErrExpired)
	}
	if err := c.commit(k, rec); err != nil {
		return false, err
	}
	return true, nil
}

// lateAcceptOverUIC reports whether rec, an accept older than e's last
// change, still applies: e is the temporary grant a user-initiated call
// made (callback permission) and rec grants more — permanent, or a later
// expiry. A newer revocation, or a grant the user or an operator made, is
// never overridden by an older reply. The caller holds e's shard lock.
func lateAcceptOverUIC(e *entry, rec record, now int64) bool {
	if e.source != SourceUIC || e.state(now) != stTemporary {
		return false
	}
	return rec.state == stPermanent || (rec.state == stTemporary && rec.expires > e.expires)
}

// UICConnected resets the user's permission-request counters: a connected
// call, user-initiated too, resets Meta's request limits.
func (c *Cache) UICConnected(k Key) {
	k, err := c.resolve(k).Normalize()
	if err != nil {
		return
	}
	mk, sh := c.key(k, false)
	if sh == nil {
		return
	}
	sh.mu.Lock()
	e := sh.m[mk]
	changed := e != nil && e.ctr != nil && e.ctr.requests.len() > 0
	if changed {
		e.ctr.requests.reset()
		e.prune(c.now())
	}
	sh.mu.Unlock()
	if changed {
		c.persistPair(mk, sh)
	}
}

// Stats are the embedded store's counters.
func (c *Cache) Stats() Stats {
	b := "memory"
	if c.store != nil {
		b = "bbolt"
	}
	return Stats{
		Backend:             b,
		Up:                  true,
		Errors:              c.ext.errors.Load(),
		LearnedNoPermission: c.ext.learned.Load(),
		LearnedDailyCap:     c.ext.learnedCap.Load(),
		StaleReplies:        c.ext.stale.Load(),
		ReplayedMessages:    c.ext.replayed.Load(),
		StaleAccountUpdates: c.ext.staleMeta.Load(),
		RestrictedRefusals:  c.ext.restricted.Load(),
	}
}
