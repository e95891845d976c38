package permissions

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// slowReplies is a TCP proxy in front of Redis that passes requests at
// once and, while hold is set, holds Redis's replies back for that long:
// a command that ran but whose answer came too late, as on a congested
// network or a host that stalls.
type slowReplies struct {
	ln    net.Listener
	to    string
	hold  atomic.Int64 // ns
	wg    sync.WaitGroup
	conns sync.Map
}

func newSlowReplies(t *testing.T, to string) *slowReplies {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &slowReplies{ln: ln, to: to}
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			p.conns.Store(c, s)
			p.wg.Go(func() { _, _ = io.Copy(s, c); s.Close() })
			p.wg.Go(func() {
				buf := make([]byte, 64<<10)
				for {
					n, err := s.Read(buf)
					if d := p.hold.Load(); n > 0 && d > 0 {
						time.Sleep(time.Duration(d))
					}
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				c.Close()
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		p.conns.Range(func(c, s any) bool { c.(net.Conn).Close(); s.(net.Conn).Close(); return true })
		p.wg.Wait()
	})
	return p
}

func (p *slowReplies) addr() string { return p.ln.Addr().String() }

// TestRedisOutcomeCountedOnce: a call's unanswered outcome that Redis
// applied but whose answer came after the timeout — so the node keeps it
// and writes it again when Redis answers — extends the user's unanswered
// streak once. Counted twice, two unanswered calls would look like four,
// and Meta's rule would revoke the user's permission early: the business
// could no longer call a customer who had said yes.
func TestRedisOutcomeCountedOnce(t *testing.T) {
	srv := startRedis(t)
	proxy := newSlowReplies(t, srv.addr)
	r := openRedis(t, srv, "n1", DefaultLimits(), func(o *RedisOptions) {
		o.Addr = proxy.addr()
		o.Timeout = 200 * time.Millisecond
	})
	k := key("+16505550001")
	if err := r.Grant(k, true, time.Time{}, "api"); err != nil {
		t.Fatal(err)
	}
	// Redis knows the finish script already (a first EVALSHA would be
	// refused NOSCRIPT, and nothing would run).
	_, res := reserve(t, r, k, Allow)
	res.Finish(Failed)
	_, res = reserve(t, r, k, Allow)
	proxy.hold.Store(int64(400 * time.Millisecond))
	res.Finish(Unanswered)
	proxy.hold.Store(0)
	waitUp(t, r)
	deadline := time.Now().Add(3 * time.Second)
	for r.Stats().PendingOutcomes > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the outcome was not written back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r.Stats().Errors == 0 {
		t.Fatal("the finish did not time out: the test did not test anything")
	}
	if en := lookup(t, r, k); en.UnansweredStreak != 1 || en.ActiveCalls != 0 {
		t.Errorf("after one unanswered call: streak %d, active %d; want 1 and 0", en.UnansweredStreak, en.ActiveCalls)
	}
}

// TestRedisRequestNotCountedWhenRefused: a permission request that Redis
// counted but whose answer came after the timeout was answered 503 (not
// sent): once Redis answers again it no longer counts, so the business's
// retry may send it. Counted, the retry got 429 for a day (Meta allows 1
// request per 24 h and 2 per 7 days) for a request that never went out.
func TestRedisRequestNotCountedWhenRefused(t *testing.T) {
	srv := startRedis(t)
	proxy := newSlowReplies(t, srv.addr)
	r := openRedis(t, srv, "n1", DefaultLimits(), func(o *RedisOptions) {
		o.Addr = proxy.addr()
		o.Timeout = 200 * time.Millisecond
	})
	k, warm := key("+16505550001"), key("+16505550002")
	// Redis knows the request script already (a first EVALSHA would be
	// refused NOSCRIPT, and nothing would be counted).
	if d := r.RecordPermissionRequest(warm); !d.Allowed() {
		t.Fatalf("first request: %v", d.Verdict)
	}
	proxy.hold.Store(int64(400 * time.Millisecond))
	d := r.RecordPermissionRequest(k)
	proxy.hold.Store(0)
	if d.Verdict != Unavailable {
		t.Fatalf("request with the answer held back: %v; the test did not test anything", d.Verdict)
	}
	waitUp(t, r)
	if d := r.RecordPermissionRequest(k); !d.Allowed() {
		t.Errorf("the retry of a request answered 503: %v (%d, Retry-After %v); want it allowed", d.Verdict, d.Code, d.RetryAfter)
	}
	if en := lookup(t, r, k); en.Requests24h != 1 {
		t.Errorf("requests counted: %d, want 1", en.Requests24h)
	}
}

// TestRedisAdmissionNotCountedWhenRefused: a call admitted in Redis whose
// answer came after the timeout was refused 503 (never placed): once Redis
// answers again it counts neither toward the number's new calls of 24 h
// nor as a call in progress, so the dialer's retry is placed.
func TestRedisAdmissionNotCountedWhenRefused(t *testing.T) {
	srv := startRedis(t)
	proxy := newSlowReplies(t, srv.addr)
	lim := DefaultLimits()
	lim.NewCallsPerNumber24h = 2
	r := openRedis(t, srv, "n1", lim, func(o *RedisOptions) {
		o.Addr = proxy.addr()
		o.Timeout = 200 * time.Millisecond
	})
	k, warm := key("+16505550001"), key("+16505550002")
	for _, u := range []Key{k, warm} {
		if err := r.Grant(u, true, time.Time{}, "api"); err != nil {
			t.Fatal(err)
		}
	}
	_, res := reserve(t, r, warm, Allow) // the script is known; 1 of 2 new calls
	res.Finish(Failed)
	proxy.hold.Store(int64(400 * time.Millisecond))
	d, _ := r.Reserve(k)
	proxy.hold.Store(0)
	if d.Verdict != Unavailable {
		t.Fatalf("admission with the answer held back: %v; the test did not test anything", d.Verdict)
	}
	waitUp(t, r)
	d, res = r.Reserve(k)
	if !d.Allowed() {
		t.Fatalf("the retry of a call refused 503: %v (%d); want it placed (2 of 2 new calls)", d.Verdict, d.Code)
	}
	res.Finish(Failed)
}
