package permissions

import (
	"sync"
	"testing"
	"time"
)

// changeLog records what an observer heard.
type changeLog struct {
	mu  sync.Mutex
	chs []Change
}

func (l *changeLog) add(ch Change) {
	l.mu.Lock()
	l.chs = append(l.chs, ch)
	l.mu.Unlock()
}

// take returns what was heard since the last take.
func (l *changeLog) take() []Change {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.chs
	l.chs = nil
	return out
}

func observe(c *Cache) *changeLog {
	l := &changeLog{}
	c.SetObserver(l.add)
	return l
}

// expectChanges checks the changes heard, in order.
func expectChanges(t *testing.T, l *changeLog, want ...Change) {
	t.Helper()
	got := l.take()
	if len(got) != len(want) {
		t.Fatalf("heard %d changes, want %d:\n got %+v\nwant %+v", len(got), len(want), got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Key != w.Key || g.Status != w.Status || g.Previous != w.Previous || g.Source != w.Source || !g.ExpiresAt.Equal(w.ExpiresAt) {
			t.Errorf("change %d: %+v, want %+v", i, g, w)
		}
	}
}

// TestObserverGrantsAndRevocations: each grant and revocation is heard
// once with the status before and after; granting what is already there
// is no change, except a temporary grant whose expiry moves.
func TestObserverGrantsAndRevocations(t *testing.T) {
	e := open(t, DefaultLimits())
	l := observe(e.c)
	k := key("+16505550001")
	ttl := DefaultLimits().TemporaryTTL

	mustGrant(t, e.c, k, false)
	expectChanges(t, l, Change{Key: k, Status: StatusTemporary, Previous: StatusNone, ExpiresAt: epoch.Add(ttl), Source: "test"})

	e.clock.Advance(time.Hour)
	mustGrant(t, e.c, k, false) // the expiry moves an hour
	expectChanges(t, l, Change{Key: k, Status: StatusTemporary, Previous: StatusTemporary, ExpiresAt: epoch.Add(time.Hour + ttl), Source: "test"})

	if err := e.c.Grant(k, true, time.Time{}, "webhook:user_action"); err != nil {
		t.Fatal(err)
	}
	expectChanges(t, l, Change{Key: k, Status: StatusPermanent, Previous: StatusTemporary, Source: "webhook:user_action"})
	mustGrant(t, e.c, k, true)
	expectChanges(t, l) // permanent again: nothing changed

	e.c.GrantFromUIC(k) // never downgrades a permanent grant
	expectChanges(t, l)

	if err := e.c.Revoke(k, "webhook:reject"); err != nil {
		t.Fatal(err)
	}
	expectChanges(t, l, Change{Key: k, Status: StatusNone, Previous: StatusPermanent, Source: "webhook:reject"})
	if err := e.c.Revoke(k, "api"); err == nil {
		t.Error("second revocation succeeded")
	}
	expectChanges(t, l)

	e.c.GrantFromUIC(k)
	expectChanges(t, l, Change{Key: k, Status: StatusTemporary, Previous: StatusNone, ExpiresAt: epoch.Add(time.Hour + ttl), Source: SourceUIC})
	e.c.GrantFromUIC(k) // within the refresh slack: no write, no change
	expectChanges(t, l)
}

// TestObserverUnansweredStreak: the revocation by the unanswered streak is
// heard with source unanswered.
func TestObserverUnansweredStreak(t *testing.T) {
	e := open(t, DefaultLimits())
	k := key("+16505550002")
	mustGrant(t, e.c, k, true)
	l := observe(e.c)
	for range DefaultLimits().UnansweredRevoke {
		_, tk := admit(t, e.c, k, Allow)
		tk.Finish(Unanswered)
	}
	expectChanges(t, l, Change{Key: k, Status: StatusNone, Previous: StatusPermanent, Source: SourceUnanswered})
	admit(t, e.c, k, NoPermission)
	expectChanges(t, l)
}

// TestObserverExpiry: the lapse of a temporary grant is heard once, when
// the cache first notices it: an Admit, a Get, the sweep, or a new grant
// (which is then heard after the lapse).
func TestObserverExpiry(t *testing.T) {
	lim := DefaultLimits()
	lim.TemporaryTTL = time.Hour
	e := open(t, lim)
	l := observe(e.c)
	byAdmit, byGet, bySweep, byGrant := key("+16505550010"), key("+16505550011"), key("+16505550012"), key("+16505550013")
	for _, k := range []Key{byAdmit, byGet, bySweep, byGrant} {
		mustGrant(t, e.c, k, false)
	}
	l.take()
	exp := epoch.Add(time.Hour)
	lapse := func(k Key) Change {
		return Change{Key: k, Status: StatusNone, Previous: StatusTemporary, ExpiresAt: exp, Source: SourceExpired}
	}

	e.clock.Advance(time.Hour - time.Nanosecond)
	admit(t, e.c, byAdmit, Allow)
	e.c.sweep()
	expectChanges(t, l) // not yet

	e.clock.Advance(time.Nanosecond)
	admit(t, e.c, byAdmit, NoPermission)
	expectChanges(t, l, lapse(byAdmit))
	admit(t, e.c, byAdmit, NoPermission)
	expectChanges(t, l) // once

	if en := mustGet(t, e.c, byGet); en.Status != StatusNone {
		t.Errorf("Get after expiry: %s", en.Status)
	}
	expectChanges(t, l, lapse(byGet))

	e.clock.Advance(time.Minute)
	if err := e.c.Grant(byGrant, true, time.Time{}, "api"); err != nil {
		t.Fatal(err)
	}
	expectChanges(t, l, lapse(byGrant), Change{Key: byGrant, Status: StatusPermanent, Previous: StatusNone, Source: "api"})

	e.c.sweep() // bySweep is the one nobody looked at
	expectChanges(t, l, lapse(bySweep))
	e.c.sweep()
	expectChanges(t, l)
}

// TestObserverExpiredWhileDown: a temporary grant that lapsed while wagate
// was stopped is reported to the first observer set after the restart.
func TestObserverExpiredWhileDown(t *testing.T) {
	e := open(t, DefaultLimits())
	k, perm := key("+16505550020"), key("+16505550021")
	mustGrant(t, e.c, k, false)
	mustGrant(t, e.c, perm, true)
	e.clock.Advance(169 * time.Hour)
	e.reopen(t)
	l := observe(e.c)
	expectChanges(t, l, Change{Key: k, Status: StatusNone, Previous: StatusTemporary,
		ExpiresAt: epoch.Add(DefaultLimits().TemporaryTTL), Source: SourceExpired})
	e.c.SetObserver(l.add) // reported once
	expectChanges(t, l)
}
