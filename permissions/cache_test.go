package permissions

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestTemporaryExpiresAfterTTL(t *testing.T) {
	e := open(t, DefaultLimits())
	k := key("+16505551234")
	mustGrant(t, e.c, k, false)
	en := mustGet(t, e.c, k)
	if en.Status != StatusTemporary || !en.ExpiresAt.Equal(epoch.Add(168*time.Hour)) || !en.GrantedAt.Equal(epoch) || en.Source != "test" {
		t.Fatalf("after grant: %+v", en)
	}
	e.clock.Advance(168*time.Hour - time.Nanosecond)
	_, tk := admit(t, e.c, k, Allow)
	tk.Finish(Cancelled)
	e.clock.Advance(time.Nanosecond)
	if en := mustGet(t, e.c, k); en.Status != StatusNone {
		t.Errorf("at expiry status = %s", en.Status)
	}
	d, _ := admit(t, e.c, k, NoPermission)
	if d.Code != 403 || d.Reason != "No Approved Call Permission Found" || d.MetaError != 138006 || d.RetryAfter != 0 {
		t.Errorf("no permission decision = %+v", d)
	}
}

func TestGrantExplicitExpiry(t *testing.T) {
	e := open(t, DefaultLimits())
	k := key("+16505551234")
	exp := epoch.Add(3 * time.Hour)
	if err := e.c.Grant(k, false, exp, "webhook:user_action"); err != nil {
		t.Fatal(err)
	}
	if en := mustGet(t, e.c, k); !en.ExpiresAt.Equal(exp) {
		t.Errorf("expires %v, want %v", en.ExpiresAt, exp)
	}
	if err := e.c.Grant(k, false, epoch, "api"); !errors.Is(err, ErrExpired) {
		t.Errorf("grant expiring now: %v, want ErrExpired", err)
	}
	if err := e.c.Grant(Key{PhoneNumberID: "x", User: "+16505551234"}, true, time.Time{}, "api"); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("grant with bad key: %v", err)
	}
}

func TestPermanentStays(t *testing.T) {
	e := open(t, DefaultLimits())
	k := key("+16505551234")
	mustGrant(t, e.c, k, true)
	e.clock.Advance(10 * 365 * 24 * time.Hour)
	e.c.sweep()
	en := mustGet(t, e.c, k)
	if en.Status != StatusPermanent || !en.ExpiresAt.IsZero() {
		t.Fatalf("permanent after 10 years: %+v", en)
	}
	admit(t, e.c, k, Allow)
}

func TestDailyConnectedCap(t *testing.T) {
	e := open(t, DefaultLimits())
	k := key("+16505551234")
	mustGrant(t, e.c, k, true)
	for i := 0; i < 100; i++ {
		_, tk := admit(t, e.c, k, Allow)
		tk.Connected()
		tk.Finish(Answered)
		e.clock.Advance(time.Minute)
	}
	if en := mustGet(t, e.c, k); en.ConnectedCalls24h != 100 {
		t.Fatalf("connected calls = %d", en.ConnectedCalls24h)
	}
	d, _ := admit(t, e.c, k, DailyCapHit)
	// The first call (at epoch) leaves the window at epoch+24h; it is now
	// epoch+100m.
	if want := 24*time.Hour - 100*time.Minute; d.RetryAfter != want {
		t.Errorf("Retry-After = %v, want %v", d.RetryAfter, want)
	}
	if d.Code != 403 || d.Reason != "Business Initiated Connected Call Per Day Limit Hit" || d.MetaError != 138012 {
		t.Errorf("decision = %+v", d)
	}
	if got := d.RetryAfterSeconds(); got != int((24*time.Hour-100*time.Minute)/time.Second) {
		t.Errorf("RetryAfterSeconds = %d", got)
	}
	// The permission stays.
	if en := mustGet(t, e.c, k); en.Status != StatusPermanent {
		t.Errorf("status after cap = %s", en.Status)
	}
	e.clock.Advance(d.RetryAfter - time.Second)
	admit(t, e.c, k, DailyCapHit)
	e.clock.Advance(time.Second)
	_, tk := admit(t, e.c, k, Allow)
	tk.Finish(Answered)
	admit(t, e.c, k, DailyCapHit) // 100 again: calls 2..100 and this one
}

func TestUnansweredStreak(t *testing.T) {
	const (
		A = Answered
		U = Unanswered
		R = Rejected
		F = Failed
		C = Cancelled
	)
	tests := []struct {
		name       string
		outcomes   []Outcome
		wantStatus Status
		wantStreak int
	}{
		{"four unanswered revoke", []Outcome{U, U, U, U}, StatusNone, 0},
		{"rejected counts too", []Outcome{R, U, R, U}, StatusNone, 0},
		{"three are not enough", []Outcome{U, U, U}, StatusPermanent, 3},
		{"an answer resets", []Outcome{U, U, U, A, U, U, U}, StatusPermanent, 3},
		{"failed and cancelled do not count", []Outcome{U, F, U, C, U, F, C}, StatusPermanent, 3},
		{"failed does not reset", []Outcome{U, U, F, U, C, U}, StatusNone, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := open(t, DefaultLimits())
			k := key("+16505551234")
			mustGrant(t, e.c, k, true)
			for i, o := range tt.outcomes {
				d, tk := e.c.Admit(k)
				if !d.Allowed() {
					t.Fatalf("call %d refused: %+v", i, d)
				}
				tk.Finish(o)
			}
			en := mustGet(t, e.c, k)
			if en.Status != tt.wantStatus || en.UnansweredStreak != tt.wantStreak {
				t.Fatalf("status %s streak %d, want %s %d", en.Status, en.UnansweredStreak, tt.wantStatus, tt.wantStreak)
			}
			if tt.wantStatus == StatusNone {
				if en.Source != SourceUnanswered {
					t.Errorf("source %q", en.Source)
				}
				admit(t, e.c, k, NoPermission)
				// The revocation is on disk.
				e.reopen(t)
				if en := mustGet(t, e.c, k); en.Status != StatusNone {
					t.Errorf("after reopen status %s", en.Status)
				}
			}
		})
	}
}

func TestNudgeAndRevokeLogged(t *testing.T) {
	e := open(t, DefaultLimits())
	k := key("+16505551234")
	mustGrant(t, e.c, k, false)
	for i := 0; i < 2; i++ {
		_, tk := admit(t, e.c, k, Allow)
		tk.Finish(Unanswered)
	}
	if !strings.Contains(e.logs.String(), "nudge") {
		t.Errorf("no nudge logged after 2 unanswered:\n%s", e.logs)
	}
	for i := 0; i < 2; i++ {
		_, tk := admit(t, e.c, k, Allow)
		tk.Finish(Rejected)
	}
	if !strings.Contains(e.logs.String(), "revoked") {
		t.Errorf("no revocation logged:\n%s", e.logs)
	}
}

func TestStreakRevocationLosesToNewerGrant(t *testing.T) {
	lim := DefaultLimits()
	lim.UnansweredRevoke = 1
	e := open(t, lim)
	k := key("+16505551234")
	mustGrant(t, e.c, k, true)
	_, tk := admit(t, e.c, k, Allow)
	tk.Finish(Unanswered) // revoked, persisted
	mustGrant(t, e.c, k, false)
	e.reopen(t)
	if en := mustGet(t, e.c, k); en.Status != StatusTemporary {
		t.Errorf("status %s, want the later grant", en.Status)
	}
}

func TestBusy(t *testing.T) {
	e := open(t, DefaultLimits())
	k := key("+16505551234")
	mustGrant(t, e.c, k, true)
	_, tk := admit(t, e.c, k, Allow)
	d, _ := admit(t, e.c, k, Busy)
	if d.Code != 486 || d.Reason != "Busy Here" || d.MetaError != 138003 {
		t.Errorf("busy decision %+v", d)
	}
	if en := mustGet(t, e.c, k); en.ActiveCalls != 1 {
		t.Errorf("active calls %d", en.ActiveCalls)
	}
	// Another user of the same number is not busy.
	other := key("+16505550000")
	mustGrant(t, e.c, other, true)
	_, tk2 := admit(t, e.c, other, Allow)
	tk2.Finish(Failed)
	tk.Connected()
	admit(t, e.c, k, Busy)
	tk.Finish(Answered)
	_, tk = admit(t, e.c, k, Allow)
	tk.Finish(Cancelled)
}

func TestNumberRateCap(t *testing.T) {
	lim := DefaultLimits()
	lim.NewCallsPerNumber24h = 3
	e := open(t, lim)
	users := []Key{key("+16505550001"), key("+16505550002"), key("+16505550003"), key("+16505550004")}
	for _, k := range users {
		mustGrant(t, e.c, k, true)
	}
	for i, k := range users[:3] {
		_, tk := admit(t, e.c, k, Allow)
		tk.Finish(Failed) // a finished call still counts for the rate
		if i < 2 {
			e.clock.Advance(time.Hour)
		}
	}
	d, _ := admit(t, e.c, users[3], NumberRateCap)
	if want := 22 * time.Hour; d.RetryAfter != want {
		t.Errorf("Retry-After %v, want %v", d.RetryAfter, want)
	}
	if d.Code != 503 || d.Reason != "Service Unavailable" || d.MetaError != 138005 {
		t.Errorf("rate decision %+v", d)
	}
	// Another business number has its own budget.
	k2 := Key{PhoneNumberID: "999", User: "+16505550004"}
	mustGrant(t, e.c, k2, true)
	_, tk := admit(t, e.c, k2, Allow)
	tk.Finish(Failed)
	e.clock.Advance(d.RetryAfter)
	_, tk = admit(t, e.c, users[3], Allow)
	tk.Finish(Failed)
}

func TestNumberConcurrencyCap(t *testing.T) {
	lim := DefaultLimits()
	lim.ConcurrentPerNumber = 2
	e := open(t, lim)
	users := []Key{key("+16505550001"), key("+16505550002"), key("+16505550003")}
	for _, k := range users {
		mustGrant(t, e.c, k, true)
	}
	_, t1 := admit(t, e.c, users[0], Allow)
	_, t2 := admit(t, e.c, users[1], Allow)
	d, _ := admit(t, e.c, users[2], NumberConcurrencyCap)
	if d.Code != 503 || d.MetaError != 138002 || d.RetryAfter <= 0 {
		t.Errorf("concurrency decision %+v", d)
	}
	t1.Finish(Answered)
	t1.Finish(Answered) // idempotent: must not free a second slot
	_, t3 := admit(t, e.c, users[2], Allow)
	admit(t, e.c, users[0], NumberConcurrencyCap)
	t2.Finish(Cancelled)
	t3.Finish(Cancelled)
}

func TestPermissionRequests(t *testing.T) {
	e := open(t, DefaultLimits())
	k := key("+16505551234")
	if d := e.c.RecordPermissionRequest(k); !d.Allowed() {
		t.Fatalf("first request refused: %+v", d)
	}
	d := e.c.RecordPermissionRequest(k)
	if d.Verdict != RequestCapHit || d.RetryAfter != 24*time.Hour || d.Code != 429 {
		t.Fatalf("second request within 24h: %+v", d)
	}
	e.clock.Advance(24 * time.Hour)
	if d := e.c.RecordPermissionRequest(k); !d.Allowed() {
		t.Fatalf("request after 24h refused: %+v", d)
	}
	if en := mustGet(t, e.c, k); en.Requests24h != 1 || en.Requests7d != 2 {
		t.Errorf("counters %+v", en)
	}
	e.clock.Advance(24 * time.Hour)
	d = e.c.RecordPermissionRequest(k)
	// Two in 7 days: the first (at epoch) leaves at epoch+7d; now is epoch+2d.
	if d.Verdict != RequestCapHit || d.RetryAfter != 5*24*time.Hour {
		t.Fatalf("third request within 7d: %+v", d)
	}
	// A connected call resets the counters.
	mustGrant(t, e.c, k, false)
	_, tk := admit(t, e.c, k, Allow)
	tk.Connected()
	tk.Finish(Answered)
	if d := e.c.RecordPermissionRequest(k); !d.Allowed() {
		t.Fatalf("request after a connected call refused: %+v", d)
	}
}

func TestGrantFromUIC(t *testing.T) {
	e := open(t, DefaultLimits())
	perm, temp, none := key("+16505550001"), key("+16505550002"), key("+16505550003")
	mustGrant(t, e.c, perm, true)
	if err := e.c.Grant(temp, false, epoch.Add(time.Hour), "webhook:user_action"); err != nil {
		t.Fatal(err)
	}
	e.c.GrantFromUIC(perm)
	e.c.GrantFromUIC(temp)
	e.c.GrantFromUIC(none)
	if en := mustGet(t, e.c, perm); en.Status != StatusPermanent || en.Source != "test" {
		t.Errorf("permanent after UIC: %+v", en)
	}
	if en := mustGet(t, e.c, temp); en.Status != StatusTemporary || !en.ExpiresAt.Equal(epoch.Add(168*time.Hour)) || en.Source != SourceUIC {
		t.Errorf("short temporary after UIC: %+v", en)
	}
	if en := mustGet(t, e.c, none); en.Status != StatusTemporary || en.Source != SourceUIC {
		t.Errorf("new pair after UIC: %+v", en)
	}
	// A longer temporary grant is not shortened.
	long := key("+16505550004")
	if err := e.c.Grant(long, false, epoch.Add(400*time.Hour), "api"); err != nil {
		t.Fatal(err)
	}
	e.c.GrantFromUIC(long)
	if en := mustGet(t, e.c, long); !en.ExpiresAt.Equal(epoch.Add(400 * time.Hour)) {
		t.Errorf("longer grant shortened: %+v", en)
	}
	e.c.GrantFromUIC(Key{PhoneNumberID: "1", User: "nonsense"}) // logged, no panic
}

func TestRevoke(t *testing.T) {
	e := open(t, DefaultLimits())
	k := key("+16505551234")
	if err := e.c.Revoke(k, "api"); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoke unknown: %v", err)
	}
	mustGrant(t, e.c, k, true)
	if err := e.c.Revoke(k, "api"); err != nil {
		t.Fatal(err)
	}
	en := mustGet(t, e.c, k)
	if en.Status != StatusNone || en.Source != "api" || !en.GrantedAt.IsZero() || !en.UpdatedAt.Equal(epoch) {
		t.Errorf("after revoke: %+v", en)
	}
	if err := e.c.Revoke(k, "api"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second revoke: %v", err)
	}
	admit(t, e.c, k, NoPermission)
}

func TestTicketIdempotent(t *testing.T) {
	e := open(t, DefaultLimits())
	k := key("+16505551234")
	mustGrant(t, e.c, k, true)
	_, tk := admit(t, e.c, k, Allow)
	tk.Connected()
	tk.Connected()
	tk.Finish(Answered)
	tk.Finish(Unanswered)
	tk.Connected()
	en := mustGet(t, e.c, k)
	if en.ConnectedCalls24h != 1 || en.UnansweredStreak != 0 || en.ActiveCalls != 0 {
		t.Errorf("after repeated calls on one ticket: %+v", en)
	}
	// Connected, then ended by a 480-ish outcome: still an answered call.
	_, tk = admit(t, e.c, k, Allow)
	tk.Connected()
	tk.Finish(Unanswered)
	if en := mustGet(t, e.c, k); en.UnansweredStreak != 0 || en.ConnectedCalls24h != 2 {
		t.Errorf("connected then unanswered: %+v", en)
	}
}

func TestPersistence(t *testing.T) {
	e := open(t, DefaultLimits())
	temp, perm, revoked := key("+16505550001"), key("+16505550002"), Key{PhoneNumberID: "77", User: "US.13491208655302741918"}
	mustGrant(t, e.c, temp, false)
	mustGrant(t, e.c, perm, true)
	mustGrant(t, e.c, revoked, true)
	if err := e.c.Revoke(revoked, "webhook:reject"); err != nil {
		t.Fatal(err)
	}
	before := map[Key]Entry{}
	for _, k := range []Key{temp, perm, revoked} {
		before[k] = mustGet(t, e.c, k)
	}
	e.clock.Advance(time.Hour)
	e.reopen(t)
	for k, want := range before {
		got := mustGet(t, e.c, k)
		if got.Status != want.Status || !got.ExpiresAt.Equal(want.ExpiresAt) || !got.GrantedAt.Equal(want.GrantedAt) ||
			!got.UpdatedAt.Equal(want.UpdatedAt) || got.Source != want.Source {
			t.Errorf("%v after reopen: %+v, want %+v", k, got, want)
		}
	}
}

func TestTemporaryGoneAfterTTLAcrossRestart(t *testing.T) {
	e := open(t, DefaultLimits())
	temp, perm := key("+16505550001"), key("+16505550002")
	mustGrant(t, e.c, temp, false)
	mustGrant(t, e.c, perm, true)
	if err := e.c.Close(); err != nil {
		t.Fatal(err)
	}
	e.c = nil
	e.clock.Advance(169 * time.Hour)
	e.reopen(t)
	if en, ok := e.c.Get(temp); ok {
		t.Errorf("lapsed temporary grant reloaded: %+v", en)
	}
	admit(t, e.c, temp, NoPermission)
	if en := mustGet(t, e.c, perm); en.Status != StatusPermanent {
		t.Errorf("permanent %+v", en)
	}
	if n := countRecords(t, e.c); n != 1 {
		t.Errorf("%d records on disk, want 1 (the lapsed one dropped)", n)
	}
}

func countRecords(t *testing.T, c *Cache) int {
	t.Helper()
	n := 0
	if err := c.store.load(func(Key, record) { n++ }, func(k []byte, err error) { t.Errorf("bad record %q: %v", k, err) }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSweep(t *testing.T) {
	e := open(t, DefaultLimits())
	temp, perm, counted := key("+16505550001"), key("+16505550002"), key("+16505550003")
	mustGrant(t, e.c, temp, false)
	mustGrant(t, e.c, perm, true)
	e.c.RecordPermissionRequest(counted)
	revoked := key("+16505550004")
	mustGrant(t, e.c, revoked, true)
	if err := e.c.Revoke(revoked, "api"); err != nil {
		t.Fatal(err)
	}
	e.c.sweep()
	if e.c.Len() != 4 || countRecords(t, e.c) != 3 {
		t.Fatalf("early sweep dropped something: %d pairs, %d records", e.c.Len(), countRecords(t, e.c))
	}
	e.clock.Advance(168 * time.Hour) // temp lapses, request counter leaves 7 d
	e.c.sweep()
	if _, ok := e.c.Get(temp); ok {
		t.Error("lapsed temporary still in memory")
	}
	if _, ok := e.c.Get(counted); ok {
		t.Error("idle counters still in memory")
	}
	if e.c.Len() != 2 || countRecords(t, e.c) != 2 {
		t.Errorf("after TTL: %d pairs, %d records; want 2, 2", e.c.Len(), countRecords(t, e.c))
	}
	e.clock.Advance(revokedRetention)
	e.c.sweep()
	if _, ok := e.c.Get(revoked); ok {
		t.Error("old revocation still held")
	}
	if e.c.Len() != 1 || countRecords(t, e.c) != 1 {
		t.Errorf("after retention: %d pairs, %d records; want 1, 1", e.c.Len(), countRecords(t, e.c))
	}
}

func TestList(t *testing.T) {
	e := open(t, DefaultLimits())
	var want []string
	for i := 9; i >= 0; i-- {
		k := Key{PhoneNumberID: "200", User: fmt.Sprintf("+1650555000%d", i)}
		mustGrant(t, e.c, k, i%2 == 0)
		want = append([]string{k.User}, want...)
	}
	mustGrant(t, e.c, Key{PhoneNumberID: "100", User: "+16505551234"}, true)

	users := func(es []Entry) []string {
		var s []string
		for _, en := range es {
			s = append(s, en.Key.User)
		}
		return s
	}
	all := e.c.List(Filter{})
	if len(all) != 11 || all[0].Key.PhoneNumberID != "100" {
		t.Fatalf("List all: %v", all)
	}
	if got := users(e.c.List(Filter{PhoneNumberID: "200", Limit: 3, Offset: 2})); strings.Join(got, ",") != strings.Join(want[2:5], ",") {
		t.Errorf("page = %v, want %v", got, want[2:5])
	}
	if got := e.c.List(Filter{PhoneNumberID: "200", Status: StatusPermanent}); len(got) != 5 {
		t.Errorf("permanent of 200: %d", len(got))
	}
	if got := e.c.List(Filter{PhoneNumberID: "200", Offset: 10}); len(got) != 0 {
		t.Errorf("past the end: %v", got)
	}
	if got := e.c.List(Filter{PhoneNumberID: "404"}); len(got) != 0 {
		t.Errorf("unknown number: %v", got)
	}
	if got := e.c.List(Filter{Limit: 1}); len(got) != 1 || got[0].Key.PhoneNumberID != "100" {
		t.Errorf("limit 1: %v", got)
	}
}

// TestConcurrentAdmit hammers one number from many goroutines; with -race it
// checks the locking, and at the end every reservation must be released.
func TestConcurrentAdmit(t *testing.T) {
	lim := DefaultLimits()
	lim.ConcurrentPerNumber = 8
	e := open(t, lim)
	const users = 32
	for i := 0; i < users; i++ {
		mustGrant(t, e.c, key(fmt.Sprintf("+165055500%02d", i)), true)
	}
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				k := key(fmt.Sprintf("+165055500%02d", (g*7+i)%users))
				d, tk := e.c.Admit(k)
				if !d.Allowed() {
					continue
				}
				if i%3 == 0 {
					tk.Connected()
				}
				tk.Finish(Outcome(i % 5))
			}
		}(g)
	}
	wg.Wait()
	for _, en := range e.c.List(Filter{Limit: MaxListLimit}) {
		if en.ActiveCalls != 0 {
			t.Errorf("%v still has %d active calls", en.Key, en.ActiveCalls)
		}
	}
	n := e.c.number("106540352242922", false)
	if n.active != 0 {
		t.Errorf("number still has %d active calls", n.active)
	}
}

func TestStoreRejectsDamagedRecord(t *testing.T) {
	if _, err := decodeRecord([]byte{9, 9}); err == nil {
		t.Error("short record decoded")
	}
	r := record{state: stTemporary, expires: 3, granted: 1, updated: 2, source: "api"}
	b := r.encode()
	got, err := decodeRecord(b)
	if err != nil || got != r {
		t.Errorf("round trip %+v -> %+v, %v", r, got, err)
	}
	b[0] = 2
	if _, err := decodeRecord(b); err == nil {
		t.Error("unknown version decoded")
	}
}

func TestSetLimitsKeepsCounters(t *testing.T) {
	e := open(t, DefaultLimits())
	k := key("+16505551234")
	mustGrant(t, e.c, k, true)
	for i := 0; i < 3; i++ {
		_, tk := admit(t, e.c, k, Allow)
		tk.Finish(Answered)
	}
	lim := DefaultLimits()
	lim.ConnectedPerUser24h = 3
	e.c.SetLimits(lim)
	admit(t, e.c, k, DailyCapHit)
	lim.ConnectedPerUser24h = 0 // off
	e.c.SetLimits(lim)
	_, tk := admit(t, e.c, k, Allow)
	tk.Finish(Answered)
}

func TestOpenCreatesDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "sub", "permissions.db")
	c, err := Open(path, DefaultLimits(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
