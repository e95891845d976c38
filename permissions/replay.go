package permissions

import (
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// messageRetention is how long an applied webhook message id is
// remembered: Meta's retry period (up to 7 days) and a day's margin.
const messageRetention = 8 * day

// MaxMessageAge is the oldest a webhook message may be (by its own
// timestamp, against this node's clock) and still be applied. A message
// that young, if it was applied before, was applied no earlier than its
// timestamp, so its id is still remembered (messageRetention) with 12 h to
// spare for the two clocks' difference: a replay is recognised by its id.
// An older one could have been applied and forgotten, and applying it
// again could undo what happened since (a grant the user revoked, whose
// revocation record lapsed after 30 days): it is refused. It still
// covers Meta's 7 days of retries, so no first delivery is lost.
const MaxMessageAge = messageRetention - 12*time.Hour

// maxMessageID bounds a stored message id (Meta's wamid.… ids are ~60
// characters).
const maxMessageID = 256

// MessageSeen reports whether the webhook message id was applied within
// the retention.
func (c *Cache) MessageSeen(id string) (bool, error) {
	if id == "" {
		return false, nil
	}
	c.ext.mu.RLock()
	at, ok := c.ext.seen[id]
	c.ext.mu.RUnlock()
	seen := ok && at > c.now()-int64(messageRetention)
	if seen {
		c.ext.replayed.Add(1)
	}
	return seen, nil
}

// MarkMessage records that the message id was applied, durably, so that a
// redelivery or a replay after a restart is ignored.
func (c *Cache) MarkMessage(id string) error {
	if id == "" {
		return nil
	}
	if len(id) > maxMessageID {
		return fmt.Errorf("webhook message id of %d bytes: longer than %d", len(id), maxMessageID)
	}
	now := c.now()
	if c.store != nil {
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], uint64(now))
		err := c.store.db.Batch(func(tx *bolt.Tx) error { return tx.Bucket(bucketMessages).Put([]byte(id), v[:]) })
		if err != nil {
			c.ext.errors.Add(1)
			return fmt.Errorf("persist webhook message id: %w", err)
		}
	}
	c.ext.mu.Lock()
	c.ext.seen[id] = now
	c.ext.mu.Unlock()
	return nil
}

// sweepMessages forgets message ids, operators' lifts and the times of
// Meta's updates in force (metaSent), past the retention.
func (c *Cache) sweepMessages(now int64) {
	cut := now - int64(messageRetention)
	var gone []string
	c.ext.mu.Lock()
	for id, at := range c.ext.seen {
		if at <= cut {
			delete(c.ext.seen, id)
			gone = append(gone, id)
		}
	}
	for id, l := range c.ext.lifts {
		if l.at <= cut {
			delete(c.ext.lifts, id)
			gone = append(gone, liftPrefix+id)
		}
	}
	for id, m := range c.ext.metaSent {
		if m.at <= cut {
			delete(c.ext.metaSent, id)
			gone = append(gone, metaSentPrefix+id)
		}
	}
	c.ext.mu.Unlock()
	if len(gone) == 0 || c.store == nil {
		return
	}
	_ = c.store.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMessages)
		for _, id := range gone {
			// Unless written again since (a new lift of the number, a
			// new update of Meta's): its first 8 bytes are its time, as
			// in every record here.
			if l, ok := decodeLift(b.Get([]byte(id))); ok && l.at > cut {
				continue
			}
			_ = b.Delete([]byte(id))
		}
		return nil
	})
}
