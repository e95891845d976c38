package permissions

import (
	"sync"
	"time"
)

// Change is one change of a pair's permission as the cache makes it: a
// grant (API, Meta's webhook, a user-initiated call), a revocation (API,
// Meta's reject, the unanswered streak) or the lapse of a temporary grant.
type Change struct {
	Key Key
	// Status is the new status, Previous the one before the change.
	Status, Previous Status
	// ExpiresAt is the expiry of a new temporary grant, or for a lapse
	// (Source SourceExpired) the expiry that passed; zero otherwise.
	ExpiresAt time.Time
	// Source says who made the change: the grant's or revocation's source
	// (api, webhook:…, uic, unanswered) or SourceExpired.
	Source string
}

// SourceExpired is the source of a Change that reports a temporary grant
// past its expiry (Meta sends no webhook for it).
const SourceExpired = "expired"

// maxPendingChanges bounds the lapses found at load that are kept for the
// first observer.
const maxPendingChanges = 10000

// observer holds the hook that hears about changes, and the lapses found
// while loading the store until a hook is set.
type observer struct {
	mu      sync.Mutex
	fn      func(Change)
	pending []Change
	dropped int // lapses found at load that did not fit in pending
}

// keep holds a change found at load for the first observer.
func (o *observer) keep(ch Change) {
	if len(o.pending) < maxPendingChanges {
		o.pending = append(o.pending, ch)
	} else {
		o.dropped++
	}
}

// SetObserver makes fn hear about every change of a pair's status, or of a
// temporary grant's expiry. fn is called with the pair's lock held, in the
// order the changes are made to that pair: it must return at once (queue
// the change) and must not call the Cache. Temporary grants that lapsed
// while wagate was down are reported to the first fn set, before it
// returns (at most 10,000 of them). A lapse is reported when the cache notices it: at the first
// Admit or Get of the pair after the expiry, at a grant or revocation of
// the pair, or at the sweep (every minute), whichever comes first. Set it
// before the cache is used; nil stops the reports.
func (c *Cache) SetObserver(fn func(Change)) {
	c.obs.mu.Lock()
	defer c.obs.mu.Unlock()
	c.obs.fn = fn
	if fn == nil {
		return
	}
	for _, ch := range c.obs.pending {
		fn(ch)
	}
	if c.obs.dropped > 0 {
		c.log.Warn("permissions that lapsed while wagate was stopped not reported: too many",
			"reported", len(c.obs.pending), "not_reported", c.obs.dropped)
	}
	c.obs.pending, c.obs.dropped = nil, 0
}

// report hands a change to the observer, if any.
func (c *Cache) report(ch Change) {
	c.obs.mu.Lock()
	fn := c.obs.fn
	c.obs.mu.Unlock()
	if fn != nil {
		fn(ch)
	}
}

// noteExpiry reports, once, that the pair's temporary grant lapsed. The
// caller holds the pair's shard lock.
func (c *Cache) noteExpiry(mk mapKey, e *entry, now int64) {
	if e.st != stTemporary || e.expires > now || e.expiryNoted {
		return
	}
	e.expiryNoted = true
	c.report(Change{
		Key:       Key{PhoneNumberID: mk.num.id, User: mk.user},
		Status:    StatusNone,
		Previous:  StatusTemporary,
		ExpiresAt: unixTime(e.expires),
		Source:    SourceExpired,
	})
}

// reportCommit reports the change a committed record made to an entry
// whose status was prev (expiring prevExp). Re-granting the same status is
// no change, except for a temporary grant whose expiry moved.
func (c *Cache) reportCommit(mk mapKey, prev state, prevExp int64, r record) {
	if prev == r.state && (r.state != stTemporary || prevExp == r.expires) {
		return
	}
	ch := Change{
		Key:      Key{PhoneNumberID: mk.num.id, User: mk.user},
		Status:   r.state.status(),
		Previous: prev.status(),
		Source:   r.source,
	}
	if r.state == stTemporary {
		ch.ExpiresAt = unixTime(r.expires)
	}
	c.report(ch)
}
