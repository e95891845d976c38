package permissions

import (
	"encoding/binary"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// maxReason bounds a restriction's reason as stored and shown.
const maxReason = 200

func encodeRestriction(r Restriction) []byte {
	b := make([]byte, 8+len(r.Reason))
	binary.BigEndian.PutUint64(b, uint64(r.Until.UnixNano()))
	copy(b[8:], r.Reason)
	return b
}

func decodeRestriction(pnid string, b []byte) (Restriction, bool) {
	if len(b) < 8 {
		return Restriction{}, false
	}
	return Restriction{PhoneNumberID: pnid, Until: time.Unix(0, int64(beUint64(b))).UTC(), Reason: string(b[8:])}, true
}

func beUint64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

// Restrict pauses business-initiated calls and permission requests from a
// business number until until (Meta's RESTRICTED_BUSINESS_INITIATED_CALLING,
// 7 days after negative feedback); a zero until, or one in the past, lifts
// the pause. A lift is an operator's: its time is remembered (liftKey) so
// that a replay of Meta's pause from before it does not bring the pause
// back (RestrictFromMeta). Durable when it returns nil.
func (c *Cache) Restrict(phoneNumberID string, until time.Time, reason string) error {
	return c.restrict(phoneNumberID, until, reason, true)
}

// RestrictFromMeta records Meta's pause (account_update), sent at at (zero
// when the webhook had no time), unless an operator lifted the number's
// pause after it was sent (pauseBeforeLift): applied false then. Account
// updates carry no message id, so a replay is told by its time.
func (c *Cache) RestrictFromMeta(phoneNumberID string, until, at time.Time, reason string) (bool, error) {
	id, err := NormalizePhoneNumberID(phoneNumberID)
	if err != nil {
		return false, fmt.Errorf("restrict: %w", err)
	}
	c.ext.mu.RLock()
	lifted, ok := c.ext.seen[liftKey(id)]
	c.ext.mu.RUnlock()
	if ok && lifted > c.now()-int64(messageRetention) && pauseBeforeLift(until, at, lifted) {
		return false, nil
	}
	return true, c.restrict(id, until, reason, false)
}

// liftKey is where an operator's lift of a number's pause is remembered:
// among the applied webhook message ids, for their retention, which is as
// long as a webhook can be replayed (MaxMessageAge). Meta's message ids
// (wamid.…) never take this form.
func liftKey(id string) string { return "lift:" + id }

// metaPauseLength is how long Meta pauses business-initiated calling.
const metaPauseLength = 7 * day

// pauseBeforeLift says whether Meta's pause (sent at at, ending at until)
// is from before an operator's lift at lifted (Unix ns): sent no later
// than the lift; or, with no time sent, ending no later than a pause
// begun at the lift would (the pause the operator lifted began before it;
// a new one after it ends later).
func pauseBeforeLift(until, at time.Time, lifted int64) bool {
	if !at.IsZero() {
		return at.UnixNano() <= lifted
	}
	return until.UnixNano() <= lifted+int64(metaPauseLength)
}

func (c *Cache) restrict(phoneNumberID string, until time.Time, reason string, byOperator bool) error {
	id, err := NormalizePhoneNumberID(phoneNumberID)
	if err != nil {
		return fmt.Errorf("restrict: %w", err)
	}
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	now := c.now()
	lift := until.IsZero() || until.UnixNano() <= now
	liftRecord := lift && byOperator
	r := Restriction{PhoneNumberID: id, Until: until.UTC(), Reason: reason}
	if c.store != nil {
		err := c.store.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketRestrict)
			if liftRecord {
				var v [8]byte
				binary.BigEndian.PutUint64(v[:], uint64(now))
				if err := tx.Bucket(bucketMessages).Put([]byte(liftKey(id)), v[:]); err != nil {
					return err
				}
			}
			if lift {
				return b.Delete([]byte(id))
			}
			return b.Put([]byte(id), encodeRestriction(r))
		})
		if err != nil {
			c.ext.errors.Add(1)
			return fmt.Errorf("persist restriction of %s: %w", id, err)
		}
	}
	c.ext.mu.Lock()
	if lift {
		delete(c.ext.restrictions, id)
	} else {
		c.ext.restrictions[id] = r
	}
	if liftRecord {
		c.ext.seen[liftKey(id)] = now
	}
	c.ext.mu.Unlock()
	if lift {
		c.log.Info("business-initiated calling restriction lifted", "phone_number_id", id)
	} else {
		c.log.Warn("business-initiated calling restricted by Meta: calls from this number are refused until the expiry",
			"phone_number_id", id, "until", r.Until.Format(time.RFC3339), "reason", reason)
	}
	return nil
}

// restricted returns the number's restriction in force at now.
func (c *Cache) restricted(id string, now int64) (Restriction, bool) {
	c.ext.mu.RLock()
	r, ok := c.ext.restrictions[id]
	c.ext.mu.RUnlock()
	if !ok || r.Until.UnixNano() <= now {
		return Restriction{}, false
	}
	return r, true
}

// Restrictions lists the numbers paused now, by phone-number-id.
func (c *Cache) Restrictions() ([]Restriction, error) {
	now := c.now()
	c.ext.mu.RLock()
	out := make([]Restriction, 0, len(c.ext.restrictions))
	for _, r := range c.ext.restrictions {
		if r.Until.UnixNano() > now {
			out = append(out, r)
		}
	}
	c.ext.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].PhoneNumberID < out[j].PhoneNumberID })
	return out, nil
}

// restrictedDecision is the refusal of a call or request from a paused
// number: Retry-After is the pause's end.
func restrictedDecision(r Restriction, now int64) Decision {
	return decide(Restricted, time.Duration(r.Until.UnixNano()-now))
}

// sweepRestrictions forgets pauses that ended.
func (c *Cache) sweepRestrictions(now int64) {
	var gone []string
	c.ext.mu.Lock()
	for id, r := range c.ext.restrictions {
		if r.Until.UnixNano() <= now {
			delete(c.ext.restrictions, id)
			gone = append(gone, id)
		}
	}
	c.ext.mu.Unlock()
	if len(gone) == 0 || c.store == nil {
		return
	}
	_ = c.store.db.Update(func(tx *bolt.Tx) error {
		for _, id := range gone {
			_ = tx.Bucket(bucketRestrict).Delete([]byte(id))
		}
		return nil
	})
}
