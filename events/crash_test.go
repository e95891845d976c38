package events

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The re-executed test binary writes into the database named by crashDB,
// with its subscriber at crashURL (where nothing listens), then is killed.
const (
	crashDB  = "WAGATE_EVENTS_CRASH_DB"
	crashURL = "WAGATE_EVENTS_CRASH_URL"
)

// TestCrashChild is the child half of TestOutboxSurvivesKill9; it does
// nothing unless the parent set crashDB.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashDB)
	if path == "" {
		t.Skip("only runs as the child of TestOutboxSurvivesKill9")
	}
	s, err := Open(context.Background(), Options{
		Path: path, NodeID: "child", StoreCDRs: true, MaxAttempts: 1000, BackoffBase: time.Second, BackoffMax: time.Second,
		Subscribers: []Subscriber{{Name: "crm", URL: os.Getenv(crashURL), Secret: testSecret}},
	})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(3)
	}
	for i := range 20 {
		emitCall(s, fmt.Sprintf("p1-%02d", i), t0)
	}
	for s.Stats().CDRsWritten < 20 || s.Stats().EventsWritten < 80 {
		time.Sleep(time.Millisecond)
	}
	os.Stdout.WriteString("committed\n")
	// Keep writing until the parent kills us, mid-transaction or not.
	for i := 0; i < 1_000_000; i++ {
		emitCall(s, fmt.Sprintf("p2-%06d", i), t0)
		time.Sleep(50 * time.Microsecond)
	}
	os.Exit(5) // not killed in time
}

// TestOutboxSurvivesKill9: a process killed with SIGKILL while writing
// leaves a database from which a new Sink delivers every committed event,
// each CDR together with its call.ended event (one transaction), in
// per-call order.
func TestOutboxSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + dead.Addr().String() + "/hook"
	dead.Close() // connection refused: the child delivers nothing

	path := filepath.Join(t.TempDir(), "events.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDB+"="+path, crashURL+"="+deadURL)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "committed" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child did not commit: %q", line)
	}
	time.Sleep(150 * time.Millisecond) // let it be busy writing
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v", cmd.ProcessState)
	}
	for _, suffix := range []string{"", "-wal"} {
		if _, err := os.Stat(path + suffix); err != nil {
			t.Fatalf("after the kill: %v", err)
		}
	}

	r := newReceiver(t)
	s := openSink(t, func(o *Options) {
		o.Path = path
		o.Subscribers = []Subscriber{{Name: "crm", URL: r.url(), Secret: testSecret, Concurrency: 8}}
	})
	ctx := context.Background()
	// The child's failed attempts set next_at up to a second ahead.
	waitFor(t, "the outbox to drain", func() bool {
		var pending int
		s.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM deliveries WHERE state != ?`, stateDelivered).Scan(&pending)
		return pending == 0
	})
	var events int
	if err := s.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM events`).Scan(&events); err != nil {
		t.Fatal(err)
	}
	if got := r.distinct(); got != events {
		t.Errorf("receiver took %d events, the outbox holds %d", got, events)
	}
	r.checkClean(t)

	// Every phase-1 call, and for every stored CDR its call.ended event.
	cdrs := map[string]bool{}
	for q := (CDRQuery{Limit: MaxLimit}); ; {
		p, err := s.CDRs(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range p.CDRs {
			cdrs[c.CallID] = true
		}
		if p.NextCursor == "" {
			break
		}
		q.After, _ = ParseCDRCursor(p.NextCursor)
	}
	ended := map[string]bool{}
	for _, d := range r.requests() {
		if d.env.Type == CallEnded {
			ended[d.env.CallID] = true
		}
	}
	for i := range 20 {
		id := fmt.Sprintf("p1-%02d", i)
		if !cdrs[id] || !ended[id] {
			t.Errorf("committed call %s: CDR %v, call.ended delivered %v", id, cdrs[id], ended[id])
		}
	}
	for id := range cdrs {
		if !ended[id] {
			t.Errorf("CDR %s stored without its call.ended event", id)
		}
	}
	for id := range ended {
		if !cdrs[id] {
			t.Errorf("call.ended of %s delivered without its CDR", id)
		}
	}
	if len(cdrs) <= 20 {
		t.Logf("the kill came before any phase-2 call was committed (%d CDRs)", len(cdrs))
	}
	t.Logf("%d CDRs and %d events survived the kill", len(cdrs), events)
}
