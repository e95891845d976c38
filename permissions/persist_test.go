package permissions

import (
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestCountersSurviveRestart: every counter Meta's rules need is on disk
// when the call that changed it returns, so a restart (here a reopen; the
// kill -9 case is TestCountersSurviveKill9) keeps the user's connected
// calls of the day, the unanswered streak, the permission requests and the
// number's new calls.
func TestCountersSurviveRestart(t *testing.T) {
	lim := DefaultLimits()
	lim.ConnectedPerUser24h = 3
	lim.NewCallsPerNumber24h = 5
	e := open(t, lim)
	capped, streaky, asked := key("+16505550001"), key("+16505550002"), key("+16505550003")
	mustGrant(t, e.c, capped, true)
	mustGrant(t, e.c, streaky, true)
	for range 3 {
		_, tk := admit(t, e.c, capped, Allow)
		tk.Finish(Answered)
	}
	_, tk := admit(t, e.c, streaky, Allow)
	tk.Finish(Unanswered)
	if d := e.c.RecordPermissionRequest(asked); !d.Allowed() {
		t.Fatalf("first request %v", d.Verdict)
	}

	e.clock.Advance(time.Minute)
	e.reopen(t)

	admit(t, e.c, capped, DailyCapHit)
	if en := mustGet(t, e.c, capped); en.ConnectedCalls24h != 3 {
		t.Errorf("connected calls after restart: %d, want 3", en.ConnectedCalls24h)
	}
	if en := mustGet(t, e.c, streaky); en.UnansweredStreak != 1 {
		t.Errorf("streak after restart: %d, want 1", en.UnansweredStreak)
	}
	if d := e.c.RecordPermissionRequest(asked); d.Verdict != RequestCapHit || d.MetaError != 138009 {
		t.Errorf("second request in 24 h after restart: %+v, want request_cap_hit 138009", d)
	}
	// 4 new calls so far; the number allows 5 in 24 h.
	_, tk = admit(t, e.c, streaky, Allow)
	tk.Finish(Unanswered)
	admit(t, e.c, streaky, NumberRateCap)

	// The windows still move after a restart: a day later all is free.
	e.clock.Advance(day)
	e.reopen(t)
	_, tk = admit(t, e.c, capped, Allow)
	tk.Finish(Failed)
	if en := mustGet(t, e.c, streaky); en.UnansweredStreak != 2 {
		t.Errorf("streak a day later: %d, want 2 (streaks have no window)", en.UnansweredStreak)
	}
}

// TestCountersSweptFromDisk: counters that left their windows leave the
// disk too.
func TestCountersSweptFromDisk(t *testing.T) {
	e := open(t, DefaultLimits())
	k := key("+16505550001")
	mustGrant(t, e.c, k, true)
	_, tk := admit(t, e.c, k, Allow)
	tk.Finish(Answered)
	if n := countBucket(t, e.c, bucketCounters); n != 1 {
		t.Fatalf("%d counter records, want 1", n)
	}
	e.clock.Advance(day + time.Minute)
	e.c.sweep()
	if n := countBucket(t, e.c, bucketCounters); n != 0 {
		t.Errorf("%d counter records after the window, want 0", n)
	}
	if n := countBucket(t, e.c, bucketNumCalls); n != 0 {
		t.Errorf("%d number call buckets after the window, want 0", n)
	}
}

func countBucket(t *testing.T, c *Cache, name []byte) int {
	t.Helper()
	n := 0
	err := c.store.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(name).ForEach(func(_, _ []byte) error { n++; return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestUnreadableCountersSkipped: a damaged counter record is logged and
// dropped; it does not keep wagate from starting.
func TestUnreadableCountersSkipped(t *testing.T) {
	e := open(t, DefaultLimits())
	err := e.c.store.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCounters).Put([]byte("106540352242922/+16505550001"), []byte{1, 0, 0, 0, 9, 0, 0})
	})
	if err != nil {
		t.Fatal(err)
	}
	e.reopen(t)
	if _, ok := e.c.Get(key("+16505550001")); ok {
		t.Error("damaged counters loaded")
	}
	if n := countBucket(t, e.c, bucketCounters); n != 0 {
		t.Errorf("damaged record kept: %d", n)
	}
}

// TestMetaNoPermissionLearned: Meta's own 403 No Approved Call Permission
// Found revokes the pair here, durably, and is counted.
func TestMetaNoPermissionLearned(t *testing.T) {
	e := open(t, DefaultLimits())
	k := key("+16505550001")
	mustGrant(t, e.c, k, true)
	_, tk := admit(t, e.c, k, Allow)
	tk.Finish(MetaNoPermission)
	admit(t, e.c, k, NoPermission)
	en := mustGet(t, e.c, k)
	if en.Status != StatusNone || en.Source != SourceMetaRefused || en.UnansweredStreak != 0 {
		t.Errorf("after Meta's 403: %+v", en)
	}
	if s := e.c.Stats(); s.LearnedNoPermission != 1 {
		t.Errorf("learned_no_permission %d", s.LearnedNoPermission)
	}
	e.reopen(t)
	admit(t, e.c, k, NoPermission)
}

// TestRequestsResetByUIC: a connected user-initiated call resets the
// permission-request limits, as a connected business call does.
func TestRequestsResetByUIC(t *testing.T) {
	e := open(t, DefaultLimits())
	k := key("+16505550001")
	if d := e.c.RecordPermissionRequest(k); !d.Allowed() {
		t.Fatal(d.Verdict)
	}
	if d := e.c.RecordPermissionRequest(k); d.Verdict != RequestCapHit {
		t.Fatalf("second request: %v", d.Verdict)
	}
	e.c.UICConnected(k)
	if d := e.c.RecordPermissionRequest(k); !d.Allowed() {
		t.Errorf("request after a connected UIC: %v, want allow", d.Verdict)
	}
	e.reopen(t)
	if d := e.c.RecordPermissionRequest(k); d.Verdict != RequestCapHit {
		t.Errorf("the request after the reset was not persisted: %v", d.Verdict)
	}
}

// TestRequestForPermanentRefused: Meta's 138017.
func TestRequestForPermanentRefused(t *testing.T) {
	e := open(t, DefaultLimits())
	k := key("+16505550001")
	mustGrant(t, e.c, k, true)
	d := e.c.RecordPermissionRequest(k)
	if d.Verdict != AlreadyPermanent || d.MetaError != 138017 {
		t.Errorf("request for a permanent pair: %+v", d)
	}
	if en := mustGet(t, e.c, k); en.Requests7d != 0 {
		t.Errorf("refused request counted: %+v", en)
	}
}

// TestRestriction: Meta's pause of business-initiated calling refuses
// calls and requests from that number until its end, across a restart, and
// no longer.
func TestRestriction(t *testing.T) {
	e := open(t, DefaultLimits())
	k := key("+16505550001")
	mustGrant(t, e.c, k, true)
	until := epoch.Add(7 * day)
	if err := e.c.Restrict(k.PhoneNumberID, until, "RESTRICTED_BUSINESS_INITIATED_CALLING"); err != nil {
		t.Fatal(err)
	}
	d, _ := admit(t, e.c, k, Restricted)
	if d.MetaError != 138013 || d.Code != 403 || d.RetryAfter != 7*day {
		t.Errorf("restricted call: %+v", d)
	}
	if d := e.c.RecordPermissionRequest(key("+16505550002")); d.Verdict != Restricted {
		t.Errorf("request from a restricted number: %v", d.Verdict)
	}
	// Other numbers are not affected.
	other := Key{PhoneNumberID: "999", User: k.User}
	mustGrant(t, e.c, other, true)
	_, tk := admit(t, e.c, other, Allow)
	tk.Finish(Failed)

	e.clock.Advance(day)
	e.reopen(t)
	rs, _ := e.c.Restrictions()
	if len(rs) != 1 || !rs[0].Until.Equal(until) || rs[0].Reason != "RESTRICTED_BUSINESS_INITIATED_CALLING" {
		t.Errorf("restrictions after restart: %+v", rs)
	}
	admit(t, e.c, k, Restricted)
	e.clock.Advance(6 * day)
	_, tk = admit(t, e.c, k, Allow)
	tk.Finish(Failed)
	e.c.sweep()
	if n := countBucket(t, e.c, bucketRestrict); n != 0 {
		t.Errorf("ended restriction still on disk")
	}
}

// TestMessagesRemembered: an applied webhook message id is remembered
// across a restart, for the retention.
func TestMessagesRemembered(t *testing.T) {
	e := open(t, DefaultLimits())
	if seen, _ := e.c.MessageSeen("wamid.1"); seen {
		t.Fatal("unseen id seen")
	}
	if err := e.c.MarkMessage("wamid.1"); err != nil {
		t.Fatal(err)
	}
	// Meta's lift of a number: when it was sent is kept with the ids.
	if _, err := e.c.RestrictFromMeta("100000000000001", epoch.Add(-time.Hour), epoch.Add(-time.Hour), "RESTRICTED_BUSINESS_INITIATED_CALLING"); err != nil {
		t.Fatal(err)
	}
	e.reopen(t)
	if seen, _ := e.c.MessageSeen("wamid.1"); !seen {
		t.Error("applied id forgotten by a restart")
	}
	e.clock.Advance(messageRetention + time.Minute)
	e.c.sweep()
	if seen, _ := e.c.MessageSeen("wamid.1"); seen {
		t.Error("id remembered past the retention")
	}
	if n := countBucket(t, e.c, bucketMessages); n != 0 {
		t.Errorf("%d ids on disk past the retention", n)
	}
}

// TestLapsedWhileStoppedDropped: webhook message ids and Meta's pauses
// that ran out while wagate was stopped are dropped from disk when it
// starts; else each would stay in the file for ever (the sweep only sees
// what memory holds).
func TestLapsedWhileStoppedDropped(t *testing.T) {
	e := open(t, DefaultLimits())
	if err := e.c.MarkMessage("wamid.old"); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Restrict("100000000000001", epoch.Add(time.Hour), "RESTRICTED_BUSINESS_INITIATED_CALLING"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.RestrictFromMeta("100000000000002", epoch.Add(time.Hour), epoch, "RESTRICTED_BUSINESS_INITIATED_CALLING"); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Close(); err != nil {
		t.Fatal(err)
	}
	e.c = nil
	e.clock.Advance(messageRetention + time.Minute)
	e.reopen(t)
	if err := e.c.MarkMessage("wamid.new"); err != nil {
		t.Fatal(err)
	}
	e.c.sweep()
	if n := countBucket(t, e.c, bucketMessages); n != 1 {
		t.Errorf("%d message ids on disk, want 1 (the one within the retention)", n)
	}
	if n := countBucket(t, e.c, bucketRestrict); n != 0 {
		t.Errorf("%d pauses on disk that ended while wagate was stopped", n)
	}
}

// TestStaleReplyIgnored: a reply older than the pair's last change is
// ignored, so a late or replayed accept does not undo a newer reject.
func TestStaleReplyIgnored(t *testing.T) {
	e := open(t, DefaultLimits())
	k := key("+16505550001")
	t0 := epoch.Add(-time.Hour)
	if ok, err := e.c.ApplyReply(Reply{Key: k, Accept: true, Permanent: true, Source: "webhook:user_action", At: t0}); !ok || err != nil {
		t.Fatalf("accept: %v %v", ok, err)
	}
	if ok, err := e.c.ApplyReply(Reply{Key: k, Source: "webhook:reject", At: t0.Add(time.Minute)}); !ok || err != nil {
		t.Fatalf("reject: %v %v", ok, err)
	}
	// The accept again (a replay), and an accept sent between the two.
	for _, at := range []time.Time{t0, t0.Add(30 * time.Second)} {
		if ok, err := e.c.ApplyReply(Reply{Key: k, Accept: true, Permanent: true, Source: "webhook:user_action", At: at}); ok || err != nil {
			t.Errorf("stale accept of %v applied: %v %v", at, ok, err)
		}
	}
	admit(t, e.c, k, NoPermission)
	if s := e.c.Stats(); s.StaleReplies != 2 {
		t.Errorf("stale_replies %d", s.StaleReplies)
	}
	// A newer accept applies.
	if ok, _ := e.c.ApplyReply(Reply{Key: k, Accept: true, Source: "webhook:user_action", At: t0.Add(2 * time.Minute)}); !ok {
		t.Error("newer accept ignored")
	}
	admit(t, e.c, k, Allow)
}

// TestLateAcceptOverUICGrant: the user accepted calls permanently, then
// called the business (its callback grant, temporary, is recorded at
// once), and Meta delivered the accept after the call, with its earlier
// time (a retried delivery). The accept is the user's word: the pair is
// permanent, not 168 hours from the call. A late accept that grants less
// than the callback grant, and any late reply after a newer revocation or
// a newer grant that is not a callback, is still ignored.
func TestLateAcceptOverUICGrant(t *testing.T) {
	e := open(t, DefaultLimits())
	k := key("+16505550001")
	e.c.GrantFromUIC(k)
	if ok, err := e.c.ApplyReply(Reply{Key: k, Accept: true, Source: "webhook:user_action", At: epoch.Add(-time.Hour),
		Expires: epoch.Add(time.Hour)}); ok || err != nil {
		t.Errorf("late accept shorter than the callback grant applied: %v %v", ok, err)
	}
	if ok, err := e.c.ApplyReply(Reply{Key: k, Accept: true, Permanent: true, Source: "webhook:user_action", At: epoch.Add(-time.Minute)}); !ok || err != nil {
		t.Fatalf("late permanent accept after the callback grant: %v %v", ok, err)
	}
	e.reopen(t)
	e.clock.Advance(DefaultLimits().TemporaryTTL + time.Hour)
	if en, _ := e.c.Get(k); en.Status != StatusPermanent {
		t.Errorf("status %s after the callback grant's 168 h, want permanent", en.Status)
	}
	// Replies older than it stay ordered after it: a reject the user sent
	// between the two is older than the pair's last change.
	if ok, _ := e.c.ApplyReply(Reply{Key: k, Source: "webhook:reject", At: epoch.Add(-30 * time.Second)}); ok {
		t.Error("a reject older than the callback grant applied")
	}

	k2 := key("+16505550002")
	mustGrant(t, e.c, k2, false) // an operator's grant, not a callback
	if ok, _ := e.c.ApplyReply(Reply{Key: k2, Accept: true, Permanent: true, At: e.clock.Now().Add(-time.Minute)}); ok {
		t.Error("a late accept overrode a newer grant that was not a callback")
	}
}

// TestRejectBeforeAcceptOrdered: a reject for a pair never granted is
// recorded, so that an accept the user sent before it, arriving late, is
// ignored.
func TestRejectBeforeAcceptOrdered(t *testing.T) {
	e := open(t, DefaultLimits())
	k := key("+16505550001")
	if ok, err := e.c.ApplyReply(Reply{Key: k, Source: "webhook:reject", At: epoch.Add(-time.Minute)}); !ok || err != nil {
		t.Fatalf("reject: %v %v", ok, err)
	}
	if ok, _ := e.c.ApplyReply(Reply{Key: k, Accept: true, At: epoch.Add(-2 * time.Minute)}); ok {
		t.Error("older accept applied after the reject")
	}
}

// TestBSUIDLinked: a reply naming both the phone number and the BSUID links
// them: a grant stored under the BSUID moves to the phone number, a BIC to
// either is the same user, and a reject naming only the BSUID revokes the
// phone number's grant.
func TestBSUIDLinked(t *testing.T) {
	e := open(t, DefaultLimits())
	bsuid := "us.AbC123_"
	long := "US." + repeat("x", 250) // 253 characters: Meta allows 256
	phone := key("+16505550001")
	bk := key(bsuid)
	// A grant known only by BSUID (Meta withheld the number).
	if ok, err := e.c.ApplyReply(Reply{Key: bk, Accept: true, Permanent: true, Source: "webhook:user_action", At: epoch.Add(-time.Hour)}); !ok || err != nil {
		t.Fatalf("BSUID grant: %v %v", ok, err)
	}
	_, tk := admit(t, e.c, bk, Allow)
	tk.Finish(Failed)
	admit(t, e.c, phone, NoPermission) // not linked yet

	// A later message names both: linked, the grant follows.
	if ok, err := e.c.ApplyReply(Reply{Key: phone, BSUID: bsuid, Accept: true, Permanent: true, Source: "webhook:user_action", At: epoch.Add(-time.Hour)}); err != nil {
		t.Fatalf("linking reply: %v %v", ok, err)
	}
	_, tk = admit(t, e.c, phone, Allow)
	tk.Finish(Failed)
	_, tk = admit(t, e.c, bk, Allow)
	// Busy is one state for both names.
	admit(t, e.c, phone, Busy)
	tk.Finish(Failed)

	e.reopen(t)
	if ok, err := e.c.ApplyReply(Reply{Key: bk, Source: "webhook:reject", At: epoch}); !ok || err != nil {
		t.Fatalf("BSUID reject: %v %v", ok, err)
	}
	admit(t, e.c, phone, NoPermission)
	if en := mustGet(t, e.c, bk); en.Key != phone || en.Status != StatusNone {
		t.Errorf("BSUID lookup: %+v", en)
	}

	// Long BSUIDs are keys too.
	lk := key(long)
	mustGrant(t, e.c, lk, true)
	_, tk = admit(t, e.c, lk, Allow)
	tk.Finish(Failed)
}

func repeat(s string, n int) string {
	b := make([]byte, 0, n*len(s))
	for range n {
		b = append(b, s...)
	}
	return string(b)
}
