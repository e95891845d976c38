package permissions

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRedisNotSentGivesRateBack: across nodes on one Redis, a call a node
// refused itself before Meta saw it gives back its count toward the
// number's 24 hours, while calls from a burst on every node never reach
// Meta more often than the cap allows.
func TestRedisNotSentGivesRateBack(t *testing.T) {
	srv := startRedis(t)
	const cap = 30
	lim := DefaultLimits()
	lim.NewCallsPerNumber24h = cap
	nodes := []*Redis{openRedis(t, srv, "n1", lim), openRedis(t, srv, "n2", lim)}
	const workers = 6
	users := make([]Key, workers+1)
	for i := range users {
		users[i] = key(fmt.Sprintf("+165055502%02d", i))
		if err := nodes[0].Grant(users[i], true, time.Time{}, "api"); err != nil {
			t.Fatal(err)
		}
	}

	var sent, admitted atomic.Int64
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			n := nodes[g%len(nodes)]
			for i := range 40 {
				d, res := n.Reserve(users[g])
				if !d.Allowed() {
					if d.Verdict != NumberRateCap {
						t.Errorf("reserve: %v", d.Verdict)
					}
					continue
				}
				admitted.Add(1)
				if (g+i)%2 == 0 {
					res.Finish(NotSent)
					continue
				}
				sent.Add(1)
				res.Finish(Failed)
			}
		})
	}
	wg.Wait()
	if s := sent.Load(); s > cap {
		t.Fatalf("%d calls reached Meta, the cap is %d", s, cap)
	}
	if admitted.Load() <= sent.Load() {
		t.Fatalf("no call was given back (%d admitted, %d sent)", admitted.Load(), sent.Load())
	}
	// Every call given back, on either node, is free for another, on
	// either node; and no more.
	free := 0
	for i := range cap + 1 {
		d, res := nodes[i%2].Reserve(users[workers])
		if !d.Allowed() {
			if d.Verdict != NumberRateCap {
				t.Fatalf("reserve after the burst: %v", d.Verdict)
			}
			break
		}
		free++
		res.Finish(Unanswered)
	}
	if want := cap - int(sent.Load()); free != want {
		t.Errorf("after the burst the number took %d more calls, want %d (cap %d, %d sent)", free, want, cap, sent.Load())
	}
	// A connected call was seen by Meta: NotSent does not give it back.
	lim.NewCallsPerNumber24h = cap + 1
	for _, n := range nodes {
		n.SetLimits(lim)
	}
	_, res := reserve(t, nodes[0], users[0], Allow)
	res.Connected()
	res.Finish(NotSent)
	reserve(t, nodes[1], users[1], NumberRateCap)
}

// TestRedisNotSentWhileDown: a call given back while Redis cannot be
// reached is taken out of the number's count when Redis returns, before
// the node admits again.
func TestRedisNotSentWhileDown(t *testing.T) {
	srv := startRedis(t)
	lim := DefaultLimits()
	lim.NewCallsPerNumber24h = 2
	r := openRedis(t, srv, "n1", lim)
	users := []Key{key("+16505550401"), key("+16505550402"), key("+16505550403")}
	for _, u := range users {
		if err := r.Grant(u, true, time.Time{}, "api"); err != nil {
			t.Fatal(err)
		}
	}
	_, sent := reserve(t, r, users[0], Allow)
	sent.Finish(Failed) // 1 of 2
	_, res := reserve(t, r, users[1], Allow)
	srv.kill()
	res.Finish(NotSent) // Redis gone: remembered, not lost
	if r.Stats().Up {
		t.Fatal("the store still says up with redis-server killed; the test did not test anything")
	}
	srv.restart()
	waitUp(t, r)
	_, res = reserve(t, r, users[2], Allow) // 2 of 2: the one given back is free
	res.Finish(Failed)
	reserve(t, r, users[1], NumberRateCap)
}
