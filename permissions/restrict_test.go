package permissions

import (
	"encoding/binary"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

const metaReason = "RESTRICTED_BUSINESS_INITIATED_CALLING"

// metaPause delivers Meta's pause to s and says whether it applied.
func metaPause(t *testing.T, s interface {
	RestrictFromMeta(string, time.Time, time.Time, string) (MetaResult, error)
}, id string, until, at time.Time) bool {
	t.Helper()
	res, err := s.RestrictFromMeta(id, until, at, metaReason)
	if err != nil {
		t.Fatal(err)
	}
	return res.Outcome.Applied()
}

// pausedUntil is the number's pause's end in s's list (zero: none).
func pausedUntil(t *testing.T, s interface{ Restrictions() ([]Restriction, error) }, id string) time.Time {
	t.Helper()
	rs, err := s.Restrictions()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.PhoneNumberID == id {
			return r.Until
		}
	}
	return time.Time{}
}

// TestMetaPauseAfterLift: an operator lifts Meta's pause of a number;
// Meta's redelivery or a replay of that account_update (same expiration,
// no message id) is ignored, after a restart too. A new pause Meta sends
// in the lift's second, or a moment before the lift but delivered after
// it, ends later than the lifted one and applies. Before, the lift kept
// only its time and the entry time (whole seconds) was compared with it:
// those new pauses were ignored, and wagate went on placing the number's
// business-initiated calls that Meta refuses.
func TestMetaPauseAfterLift(t *testing.T) {
	e := open(t, DefaultLimits())
	id := key("+16505550601").PhoneNumberID
	sent1 := epoch.Add(-time.Hour)
	until1 := sent1.Add(7 * day)
	if !metaPause(t, e.c, id, until1, sent1) {
		t.Fatal("Meta's first pause not applied")
	}
	// The lift, 300 ms into a second.
	e.clock.Advance(time.Hour + 300*time.Millisecond)
	lift1 := e.clock.Now()
	if err := e.c.Restrict(id, time.Time{}, ""); err != nil {
		t.Fatal(err)
	}
	for name, at := range map[string]time.Time{"redelivered": sent1, "undated": {}} {
		if metaPause(t, e.c, id, until1, at) || !pausedUntil(t, e.c, id).IsZero() {
			t.Errorf("the lifted pause %s after the lift: applied, want ignored", name)
		}
	}

	// Meta pauses the number again in the lift's second: its entry
	// time is the lift's, truncated.
	sent2 := lift1.Truncate(time.Second)
	until2 := sent2.Add(7 * day)
	if !metaPause(t, e.c, id, until2, sent2) {
		t.Error("a new pause sent in the lift's second: ignored, want applied")
	}
	if got := pausedUntil(t, e.c, id); !got.Equal(until2) {
		t.Errorf("paused until %v, want %v", got, until2)
	}

	// Lifted again; a pause Meta sent 2 s before this lift reaches
	// wagate after it (a delayed delivery).
	e.clock.Advance(10 * time.Minute)
	sent3 := e.clock.Now().Add(-2 * time.Second).Truncate(time.Second)
	until3 := sent3.Add(7 * day)
	if err := e.c.Restrict(id, time.Time{}, ""); err != nil {
		t.Fatal(err)
	}
	if !metaPause(t, e.c, id, until3, sent3) {
		t.Error("a new pause sent just before the lift, delivered after it: ignored, want applied")
	}
	e.clock.Advance(time.Minute)
	if err := e.c.Restrict(id, time.Time{}, ""); err != nil {
		t.Fatal(err)
	}
	// A second lift with nothing in force keeps what the first knew.
	e.clock.Advance(time.Minute)
	if err := e.c.Restrict(id, time.Time{}, ""); err != nil {
		t.Fatal(err)
	}

	e.clock.Advance(day)
	e.reopen(t)
	for name, p := range map[string]struct{ until, at time.Time }{
		"the last pause lifted": {until3, sent3}, "the last, undated": {until3, time.Time{}},
		"the one before": {until2, sent2}, "the first": {until1, sent1},
	} {
		if metaPause(t, e.c, id, p.until, p.at) || !pausedUntil(t, e.c, id).IsZero() {
			t.Errorf("%s replayed after a restart: applied, want ignored", name)
		}
	}
	// Meta saying, after the lift, that the pause is in force: applied.
	if !metaPause(t, e.c, id, until3, e.clock.Now().Truncate(time.Second)) {
		t.Error("Meta's account_update sent a day after the lift: ignored, want applied")
	}
}

// TestMetaPauseAfterOldLift: a lift recorded by a wagate that kept only
// its time (8 bytes) is still read: a replay sent well before it is
// ignored, a pause sent in its second applies (the lifted pause's end is
// unknown, so the time decides, erring towards applying).
func TestMetaPauseAfterOldLift(t *testing.T) {
	e := open(t, DefaultLimits())
	id := key("+16505550602").PhoneNumberID
	e.clock.Advance(300 * time.Millisecond)
	lifted := e.clock.Now()
	err := e.c.store.db.Update(func(tx *bolt.Tx) error {
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], uint64(lifted.UnixNano()))
		return tx.Bucket(bucketMessages).Put([]byte(liftKey(id)), v[:])
	})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour)
	e.reopen(t)
	old := lifted.Add(-time.Hour).Truncate(time.Second)
	if metaPause(t, e.c, id, old.Add(7*day), old) {
		t.Error("a pause sent an hour before the old lift: applied, want ignored")
	}
	if metaPause(t, e.c, id, old.Add(7*day), time.Time{}) {
		t.Error("that pause undated: applied, want ignored")
	}
	same := lifted.Truncate(time.Second)
	if !metaPause(t, e.c, id, same.Add(7*day), same) {
		t.Error("a pause sent in the old lift's second: ignored, want applied")
	}
}
