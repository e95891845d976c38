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
	_, err = c.restrict(id, until, reason, true, time.Time{})
	return err
}

// MetaOutcome is what RestrictFromMeta did with Meta's account_update.
type MetaOutcome int

const (
	// MetaPaused: the pause was recorded; it is in force until its end.
	MetaPaused MetaOutcome = iota + 1
	// MetaLifted: its end had passed — Meta's lift — and the number's
	// pause, if any, ended.
	MetaLifted
	// MetaOperatorLifted: ignored, it is the pause an operator lifted (a
	// redelivery or replay; pauseLifted).
	MetaOperatorLifted
	// MetaSuperseded: ignored, Meta sent it before the update in force (a
	// late delivery: Meta's retries, deliveries to several nodes).
	MetaSuperseded
)

func (o MetaOutcome) String() string {
	switch o {
	case MetaPaused:
		return "paused"
	case MetaLifted:
		return "lifted"
	case MetaOperatorLifted:
		return "operator_lifted"
	case MetaSuperseded:
		return "superseded"
	}
	return fmt.Sprintf("MetaOutcome(%d)", int(o))
}

// Applied reports whether the update changed the number's pause.
func (o MetaOutcome) Applied() bool { return o == MetaPaused || o == MetaLifted }

// MetaResult is RestrictFromMeta's answer.
type MetaResult struct {
	Outcome MetaOutcome
	// InForceSent is when Meta sent the update in force, for
	// MetaSuperseded.
	InForceSent time.Time
}

// RestrictFromMeta records Meta's pause (account_update), or its lift (an
// until already passed), sent at at (zero when the webhook had no time).
// Ignored when Meta sent it before the update in force (MetaSuperseded;
// see metaSent), or when it is the pause an operator lifted
// (MetaOperatorLifted; pauseLifted): account updates carry no message id,
// so a replay is told by its end and time against the lift.
func (c *Cache) RestrictFromMeta(phoneNumberID string, until, at time.Time, reason string) (MetaResult, error) {
	id, err := NormalizePhoneNumberID(phoneNumberID)
	if err != nil {
		return MetaResult{}, fmt.Errorf("restrict: %w", err)
	}
	c.ext.restrictMu.Lock()
	defer c.ext.restrictMu.Unlock()
	now := c.now()
	c.ext.mu.RLock()
	l, lifted := c.ext.lifts[id]
	m, marked := c.ext.metaSent[id]
	c.ext.mu.RUnlock()
	if marked && m.at > now-int64(messageRetention) && !at.IsZero() && at.UnixNano() < m.sent {
		c.ext.staleMeta.Add(1)
		return MetaResult{Outcome: MetaSuperseded, InForceSent: time.Unix(0, m.sent).UTC()}, nil
	}
	if lifted && l.at > now-int64(messageRetention) && pauseLifted(until, at, l) {
		return MetaResult{Outcome: MetaOperatorLifted}, nil
	}
	lifting, err := c.restrict(id, until, reason, false, at)
	if err != nil {
		return MetaResult{}, err
	}
	if lifting {
		return MetaResult{Outcome: MetaLifted}, nil
	}
	return MetaResult{Outcome: MetaPaused}, nil
}

// metaSent is when Meta sent the update in force of a number (Unix ns),
// and when wagate recorded it (by its clock, for the retention): Meta's
// updates are ordered by it, and one sent earlier is ignored. Kept after
// the pause ends or is lifted — a late pause must not undo Meta's lift —
// as long as the message ids are (messageRetention), which outlasts every
// update young enough to be applied (MaxMessageAge). No record (none
// within the retention, a pause recorded by a wagate before this one, or
// an update in force that had no time) is an unknown time: the next
// update applies whenever it was sent.
type metaSent struct{ at, sent int64 }

// metaSentPrefix keys a number's metaSent among the applied webhook
// message ids, as liftPrefix does its lift.
const metaSentPrefix = "metasent:"

func metaSentKey(id string) string { return metaSentPrefix + id }

// encodeMetaSent writes the record's time first, as every record among
// the message ids (sweepMessages reads it there), then Meta's.
func encodeMetaSent(m metaSent) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b, uint64(m.at))
	binary.BigEndian.PutUint64(b[8:], uint64(m.sent))
	return b
}

func decodeMetaSent(b []byte) (metaSent, bool) {
	if len(b) != 16 {
		return metaSent{}, false
	}
	return metaSent{at: int64(beUint64(b)), sent: int64(beUint64(b[8:]))}, true
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

// restrict writes a pause, or its lift, and says which; the caller holds
// restrictMu. Meta's (not byOperator) also records when Meta sent it
// (metaSent; a zero sent forgets the time in force), in the same
// transaction.
func (c *Cache) restrict(id string, until time.Time, reason string, byOperator bool, sent time.Time) (lifting bool, err error) {
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	now := c.now()
	lifting = until.IsZero() || until.UnixNano() <= now
	var mark *metaSent
	if !byOperator && !sent.IsZero() {
		mark = &metaSent{at: now, sent: sent.UnixNano()}
	}
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
			if !byOperator {
				var err error
				if mark != nil {
					err = tx.Bucket(bucketMessages).Put([]byte(metaSentKey(id)), encodeMetaSent(*mark))
				} else {
					err = tx.Bucket(bucketMessages).Delete([]byte(metaSentKey(id)))
				}
				if err != nil {
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
			return false, fmt.Errorf("persist restriction of %s: %w", id, err)
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
	switch {
	case mark != nil:
		c.ext.metaSent[id] = *mark
	case !byOperator:
		delete(c.ext.metaSent, id)
	}
	c.ext.mu.Unlock()
	switch {
	case lifting && byOperator:
		c.log.Info("business-initiated calling restriction lifted", "phone_number_id", id)
	case lifting:
		c.log.Info("business-initiated calling restriction lifted by Meta", "phone_number_id", id)
	default:
		c.log.Warn("business-initiated calling restricted by Meta: calls from this number are refused until the expiry",
			"phone_number_id", id, "until", r.Until.Format(time.RFC3339), "reason", reason)
	}
	return lifting, nil
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
