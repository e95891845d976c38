package permissions

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// benchPairs is the scale the cache is designed for.
const benchPairs = 1_000_000

// benchKey is the i-th of benchPairs realistic keys: ten business numbers,
// 11-digit user numbers.
func benchKey(i int) Key {
	return Key{PhoneNumberID: fmt.Sprintf("1065403522429%02d", i%10), User: fmt.Sprintf("+1%010d", 2000000000+i)}
}

// benchLimits are Meta's, with the per-number rate off: a benchmark makes
// millions of calls on ten numbers and would otherwise measure refusals.
func benchLimits() Limits {
	l := DefaultLimits()
	l.NewCallsPerNumber24h = 0
	l.ConcurrentPerNumber = 0
	return l
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// fill grants n pairs in a memory-only cache (the store is not part of the
// memory footprint: bbolt's pages live in the OS page cache).
func fill(b *testing.B, n int, connected int) *Cache {
	b.Helper()
	c, err := Open("", benchLimits(), SystemClock{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i++ {
		k := benchKey(i)
		if err := c.Grant(k, i%2 == 0, time.Time{}, "webhook:user_action"); err != nil {
			b.Fatal(err)
		}
		for j := 0; j < connected; j++ {
			_, tk := c.Admit(k)
			tk.Connected()
			tk.Finish(Answered)
		}
	}
	return c
}

// BenchmarkMemoryPerPair fills 1M pairs and reports the heap they hold.
//
//	go test -run '^$' -bench MemoryPerPair -benchtime 1x ./permissions/
func BenchmarkMemoryPerPair(b *testing.B) {
	for _, connected := range []int{0, 1} {
		b.Run(fmt.Sprintf("connected=%d", connected), func(b *testing.B) {
			for range b.N {
				before := heapInUse()
				c := fill(b, benchPairs, connected)
				after := heapInUse()
				b.ReportMetric(float64(after-before)/benchPairs, "B/pair")
				b.ReportMetric(float64(after-before)/(1<<20), "MiB/1M")
				runtime.KeepAlive(c)
				c.Close()
			}
		})
	}
}

// BenchmarkAdmit measures Admit+Finish over 1M pairs from all cores.
//
//	go test -run '^$' -bench 'Admit$' ./permissions/
func BenchmarkAdmit(b *testing.B) {
	c := fill(b, benchPairs, 0)
	defer c.Close()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(rand.Uint64(), 1))
		keys := make([]Key, 4096)
		for i := range keys {
			keys[i] = benchKey(r.IntN(benchPairs))
		}
		i := 0
		for pb.Next() {
			d, tk := c.Admit(keys[i&4095])
			if tk != nil {
				tk.Finish(Failed)
			} else if d.Verdict != Busy {
				b.Errorf("refused: %v", d.Verdict)
			}
			i++
		}
	})
}

// BenchmarkAdmitLatency reports the p50/p99/p999 of single Admit calls on a
// cache of 1M pairs, with GOMAXPROCS goroutines admitting at once (each
// Admit timed on its own; the Finish is not in the sample). keys=1M draws
// callees from all pairs (every lookup misses the CPU caches); keys=10k
// from a hot set, as a dialer campaign would.
//
//	go test -run '^$' -bench AdmitLatency -benchtime 2000000x ./permissions/
func BenchmarkAdmitLatency(b *testing.B) {
	c := fill(b, benchPairs, 0)
	defer c.Close()
	for _, keys := range []int{benchPairs, 10_000} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) { admitLatency(b, c, keys) })
	}
}

func admitLatency(b *testing.B, c *Cache, keys int) {
	workers := runtime.GOMAXPROCS(0)
	per := b.N/workers + 1
	samples := make([][]time.Duration, workers)
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 2))
			s := make([]time.Duration, 0, per)
			for i := 0; i < per; i++ {
				k := benchKey(r.IntN(keys))
				start := time.Now()
				_, tk := c.Admit(k)
				s = append(s, time.Since(start))
				if tk != nil {
					tk.Finish(Failed)
				}
			}
			samples[w] = s
		}(w)
	}
	wg.Wait()
	b.StopTimer()
	all := slices.Concat(samples...)
	slices.Sort(all)
	q := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Nanoseconds()) }
	b.ReportMetric(q(0.50), "p50-ns")
	b.ReportMetric(q(0.99), "p99-ns")
	b.ReportMetric(q(0.999), "p999-ns")
}

// BenchmarkOpen1M measures start-up: loading 1M records from the store.
//
//	go test -run '^$' -bench Open1M -benchtime 1x ./permissions/
func BenchmarkOpen1M(b *testing.B) {
	path := filepath.Join(b.TempDir(), "permissions.db")
	st, err := openStore(path)
	if err != nil {
		b.Fatal(err)
	}
	now := epoch.UnixNano()
	for start := 0; start < benchPairs; start += 100_000 {
		err := st.db.Update(func(tx *bolt.Tx) error {
			bk := tx.Bucket(bucketPermissions)
			for i := start; i < start+100_000; i++ {
				r := record{state: stPermanent, granted: now, updated: now, source: "webhook:user_action"}
				if i%2 == 1 {
					r.state, r.expires = stTemporary, now+int64(168*time.Hour)
				}
				if err := bk.Put([]byte(benchKey(i).String()), r.encode()); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	st.close()
	fi, _ := os.Stat(path)
	b.ResetTimer()
	for range b.N {
		c, err := Open(path, benchLimits(), newClock(), nil)
		if err != nil {
			b.Fatal(err)
		}
		if c.Len() != benchPairs {
			b.Fatalf("loaded %d", c.Len())
		}
		c.Close()
	}
	b.ReportMetric(float64(fi.Size())/(1<<20), "file-MiB")
}

// BenchmarkGrant measures a durable grant (one fsynced bbolt commit).
func BenchmarkGrant(b *testing.B) {
	c, err := Open(filepath.Join(b.TempDir(), "p.db"), benchLimits(), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.ResetTimer()
	for i := range b.N {
		if err := c.Grant(benchKey(i), true, time.Time{}, "api"); err != nil {
			b.Fatal(err)
		}
	}
}
