package permissions

import "fmt"

// ClearConnectedCalls forgets the user's connected business-initiated
// calls of the last 24 hours — those wagate counted and those it learned
// from Meta's 403 Business Initiated Connected Call Per Day Limit Hit —
// so that the next call is not refused for the daily cap. It is an
// operator's override (Meta lifted the cap, or the 403 was learned by
// mistake): if Meta still refuses, its next 403 is learned again. The
// permission itself is untouched. ErrNotFound when nothing is known of the
// pair; the change is on disk when it returns nil.
func (c *Cache) ClearConnectedCalls(k Key) error {
	k, err := c.resolve(k).Normalize()
	if err != nil {
		return fmt.Errorf("clear connected calls: %w", err)
	}
	mk, sh := c.key(k, false)
	if sh == nil {
		return fmt.Errorf("clear connected calls of %s: %w", k, ErrNotFound)
	}
	sh.mu.Lock()
	e := sh.m[mk]
	if e == nil {
		sh.mu.Unlock()
		return fmt.Errorf("clear connected calls of %s: %w", k, ErrNotFound)
	}
	had := e.ctr != nil && e.ctr.calls.len() > 0
	if had {
		e.ctr.calls.reset()
		e.prune(c.now())
	}
	sh.mu.Unlock()
	if !had {
		// Written anyway: a clear whose write failed (500) has already
		// emptied the window in memory, and the operator's retry must
		// still put that on disk, or a restart brings the cap back.
		return c.persistPairErr(mk, sh)
	}
	c.log.Warn("connected calls of the last 24 h cleared by an operator; the daily cap counts from zero", "phone_number_id", k.PhoneNumberID, "user", k.User)
	return c.persistPairErr(mk, sh)
}
