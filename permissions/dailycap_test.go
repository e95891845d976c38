package permissions

import (
	"errors"
	"testing"
	"time"
)

// TestMetaDailyCapLearned: Meta's 403 Business Initiated Connected Call
// Per Day Limit Hit for a pair wagate counted below the cap (calls placed
// around wagate, or Meta's cap lower than the configured one) is learned:
// the next call is refused here with 403 / 138012 instead of going to
// Meta, until the oldest connected call wagate knows of turns 24 h old;
// across a restart too. Knowing none, the refusal lasts 24 h.
func TestMetaDailyCapLearned(t *testing.T) {
	lim := DefaultLimits()
	lim.ConnectedPerUser24h = 5
	e := open(t, lim)
	k, other := key("+16505550001"), key("+16505550002")
	mustGrant(t, e.c, k, true)
	mustGrant(t, e.c, other, true)

	_, tk := admit(t, e.c, k, Allow)
	tk.Finish(Answered) // one connected call known here
	e.clock.Advance(2 * time.Hour)
	_, tk = admit(t, e.c, k, Allow)
	tk.Finish(MetaDailyCap)
	tk.Finish(MetaDailyCap) // idempotent
	if st := e.c.Stats(); st.LearnedDailyCap != 1 {
		t.Errorf("learned_daily_cap %d, want 1", st.LearnedDailyCap)
	}

	e.clock.Advance(time.Minute)
	e.reopen(t)
	d, _ := admit(t, e.c, k, DailyCapHit)
	if d.Code != 403 || d.MetaError != 138012 || d.Reason != "Business Initiated Connected Call Per Day Limit Hit" {
		t.Errorf("decision after Meta's cap: %+v", d)
	}
	if want := 22*time.Hour - time.Minute; d.RetryAfter != want {
		t.Errorf("Retry-After %v, want %v (when the known connected call turns 24 h old)", d.RetryAfter, want)
	}
	// The permission stays, and other users are not touched.
	if en := mustGet(t, e.c, k); en.Status != "permanent" {
		t.Errorf("permission after Meta's cap: %+v", en)
	}
	_, tk = admit(t, e.c, other, Allow)
	tk.Finish(Failed)

	// Once the known call leaves the window one slot is free again.
	e.clock.Advance(d.RetryAfter)
	_, tk = admit(t, e.c, k, Allow)
	tk.Finish(MetaDailyCap) // Meta still full: learned again, nothing known in the window but the learned ones
	d, _ = admit(t, e.c, k, DailyCapHit)
	if d.RetryAfter != 2*time.Hour {
		t.Errorf("Retry-After %v, want 2h (the first learned calls leave then)", d.RetryAfter)
	}

	// Knowing no connected call at all: 24 hours.
	_, tk = admit(t, e.c, other, Allow)
	tk.Finish(MetaDailyCap)
	if d, _ := admit(t, e.c, other, DailyCapHit); d.RetryAfter != 24*time.Hour {
		t.Errorf("Retry-After %v, want 24h", d.RetryAfter)
	}
	// With the rule off there is no window to fill: nothing is learned.
	lim.ConnectedPerUser24h = 0
	e.c.SetLimits(lim)
	third := key("+16505550003")
	mustGrant(t, e.c, third, true)
	_, tk = admit(t, e.c, third, Allow)
	tk.Finish(MetaDailyCap)
	_, tk = admit(t, e.c, third, Allow)
	tk.Finish(Failed)
	if st := e.c.Stats(); st.LearnedDailyCap != 2 {
		t.Errorf("learned_daily_cap %d since the restart, want 2", st.LearnedDailyCap)
	}
}

// TestRedisMetaDailyCapLearned: Meta's 403 Business Initiated Connected
// Call Per Day Limit Hit finished on one node is learned for every node:
// the next call to the user is refused 403 / 138012 by the other node,
// for 24 hours when no connected call of the user is known.
func TestRedisMetaDailyCapLearned(t *testing.T) {
	srv := startRedis(t)
	lim := DefaultLimits()
	lim.ConnectedPerUser24h = 5
	n1, n2 := openRedis(t, srv, "n1", lim), openRedis(t, srv, "n2", lim)
	k, other := key("+16505550301"), key("+16505550302")
	for _, u := range []Key{k, other} {
		if err := n1.Grant(u, true, time.Time{}, "api"); err != nil {
			t.Fatal(err)
		}
	}
	_, res := reserve(t, n1, k, Allow)
	res.Finish(MetaDailyCap)
	d, _ := reserve(t, n2, k, DailyCapHit)
	if d.Code != 403 || d.MetaError != 138012 || d.RetryAfter < 23*time.Hour || d.RetryAfter > 24*time.Hour {
		t.Errorf("decision on the other node: %+v, want 403 138012 with Retry-After about 24h", d)
	}
	if st := n1.Stats(); st.LearnedDailyCap != 1 {
		t.Errorf("learned_daily_cap %d, want 1", st.LearnedDailyCap)
	}
	if en := lookup(t, n2, k); en.Status != "permanent" || en.ConnectedCalls24h != 5 {
		t.Errorf("entry after Meta's cap: %+v, want the permission kept and 5 calls in the window", en)
	}
	_, res = reserve(t, n2, other, Allow)
	res.Finish(Failed)
}

// TestClearConnectedCalls: an operator clears a user's daily cap learned
// from Meta's 403: the next call is admitted at once, and after a restart
// too; the permission and other users are untouched. A pair nothing is
// known of is ErrNotFound.
func TestClearConnectedCalls(t *testing.T) {
	lim := DefaultLimits()
	lim.ConnectedPerUser24h = 5
	e := open(t, lim)
	k := key("+16505550011")
	mustGrant(t, e.c, k, true)
	_, tk := admit(t, e.c, k, Allow)
	tk.Finish(MetaDailyCap)
	admit(t, e.c, k, DailyCapHit)

	if err := e.c.ClearConnectedCalls(k); err != nil {
		t.Fatal(err)
	}
	if en := mustGet(t, e.c, k); en.Status != "permanent" || en.ConnectedCalls24h != 0 {
		t.Errorf("after the clear: %+v, want permanent with 0 connected calls", en)
	}
	e.reopen(t)
	_, tk = admit(t, e.c, k, Allow)
	tk.Finish(Failed)
	if err := e.c.ClearConnectedCalls(key("+16505550012")); !errors.Is(err, ErrNotFound) {
		t.Errorf("clearing an unknown pair: %v, want ErrNotFound", err)
	}
	if err := e.c.ClearConnectedCalls(k); err != nil { // nothing left: still fine
		t.Errorf("clearing again: %v", err)
	}
}

// TestClearConnectedCallsRetriedAfterFailedWrite: a clear whose write
// failed (the API answered 500) has emptied the window in memory; the
// operator's retry must put that on disk. Before, the retry found nothing
// to clear, wrote nothing and answered 200, and a restart brought the
// learned cap back.
func TestClearConnectedCallsRetriedAfterFailedWrite(t *testing.T) {
	lim := DefaultLimits()
	lim.ConnectedPerUser24h = 5
	e := open(t, lim)
	k := key("+16505550013")
	mustGrant(t, e.c, k, true)
	_, tk := admit(t, e.c, k, Allow)
	tk.Finish(MetaDailyCap)

	db := e.c.store.db
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.c.ClearConnectedCalls(k); err == nil {
		t.Fatal("a clear with the file closed reported no error")
	}
	st, err := openStore(e.path)
	if err != nil {
		t.Fatal(err)
	}
	e.c.store.db = st.db
	if err := e.c.ClearConnectedCalls(k); err != nil {
		t.Fatalf("the retry: %v", err)
	}
	e.reopen(t)
	admit(t, e.c, k, Allow)
}

// TestRedisClearConnectedCalls: the clear made through one node frees the
// user for every node (real redis-server).
func TestRedisClearConnectedCalls(t *testing.T) {
	srv := startRedis(t)
	lim := DefaultLimits()
	lim.ConnectedPerUser24h = 5
	n1, n2 := openRedis(t, srv, "n1", lim), openRedis(t, srv, "n2", lim)
	k := key("+16505550311")
	if err := n1.Grant(k, true, time.Time{}, "api"); err != nil {
		t.Fatal(err)
	}
	_, res := reserve(t, n1, k, Allow)
	res.Finish(MetaDailyCap)
	reserve(t, n2, k, DailyCapHit)
	if err := n1.ClearConnectedCalls(k); err != nil {
		t.Fatal(err)
	}
	if en := lookup(t, n2, k); en.Status != "permanent" || en.ConnectedCalls24h != 0 {
		t.Errorf("after the clear: %+v, want permanent with 0 connected calls", en)
	}
	_, res = reserve(t, n2, k, Allow)
	res.Finish(Failed)
	if err := n2.ClearConnectedCalls(key("+16505550312")); !errors.Is(err, ErrNotFound) {
		t.Errorf("clearing an unknown pair: %v, want ErrNotFound", err)
	}
}
