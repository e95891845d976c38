package permissions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestRedisRules: the rules of the embedded store hold in Redis too.
func TestRedisRules(t *testing.T) {
	srv := startRedis(t)
	lim := DefaultLimits()
	lim.ConnectedPerUser24h = 2
	lim.ConcurrentPerNumber = 2
	lim.NewCallsPerNumber24h = 11
	r := openRedis(t, srv, "n1", lim)
	k := key("+16505550001")

	reserve(t, r, k, NoPermission)
	if err := r.Revoke(k, "api"); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoke of nothing: %v", err)
	}
	if err := r.Grant(k, false, time.Now().Add(-time.Minute), "api"); !errors.Is(err, ErrExpired) {
		t.Errorf("grant in the past: %v", err)
	}
	if err := r.Grant(k, true, time.Time{}, "api"); err != nil {
		t.Fatal(err)
	}
	// Busy, then the daily cap (2 connected calls).
	_, a := reserve(t, r, k, Allow)
	reserve(t, r, k, Busy)
	a.Connected()
	a.Finish(Answered)
	_, a = reserve(t, r, k, Allow)
	a.Finish(Answered)
	d, _ := reserve(t, r, k, DailyCapHit)
	if d.RetryAfter <= 23*time.Hour || d.RetryAfter > 24*time.Hour || d.MetaError != 138012 {
		t.Errorf("cap: %+v", d)
	}
	en := lookup(t, r, k)
	if en.Status != StatusPermanent || en.ConnectedCalls24h != 2 || en.Source != "api" || en.ActiveCalls != 0 {
		t.Errorf("lookup: %+v", en)
	}

	// The unanswered streak: 4 unanswered revoke; 408-like failures do not count.
	u := key("+16505550002")
	if err := r.Grant(u, false, time.Time{}, "webhook:user_action"); err != nil {
		t.Fatal(err)
	}
	for i, o := range []Outcome{Unanswered, Failed, Rejected, Unanswered, Unanswered} {
		_, res := reserve(t, r, u, Allow)
		res.Finish(o)
		if i == 1 {
			if en := lookup(t, r, u); en.UnansweredStreak != 1 {
				t.Errorf("a failed call moved the streak: %+v", en)
			}
		}
	}
	reserve(t, r, u, NoPermission)
	if en := lookup(t, r, u); en.Status != StatusNone || en.Source != SourceUnanswered {
		t.Errorf("after 4 unanswered: %+v", en)
	}

	// Meta's 403 learned.
	m := key("+16505550003")
	if err := r.Grant(m, true, time.Time{}, "api"); err != nil {
		t.Fatal(err)
	}
	_, res := reserve(t, r, m, Allow)
	res.Finish(MetaNoPermission)
	reserve(t, r, m, NoPermission)
	if s := r.Stats(); s.LearnedNoPermission != 1 || s.Backend != "redis" || !s.Up {
		t.Errorf("stats %+v", s)
	}

	// Permission requests: 1 per 24 h, reset by a connected UIC; 138017 for
	// a permanent pair.
	q := key("+16505550004")
	if d := r.RecordPermissionRequest(q); !d.Allowed() {
		t.Fatal(d.Verdict)
	}
	if d := r.RecordPermissionRequest(q); d.Verdict != RequestCapHit || d.MetaError != 138009 || d.RetryAfter <= 0 {
		t.Errorf("second request: %+v", d)
	}
	r.UICConnected(q)
	if d := r.RecordPermissionRequest(q); !d.Allowed() {
		t.Errorf("request after a connected UIC: %v", d.Verdict)
	}
	if d := r.RecordPermissionRequest(k); d.Verdict != AlreadyPermanent || d.MetaError != 138017 {
		t.Errorf("request for a permanent pair: %+v", d)
	}

	// Concurrency per number (2) and the number's rate (11 in 24 h; 8 so far).
	k5, k6, k7 := key("+16505550005"), key("+16505550006"), key("+16505550007")
	for _, x := range []Key{k5, k6, k7} {
		if err := r.Grant(x, true, time.Time{}, "api"); err != nil {
			t.Fatal(err)
		}
	}
	_, r5 := reserve(t, r, k5, Allow)
	_, r6 := reserve(t, r, k6, Allow)
	reserve(t, r, k7, NumberConcurrencyCap)
	r5.Finish(Failed)
	r6.Finish(Failed)
	_, r7 := reserve(t, r, k7, Allow) // the 11th new call
	r7.Finish(Failed)
	reserve(t, r, k7, NumberRateCap)

	// Restriction of the number.
	if err := r.Restrict(k.PhoneNumberID, time.Now().Add(7*day), "RESTRICTED_BUSINESS_INITIATED_CALLING"); err != nil {
		t.Fatal(err)
	}
	d, _ = reserve(t, r, k5, Restricted)
	if d.MetaError != 138013 || d.RetryAfter < 7*day-time.Minute {
		t.Errorf("restricted: %+v", d)
	}
	rs, err := r.Restrictions()
	if err != nil || len(rs) != 1 || rs[0].Reason != "RESTRICTED_BUSINESS_INITIATED_CALLING" {
		t.Errorf("restrictions: %+v %v", rs, err)
	}
	if err := r.Restrict(k.PhoneNumberID, time.Time{}, ""); err != nil {
		t.Fatal(err)
	}
	reserve(t, r, k5, NumberRateCap)

	// List.
	es, err := r.Entries(Filter{PhoneNumberID: k.PhoneNumberID, Status: StatusPermanent})
	if err != nil || len(es) != 4 {
		t.Errorf("list permanent: %d %v", len(es), err)
	}
}

// TestRedisReplies: reply ordering, replay ids and BSUID links.
func TestRedisReplies(t *testing.T) {
	srv := startRedis(t)
	r := openRedis(t, srv, "n1", DefaultLimits())
	phone, bsuid := key("+16505550001"), key("US.AbC_123")
	t0 := time.Now().Add(-time.Hour)

	if ok, err := r.ApplyReply(Reply{Key: bsuid, Accept: true, Permanent: true, Source: "webhook:user_action", At: t0}); !ok || err != nil {
		t.Fatalf("BSUID accept: %v %v", ok, err)
	}
	if ok, err := r.ApplyReply(Reply{Key: phone, BSUID: bsuid.User, Source: "webhook:reject", At: t0.Add(time.Minute)}); !ok || err != nil {
		t.Fatalf("linking reject: %v %v", ok, err)
	}
	reserve(t, r, bsuid, NoPermission)
	if ok, _ := r.ApplyReply(Reply{Key: bsuid, Accept: true, Permanent: true, At: t0.Add(30 * time.Second)}); ok {
		t.Error("stale accept by BSUID applied")
	}
	if ok, _ := r.ApplyReply(Reply{Key: bsuid, Accept: true, Permanent: true, At: t0.Add(2 * time.Minute)}); !ok {
		t.Error("newer accept by BSUID ignored")
	}
	_, res := reserve(t, r, phone, Allow)
	reserve(t, r, bsuid, Busy)
	res.Finish(Failed)

	if seen, err := r.MessageSeen("wamid.1"); seen || err != nil {
		t.Fatalf("fresh id seen: %v %v", seen, err)
	}
	if err := r.MarkMessage("wamid.1"); err != nil {
		t.Fatal(err)
	}
	if seen, _ := r.MessageSeen("wamid.1"); !seen {
		t.Error("marked id not seen")
	}
}

// TestRedisLateAcceptOverUICGrant: as TestLateAcceptOverUICGrant, with
// Redis: a permanent accept delivered after the callback grant of a later
// user-initiated call still makes the pair permanent; an older reject
// stays ordered after it.
func TestRedisLateAcceptOverUICGrant(t *testing.T) {
	srv := startRedis(t)
	r := openRedis(t, srv, "n1", DefaultLimits())
	k := key("+16505550001")
	r.GrantFromUIC(k)
	var granted time.Time
	for deadline := time.Now().Add(3 * time.Second); ; {
		if en, ok, err := r.Lookup(k); err == nil && ok && en.Status == StatusTemporary {
			granted = en.UpdatedAt
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the callback grant was not written")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ok, err := r.ApplyReply(Reply{Key: k, Accept: true, Source: "webhook:user_action", At: granted.Add(-time.Hour),
		Expires: time.Now().Add(time.Hour)}); ok || err != nil {
		t.Errorf("late accept shorter than the callback grant applied: %v %v", ok, err)
	}
	if ok, err := r.ApplyReply(Reply{Key: k, Accept: true, Permanent: true, Source: "webhook:user_action", At: granted.Add(-time.Minute)}); !ok || err != nil {
		t.Fatalf("late permanent accept after the callback grant: %v %v", ok, err)
	}
	if en, _, _ := r.Lookup(k); en.Status != StatusPermanent {
		t.Errorf("status %s, want permanent", en.Status)
	}
	if ok, _ := r.ApplyReply(Reply{Key: k, Source: "webhook:reject", At: granted.Add(-30 * time.Second)}); ok {
		t.Error("a reject older than the callback grant applied")
	}
}

// TestRedisNodesAdmitExactly: two nodes hammering one number and one user
// admit exactly what one node would: never more calls up than the
// concurrency cap, never more connected calls than the daily cap.
func TestRedisNodesAdmitExactly(t *testing.T) {
	srv := startRedis(t)
	lim := DefaultLimits()
	lim.ConnectedPerUser24h = 10
	lim.ConcurrentPerNumber = 3
	nodes := []*Redis{openRedis(t, srv, "n1", lim), openRedis(t, srv, "n2", lim), openRedis(t, srv, "n3", lim)}
	users := make([]Key, 6)
	for i := range users {
		users[i] = key("+1650555000" + string(rune('1'+i)))
		if err := nodes[0].Grant(users[i], true, time.Time{}, "api"); err != nil {
			t.Fatal(err)
		}
	}
	var up, maxUp, connected, capped atomic.Int64
	var seenCap [6]atomic.Bool
	deadline := time.Now().Add(20 * time.Second)
	var wg sync.WaitGroup
	for g := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := nodes[g%3]
			for i := 0; capped.Load() < int64(len(users)) && time.Now().Before(deadline); i++ {
				ui := (g + i) % len(users)
				u := users[ui]
				d, res := n.Reserve(u)
				if d.Verdict == DailyCapHit && seenCap[ui].CompareAndSwap(false, true) {
					capped.Add(1)
				}
				if !d.Allowed() {
					continue
				}
				now := up.Add(1)
				for {
					m := maxUp.Load()
					if now <= m || maxUp.CompareAndSwap(m, now) {
						break
					}
				}
				res.Connected()
				connected.Add(1)
				time.Sleep(time.Millisecond)
				up.Add(-1)
				res.Finish(Answered)
			}
		}()
	}
	wg.Wait()
	if m := maxUp.Load(); m > 3 {
		t.Errorf("%d calls up at once, cap 3", m)
	}
	if c := connected.Load(); c != int64(10*len(users)) {
		t.Errorf("%d connected calls, want exactly %d (10 per user)", c, 10*len(users))
	}
	for _, u := range users {
		if en := lookup(t, nodes[1], u); en.ConnectedCalls24h != 10 || en.ActiveCalls != 0 {
			t.Errorf("%v: %+v", u, en)
		}
	}
}

// TestRedisDeadNodeSlotsExpire: a node that dies with calls up holds their
// slots only until its instance key expires; the node id is free again
// then, and a second live node with the same id is refused.
func TestRedisDeadNodeSlotsExpire(t *testing.T) {
	srv := startRedis(t)
	lim := DefaultLimits()
	lim.ConcurrentPerNumber = 1
	a := openRedis(t, srv, "a", lim)
	b := openRedis(t, srv, "b", lim)
	k1, k2 := key("+16505550001"), key("+16505550002")
	for _, k := range []Key{k1, k2} {
		if err := a.Grant(k, true, time.Time{}, "api"); err != nil {
			t.Fatal(err)
		}
	}
	reserve(t, a, k1, Allow)
	reserve(t, b, k2, NumberConcurrencyCap)

	// Another node started with a's id while a runs: refused.
	if r, err := OpenRedis(context.Background(), RedisOptions{Addr: srv.addr, NodeID: "a", SlotTTL: time.Second, Limits: lim}); err == nil {
		r.Close()
		t.Fatal("a second node with a running node's id was accepted")
	}

	// a dies: it stops refreshing, and gives nothing back.
	a.stop()
	<-a.done
	died := time.Now()
	for {
		d, res := b.Reserve(k2)
		if d.Allowed() {
			res.Finish(Failed)
			break
		}
		if time.Since(died) > 3*time.Second {
			t.Fatalf("dead node's slot still held %v after it died (slot TTL 1 s): %v", time.Since(died), d.Verdict)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if since := time.Since(died); since < 500*time.Millisecond {
		t.Errorf("slot freed %v after the death, before the instance could expire", since)
	}
	// a restarted with its id takes it over once the old instance expired.
	openRedis(t, srv, "a", lim)
}

// TestRedisRestartKeepsGrants: Redis killed with SIGKILL right after a grant
// was acknowledged, and restarted: the grant (and the counters) are there,
// because Redis fsyncs its append-only file before it answers.
func TestRedisRestartKeepsGrants(t *testing.T) {
	srv := startRedis(t)
	r := openRedis(t, srv, "n1", DefaultLimits())
	k := key("+16505550001")
	if err := r.Grant(k, false, time.Time{}, "api"); err != nil {
		t.Fatal(err)
	}
	_, res := reserve(t, r, k, Allow)
	res.Finish(Answered)
	srv.restart()
	deadline := time.Now().Add(5 * time.Second)
	for {
		en, ok, err := r.Lookup(k)
		if err == nil && ok {
			if en.Status != StatusTemporary || en.ConnectedCalls24h != 1 {
				t.Errorf("after a Redis crash: %+v", en)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("grant after Redis restart: %v %v", ok, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRedisDownRefuses: with Redis gone, the default policy refuses with
// 503 (counted), changes fail with ErrUnavailable, and all works again
// when Redis returns.
func TestRedisDownRefuses(t *testing.T) {
	srv := startRedis(t)
	r := openRedis(t, srv, "n1", DefaultLimits())
	k := key("+16505550001")
	if err := r.Grant(k, true, time.Time{}, "api"); err != nil {
		t.Fatal(err)
	}
	srv.kill()
	d, _ := r.Reserve(k)
	if d.Verdict != Unavailable || d.Code != 503 || d.RetryAfter <= 0 {
		t.Errorf("redis down: %+v", d)
	}
	if err := r.Grant(k, true, time.Time{}, "api"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("grant with redis down: %v", err)
	}
	if _, _, err := r.Lookup(k); !errors.Is(err, ErrUnavailable) {
		t.Errorf("lookup with redis down: %v", err)
	}
	if s := r.Stats(); s.Up || s.RefusedUnavailable == 0 || s.Errors == 0 {
		t.Errorf("stats with redis down: %+v", s)
	}
	srv.restart()
	waitUp(t, r)
	_, res := reserve(t, r, k, Allow)
	res.Finish(Failed)
}

func waitUp(t *testing.T, r *Redis) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !r.Stats().Up {
		if time.Now().After(deadline) {
			t.Fatal("store still down 5 s after redis returned")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRedisDownFromCache: policy cache admits a pair this node saw granted,
// refuses one it saw without a permission as such (403, 138006), refuses
// one it never saw as unavailable (503 with Retry-After and no Meta error
// code: this node does not know, and a dialer told 138006 would ask a user
// who may well have said yes for permission again), and writes the call's
// outcome back when Redis returns, once.
func TestRedisDownFromCache(t *testing.T) {
	srv := startRedis(t)
	r := openRedis(t, srv, "n1", DefaultLimits(), func(o *RedisOptions) { o.OnDown = OnDownCache })
	k, unseen, none := key("+16505550001"), key("+16505550002"), key("+16505550003")
	if err := r.Grant(k, true, time.Time{}, "api"); err != nil {
		t.Fatal(err)
	}
	reserve(t, r, none, NoPermission) // seen: no permission
	srv.kill()
	_, res := reserve(t, r, k, Allow)
	reserve(t, r, k, Busy)
	if d, _ := reserve(t, r, unseen, Unavailable); d.Code != 503 || d.MetaError != 0 || d.RetryAfterSeconds() <= 0 {
		t.Errorf("a pair never seen, while Redis is down: %+v, want 503 with Retry-After and no Meta error", d)
	}
	reserve(t, r, none, NoPermission)
	res.Connected()
	res.Finish(Answered)
	if s := r.Stats(); s.AdmittedFromCache != 1 || s.PendingOutcomes != 1 || s.RefusedUnavailable != 1 {
		t.Errorf("stats while down: %+v", s)
	}
	srv.restart()
	waitUp(t, r)
	deadline := time.Now().Add(3 * time.Second)
	for r.Stats().PendingOutcomes > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if en := lookup(t, r, k); en.ConnectedCalls24h != 1 || en.ActiveCalls != 0 {
		t.Errorf("after write-back: %+v", en)
	}
}

// TestRedisGarbage: a Redis that answers nonsense (here a key of the wrong
// type where the pair's hash should be) fails the call cleanly: a 503, an
// error counted, no panic, and other pairs unaffected.
func TestRedisGarbage(t *testing.T) {
	srv := startRedis(t)
	r := openRedis(t, srv, "n1", DefaultLimits())
	k, ok := key("+16505550001"), key("+16505550002")
	cli := redis.NewClient(&redis.Options{Addr: srv.addr, DisableIdentity: true, Protocol: 2})
	defer cli.Close()
	if err := cli.Set(context.Background(), "wagate:p:"+k.PhoneNumberID+":"+k.User, "junk", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Grant(ok, true, time.Time{}, "api"); err != nil {
		t.Fatal(err)
	}
	d, _ := r.Reserve(k)
	if d.Verdict != Unavailable {
		t.Errorf("wrong-type key: %v", d.Verdict)
	}
	waitUp(t, r)
	_, res := reserve(t, r, ok, Allow)
	res.Finish(Failed)
}

// TestRedisRefusesNonDurable: a Redis that does not fsync every write is
// refused at start (a grant it acknowledged could be lost), unless allowed.
func TestRedisRefusesNonDurable(t *testing.T) {
	srv := startRedis(t, "--appendfsync", "everysec")
	_, err := OpenRedis(context.Background(), RedisOptions{Addr: srv.addr, NodeID: "n1", Limits: DefaultLimits()})
	if err == nil {
		t.Fatal("opened on a Redis with appendfsync everysec")
	}
	t.Log(err)
	openRedis(t, srv, "n1", DefaultLimits(), func(o *RedisOptions) { o.AllowNonDurable = true })
}

// TestRedisSlow: a Redis that stops answering (SIGSTOP) is a down Redis
// after permissions.redis.timeout: the admission is refused with 503 in
// about that time, not held; when it answers again, so does the store.
func TestRedisSlow(t *testing.T) {
	srv := startRedis(t)
	r := openRedis(t, srv, "n1", DefaultLimits(), func(o *RedisOptions) { o.Timeout = 200 * time.Millisecond })
	k := key("+16505550001")
	if err := r.Grant(k, true, time.Time{}, "api"); err != nil {
		t.Fatal(err)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	d, _ := r.Reserve(k)
	took := time.Since(start)
	if err := srv.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if d.Verdict != Unavailable {
		t.Errorf("stalled Redis: %v", d.Verdict)
	}
	if took > time.Second {
		t.Errorf("admission held %v by a stalled Redis (timeout 200 ms)", took)
	}
	waitUp(t, r)
	// Whether or not Redis ran the admission it was sent, no slot is left
	// taken by a call that was never placed.
	deadline := time.Now().Add(3 * time.Second)
	for lookup(t, r, k).ActiveCalls != 0 {
		if time.Now().After(deadline) {
			t.Fatal("a timed-out admission left the user busy")
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, res := reserve(t, r, k, Allow)
	res.Finish(Failed)
}

// TestRedisClaimRetriesSlowAnswer: a node starting while Redis is slow to
// answer its writes (here CLIENT PAUSE WRITE, as a long fsync would) keeps
// trying to claim its node id until slot_ttl has passed, instead of
// exiting at the first timed-out claim; once Redis answers it is up.
func TestRedisClaimRetriesSlowAnswer(t *testing.T) {
	srv := startRedis(t)
	cli := redis.NewClient(&redis.Options{Addr: srv.addr, DisableIdentity: true, Protocol: 2})
	defer cli.Close()
	// Reads (PING, CONFIG GET) still answer; every script waits 1.2 s.
	if err := cli.Do(context.Background(), "CLIENT", "PAUSE", "1200", "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// A short timeout, so that claims time out during the pause; a long
	// slot_ttl, so that a machine whose fsyncs are slow after it still
	// has time (the test does not wait for it otherwise).
	r := openRedis(t, srv, "n1", DefaultLimits(), func(o *RedisOptions) {
		o.Timeout = 300 * time.Millisecond
		o.SlotTTL = 10 * time.Second
	})
	if took := time.Since(start); took < time.Second {
		t.Errorf("the store opened %v after the pause began: the claim did not wait for Redis", took)
	}
	// The node id is this instance's in Redis (read: no fsync to wait for).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if got, err := cli.Get(ctx, r.prefix+"node:n1").Result(); err != nil || got != r.instance {
		t.Errorf("node id n1 held by %q (%v), want this instance %q", got, err, r.instance)
	}
}

// TestRedisDownAtStart: a node started while Redis cannot be reached (a
// host rebooted before Redis, a Redis restart during a deploy) starts
// anyway with the store down — business-initiated calls follow on_down
// (503), grants are refused as unavailable, and the node's other calls
// are its own affair — and comes up once Redis answers, holding its node
// id. A node that exited instead would take the calls that need no Redis
// (users calling the business) down with it. While another running node
// holds the id, it stays down.
func TestRedisDownAtStart(t *testing.T) {
	srv := startRedis(t)
	holder := openRedis(t, srv, "n2", DefaultLimits(), func(o *RedisOptions) { o.SlotTTL = 10 * time.Second })
	srv.kill()
	lim := DefaultLimits()
	var r, twin *Redis
	for _, p := range []struct {
		node string
		to   **Redis
	}{{"n1", &r}, {"n2", &twin}} {
		s, err := OpenRedis(context.Background(), RedisOptions{Addr: srv.addr, NodeID: p.node, Limits: lim, SlotTTL: time.Second,
			Timeout: 300 * time.Millisecond, Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		if err != nil {
			t.Fatalf("open %s while Redis is down: %v; want the node up with the store down", p.node, err)
		}
		t.Cleanup(func() { s.Close() })
		*p.to = s
	}
	k := key("+16505550001")
	if s := r.Stats(); s.Up {
		t.Errorf("store up with Redis down: %+v", s)
	}
	if d, _ := r.Reserve(k); d.Verdict != Unavailable || d.Code != 503 {
		t.Errorf("reserve while Redis is down since the start: %v %d", d.Verdict, d.Code)
	}
	if err := r.Grant(k, true, time.Time{}, "api"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("grant while Redis is down since the start: %v", err)
	}

	srv.restart()
	waitUp(t, r)
	if err := r.Grant(k, true, time.Time{}, "api"); err != nil {
		t.Fatal(err)
	}
	_, res := reserve(t, r, k, Allow)
	res.Finish(Failed)
	cli := redis.NewClient(&redis.Options{Addr: srv.addr, DisableIdentity: true, Protocol: 2})
	defer cli.Close()
	ctx := context.Background()
	if got, err := cli.Get(ctx, r.prefix+"node:n1").Result(); err != nil || got != r.instance {
		t.Errorf("node id n1 held by %q (%v), want this instance %q", got, err, r.instance)
	}
	// n2 is still held by the node that ran before the outage (its key
	// survived in the append-only file): its twin must not take it.
	waitUp(t, holder)
	time.Sleep(1500 * time.Millisecond)
	if twin.Stats().Up {
		t.Error("a node started during the outage with a running node's id came up")
	}
	if d, _ := twin.Reserve(k); d.Verdict != Unavailable {
		t.Errorf("the twin admitted a call: %v", d.Verdict)
	}
	if got, _ := cli.Get(ctx, r.prefix+"node:n2").Result(); got != holder.instance {
		t.Errorf("node id n2 held by %q, want the running node %q", got, holder.instance)
	}
}

// TestRedisRestrictionEnds: Meta's pause of a number is written with its
// end in one command, so that a failure half-way (here the second of two
// commands refused: an ACL that does not allow PEXPIREAT, as a timeout or
// a failover between two commands would) cannot leave the number paused
// for good — every business-initiated call refused 403/138013 until an
// operator lifts it by hand.
func TestRedisRestrictionEnds(t *testing.T) {
	srv := startRedis(t)
	cli := redis.NewClient(&redis.Options{Addr: srv.addr, DisableIdentity: true, Protocol: 2})
	defer cli.Close()
	ctx := context.Background()
	if err := cli.Do(ctx, "ACL", "SETUSER", "node", "on", ">pw", "~*", "&*", "+@all", "-pexpireat").Err(); err != nil {
		t.Fatal(err)
	}
	r := openRedis(t, srv, "n1", DefaultLimits(), func(o *RedisOptions) { o.Username, o.Password = "node", "pw" })
	k := key("+16505550001")
	until := time.Now().Add(time.Hour)
	err := r.Restrict(k.PhoneNumberID, until, "RESTRICTED_BUSINESS_INITIATED_CALLING")
	ttl, terr := cli.PTTL(ctx, r.prefix+"r:"+k.PhoneNumberID).Result()
	if terr != nil {
		t.Fatal(terr)
	}
	switch {
	case ttl == -1:
		t.Fatalf("the pause is in Redis without an end (Restrict: %v): the number's calls would be refused for good", err)
	case err != nil && ttl != -2:
		t.Errorf("Restrict failed (%v) but left a pause of %v", err, ttl)
	case err == nil && (ttl <= 0 || ttl > time.Hour):
		t.Errorf("pause of %v, want about an hour", ttl)
	}
}

// TestRedisRestrictionsListScales: listing Meta's pauses on a Redis that
// holds a production's keys (here two million) answers, and does not
// mark Redis down: a listing that scanned the whole keyspace outran the
// timeout, answered 503 every time, and refused the node's
// business-initiated calls until the next probe.
func TestRedisRestrictionsListScales(t *testing.T) {
	srv := startRedis(t, "--enable-debug-command", "yes")
	cli := redis.NewClient(&redis.Options{Addr: srv.addr, DisableIdentity: true, Protocol: 2, ReadTimeout: time.Minute})
	defer cli.Close()
	ctx := context.Background()
	if err := cli.Do(ctx, "DEBUG", "POPULATE", 2000000, "wagate:c:pair").Err(); err != nil {
		t.Fatal(err)
	}
	r := openRedis(t, srv, "n1", DefaultLimits(), func(o *RedisOptions) { o.Timeout = 300 * time.Millisecond })
	k := key("+16505550001")
	if err := r.Grant(k, true, time.Time{}, "api"); err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(time.Hour).Truncate(time.Second)
	if err := r.Restrict("106540352242923", until, "RESTRICTED_BUSINESS_INITIATED_CALLING"); err != nil {
		t.Fatal(err)
	}
	if err := r.Restrict("106540352242924", time.Now().Add(300*time.Millisecond), "RESTRICTED_BUSINESS_INITIATED_CALLING"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond) // the second pause ends
	rs, err := r.Restrictions()
	if err != nil || len(rs) != 1 || rs[0].PhoneNumberID != "106540352242923" || rs[0].Until.Sub(until).Abs() > time.Second {
		t.Errorf("restrictions: %+v %v; want the one pause still on", rs, err)
	}
	if !r.Stats().Up {
		t.Error("listing the restrictions marked Redis down")
	}
	_, res := reserve(t, r, k, Allow)
	res.Finish(Failed)
	// Lifted: gone from the list.
	if err := r.Restrict("106540352242923", time.Time{}, ""); err != nil {
		t.Fatal(err)
	}
	if rs, err := r.Restrictions(); err != nil || len(rs) != 0 {
		t.Errorf("after the lift: %+v %v", rs, err)
	}
}

// TestRedisUICGrantWhileDown: a user who calls the business while Redis is
// down still gets the temporary permission of a user-initiated call
// (callback_permission), from the time of the call, once Redis answers:
// before, it was logged and lost, and the agent's promised call back was
// refused 403 No Approved Call Permission Found.
func TestRedisUICGrantWhileDown(t *testing.T) {
	srv := startRedis(t)
	r := openRedis(t, srv, "n1", DefaultLimits(), func(o *RedisOptions) { o.OnDown = OnDownCache })
	k := key("+16505550001")
	srv.kill()
	called := time.Now()
	r.GrantFromUIC(k)
	// Written beside the call: kept once the writer found Redis down.
	for deadline := time.Now().Add(3 * time.Second); r.Stats().PendingOutcomes != 1; {
		if time.Now().After(deadline) {
			t.Fatalf("pending while down: %d, want the grant kept", r.Stats().PendingOutcomes)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// on_down: cache admits the call back meanwhile.
	_, res := reserve(t, r, k, Allow)
	res.Finish(Failed)
	srv.restart()
	waitUp(t, r)
	deadline := time.Now().Add(3 * time.Second)
	for r.Stats().PendingOutcomes > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the grant was not written back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	en, ok, err := r.Lookup(k)
	want := called.Add(r.limits().ttl())
	if err != nil || !ok || en.Status != StatusTemporary || en.ExpiresAt.Sub(want).Abs() > 2*time.Second || en.Source != SourceUIC {
		t.Fatalf("after the outage: %+v %v %v; want temporary until %v from the call", en, ok, err, want)
	}
	_, res = reserve(t, r, k, Allow)
	res.Finish(Failed)
}

// TestRedisListBounded: a listing that would walk more of the index than
// its time allows (a status that few pairs have, a large offset, on a
// production's million pairs: minutes of lookups) stops at its deadline
// with ErrListTooLong, instead of reading Redis on for minutes after the
// client's request timed out, once per retry.
func TestRedisListBounded(t *testing.T) {
	srv := startRedis(t)
	r := openRedis(t, srv, "n1", DefaultLimits())
	cli := redis.NewClient(&redis.Options{Addr: srv.addr, DisableIdentity: true, Protocol: 2})
	defer cli.Close()
	ctx := context.Background()
	const pairs = 20000
	pipe := cli.Pipeline()
	for i := range pairs {
		k := key(fmt.Sprintf("+1650556%04d", i))
		ks := r.keys(k)
		pipe.HSet(ctx, ks.pair, "st", 2, "gr", 1, "up", 1, "src", "test", "stk", 0)
		pipe.ZAdd(ctx, r.idxKey(), redis.Z{Member: ks.member})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got, err := r.Entries(Filter{Status: StatusTemporary, Deadline: start.Add(200 * time.Millisecond)})
	took := time.Since(start)
	if !errors.Is(err, ErrListTooLong) || len(got) != 0 {
		t.Errorf("listing a status no pair has, over %d pairs: %d entries, %v; want ErrListTooLong", pairs, len(got), err)
	}
	if took > 2*time.Second {
		t.Errorf("the listing ran %v past a 200 ms deadline", took)
	}
	if !r.Stats().Up {
		t.Error("a listing that ran out of time marked Redis down")
	}
	// Within its time a page is answered as before.
	got, err = r.Entries(Filter{Limit: 10, Deadline: time.Now().Add(5 * time.Second)})
	if err != nil || len(got) != 10 {
		t.Errorf("first page: %d entries, %v", len(got), err)
	}
}

// TestRedisUICResetWhileDown: a user-initiated call answered while Redis
// is down still resets the user's permission-request limits once Redis
// answers (Meta resets them on a connected call), so the business may ask
// again.
func TestRedisUICResetWhileDown(t *testing.T) {
	srv := startRedis(t)
	r := openRedis(t, srv, "n1", DefaultLimits())
	k := key("+16505550001")
	if d := r.RecordPermissionRequest(k); !d.Allowed() {
		t.Fatalf("first request: %v", d.Verdict)
	}
	srv.kill()
	r.UICConnected(k)
	srv.restart()
	waitUp(t, r)
	deadline := time.Now().Add(3 * time.Second)
	for r.Stats().PendingOutcomes > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the reset was not written back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d := r.RecordPermissionRequest(k); !d.Allowed() {
		t.Errorf("request after a connected user-initiated call: %v (%d), want allowed (the limits reset)", d.Verdict, d.Code)
	}
}

// TestRedisDataLossSeen: Redis that comes back without its data (FLUSHALL
// here; a restart without its append-only file, a failover to a replica
// that had nothing) is noticed at the next heartbeat: logged at error and
// counted (data_lost), since every grant is gone and the nodes would
// otherwise just answer 403 No Approved Call Permission Found to users who
// said yes. A restart that keeps the data is not a loss.
func TestRedisDataLossSeen(t *testing.T) {
	srv := startRedis(t)
	r := openRedis(t, srv, "n1", DefaultLimits())
	k := key("+16505550001")
	if err := r.Grant(k, true, time.Time{}, "api"); err != nil {
		t.Fatal(err)
	}
	srv.restart()
	waitUp(t, r)
	time.Sleep(time.Second) // a heartbeat or three
	if n := r.Stats().DataLost; n != 0 {
		t.Fatalf("a restart that kept the data counted as a loss: %d", n)
	}
	cli := redis.NewClient(&redis.Options{Addr: srv.addr, DisableIdentity: true, Protocol: 2})
	defer cli.Close()
	if err := cli.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for r.Stats().DataLost == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Redis's data loss not noticed 3 s after it")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRedisRestrictionsIndexedAtStart: a pause written before the index
// existed (an older wagate) is indexed in the background after the start,
// and listed.
func TestRedisRestrictionsIndexedAtStart(t *testing.T) {
	srv := startRedis(t)
	cli := redis.NewClient(&redis.Options{Addr: srv.addr, DisableIdentity: true, Protocol: 2})
	defer cli.Close()
	ctx := context.Background()
	if err := cli.Set(ctx, "wagate:r:106540352242925", "RESTRICTED_BUSINESS_INITIATED_CALLING", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	r := openRedis(t, srv, "n1", DefaultLimits())
	for deadline := time.Now().Add(10 * time.Second); ; {
		if n, _ := cli.Exists(ctx, "wagate:rs:complete").Result(); n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("older pauses not indexed 10 s after the start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if rs, err := r.Restrictions(); err != nil || len(rs) != 1 || rs[0].PhoneNumberID != "106540352242925" {
		t.Errorf("a pause recorded before the index: %+v %v", rs, err)
	}
}

// TestRedisUICGrantDoesNotBlock: the temporary permission of a
// user-initiated call is written beside the call, not in its way: with
// Redis stalled (SIGSTOP), GrantFromUIC returns at once — the call goes on
// to ring the agent — and the grant is there once Redis answers. Before,
// every user calling in waited for Redis (up to the operation timeout,
// plus wait_timeout with replicas) before the PBX was called.
func TestRedisUICGrantDoesNotBlock(t *testing.T) {
	srv := startRedis(t)
	r := openRedis(t, srv, "n1", DefaultLimits()) // a 5 s operation timeout
	k := key("+16505550001")
	if err := srv.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	returned := make(chan struct{})
	go func() { r.GrantFromUIC(k); close(returned) }()
	select {
	case <-returned:
	case <-time.After(2 * time.Second):
		t.Error("GrantFromUIC waited on a stalled Redis: the user's call would not ring the agent meanwhile")
	}
	if err := srv.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	<-returned
	waitUp(t, r)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if en, ok, err := r.Lookup(k); err == nil && ok && en.Status == StatusTemporary {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the grant never reached Redis")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRedisConnectedDoesNotBlock: counting a connected call is written
// beside the call, not in its way: with Redis stalled (SIGSTOP),
// Connected returns at once — wagate ACKs Meta's 200 and answers the
// dialer meanwhile — and the call is counted once Redis answers. Before,
// the user who picked up waited for Redis (up to the operation timeout)
// before the call was bridged.
func TestRedisConnectedDoesNotBlock(t *testing.T) {
	srv := startRedis(t)
	r := openRedis(t, srv, "n1", DefaultLimits()) // a 5 s operation timeout
	k := key("+16505550001")
	if err := r.Grant(k, true, time.Time{}, "api"); err != nil {
		t.Fatal(err)
	}
	_, res := reserve(t, r, k, Allow)
	if err := srv.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	returned := make(chan struct{})
	go func() { res.Connected(); close(returned) }()
	select {
	case <-returned:
	case <-time.After(2 * time.Second):
		t.Error("Connected waited on a stalled Redis: the answered call would not be bridged meanwhile")
	}
	if err := srv.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	<-returned
	res.Finish(Answered)
	waitUp(t, r)
	deadline := time.Now().Add(10 * time.Second)
	for {
		en := lookup(t, r, k)
		if en.ConnectedCalls24h == 1 && en.ActiveCalls == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the stall: %+v, want 1 connected call and none active", en)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
