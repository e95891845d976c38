package permissions

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Counters on disk. Memory stays the authority (Admit answers from it), but
// every change of a counter is written before the call that made it
// returns, so that a restart — kill -9 included — forgets nothing: the
// connected calls of a user's 24 hours, the unanswered streak, the
// permission requests, and each business number's new calls of the last 24
// hours. Calls in progress (busy, concurrency) are not written: a restarted
// node has none.
//
// Writes go through bbolt's Batch, which folds the writes of concurrent
// calls into one fsync; each write re-reads the pair from memory inside its
// transaction, so whichever transaction commits last writes the newest
// state and an older snapshot can never overwrite a newer one.

var (
	bucketCounters = []byte("counters")     // "pnid/user" → encodeCounters
	bucketNumCalls = []byte("numcalls")     // pnid → bucket of (time, seq) keys
	bucketAliases  = []byte("aliases")      // "pnid/BSUID" → "+phone"
	bucketRestrict = []byte("restrictions") // pnid → until (8 bytes) + reason
	bucketMessages = []byte("messages")     // webhook message id → applied at (8 bytes)
)

// batchDelay is how long a write waits for others to share its fsync. It
// is added to every counter write, so it stays far below a disk's fsync.
const batchDelay = 200 * time.Microsecond

// counterVersion is the first byte of a pair's counter record.
const counterVersion = 1

// encodeCounters is a pair's counters: version, streak (2 bytes), the
// number of connected-call and request times (2 bytes each), then the
// times (8 bytes each, Unix ns). nil when there is nothing to keep.
func encodeCounters(e *entry) []byte {
	var calls, reqs *window
	if e.ctr != nil {
		calls, reqs = &e.ctr.calls, &e.ctr.requests
	}
	nc, nr := 0, 0
	if calls != nil {
		nc, nr = calls.len(), reqs.len()
	}
	if e.streak == 0 && nc == 0 && nr == 0 {
		return nil
	}
	b := make([]byte, 7+8*(nc+nr))
	b[0] = counterVersion
	binary.BigEndian.PutUint16(b[1:], e.streak)
	binary.BigEndian.PutUint16(b[3:], uint16(nc))
	binary.BigEndian.PutUint16(b[5:], uint16(nr))
	off := 7
	for i := 0; i < nc; i++ {
		binary.BigEndian.PutUint64(b[off:], uint64(calls.at(i)))
		off += 8
	}
	for i := 0; i < nr; i++ {
		binary.BigEndian.PutUint64(b[off:], uint64(reqs.at(i)))
		off += 8
	}
	return b
}

// decodedCounters is a counter record read back.
type decodedCounters struct {
	streak      uint16
	calls, reqs []int64
}

func decodeCounters(b []byte) (decodedCounters, error) {
	var d decodedCounters
	if len(b) < 7 || b[0] != counterVersion {
		return d, fmt.Errorf("counter record of %d bytes, version %v: unreadable", len(b), b[:min(1, len(b))])
	}
	d.streak = binary.BigEndian.Uint16(b[1:])
	nc, nr := int(binary.BigEndian.Uint16(b[3:])), int(binary.BigEndian.Uint16(b[5:]))
	if len(b) != 7+8*(nc+nr) {
		return d, fmt.Errorf("counter record of %d bytes holds %d+%d times: truncated", len(b), nc, nr)
	}
	off := 7
	for i := 0; i < nc; i++ {
		d.calls = append(d.calls, int64(binary.BigEndian.Uint64(b[off:])))
		off += 8
	}
	for i := 0; i < nr; i++ {
		d.reqs = append(d.reqs, int64(binary.BigEndian.Uint64(b[off:])))
		off += 8
	}
	return d, nil
}

// openExtraBuckets creates the buckets this file uses, in a store that an
// older wagate may have made without them.
func (s *store) openExtraBuckets() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketCounters, bucketNumCalls, bucketAliases, bucketRestrict, bucketMessages} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
}

// persistPair writes the pair's counters as memory holds them when the
// transaction runs. Errors are logged and counted: the call goes on, and
// memory still enforces the rule until a restart.
func (c *Cache) persistPair(mk mapKey, sh *shard) {
	if err := c.persistPairErr(mk, sh); err != nil {
		c.log.Error("permission counters not persisted; a restart would forget this change", "key", Key{PhoneNumberID: mk.num.id, User: mk.user}.String(), "error", err)
	}
}

// persistPairErr is persistPair for a caller that reports the failure.
func (c *Cache) persistPairErr(mk mapKey, sh *shard) error {
	if c.store == nil {
		return nil
	}
	k := []byte(Key{PhoneNumberID: mk.num.id, User: mk.user}.String())
	err := c.store.db.Batch(func(tx *bolt.Tx) error {
		sh.mu.Lock()
		var v []byte
		if e := sh.m[mk]; e != nil {
			v = encodeCounters(e)
		}
		sh.mu.Unlock()
		b := tx.Bucket(bucketCounters)
		if v == nil {
			return b.Delete(k)
		}
		return b.Put(k, v)
	})
	if err != nil {
		c.ext.errors.Add(1)
		return fmt.Errorf("persist counters of %s: %w", k, err)
	}
	return nil
}

// numCallSeq makes the disk keys of a number's calls unique when two share
// a nanosecond.
var numCallSeq atomic.Uint64

// persistNumberCall records one new call of a business number (its 24-hour
// rate) and returns its disk key; ok is false when nothing was written.
func (c *Cache) persistNumberCall(num *number, at int64) (k [16]byte, ok bool) {
	if c.store == nil {
		return k, false
	}
	binary.BigEndian.PutUint64(k[:], uint64(at))
	binary.BigEndian.PutUint64(k[8:], numCallSeq.Add(1))
	err := c.store.db.Batch(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketNumCalls).CreateBucketIfNotExists([]byte(num.id))
		if err != nil {
			return err
		}
		return b.Put(k[:], nil)
	})
	if err != nil {
		c.ext.errors.Add(1)
		c.log.Error("business number call count not persisted; a restart would forget this call", "phone_number_id", num.id, "error", err)
		return k, false
	}
	return k, true
}

// unpersistNumberCall removes a call persistNumberCall wrote: wagate
// refused it before Meta saw it.
func (c *Cache) unpersistNumberCall(num *number, k [16]byte) {
	err := c.store.db.Batch(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketNumCalls).Bucket([]byte(num.id)); b != nil {
			return b.Delete(k[:])
		}
		return nil
	})
	if err != nil {
		c.ext.errors.Add(1)
		c.log.Error("business number call count not taken back on disk; after a restart it counts until it is 24 hours old",
			"phone_number_id", num.id, "error", err)
	}
}

// loadCounters fills memory with the counters on disk, dropping what left
// its window while wagate was down. Open calls it single-threaded.
func (c *Cache) loadCounters() error {
	now := c.now()
	lims := c.limits()
	var stale [][]byte
	pairs, calls := 0, 0
	err := c.store.db.View(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketCounters).ForEach(func(kb, v []byte) error {
			k, err := parseStoreKey(string(kb))
			if err == nil {
				var d decodedCounters
				if d, err = decodeCounters(v); err == nil {
					c.restoreCounters(k, d, now, lims)
					pairs++
					return nil
				}
			}
			c.log.Error("permission store: skipping unreadable counters", "key", string(kb), "error", err)
			stale = append(stale, append([]byte(nil), kb...))
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketNumCalls).ForEachBucket(func(id []byte) error {
			num := c.number(string(id), true)
			return tx.Bucket(bucketNumCalls).Bucket(id).ForEach(func(kb, _ []byte) error {
				if len(kb) != 16 {
					return nil
				}
				t := int64(binary.BigEndian.Uint64(kb))
				if t > now-int64(day) {
					num.calls.add(t, lims.NewCallsPerNumber24h)
					calls++
				}
				return nil
			})
		})
	})
	if err != nil {
		return fmt.Errorf("load permission counters: %w", err)
	}
	if len(stale) > 0 {
		_ = c.store.db.Update(func(tx *bolt.Tx) error {
			for _, k := range stale {
				_ = tx.Bucket(bucketCounters).Delete(k)
			}
			return nil
		})
	}
	c.log.Info("permission counters loaded", "pairs", pairs, "number_calls_24h", calls)
	return nil
}

// restoreCounters puts one pair's counters back in memory.
func (c *Cache) restoreCounters(k Key, d decodedCounters, now int64, lims *Limits) {
	mk, sh := c.key(k, true)
	e := sh.getOrCreate(mk)
	e.streak = d.streak
	for _, t := range d.calls {
		if t > now-int64(day) {
			e.counters().calls.add(t, max(lims.ConnectedPerUser24h, len(d.calls)))
		}
	}
	for _, t := range d.reqs {
		if t > now-int64(week) {
			e.counters().requests.add(t, max(lims.RequestsPer24h, lims.RequestsPer7d, len(d.reqs)))
		}
	}
	e.prune(now)
	if e.idle() {
		delete(sh.m, mk)
	}
}

// sweepCounters drops from disk what left its window: counter records of
// pairs memory no longer counts anything for, and each number's calls
// older than 24 hours.
func (c *Cache) sweepCounters(now int64) {
	if c.store == nil {
		return
	}
	var cutoff [8]byte
	binary.BigEndian.PutUint64(cutoff[:], uint64(now-int64(day)))
	err := c.store.db.Update(func(tx *bolt.Tx) error {
		var gone [][]byte
		err := tx.Bucket(bucketCounters).ForEach(func(kb, _ []byte) error {
			k, err := parseStoreKey(string(kb))
			if err != nil {
				gone = append(gone, append([]byte(nil), kb...))
				return nil
			}
			mk, sh := c.key(k, false)
			if sh == nil {
				gone = append(gone, append([]byte(nil), kb...))
				return nil
			}
			sh.mu.Lock()
			e := sh.m[mk]
			empty := e == nil || encodeCounters(e) == nil
			sh.mu.Unlock()
			if empty {
				gone = append(gone, append([]byte(nil), kb...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range gone {
			if err := tx.Bucket(bucketCounters).Delete(k); err != nil {
				return err
			}
		}
		nb := tx.Bucket(bucketNumCalls)
		var ids [][]byte
		_ = nb.ForEachBucket(func(id []byte) error { ids = append(ids, append([]byte(nil), id...)); return nil })
		for _, id := range ids {
			b := nb.Bucket(id)
			// Collected first: deleting under a cursor can skip keys.
			var old [][]byte
			cur := b.Cursor()
			for k, _ := cur.First(); k != nil && len(k) >= 8 && bytes.Compare(k[:8], cutoff[:]) <= 0; k, _ = cur.Next() {
				old = append(old, append([]byte(nil), k...))
			}
			for _, k := range old {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			if k, _ := b.Cursor().First(); k == nil {
				if err := nb.DeleteBucket(id); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		c.log.Warn("permission sweep: old counters stay on disk until the next sweep", "error", err)
	}
}
