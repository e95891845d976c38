package permissions

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Store benchmarks: what an admission costs with each store, and what a
// pair costs in Redis. Numbers, not pass/fail (docs/performance.md).

// storeLimits are Meta's rules with the per-number caps out of reach, so
// that the benchmark measures admissions, not refusals; the per-number
// 24-hour rate stays on (it is what makes every admission a write).
func storeLimits() Limits {
	l := DefaultLimits()
	l.NewCallsPerNumber24h = 100_000_000
	l.ConcurrentPerNumber = 0
	l.ConnectedPerUser24h = 0
	return l
}

// BenchmarkReserveLatency reports p50/p99 of one admission (Reserve) and of
// one outcome (Connected + Finish) on 10,000 granted pairs, with 1 and 16
// admissions in flight: the embedded store (bbolt, every admission's count
// fsynced) and Redis on loopback (appendfsync always).
//
//	go test -run '^$' -bench ReserveLatency -benchtime 4000x ./permissions/
func BenchmarkReserveLatency(b *testing.B) {
	const pairs = 10_000
	for _, kind := range []string{"bbolt", "redis"} {
		var st Store
		switch kind {
		case "bbolt":
			c, err := Open(filepath.Join(b.TempDir(), "p.db"), storeLimits(), nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			st = c
		case "redis":
			st = openRedis(b, startRedis(b), "bench", storeLimits(), func(o *RedisOptions) { o.Log = nil; o.Timeout = 2 * time.Second })
		}
		grantAll(b, st, pairs)
		for _, inflight := range []int{1, 16} {
			b.Run(fmt.Sprintf("store=%s/inflight=%d", kind, inflight), func(b *testing.B) { reserveLatency(b, st, pairs, inflight) })
		}
		st.Close()
	}
}

func grantAll(b *testing.B, st Store, n int) {
	var wg sync.WaitGroup
	ch := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ch {
				if err := st.Grant(benchKey(i), true, time.Time{}, "api"); err != nil {
					b.Error(err)
				}
			}
		}()
	}
	for i := range n {
		ch <- i
	}
	close(ch)
	wg.Wait()
}

func reserveLatency(b *testing.B, st Store, pairs, inflight int) {
	per := b.N/inflight + 1
	adm := make([][]time.Duration, inflight)
	out := make([][]time.Duration, inflight)
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := range inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				// Each worker has its own users: no Busy refusals.
				k := benchKey((w + i*inflight) % pairs)
				start := time.Now()
				d, res := st.Reserve(k)
				adm[w] = append(adm[w], time.Since(start))
				if res == nil {
					b.Errorf("refused: %v", d.Verdict)
					return
				}
				start = time.Now()
				res.Connected()
				res.Finish(Answered)
				out[w] = append(out[w], time.Since(start))
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	report := func(name string, s [][]time.Duration) {
		all := slices.Concat(s...)
		slices.Sort(all)
		q := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) }
		b.ReportMetric(q(0.50), name+"-p50-µs")
		b.ReportMetric(q(0.99), name+"-p99-µs")
	}
	report("admit", adm)
	report("outcome", out)
}

// BenchmarkRedisMemoryPerPair reports Redis's used_memory per granted
// (number, user) pair, bare and with one connected call each (the call's
// time in the pair's 24-hour sorted set), over 20,000 pairs.
//
//	go test -run '^$' -bench RedisMemoryPerPair -benchtime 1x ./permissions/
func BenchmarkRedisMemoryPerPair(b *testing.B) {
	const pairs = 20_000
	// Memory does not depend on fsync; everysec makes filling fast.
	srv := startRedis(b, "--appendfsync", "everysec")
	r := openRedis(b, srv, "bench", storeLimits(), func(o *RedisOptions) { o.AllowNonDurable = true; o.Log = nil; o.Timeout = 2 * time.Second })
	cli := redis.NewClient(&redis.Options{Addr: srv.addr, DisableIdentity: true, Protocol: 2})
	defer cli.Close()
	used := func() float64 {
		info, err := cli.Info(context.Background(), "memory").Result()
		if err != nil {
			b.Fatal(err)
		}
		for _, l := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(l, "used_memory:"); ok {
				n, _ := strconv.ParseFloat(v, 64)
				return n
			}
		}
		b.Fatal("no used_memory in INFO")
		return 0
	}
	for range b.N {
		base := used()
		grantAll(b, r, pairs)
		granted := used()
		for i := range pairs {
			_, res := r.Reserve(benchKey(i))
			if res == nil {
				b.Fatal("refused")
			}
			res.Connected()
			res.Finish(Answered)
		}
		called := used()
		b.ReportMetric((granted-base)/pairs, "B/pair")
		b.ReportMetric((called-base)/pairs, "B/pair-with-call")
		b.ReportMetric((called-base)/pairs*1e6/(1<<20), "MiB/1M-with-call")
	}
}
