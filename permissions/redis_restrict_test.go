package permissions

import (
	"testing"
	"time"
)

// TestRedisMetaPauseAfterLift: an operator lifts Meta's pause through one
// node; Meta's redelivery (or a replay) of the same account_update reaches
// another node. It is ignored there: the lift's time is in Redis. Without
// a time, the pause's end says it is the one lifted. A pause sent after
// the lift applies.
func TestRedisMetaPauseAfterLift(t *testing.T) {
	srv := startRedis(t)
	n1, n2 := openRedis(t, srv, "n1", DefaultLimits()), openRedis(t, srv, "n2", DefaultLimits())
	id := key("+16505550501").PhoneNumberID
	sent := time.Now().Add(-time.Hour).Truncate(time.Second)
	until := sent.Add(7 * 24 * time.Hour)
	if ok, err := n1.RestrictFromMeta(id, until, sent, "RESTRICTED_BUSINESS_INITIATED_CALLING"); err != nil || !ok {
		t.Fatalf("Meta's pause: %v %v", ok, err)
	}
	if err := n1.Restrict(id, time.Time{}, ""); err != nil {
		t.Fatal(err)
	}
	for name, at := range map[string]time.Time{"redelivered": sent, "undated": {}} {
		ok, err := n2.RestrictFromMeta(id, until, at, "RESTRICTED_BUSINESS_INITIATED_CALLING")
		if err != nil {
			t.Fatal(err)
		}
		if rs, _ := n2.Restrictions(); ok || len(rs) != 0 {
			t.Errorf("the pause %s after the lift: applied %v, restrictions %+v; want ignored", name, ok, rs)
		}
	}
	if ok, err := n2.RestrictFromMeta(id, time.Now().Add(7*24*time.Hour), time.Now().Add(time.Second), "RESTRICTED_BUSINESS_INITIATED_CALLING"); err != nil || !ok {
		t.Fatalf("a pause sent after the lift: %v %v, want applied", ok, err)
	}
	if rs, _ := n1.Restrictions(); len(rs) != 1 {
		t.Errorf("restrictions after Meta's new pause: %+v", rs)
	}
}
