package permissions

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// TestRedisMetaPauseAfterLift: an operator lifts Meta's pause through one
// node; Meta's redelivery (or a replay) of the same account_update
// reaches another node. It is ignored there, after Redis restarts too:
// the lift and the lifted pause's end are in Redis. A new pause Meta sends
// in the lift's second, or a moment before the lift but delivered after
// it, ends later than the lifted one and applies. Before, the lift kept
// only its time and the entry time (whole seconds) was compared with it:
// those new pauses were ignored, and the nodes went on placing the
// number's business-initiated calls that Meta refuses.
func TestRedisMetaPauseAfterLift(t *testing.T) {
	srv := startRedis(t)
	n1, n2 := openRedis(t, srv, "n1", DefaultLimits()), openRedis(t, srv, "n2", DefaultLimits())
	id := key("+16505550501").PhoneNumberID
	sent1 := time.Now().Add(-time.Hour).Truncate(time.Second)
	until1 := sent1.Add(7 * day)
	if !metaPause(t, n1, id, until1, sent1) {
		t.Fatal("Meta's first pause not applied")
	}
	// Meta's next pause is sent by its clock no later than the lift
	// (in its second, or just before it) and delivered after it.
	sent2 := time.Now().Truncate(time.Second)
	until2 := sent2.Add(7 * day)
	if err := n1.Restrict(id, time.Time{}, ""); err != nil {
		t.Fatal(err)
	}
	for name, at := range map[string]time.Time{"redelivered": sent1, "undated": {}} {
		if metaPause(t, n2, id, until1, at) || !pausedUntil(t, n2, id).IsZero() {
			t.Errorf("the lifted pause %s after the lift: applied, want ignored", name)
		}
	}
	if !metaPause(t, n2, id, until2, sent2) {
		t.Error("a new pause sent in the lift's second (or just before it): ignored, want applied")
	}
	// Listed to the second, from the pause's time to live.
	if got := pausedUntil(t, n1, id); got.Before(until2) || got.After(until2.Add(time.Second)) {
		t.Errorf("paused until %v, want %v", got, until2)
	}
	// Lifted again, and again with nothing in force: the second keeps
	// what the first knew.
	if err := n2.Restrict(id, time.Time{}, ""); err != nil {
		t.Fatal(err)
	}
	if err := n1.Restrict(id, time.Time{}, ""); err != nil {
		t.Fatal(err)
	}

	srv.restart()
	n3 := openRedis(t, srv, "n3", DefaultLimits())
	for name, p := range map[string]struct{ until, at time.Time }{
		"the last pause lifted": {until2, sent2}, "the last, undated": {until2, time.Time{}}, "the first": {until1, sent1},
	} {
		if metaPause(t, n3, id, p.until, p.at) || !pausedUntil(t, n3, id).IsZero() {
			t.Errorf("%s replayed after Redis restarted: applied, want ignored", name)
		}
	}
	// Meta saying, well after the lift, that the pause is in force.
	if !metaPause(t, n3, id, until2, time.Now().Add(time.Hour).Truncate(time.Second)) {
		t.Error("Meta's account_update sent an hour after the lift: ignored, want applied")
	}
}

// TestRedisMetaPauseAfterOldLift: a lift written by a wagate that kept
// only its time (m:lift:<pnid> = ms) is still read: a replay sent well
// before it is ignored, a pause sent in its second applies.
func TestRedisMetaPauseAfterOldLift(t *testing.T) {
	srv := startRedis(t)
	r := openRedis(t, srv, "n1", DefaultLimits())
	id := key("+16505550502").PhoneNumberID
	lifted := time.Now()
	if err := r.rdb.Set(context.Background(), r.prefix+"m:"+liftKey(id), strconv.FormatInt(lifted.UnixMilli(), 10), messageRetention).Err(); err != nil {
		t.Fatal(err)
	}
	old := lifted.Add(-time.Hour).Truncate(time.Second)
	if metaPause(t, r, id, old.Add(7*day), old) {
		t.Error("a pause sent an hour before the old lift: applied, want ignored")
	}
	if metaPause(t, r, id, old.Add(7*day), time.Time{}) {
		t.Error("that pause undated: applied, want ignored")
	}
	same := lifted.Truncate(time.Second)
	if !metaPause(t, r, id, same.Add(7*day), same) {
		t.Error("a pause sent in the old lift's second: ignored, want applied")
	}
}
