package events

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// damagedDB writes a database of n whole calls whose events were never
// delivered (the receiver refused them all), then damages the file as
// mode says: "junk" (not a database at all), "truncated" (its second half
// gone, as a partial copy or a lost disk tail leaves it), "header page"
// (the schema page overwritten).
func damagedDB(t *testing.T, rx *receiver, mode string, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.db")
	if mode == "junk" {
		return writeFile(t, path, strings.Repeat("not sqlite ", 1000))
	}
	rx.setAnswer(func(*delivery) int { return 503 })
	s, err := Open(context.Background(), Options{Path: path, NodeID: "node-a", StoreCDRs: true, MaxAttempts: 1 << 30,
		// Retried at once: every delivery is due when the file is reopened.
		BackoffBase: time.Millisecond, BackoffMax: time.Millisecond,
		Subscribers: []Subscriber{{Name: "crm", URL: rx.url(), Secret: testSecret}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		emitCall(s, fmt.Sprintf("old-%03d", i), t0.Add(time.Duration(i)*time.Second))
	}
	waitFor(t, "the calls written", func() bool { return s.Stats().CDRsWritten == uint64(n) })
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	switch mode {
	case "truncated":
		b = b[:len(b)/2/4096*4096]
	case "header page":
		for i := 100; i < 4096; i++ {
			b[i] = byte(i * 7)
		}
	}
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestDamagedDatabaseDoesNotStopEvents: a damaged events.db used to make
// Open fail, and wagate refused to start — no calls at all because of the
// call records. Now the file is moved aside (kept), a new one is made, what
// could still be read is copied in and delivered, in each call's order, and
// new calls are recorded.
func TestDamagedDatabaseDoesNotStopEvents(t *testing.T) {
	for _, mode := range []string{"junk", "truncated", "header page"} {
		t.Run(mode, func(t *testing.T) {
			rx := newReceiver(t)
			// The lost pages may hold a call's first events and not its
			// later ones: those are delivered without them.
			rx.noOrder = true
			const n = 300
			path := damagedDB(t, rx, mode, n)
			rx.setAnswer(nil) // take everything now
			var logs logBuf
			s := openSink(t, func(o *Options) {
				o.Path = path
				o.Log = logs.logger()
				o.Subscribers = []Subscriber{{Name: "crm", URL: rx.url(), Secret: testSecret}}
			})
			if !strings.Contains(logs.String(), "events database damaged") {
				t.Errorf("nothing logged about the damaged file:\n%s", logs.String())
			}
			moved, _ := filepath.Glob(path + ".corrupt-*")
			if len(moved) == 0 {
				t.Fatalf("the damaged file was not kept beside the new one")
			}

			emitCall(s, "new-1", t0.Add(time.Hour))
			waitFor(t, "the new call's events", func() bool {
				for _, d := range rx.requests() {
					if d.env.CallID == "new-1" && d.env.Type == CallEnded && d.status == 200 {
						return true
					}
				}
				return false
			})
			if _, err := s.CDR(context.Background(), "new-1"); err != nil {
				t.Errorf("new call's CDR: %v", err)
			}

			page, err := s.CDRs(context.Background(), CDRQuery{Limit: MaxLimit})
			if err != nil {
				t.Fatal(err)
			}
			recovered := len(page.CDRs) - 1
			t.Logf("%s: %d of %d CDRs recovered; %d events delivered", mode, recovered, n, rx.distinct())
			if mode == "truncated" && recovered == 0 {
				t.Errorf("nothing recovered from a file that lost only its second half")
			}
			if mode == "truncated" {
				// Every recovered event is delivered: none waits for
				// an earlier event of its call that was lost.
				waitFor(t, "every recovered event delivered", func() bool {
					var pending int
					err := s.rdb.QueryRow(`SELECT COUNT(*) FROM deliveries WHERE state = ?`, statePending).Scan(&pending)
					return err == nil && pending == 0
				})
				t.Logf("%d events delivered", rx.distinct())
			}
			rx.checkClean(t)
		})
	}
}

// TestSalvageReleasesOrphanedLaterEvents: when the damaged part held a
// call's call.started but not its later events, those later events were
// copied still waiting (blocked) for it, and would never be sent.
func TestSalvageReleasesOrphanedLaterEvents(t *testing.T) {
	ctx := context.Background()
	rx := newReceiver(t)
	rx.setAnswer(func(*delivery) int { return 503 })
	dir := t.TempDir()
	oldPath := filepath.Join(dir, "old.db")
	s, err := Open(ctx, Options{Path: oldPath, StoreCDRs: true, MaxAttempts: 1 << 30, BackoffBase: time.Hour, BackoffMax: time.Hour,
		Subscribers: []Subscriber{{Name: "crm", URL: rx.url(), Secret: testSecret}}})
	if err != nil {
		t.Fatal(err)
	}
	emitCall(s, "c1", t0)
	waitFor(t, "the call written", func() bool { return s.Stats().EventsWritten == 4 })
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// What the damage took: the call's first event (and its delivery).
	db, err := sql.Open("sqlite", oldPath+"?_foreign_keys=1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DELETE FROM events WHERE type = ?`, string(CallStarted)); err != nil {
		t.Fatal(err)
	}
	db.Close()

	w, r, err := openDB(ctx, filepath.Join(dir, "new.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	now := time.Now()
	copied, err := salvage(ctx, w, oldPath, now)
	if err != nil || copied["events"] != 3 || copied["deliveries"] != 3 || copied["cdrs"] != 1 {
		t.Fatalf("salvage: %v, %v; want 3 events, 3 deliveries, 1 CDR", copied, err)
	}
	var blockedN, dueN int
	if err := w.QueryRow(`SELECT COUNT(*) FILTER (WHERE next_at = ?1), COUNT(*) FILTER (WHERE next_at <= ?2)
		FROM deliveries WHERE state = ?3`, int64(blocked), now.UnixNano(), statePending).Scan(&blockedN, &dueN); err != nil {
		t.Fatal(err)
	}
	// call.ringing is first now and due; the two after it wait for it.
	if dueN != 1 || blockedN != 2 {
		t.Errorf("%d deliveries due and %d blocked, want 1 and 2", dueN, blockedN)
	}
}
