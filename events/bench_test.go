package events

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// BenchmarkEmitCommit measures the emit→commit path: b.N calls ended
// (CDR, plus a call.ended event and its delivery per subscriber) from the
// first CallEnded until the last is committed. allocs/op counts the whole
// process: the call path, JSON, SQLite and, with a subscriber, the
// deliveries to a local receiver that runs meanwhile.
//
//	go test -run '^$' -bench EmitCommit -benchtime 20000x ./events/
func BenchmarkEmitCommit(b *testing.B) {
	for _, subs := range []int{0, 1} {
		b.Run(fmt.Sprintf("subscribers=%d", subs), func(b *testing.B) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
			defer srv.Close()
			s := openSink(b, func(o *Options) {
				o.QueueSize = max(b.N, 1000) // measure the writer, not drops
				for i := range subs {
					o.Subscribers = append(o.Subscribers, Subscriber{Name: fmt.Sprintf("s%d", i), URL: srv.URL, Secret: testSecret})
				}
			})
			cdr := testCDR("", t0)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				cdr.CallID = "bench-" + itoa(i)
				s.CallEnded(cdr)
			}
			for s.Stats().CDRsWritten+s.Stats().Dropped < uint64(b.N) {
				time.Sleep(100 * time.Microsecond)
			}
			el := time.Since(start)
			b.StopTimer()
			st := s.Stats()
			b.ReportMetric(float64(st.CDRsWritten)/el.Seconds(), "calls/s")
			b.ReportMetric(float64(st.CDRsWritten+st.EventsWritten)/el.Seconds(), "records/s")
			b.ReportMetric(float64(st.Dropped), "dropped")
		})
	}
}

// BenchmarkCallPath measures what CallEnded costs the call path alone: the
// writer is held off (the database locked) so that nothing else runs.
//
//	go test -run '^$' -bench CallPath -benchtime 100000x ./events/
func BenchmarkCallPath(b *testing.B) {
	dir := b.TempDir()
	s, err := Open(context.Background(), Options{
		Path: filepath.Join(dir, "events.db"), StoreCDRs: true, QueueSize: b.N + 1,
		Subscribers: []Subscriber{{Name: "crm", URL: "http://127.0.0.1:9/", Secret: testSecret}},
	})
	if err != nil {
		b.Fatal(err)
	}
	release := lockDBB(b, s.opts.Path)
	s.CallEnded(testCDR("first", t0))
	for s.Stats().QueueLength != 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(10 * time.Millisecond)
	cdr := testCDR("x", t0)
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		s.CallEnded(cdr)
	}
	b.StopTimer()
	release()
	s.Close(context.Background())
}

func itoa(i int) string { return fmt.Sprint(i) }

// BenchmarkScanBacklog measures one scheduler scan (the query for due
// deliveries and, when none is due, the one for the next due time) over
// a backlog of pending deliveries, four per call, that either all wait
// for their backoff (a receiver still down) or are all due (a receiver
// back after an outage).
//
//	go test -run '^$' -bench ScanBacklog -benchtime 20x ./events/
func BenchmarkScanBacklog(b *testing.B) {
	for _, tc := range []struct {
		n   int
		due bool
	}{{10_000, false}, {100_000, false}, {10_000, true}, {100_000, true}} {
		b.Run(fmt.Sprintf("pending=%d/due=%v", tc.n, tc.due), func(b *testing.B) {
			n := tc.n
			s := openSink(b, func(o *Options) {
				o.StoreCDRs = false
				o.QueueSize = n
				// A receiver that is never asked: the test moves the
				// backlog into the future before any attempt is due.
				o.Subscribers = []Subscriber{{Name: "crm", URL: "http://127.0.0.1:9/", Secret: testSecret}}
				o.MaxAttempts = 1000
			})
			s.schedCancel() // no scheduler: the benchmark scans by hand
			s.loops.Wait()
			for i := range n {
				s.CallStarted(Call{CallID: "c" + itoa(i%(n/4))})
			}
			for s.Stats().EventsWritten < uint64(n) {
				time.Sleep(time.Millisecond)
			}
			next := time.Now().Add(time.Hour).UnixNano()
			if tc.due {
				next = 0
			}
			if _, err := s.wdb.Exec(`UPDATE deliveries SET next_at = ?`, next); err != nil {
				b.Fatal(err)
			}
			sub := s.subs[0]
			ctx := context.Background()
			b.ResetTimer()
			for range b.N {
				c, err := sub.due(ctx, time.Now(), 8)
				if err != nil || (len(c) != 0) != tc.due {
					b.Fatal(len(c), err)
				}
				if !tc.due {
					if d := sub.untilNextDue(ctx, time.Now()); d <= 0 {
						b.Fatal(d)
					}
				}
			}
		})
	}
}

// BenchmarkListCDRs measures a page of GET /v1/cdrs (100 CDRs, each with
// Meta's report of its call) from a store of 2,000.
//
//	go test -run '^$' -bench ListCDRs ./events/
func BenchmarkListCDRs(b *testing.B) {
	s := openSink(b, nil)
	ctx := context.Background()
	const n = 2000
	for i := range n {
		c := testCDR("list-"+itoa(i), t0.Add(time.Duration(i)*time.Second))
		c.WACallID = "wacid.list-" + itoa(i)
		s.CallEnded(c)
		if err := s.RecordMetaCall(ctx, MetaCall{WACallID: c.WACallID, Event: "terminate", Status: "COMPLETED"}); err != nil {
			b.Fatal(err)
		}
	}
	for s.Stats().CDRsWritten < n {
		time.Sleep(time.Millisecond)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		page, err := s.CDRs(ctx, CDRQuery{Limit: 100})
		if err != nil || len(page.CDRs) != 100 || page.CDRs[99].MetaStatus != "COMPLETED" {
			b.Fatalf("page of %d, %v", len(page.CDRs), err)
		}
	}
}

// BenchmarkListCDRsOpenWindow lists the first page of 1000 out of 50,000
// CDRs with a window that excludes none of them (from before the first,
// to=3000-01-01), as a CRM leaving the window open does.
func BenchmarkListCDRsOpenWindow(b *testing.B) {
	s := openSink(b, nil)
	ctx := context.Background()
	fillCDRs(b, s, "open", 50000)
	q := CDRQuery{Limit: MaxLimit, From: t0.Add(-time.Hour), To: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		page, err := s.CDRs(ctx, q)
		if err != nil || len(page.CDRs) != MaxLimit {
			b.Fatalf("page of %d, %v", len(page.CDRs), err)
		}
	}
}

// BenchmarkListCDRsPartialWindow walks, page by page (100 each, the API's
// default), a window holding 40,000 of 50,000 CDRs (from the 5,000th to
// the 45,000th), as a CRM fetching yesterday's records does. One op is
// the whole walk.
//
//	go test -run '^$' -bench ListCDRsPartialWindow -benchtime 1x ./events/
func BenchmarkListCDRsPartialWindow(b *testing.B) {
	s := openSink(b, nil)
	ctx := context.Background()
	fillCDRs(b, s, "part", 50000)
	q := CDRQuery{Limit: 100, From: t0.Add(5000 * time.Second), To: t0.Add(45000 * time.Second)}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		q := q
		got := 0
		for {
			page, err := s.CDRs(ctx, q)
			if err != nil {
				b.Fatal(err)
			}
			got += len(page.CDRs)
			if page.NextCursor == "" {
				break
			}
			if q.After, err = ParseCDRCursor(page.NextCursor); err != nil {
				b.Fatal(err)
			}
		}
		if got != 40000 {
			b.Fatalf("walked %d CDRs, want 40000", got)
		}
	}
}

// fillCDRs stores n CDRs named prefix-i, one a second from t0, and waits
// until they are written; the queue is let drain every thousand so that
// none is dropped.
func fillCDRs(b *testing.B, s *Sink, prefix string, n int) {
	b.Helper()
	for i := range n {
		s.CallEnded(testCDR(prefix+"-"+itoa(i), t0.Add(time.Duration(i)*time.Second)))
		if i%1000 == 999 {
			for s.Stats().QueueLength > 3000 {
				time.Sleep(time.Millisecond)
			}
		}
	}
	for s.Stats().CDRsWritten < uint64(n) {
		time.Sleep(time.Millisecond)
	}
}
