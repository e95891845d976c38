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
