package permissions

import (
	"sync/atomic"
	"time"
)

// Outcome is how a business-initiated call ended, as far as Meta's rules
// care.
type Outcome int

const (
	// Answered: the call connected (2xx).
	Answered Outcome = iota
	// Unanswered: the user did not pick up (480). Counts toward revocation.
	Unanswered
	// Rejected: the user declined (486). Counts toward revocation.
	Rejected
	// Failed: any other failure; not the user's doing, so it does not count.
	Failed
	// Cancelled: our side gave up before an answer; does not count.
	Cancelled
	// MetaNoPermission: Meta answered 403 No Approved Call Permission
	// Found: its view wins, the pair loses its permission here too.
	MetaNoPermission
	// NotSent: wagate refused or failed the call itself before its INVITE
	// left for Meta (no free ports, draining, its own concurrency limits,
	// no connection to Meta). Meta never saw the call, so the number's
	// 24-hour count it took at admission is given back; nothing else
	// counts.
	NotSent
	// MetaDailyCap: Meta answered 403 Business Initiated Connected Call
	// Per Day Limit Hit: the pair's connected calls of 24 hours are at
	// Meta's cap, whatever wagate counted (calls placed around wagate, a
	// cap Meta documents lower than the configured one). The pair's
	// window is filled up to the configured cap, so later calls are
	// refused here (403, 138012) until the oldest connected call wagate
	// knows of turns 24 hours old, or 24 hours from now when it knows of
	// none: Meta frees a slot by then at the latest.
	MetaDailyCap
)

var outcomeNames = [...]string{"answered", "unanswered", "rejected", "failed", "cancelled", "meta_no_permission", "not_sent", "meta_daily_cap"}

func (o Outcome) String() string {
	if o >= 0 && int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "outcome(?)"
}

// Ticket is an admitted call's reservation: one slot of the number's
// concurrency, one of its 24-hour rate, and the user marked busy. Finish
// must be called exactly once (later calls are ignored) whatever happens to
// the call, or the user stays busy and the slot stays taken.
type Ticket struct {
	c  *Cache
	mk mapKey
	sh *shard
	e  *entry
	// counted: the call took one of the number's 24-hour rate, at numAt
	// in memory and under diskKey in the store (when persisted), which
	// Finish(NotSent) gives back.
	counted   bool
	persisted bool
	numAt     int64
	diskKey   [16]byte
	connected atomic.Bool
	done      atomic.Bool
}

// Key is the pair the ticket was admitted for.
func (t *Ticket) Key() Key { return Key{PhoneNumberID: t.mk.num.id, User: t.mk.user} }

// Admit decides whether a business-initiated call may be placed and, when it
// may, reserves it. It decides from memory, holding two short locks (the
// pair's shard, then the number); an admitted call's count toward the
// number's 24-hour rate is then written to disk (one batched fsync) before
// Admit returns, so that a restart does not forget it. The checks run in
// DESIGN §4's order, after Meta's pause of the number: permission, the
// user's daily cap, busy, the number's rate, the number's concurrency. A
// user named by a BSUID that a webhook linked to a phone number is the
// phone number's user.
func (c *Cache) Admit(k Key) (Decision, *Ticket) {
	k, err := c.resolve(k).Normalize()
	if err != nil {
		return decide(NoPermission, 0), nil
	}
	now := c.now()
	if r, ok := c.restricted(k.PhoneNumberID, now); ok {
		c.ext.restricted.Add(1)
		return restrictedDecision(r, now), nil
	}
	mk, sh := c.key(k, false)
	if sh == nil {
		return decide(NoPermission, 0), nil
	}
	lims := c.limits()
	sh.mu.Lock()
	e := sh.m[mk]
	if e == nil || e.state(now) == stNone {
		if e != nil {
			c.noteExpiry(mk, e, now)
		}
		sh.mu.Unlock()
		return decide(NoPermission, 0), nil
	}
	if lim := lims.ConnectedPerUser24h; lim > 0 && e.ctr != nil {
		e.ctr.calls.prune(now - int64(day))
		if n := e.ctr.calls.len(); n >= lim {
			// The window frees a slot when its (n-lim+1)th oldest call
			// turns 24 hours old.
			retry := time.Duration(e.ctr.calls.at(n-lim) + int64(day) - now)
			sh.mu.Unlock()
			return decide(DailyCapHit, retry), nil
		}
	}
	if e.active > 0 {
		sh.mu.Unlock()
		return decide(Busy, 0), nil
	}
	num := mk.num
	num.mu.Lock()
	if lim := lims.NewCallsPerNumber24h; lim > 0 {
		num.calls.prune(now - int64(day))
		if n := num.calls.len(); n >= lim {
			retry := time.Duration(num.calls.at(n-lim) + int64(day) - now)
			num.mu.Unlock()
			sh.mu.Unlock()
			return decide(NumberRateCap, retry), nil
		}
	}
	if lim := lims.ConcurrentPerNumber; lim > 0 && num.active >= lim {
		num.mu.Unlock()
		sh.mu.Unlock()
		return decide(NumberConcurrencyCap, concurrencyRetryAfter), nil
	}
	// The call counts toward the number's rate from here, under the same
	// lock as the check, so that a burst cannot overshoot the cap; a call
	// wagate then refuses before Meta sees it gives the count back
	// (Finish(NotSent)).
	t := &Ticket{c: c, mk: mk, sh: sh, e: e}
	if lims.NewCallsPerNumber24h > 0 {
		t.counted, t.numAt = true, num.calls.add(now, lims.NewCallsPerNumber24h)
	}
	num.active++
	num.mu.Unlock()
	e.active++
	sh.mu.Unlock()
	if t.counted {
		t.diskKey, t.persisted = c.persistNumberCall(num, now)
	}
	return decide(Allow, 0), t
}

// Connected records that the call was answered (2xx): it counts toward the
// user's daily cap, and it ends the unanswered streak and resets the
// permission-request counters, as Meta does. Idempotent; ignored after
// Finish.
func (t *Ticket) Connected() {
	if t.done.Load() {
		return
	}
	t.connect()
}

func (t *Ticket) connect() {
	if !t.connected.CompareAndSwap(false, true) {
		return
	}
	now := t.c.now()
	t.sh.mu.Lock()
	t.e.streak = 0
	if lim := t.c.limits().ConnectedPerUser24h; lim > 0 {
		t.e.counters().calls.add(now, lim)
	}
	if t.e.ctr != nil {
		t.e.ctr.requests.reset()
	}
	t.e.prune(now)
	t.sh.mu.Unlock()
	t.c.persistPair(t.mk, t.sh)
}

// Finish ends the reservation with the call's outcome. Answered implies
// Connected. NotSent gives back the call's count toward the number's 24
// hours (not for a connected call: Meta saw it). Unanswered and Rejected extend the user's streak; at
// UnansweredNudge a warning is logged, at UnansweredRevoke the permission
// is revoked (and persisted). A connected call is answered whatever ended
// it. Idempotent.
func (t *Ticket) Finish(o Outcome) {
	if !t.done.CompareAndSwap(false, true) {
		return
	}
	if o == Answered {
		t.connect()
	}
	c := t.c
	lims := c.limits()
	var (
		streak  int
		revoked bool
		learned bool
		gen     uint32
		rec     record
	)
	counts := (o == Unanswered || o == Rejected) && !t.connected.Load()
	learn := o == MetaNoPermission && !t.connected.Load()
	capHit := o == MetaDailyCap && !t.connected.Load() && lims.ConnectedPerUser24h > 0
	var now int64
	if counts || learn || capHit {
		now = c.now() // only these need the time (a clock read is ~70 ns here)
	}
	filled := 0
	t.sh.mu.Lock()
	t.e.active--
	if capHit {
		// Meta's window is full now: every call in it is younger than 24
		// hours, and the oldest Meta holds is no younger than the oldest
		// wagate knows of, so a slot frees at Meta by the time wagate's
		// oldest (or, knowing none, one added now) leaves the window.
		w := &t.e.counters().calls
		w.prune(now - int64(day))
		for w.len() < lims.ConnectedPerUser24h {
			w.add(now, lims.ConnectedPerUser24h)
			filled++
		}
	}
	if learn && t.e.state(now) != stNone {
		// Meta says there is no permission: its view wins over ours.
		rec = record{state: stNone, updated: now, source: c.sources.get(SourceMetaRefused)}
		t.e.apply(rec, rec.source)
		t.e.persisted = true
		t.e.streak = 0
		t.e.gen++
		gen, learned = t.e.gen, true
	}
	if counts {
		if t.e.streak < ^uint16(0) {
			t.e.streak++
		}
		streak = int(t.e.streak)
		if lim := lims.UnansweredRevoke; lim > 0 && streak >= lim && t.e.state(now) != stNone {
			// Revoke in memory at once, so that the next Admit already
			// refuses; the disk follows below, outside the shard lock.
			rec = record{state: stNone, updated: now, source: c.sources.get(SourceUnanswered)}
			prev := t.e.state(now)
			t.e.apply(rec, rec.source)
			c.reportCommit(t.mk, prev, 0, rec)
			t.e.persisted = true
			t.e.streak = 0
			t.e.gen++
			gen, revoked = t.e.gen, true
		}
	}
	t.sh.mu.Unlock()

	// A call Meta never saw does not count toward the number's 24 hours.
	uncount := o == NotSent && t.counted && !t.connected.Load()
	t.mk.num.mu.Lock()
	t.mk.num.active--
	if uncount {
		t.mk.num.calls.remove(t.numAt)
	}
	t.mk.num.mu.Unlock()
	if uncount && t.persisted {
		c.unpersistNumberCall(t.mk.num, t.diskKey)
	}

	k := t.Key()
	if lim := lims.UnansweredNudge; lim > 0 && streak == lim && !revoked {
		c.log.Warn("call permission nudge: consecutive unanswered business-initiated calls; Meta nudges the user to reconsider",
			"phone_number_id", k.PhoneNumberID, "user", k.User, "streak", streak, "revoke_at", lims.UnansweredRevoke)
	}
	if revoked {
		c.log.Warn("call permission revoked after consecutive unanswered or rejected calls",
			"phone_number_id", k.PhoneNumberID, "user", k.User, "streak", streak)
		c.persistRevocation(t, gen, rec)
	}
	if learned {
		c.ext.learned.Add(1)
		c.log.Warn("call permission revoked: Meta answered 403 No Approved Call Permission Found; later calls to this user are refused here",
			"phone_number_id", k.PhoneNumberID, "user", k.User)
		c.persistRevocation(t, gen, rec)
	}
	if filled > 0 {
		c.ext.learnedCap.Add(1)
		c.log.Warn("daily connected-call cap learned: Meta answered 403 Business Initiated Connected Call Per Day Limit Hit; later calls to this user are refused here until a slot frees",
			"phone_number_id", k.PhoneNumberID, "user", k.User, "cap", lims.ConnectedPerUser24h, "added", filled)
	}
	if counts || learn || filled > 0 {
		c.persistPair(t.mk, t.sh)
	}
}

// persistRevocation writes a streak revocation to disk unless a newer
// grant or revocation (a higher gen) got there first.
func (c *Cache) persistRevocation(t *Ticket, gen uint32, r record) {
	if c.store == nil {
		return
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	t.sh.mu.Lock()
	current := t.e.gen == gen
	t.sh.mu.Unlock()
	if !current {
		return
	}
	if err := c.store.put(t.Key(), r); err != nil {
		// Memory says revoked; after a restart the old grant would come
		// back until Meta refuses a call.
		c.log.Error("call permission revocation not persisted", "key", t.Key().String(), "error", err)
	}
}
