// The Redis store while Redis is down: the outcomes and slot counts a node
// keeps, and the flush that writes them back when Redis returns.

package permissions

import (
	"context"
	"errors"
	"strconv"
	"strings"
)

// queue keeps an outcome for when Redis returns.
func (r *Redis) queue(op pendingOp) {
	r.local.mu.Lock()
	defer r.local.mu.Unlock()
	if len(r.local.pending) >= maxPending {
		r.local.pending = r.local.pending[1:]
		r.log.Error("redis down too long: an old call outcome was dropped", "limit", maxPending)
	}
	r.local.pending = append(r.local.pending, op)
}

func (r *Redis) markDirty(keys ...string) {
	r.local.mu.Lock()
	for _, k := range keys {
		r.local.dirty[k] = true
	}
	r.local.mu.Unlock()
}

// markAllDirty: the instance key had lapsed, so Redis may have dropped
// every slot this node holds.
func (r *Redis) markAllDirty() {
	r.local.mu.Lock()
	for k := range r.local.busy {
		r.local.dirty[k] = true
	}
	for k := range r.local.active {
		r.local.dirty[k] = true
	}
	r.local.mu.Unlock()
}

// resyncBatch is how many slot rewrites go to Redis in one round trip.
const resyncBatch = 1000

// flush rewrites this node's slots that may be wrong in Redis from its
// own count, then writes the outcomes kept during an outage. It stops at
// the first failure; what is left stays for the next try.
func (r *Redis) flush(ctx context.Context) {
	r.local.mu.Lock()
	idle := len(r.local.dirty) == 0 && len(r.local.pending) == 0
	r.local.mu.Unlock()
	if idle || !r.resync(ctx) {
		return
	}
	r.local.mu.Lock()
	ops := append([]pendingOp(nil), r.local.pending...)
	r.local.mu.Unlock()
	done := 0
	for _, op := range ops {
		var err error
		switch {
		case op.uic:
			if _, err = r.change(op.k, stTemporary, 0, SourceUIC, strconv.FormatInt(op.at, 10), "uic"); err != nil && !errors.Is(err, ErrUnavailable) {
				// Not Redis failing (a grant that would already have
				// expired): nothing to retry.
				r.log.Warn("permission from user-initiated call not written back", "key", op.k.String(), "error", err)
				err = nil
			}
		case op.reset:
			err = r.resetRequests(op.k)
		case op.connect:
			err = r.runConnected(r.keys(op.k), op.resid, strconv.FormatInt(op.at, 10))
		default:
			err = r.runFinish(op.k, r.keys(op.k), op.resid, op.outcome, strconv.FormatInt(op.at, 10), false, false)
		}
		if err != nil {
			r.failed("write back", err)
			break
		}
		done++
	}
	r.local.mu.Lock()
	r.local.pending = r.local.pending[min(done, len(r.local.pending)):]
	r.local.mu.Unlock()
	if done > 0 {
		r.log.Info("call outcomes made while redis was down written back", "outcomes", done)
	}
}

// resync writes this node's count into every slot marked dirty, with no
// admission or release of this node in between (r.slots), in batches of
// one round trip each; false when Redis failed (the slots left stay
// dirty). Admissions wait for it: at most a round trip per
// resyncBatch slots, once after an outage.
func (r *Redis) resync(ctx context.Context) bool {
	r.slots.Lock()
	defer r.slots.Unlock()
	type slot struct {
		key string
		n   int
	}
	r.local.mu.Lock()
	slots := make([]slot, 0, len(r.local.dirty))
	for k := range r.local.dirty {
		n := r.local.busy[k]
		if strings.HasPrefix(k, r.prefix+"a:") {
			n = r.local.active[k]
		}
		slots = append(slots, slot{k, n})
	}
	r.local.mu.Unlock()
	for len(slots) > 0 {
		batch := slots[:min(resyncBatch, len(slots))]
		slots = slots[len(batch):]
		cctx, cancel := context.WithTimeout(ctx, r.timeout)
		pipe := r.rdb.Pipeline()
		for _, s := range batch {
			if s.n > 0 {
				pipe.HSet(cctx, s.key, r.instance, s.n)
			} else {
				pipe.HDel(cctx, s.key, r.instance)
			}
		}
		_, err := pipe.Exec(cctx)
		cancel()
		if err != nil {
			r.failed("resync", err)
			return false
		}
		r.local.mu.Lock()
		for _, s := range batch {
			delete(r.local.dirty, s.key)
		}
		r.local.mu.Unlock()
	}
	return true
}
