package test

import (
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

// TestCrashHangsUpLiveCalls: wagate killed with SIGKILL while calls are up
// (so it can tell no one), then started again: from its journal of live
// dialogs it sends BYE on both legs of every such call within 5 s of
// being up again, so no agent or WhatsApp user is left in a dead call.
func TestCrashHangsUpLiveCalls(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const calls = 3
	w := e.startWagate(wagateOpts{})

	// Both SIPps wait for wagate's BYE: they exit cleanly only once each
	// of their calls got one.
	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas.xml", Peer: e.PBX, Calls: calls})
	meta := e.startSipp(sippSpec{Name: "meta", Scenario: "uac_wait_bye.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: calls,
		Args: callArgs(businessNumber, waUser, "-l", "3")})
	deadline := time.Now().Add(15 * time.Second)
	for {
		log, _ := os.ReadFile(w.logPath)
		n := strings.Count(string(log), `"msg":"call answered"`)
		if n == calls {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d calls answered", n, calls)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // the last ACKs
	w.kill()

	restarted := time.Now()
	w2 := e.startWagate(wagateOpts{})
	// The BYEs go out once wagate's listeners are bound, about when it
	// answers its status API (ready). The 5 s are counted from there: the
	// start-up before it is the machine's (a -race wagate on two cores that
	// make test keeps busy took more than 15 s to answer), and a replay
	// that waited for anything (a timer, the calls' media timeout) would
	// still be seconds late.
	ready := time.Now()
	pbx.requireOK()
	meta.requireOK()
	t.Logf("restart → wagate ready %v, → the last BYE answered %v", ready.Sub(restarted).Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))
	if d := time.Since(ready); d > 5*time.Second {
		t.Errorf("the last BYE came %v after the restarted wagate was ready, want within 5 s", d.Round(time.Millisecond))
	}
	if n := countMsgs(pbx.messages(), false, "BYE "); n != calls {
		t.Errorf("the PBX got %d BYEs, want %d", n, calls)
	}
	if n := countMsgs(meta.messages(), false, "BYE "); n != calls {
		t.Errorf("the Meta side got %d BYEs, want %d", n, calls)
	}
	s := w2.waitIdle()
	w2.expectCounts(s, 0, 0)
	log, _ := os.ReadFile(w2.logPath)
	if got := strings.Count(string(log), "wagate restarted while the call was up"); got != calls {
		t.Errorf("%d calls logged as ended by the restart, want %d", got, calls)
	}

	// Nothing is left for a third start.
	w2.kill()
	w3 := e.startWagate(wagateOpts{})
	time.Sleep(500 * time.Millisecond)
	log, _ = os.ReadFile(w3.logPath)
	if strings.Contains(string(log), "left up by a previous run") {
		t.Errorf("a restart after the calls were hung up replayed them again")
	}
}

// countMsgs counts the messages received (sent=false) or sent whose start
// line begins with prefix.
func countMsgs(msgs []sipMsg, sent bool, prefix string) int {
	n := 0
	for _, m := range msgs {
		if m.Sent == sent && strings.HasPrefix(m.StartLine(), prefix) {
			n++
		}
	}
	return n
}

// TestCrashKeepsEndedCallsRecords: calls end, and wagate is killed before
// its events store has written their records (records are written a
// moment after a call ends, in batches; here the database is held by
// another writer, as a stalled disk would hold it). The next start finds
// the records in its journal of live calls and stores them: each call has
// its own record, with how it really ended, not one made up at the
// restart and not none. Before, both records were lost.
func TestCrashKeepsEndedCallsRecords(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{APIExtra: tokenAPI})

	// Hold the database's write lock: wagate's writer waits for it
	// (busy_timeout 10 s), with the records in its queue.
	db, err := sql.Open("sqlite", filepath.Join(e.dir, "data", "events.db")+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`UPDATE cdrs SET outcome = outcome WHERE 0`); err != nil {
		t.Fatal(err)
	}
	const calls = 2
	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas.xml", Peer: e.PBX, Calls: calls, Args: ringArgs})
	meta := e.startSipp(sippSpec{Name: "meta", Scenario: "uac.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: calls,
		Args: callArgs(businessNumber, waUser, "-d", "300")})
	meta.requireOK()
	pbx.requireOK()
	deadline := time.Now().Add(15 * time.Second)
	for {
		log, _ := os.ReadFile(w.logPath)
		if strings.Count(string(log), `"msg":"call ended"`) == calls {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the %d calls did not end", calls)
		}
		time.Sleep(50 * time.Millisecond)
	}
	w.kill()
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	var stored int
	if err := db.QueryRow(`SELECT COUNT(*) FROM cdrs`).Scan(&stored); err != nil || stored != 0 {
		t.Fatalf("%d records stored before the kill (%v): the database was not held, the test tests nothing", stored, err)
	}

	w2 := e.startWagate(wagateOpts{APIExtra: tokenAPI})
	cdrs := waitCDRs(t, e, calls)
	for _, c := range cdrs {
		if c.Outcome != "answered" || c.HangupBy != "a" || c.Cause != "bye" || c.TalkMS < 200 {
			t.Errorf("record of %s: outcome %s, hangup_by %s, cause %q, talk %d ms; want the call as it ended (answered, BYE from a)",
				c.CallID, c.Outcome, c.HangupBy, c.Cause, c.TalkMS)
		}
	}
	log, _ := os.ReadFile(w2.logPath)
	if got := strings.Count(string(log), "call record recovered from the journal"); got != calls {
		t.Errorf("%d records logged as recovered, want %d", got, calls)
	}
	// A third start finds nothing more to recover.
	w2.kill()
	w3 := e.startWagate(wagateOpts{APIExtra: tokenAPI})
	if cdrs := listCDRs(t, e); len(cdrs) != calls {
		t.Errorf("%d records after a third start, want %d", len(cdrs), calls)
	}
	log, _ = os.ReadFile(w3.logPath)
	if strings.Contains(string(log), "recovered from the journal") {
		t.Error("a record was recovered twice")
	}
}
