package permissions

import (
	"context"
	"time"
)

func (c *Cache) sweepLoop(ctx context.Context) {
	defer close(c.done)
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.sweep()
		}
	}
}

// lapsedPair is a pair whose record the sweep found lapsed, with the gen it
// had then: if the gen moved, a newer grant or revocation owns the pair.
type lapsedPair struct {
	mk  mapKey
	sh  *shard
	gen uint32
}

// sweep drops what no longer matters: counter events out of their windows,
// temporary grants past expiry and old revocations (memory and disk), and
// pairs left with nothing. Memory is walked one shard lock at a time; the
// disk is touched once, in one transaction, outside the shard locks.
func (c *Cache) sweep() {
	now := c.now()
	var stale []lapsedPair
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for mk, e := range sh.m {
			e.prune(now)
			if e.persisted && lapsed(record{state: e.st, expires: e.expires, updated: e.updated}, now) {
				stale = append(stale, lapsedPair{mk: mk, sh: sh, gen: e.gen})
			}
			if e.idle() {
				delete(sh.m, mk)
			}
		}
		sh.mu.Unlock()
	}
	c.sweepCounters(now)
	c.sweepMessages(now)
	c.sweepRestrictions(now)
	if len(stale) == 0 {
		return
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	keys := make([]Key, 0, len(stale))
	still := stale[:0]
	for _, p := range stale {
		p.sh.mu.Lock()
		if e := p.sh.m[p.mk]; e != nil && e.gen == p.gen {
			still = append(still, p)
			keys = append(keys, Key{PhoneNumberID: p.mk.num.id, User: p.mk.user})
		}
		p.sh.mu.Unlock()
	}
	if c.store != nil {
		if err := c.store.deleteKeys(keys); err != nil {
			c.log.Warn("permission sweep: lapsed records stay on disk until the next sweep", "error", err)
			return
		}
	}
	for _, p := range still {
		p.sh.mu.Lock()
		if e := p.sh.m[p.mk]; e != nil && e.gen == p.gen {
			c.noteExpiry(p.mk, e, now)
			e.apply(record{}, "")
			e.persisted = false
			e.gen++
			if e.idle() {
				delete(p.sh.m, p.mk)
			}
		}
		p.sh.mu.Unlock()
	}
	c.log.Debug("permission sweep", "dropped", len(still))
}
