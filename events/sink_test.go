package events

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// lockDB takes the database's write lock from another connection, as a
// slow disk or another writer would, until the returned func is called.
func lockDB(t *testing.T, path string) (release func()) { return lockDBB(t, path) }

func lockDBB(t testing.TB, path string) (release func()) {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	done := false
	release = func() {
		if done {
			return
		}
		done = true
		conn.ExecContext(context.Background(), "ROLLBACK")
		conn.Close()
		db.Close()
	}
	t.Cleanup(release)
	return release
}

// TestQueueFullDropsAndCounts: with the writer stuck on the disk, the call
// path keeps returning; what does not fit the queue is dropped, counted
// and logged a bounded number of times.
func TestQueueFullDropsAndCounts(t *testing.T) {
	var logs logBuf
	s := openSink(t, func(o *Options) { o.QueueSize = 8; o.Log = logs.logger() })
	release := lockDB(t, s.opts.Path)

	s.CallEnded(CDR{CallID: "first"})
	waitFor(t, "the writer to take the first record", func() bool { return s.Stats().QueueLength == 0 })
	time.Sleep(20 * time.Millisecond) // into BEGIN, waiting for the lock
	const more = 200
	for i := range more {
		s.CallEnded(CDR{CallID: fmt.Sprintf("c%03d", i)})
	}
	st := s.Stats()
	// The writer may have gathered a few more before it blocked; the
	// queue is full all the same and the rest was dropped.
	if st.QueueLength != 8 || st.Dropped == 0 || st.Dropped > more-8 {
		t.Fatalf("with the writer stuck: queue %d, dropped %d; want 8 and up to %d", st.QueueLength, st.Dropped, more-8)
	}
	release()
	waitFor(t, "the queue to drain", func() bool { st := s.Stats(); return st.QueueLength == 0 && st.Dropped+st.CDRsWritten == more+1 })
	if st := s.Stats(); st.WriteErrors != 0 || st.Lost != 0 {
		t.Errorf("stats: %+v", st)
	}
	if n := strings.Count(logs.String(), "event queue full"); n < 1 || n > 2 {
		t.Errorf("queue-full logged %d times for %d drops, want 1–2 (rate-limited):\n%s", n, more-8, logs.String())
	}
}

// TestWriteErrorLosesOnlyThoseRecords: a failing write (a full disk,
// simulated by a trigger that aborts inserts) is logged and counted, the
// call path is unaffected, and writing resumes once the disk is back.
func TestWriteErrorLosesOnlyThoseRecords(t *testing.T) {
	var logs logBuf
	s := openSink(t, func(o *Options) { o.Log = logs.logger() })
	if _, err := s.wdb.Exec(`CREATE TRIGGER disk_full BEFORE INSERT ON cdrs BEGIN SELECT RAISE(ABORT, 'database or disk is full (simulated)'); END`); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		s.CallEnded(CDR{CallID: fmt.Sprintf("lost-%d", i)})
	}
	// The log line is written just after the count: wait for both.
	waitFor(t, "the failure", func() bool {
		return s.Stats().Lost == 3 && strings.Contains(logs.String(), "events database write failed")
	})
	if st := s.Stats(); st.WriteErrors < 1 || st.CDRsWritten != 0 {
		t.Errorf("stats after the failure: %+v", st)
	}
	if !strings.Contains(logs.String(), "events database write failed") || !strings.Contains(logs.String(), "disk is full (simulated)") {
		t.Errorf("failure not logged clearly:\n%s", logs.String())
	}
	if _, err := s.wdb.Exec(`DROP TRIGGER disk_full`); err != nil {
		t.Fatal(err)
	}
	s.CallEnded(CDR{CallID: "kept"})
	waitFor(t, "writing to resume", func() bool { return s.Stats().CDRsWritten == 1 })
	if _, err := s.CDR(context.Background(), "kept"); err != nil {
		t.Error(err)
	}
}

// TestCloseWritesWhatIsQueued: records queued when Close starts are
// written before it returns; records after it are dropped and counted.
func TestCloseWritesWhatIsQueued(t *testing.T) {
	s := openSink(t, nil)
	path := s.opts.Path
	release := lockDB(t, path)
	for i := range 5 {
		s.CallEnded(CDR{CallID: fmt.Sprintf("c%d", i)})
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close(context.Background()) }()
	time.Sleep(50 * time.Millisecond)
	release()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
	s.CallEnded(CDR{CallID: "late"})
	if st := s.Stats(); st.CDRsWritten != 5 || st.Dropped != 1 {
		t.Errorf("stats: %+v", st)
	}
	s2 := openSink(t, func(o *Options) { o.Path = path })
	p, err := s2.CDRs(context.Background(), CDRQuery{})
	if err != nil || len(p.CDRs) != 5 {
		t.Errorf("after reopening: %d CDRs, %v", len(p.CDRs), err)
	}
}

// TestNilSinkAndNothingToKeep: a nil Sink takes calls and does nothing; a
// Sink without CDRs or subscribers writes nothing.
func TestNilSinkAndNothingToKeep(t *testing.T) {
	var nilSink *Sink
	nilSink.CallStarted(Call{})
	nilSink.CallEnded(CDR{})
	nilSink.CallRefused(CDR{})
	nilSink.PermissionChanged(PermissionChange{})
	if err := nilSink.Close(context.Background()); err != nil {
		t.Error(err)
	}

	s := openSink(t, func(o *Options) { o.StoreCDRs = false })
	emitCall(s, "c1", t0)
	s.CallRefused(CDR{CallID: "c2"})
	time.Sleep(20 * time.Millisecond)
	if st := s.Stats(); st.CDRsWritten+st.EventsWritten+st.Dropped != 0 || st.QueueLength != 0 {
		t.Errorf("something was kept: %+v", st)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for name, o := range map[string]Options{
		"no path":          {},
		"question mark":    {Path: dir + "/a?b.db"},
		"directory":        {Path: dir},
		"nameless sub":     {Path: dir + "/x.db", Subscribers: []Subscriber{{URL: "http://127.0.0.1:1/", Secret: "s"}}},
		"secretless sub":   {Path: dir + "/x.db", Subscribers: []Subscriber{{Name: "a", URL: "http://127.0.0.1:1/"}}},
		"twice the same":   {Path: dir + "/x.db", Subscribers: []Subscriber{{Name: "a", URL: "http://h/", Secret: "s"}, {Name: "a", URL: "http://h/", Secret: "s"}}},
		"ftp url":          {Path: dir + "/x.db", Subscribers: []Subscriber{{Name: "a", URL: "ftp://h/", Secret: "s"}}},
		"no url":           {Path: dir + "/x.db", Subscribers: []Subscriber{{Name: "a", Secret: "s"}}},
		"newer schema too": {Path: newerSchema(t, dir+"/new.db")},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := Open(ctx, o)
			if err == nil {
				s.Close(ctx)
				t.Fatal("Open succeeded")
			}
			if !strings.HasPrefix(err.Error(), "events: ") {
				t.Errorf("error without context: %v", err)
			}
		})
	}
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// newerSchema makes a database that a later wagate wrote.
func newerSchema(t *testing.T, path string) string {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", schemaVersion+1)); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCloseWritesQueueAfterHangingAttempts: at shutdown a receiver hangs,
// so waiting for the attempts in flight takes all of Close's time; the
// records queued meanwhile (the last calls' CDRs, the disk slow for a
// moment) are still written before Close returns. Before, Close gave up
// on the writer as soon as its context had ended ("writer still busy"),
// and wagate exited with those CDRs unwritten.
func TestCloseWritesQueueAfterHangingAttempts(t *testing.T) {
	hold := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-hold }))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(hold) })
	s := openSink(t, func(o *Options) {
		o.Subscribers = []Subscriber{{Name: "crm", URL: srv.URL, Secret: testSecret, Timeout: time.Minute}}
	})
	s.CallStarted(testCall("c0"))
	waitFor(t, "an attempt in flight", func() bool { return s.Stats().Subscribers[0].InFlight == 1 })
	release := lockDB(t, s.opts.Path)
	s.CallEnded(CDR{CallID: "last"})
	go func() {
		time.Sleep(400 * time.Millisecond) // after Close's context ended
		release()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if st := s.Stats(); st.CDRsWritten != 1 {
		t.Errorf("%d CDRs written by Close, want the one queued", st.CDRsWritten)
	}
}
