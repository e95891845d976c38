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
// the pause. A lift is an operator's: it is remembered (lift) so that a
// replay of Meta's pause it lifted does not bring the pause back
// (RestrictFromMeta). Durable when it returns nil.
func (c *Cache) Restrict(phoneNumberID string, until time.Time, reason string) error {
	id, err := NormalizePhoneNumberID(phoneNumberID)
	if err != nil {
		return fmt.Errorf("restrict: %w", err)
	}
	c.ext.restrictMu.Lock()
	defer c.ext.restrictMu.Unlock()
	return c.restrict(id, until, reason, true)
}

// RestrictFromMeta records Meta's pause (account_update), sent at at (zero
// when the webhook had no time), unless it is the pause an operator lifted
// (pauseLifted): applied false then. Account updates carry no message id,
// so a replay is told by its end and time against the lift.
func (c *Cache) RestrictFromMeta(phoneNumberID string, until, at time.Time, reason string) (bool, error) {
	id, err := NormalizePhoneNumberID(phoneNumberID)
	if err != nil {
		return false, fmt.Errorf("restrict: %w", err)
	}
	c.ext.restrictMu.Lock()
	defer c.ext.restrictMu.Unlock()
	c.ext.mu.RLock()
	l, ok := c.ext.lifts[id]
	c.ext.mu.RUnlock()
	if ok && l.at > c.now()-int64(messageRetention) && pauseLifted(until, at, l) {
		return false, nil
	}
	return true, c.restrict(id, until, reason, false)
}

// lift is an operator's lift of a number's pause (DELETE
// /v1/restrictions/…): when it was made, by wagate's clock, and the end of
// the pause it lifted — the latest of those lifted within the retention —
// (Unix ns; 0 unknown: no pause was in force, or the record was written
// by a wagate that kept only the time).
type lift struct{ at, until int64 }

// liftPrefix keys an operator's lift among the applied webhook message
// ids, kept as long as they are (messageRetention), which is as long as a
// webhook can be replayed (MaxMessageAge). Meta's message ids (wamid.…)
// never take this form.
const liftPrefix = "lift:"

func liftKey(id string) string { return liftPrefix + id }

// encodeLift writes the lift's time and the lifted pause's end; a record
// of 8 bytes (the time alone) is a wagate's before the end was kept.
func encodeLift(l lift) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b, uint64(l.at))
	binary.BigEndian.PutUint64(b[8:], uint64(l.until))
	return b
}

func decodeLift(b []byte) (lift, bool) {
	switch len(b) {
	case 8:
		return lift{at: int64(beUint64(b))}, true
	case 16:
		return lift{at: int64(beUint64(b)), until: int64(beUint64(b[8:]))}, true
	}
	return lift{}, false
}

// metaPauseLength is how long Meta pauses business-initiated calling.
const metaPauseLength = 7 * day

// liftSkew is how far Meta's entry time (whole seconds, by Meta's clock)
// may be from the lift's time (by wagate's) and still be taken for the
// same moment: the second the entry time drops and the clocks' difference.
const liftSkew = time.Minute

// liftEndSlack: ends compared to the second (Meta's expirations are whole
// seconds; Redis keeps the lifted end to the millisecond).
const liftEndSlack = time.Second

// pauseLifted says whether Meta's pause (ending at until, sent at at, zero
// when unknown) is one the operator's lift l ended, so that applying it
// would bring back what the operator lifted.
//
// With the lifted pause's end known, by the end: a redelivery or replay
// carries the same expiration, and a new pause — Meta's clock may put it in
// the lift's second, or before the lift when it was delayed — ends later
// (7 days after its own feedback). A pause ending no later is ignored when
// it was sent before the lift (within liftSkew): Meta's statement, after
// the lift, that the pause is still in force applies.
//
// With the end unknown, by the time, erring towards applying (a pause
// wrongly ignored lets wagate place calls Meta refuses, quietly hurting the
// business's quality; one wrongly applied is visible in GET
// /v1/restrictions and lifted again): ignored only when sent liftSkew or
// more before the lift, or, undated, when it ends liftSkew or more before
// a pause begun at the lift would.
func pauseLifted(until, at time.Time, l lift) bool {
	if l.until != 0 {
		return until.UnixNano() <= l.until+int64(liftEndSlack) &&
			(at.IsZero() || at.UnixNano() <= l.at+int64(liftSkew))
	}
	if !at.IsZero() {
		return at.UnixNano()+int64(liftSkew) <= l.at
	}
	return until.UnixNano()+int64(liftSkew) <= l.at+int64(metaPauseLength)
}

// restrict writes a pause, or its lift; the caller holds restrictMu.
func (c *Cache) restrict(id string, until time.Time, reason string, byOperator bool) error {
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	now := c.now()
	lifting := until.IsZero() || until.UnixNano() <= now
	var rec *lift
	if lifting && byOperator {
		// The end of the pause lifted now, or of one lifted before
		// (within the retention) when later: a second lift, with
		// nothing in force, must not forget the first.
		l := lift{at: now}
		c.ext.mu.RLock()
		if r, ok := c.ext.restrictions[id]; ok {
			l.until = r.Until.UnixNano()
		}
		if p, ok := c.ext.lifts[id]; ok && p.at > now-int64(messageRetention) && p.until > l.until {
			l.until = p.until
		}
		c.ext.mu.RUnlock()
		rec = &l
	}
	r := Restriction{PhoneNumberID: id, Until: until.UTC(), Reason: reason}
	if c.store != nil {
		err := c.store.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketRestrict)
			if rec != nil {
				if err := tx.Bucket(bucketMessages).Put([]byte(liftKey(id)), encodeLift(*rec)); err != nil {
					return err
				}
			}
			if lifting {
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
	if lifting {
		delete(c.ext.restrictions, id)
	} else {
		c.ext.restrictions[id] = r
	}
	if rec != nil {
		c.ext.lifts[id] = *rec
	}
	c.ext.mu.Unlock()
	if lifting {
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
