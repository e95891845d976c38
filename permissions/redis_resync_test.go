package permissions

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestRedisResyncRacesCalls: the node's instance lapsed in Redis (Redis
// lost it: a failover to a replica without it, a restart from an old
// file), so the node rewrites every slot it holds from its own count — while
// its calls go on ending and starting. When the rewrite is over, a user
// whose call ended is not busy (a stale rewrite would leave a phantom
// call, and every later call to the user would get 486 until the node
// restarts), a user whose call started is busy (else another node could
// call them twice at once), and the number's count of this node's calls
// is the number of calls it has.
func TestRedisResyncRacesCalls(t *testing.T) {
	srv := startRedis(t)
	lim := DefaultLimits()
	lim.ConcurrentPerNumber = 0
	r := openRedis(t, srv, "n1", lim, func(o *RedisOptions) { o.SlotTTL = 900 * time.Millisecond })
	other := openRedis(t, srv, "n2", lim)
	cli := redis.NewClient(&redis.Options{Addr: srv.addr, DisableIdentity: true, Protocol: 2})
	defer cli.Close()
	ctx := context.Background()

	const ending, starting = 600, 300
	users := make([]Key, ending+starting)
	pipe := cli.Pipeline()
	for i := range users {
		users[i] = key(fmt.Sprintf("+1650555%04d", i))
		ks := r.keys(users[i])
		pipe.HSet(ctx, ks.pair, "st", 2, "gr", 1, "up", 1, "src", "test", "stk", 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	up := make([]Reservation, ending)
	for i := range up {
		_, up[i] = reserve(t, r, users[i], Allow)
	}

	// Redis forgets the instance; the next heartbeat finds it gone and
	// rewrites every slot.
	if err := cli.Del(ctx, r.instKey()).Err(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	started := make([]Reservation, starting)
	wg.Go(func() {
		for _, res := range up {
			res.Finish(Failed)
		}
	})
	wg.Go(func() {
		for i := range started {
			d, res := r.Reserve(users[ending+i])
			if !d.Allowed() {
				t.Errorf("reserve %v during the rewrite: %v", users[ending+i], d.Verdict)
				continue
			}
			started[i] = res
		}
	})
	wg.Wait()
	// Let the rewrite finish (at most a few heartbeats).
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.local.mu.Lock()
		dirty := len(r.local.dirty)
		r.local.mu.Unlock()
		n, _ := cli.Exists(ctx, r.instKey()).Result()
		if dirty == 0 && n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rewrite not done after 5 s: %d slots dirty", dirty)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(400 * time.Millisecond) // a heartbeat more

	phantom := 0
	for _, k := range users[:ending] {
		d, res := other.Reserve(k)
		if d.Verdict == Busy {
			phantom++
			continue
		}
		if !d.Allowed() {
			t.Fatalf("reserve %v on the other node: %v", k, d.Verdict)
		}
		res.Finish(Failed)
	}
	unguarded := 0
	for _, k := range users[ending:] {
		d, res := other.Reserve(k)
		if d.Allowed() {
			unguarded++
			res.Finish(Failed)
		}
	}
	n, err := cli.HGet(ctx, r.keys(users[0]).nact, r.instance).Int()
	if err != nil && err != redis.Nil {
		t.Fatal(err)
	}
	if phantom > 0 || unguarded > 0 || n != starting {
		t.Errorf("after the rewrite: %d of %d users whose call ended still busy, %d of %d users on a call not busy, "+
			"the number counts %d calls of this node, want %d", phantom, ending, unguarded, starting, n, starting)
	}
	for _, res := range started {
		if res != nil {
			res.Finish(Failed)
		}
	}
}
