package permissions

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newClock() *fakeClock { return &fakeClock{t: epoch} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type env struct {
	c     *Cache
	clock *fakeClock
	path  string
	logs  *syncBuffer
	lim   Limits
}

// open opens a cache on a fresh file with the given limits.
func open(t *testing.T, lim Limits) *env {
	t.Helper()
	e := &env{clock: newClock(), path: filepath.Join(t.TempDir(), "permissions.db"), logs: &syncBuffer{}, lim: lim}
	e.reopen(t)
	return e
}

// reopen closes the cache (if open) and opens the same file again.
func (e *env) reopen(t *testing.T) {
	t.Helper()
	if e.c != nil {
		if err := e.c.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
	}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := Open(e.path, e.lim, e.clock, log)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	e.c = c
	t.Cleanup(func() { c.Close() })
}

func key(user string) Key { return Key{PhoneNumberID: "106540352242922", User: user} }

func mustGrant(t *testing.T, c *Cache, k Key, permanent bool) {
	t.Helper()
	if err := c.Grant(k, permanent, time.Time{}, "test"); err != nil {
		t.Fatalf("grant %v: %v", k, err)
	}
}

func mustGet(t *testing.T, c *Cache, k Key) Entry {
	t.Helper()
	en, ok := c.Get(k)
	if !ok {
		t.Fatalf("get %v: not found", k)
	}
	return en
}

func admit(t *testing.T, c *Cache, k Key, want Verdict) (Decision, *Ticket) {
	t.Helper()
	d, tk := c.Admit(k)
	if d.Verdict != want {
		t.Fatalf("admit %v = %v (%d %s), want %v", k, d.Verdict, d.Code, d.Reason, want)
	}
	if (tk != nil) != (want == Allow) {
		t.Fatalf("admit %v: ticket %v with verdict %v", k, tk, d.Verdict)
	}
	return d, tk
}
