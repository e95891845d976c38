package test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
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
// restart and not none — and not counted again in the metrics. Before,
// both records were lost.
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
	// The metrics counted the calls in the process they ended in:
	// Prometheus adds each process's count across the restart, so the
	// new process counting the recovered records too counted them twice.
	if v, _ := metricValue(scrapeMetrics(t, e), "wagate_calls_total", `direction="UIC",outcome="answered"`); v != 0 {
		t.Errorf("the restarted wagate counted %v answered calls, want 0: the recovered records were counted by the run they ended in", v)
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

// ringingUAS is a callee that rings and never answers: 100 and 180 to
// each INVITE; to a CANCEL 200, then 487 to its INVITE. calleeMode
// changes that. It keeps every request it received, raw.
type ringingUAS struct {
	mu   sync.Mutex
	reqs []string
	// losesCancels: while set, CANCELs are ignored (as if lost on the
	// way).
	losesCancels atomic.Bool
	// held487 sends the 487 a calleeMode.holds487 callee held back (nil
	// until its CANCEL came).
	held487 func()
}

// send487 sends the 487 held back since the INVITE's CANCEL.
func (u *ringingUAS) send487(t *testing.T) {
	t.Helper()
	u.mu.Lock()
	f := u.held487
	u.mu.Unlock()
	if f == nil {
		t.Fatal("no 487 held: no CANCEL came")
	}
	f()
}

// calleeMode is how a ringingUAS departs from ringing.
type calleeMode struct {
	tcp bool
	// quiet: nothing at all to the INVITE (no 100, no 180: wagate may not
	// cancel before a provisional, RFC 3261 §9.1).
	quiet bool
	// answersCancelled: 200 to the INVITE when its CANCEL comes (someone
	// picked up as it came).
	answersCancelled bool
	// losesCancels: CANCELs are ignored until ringingUAS.losesCancels is
	// cleared.
	losesCancels bool
	// holds487: a CANCEL gets its 200, and the INVITE's 487 waits for
	// ringingUAS.send487 (a phone slow to stop ringing).
	holds487 bool
}

func startRingingUAS(t *testing.T, p peer, m calleeMode) *ringingUAS {
	u := &ringingUAS{}
	u.losesCancels.Store(m.losesCancels)
	var mu sync.Mutex              // the TCP UAS serves each connection in its goroutine
	invites := map[string]string{} // by Call-ID
	serve := startRawUAS
	if m.tcp {
		serve = startRawTCPUAS
	}
	serve(t, p.Addr(), func(msg string, reply func(string)) {
		mu.Lock()
		defer mu.Unlock()
		if strings.HasPrefix(msg, "SIP/2.0") {
			return
		}
		u.mu.Lock()
		u.reqs = append(u.reqs, msg)
		u.mu.Unlock()
		callID := agentHeader(msg, "Call-ID")
		switch {
		case strings.HasPrefix(msg, "INVITE "):
			if _, seen := invites[callID]; seen {
				return // a retransmission before our 100
			}
			invites[callID] = msg
			if !m.quiet {
				reply(agentResponse(msg, "100 Trying", "", nil, ""))
				reply(agentResponse(msg, "180 Ringing", "ringing", nil, ""))
			}
		case strings.HasPrefix(msg, "CANCEL "):
			if u.losesCancels.Load() {
				return
			}
			reply(agentResponse(msg, "200 OK", "ringing", nil, ""))
			switch inv, ok := invites[callID]; {
			case !ok:
			case m.holds487:
				u.mu.Lock()
				u.held487 = func() { reply(agentResponse(inv, "487 Request Terminated", "ringing", nil, "")) }
				u.mu.Unlock()
			case m.answersCancelled:
				sdp := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\n", p.IP, p.IP, p.MediaPort)
				reply(agentResponse(inv, "200 OK", "ringing", []string{"Contact: <sip:callee@" + p.Addr() + ">", "Content-Type: application/sdp"}, sdp))
			default:
				reply(agentResponse(inv, "487 Request Terminated", "ringing", nil, ""))
			}
		case strings.HasPrefix(msg, "BYE "):
			reply(agentResponse(msg, "200 OK", "", nil, ""))
		}
	})
	return u
}

// wait returns the requests whose start line begins with method once
// there are n, failing the test after limit.
func (u *ringingUAS) wait(t *testing.T, method string, n int, limit time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		var out []string
		u.mu.Lock()
		for _, m := range u.reqs {
			if strings.HasPrefix(m, method+" ") {
				out = append(out, m)
			}
		}
		u.mu.Unlock()
		if len(out) >= n {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %s received, want %d", len(out), method, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkCancelMatches fails the test unless cancel cancels inv as RFC 3261
// §9.1 has it: the same Request-URI, top Via (its branch), From, To,
// Call-ID and CSeq number.
func checkCancelMatches(t *testing.T, what, inv, cancel string) {
	t.Helper()
	ruri := func(m string) string { f := strings.Fields(strings.SplitN(m, "\r\n", 2)[0]); return f[1] }
	if ruri(inv) != ruri(cancel) {
		t.Errorf("%s: CANCEL Request-URI %s, INVITE's %s", what, ruri(cancel), ruri(inv))
	}
	for _, h := range []string{"Via", "From", "To", "Call-ID"} {
		if a, b := agentHeader(inv, h), agentHeader(cancel, h); a != b {
			t.Errorf("%s: CANCEL %s %q, INVITE's %q", what, h, b, a)
		}
	}
	n, _, _ := strings.Cut(agentHeader(inv, "CSeq"), " ")
	if got := agentHeader(cancel, "CSeq"); got != n+" CANCEL" {
		t.Errorf("%s: CANCEL CSeq %q, want %q", what, got, n+" CANCEL")
	}
}

// TestCrashCancelsRingingLegs: wagate is killed with SIGKILL while it
// rings a callee — an agent for a WhatsApp user's call (UIC), the
// WhatsApp user for a dialer's call (BIC, toward Meta) — and started
// again: each callee gets a CANCEL for the INVITE it rings for (its
// branch, its Call-ID, its CSeq) within a few seconds of wagate being
// ready, and the 487 it answers is ACKed (not resent for 32 s); the
// caller (Meta, the dialer; over UDP) gets 503 with a Reason to the INVITE
// wagate had not answered, instead of waiting out its own timer. An agent
// who picks up as the CANCEL comes gets its 2xx ACKed and a BYE, not a
// call nobody is on. Before, the journal kept no INVITE: the phone rang
// on until its own ring time, and whoever answered got a dead call.
func TestCrashCancelsRingingLegs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		bic     bool
		tcp     bool // toward Meta: its connection is gone with the crash
		answers bool
	}{{"UIC", false, false, false}, {"BIC", true, false, false}, {"BIC over TCP", true, true, false},
		{"UIC answered across the CANCEL", false, false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			o := wagateOpts{}
			if tc.tcp {
				o.MetaTransport = "tcp"
			}
			w := e.startWagate(o)
			// The caller is Meta for a UIC, the dialer for a BIC: a raw
			// UDP peer whose INVITE is left unanswered by the crash.
			callerPeer, calleePeer, ruser, fromUser := e.Meta, e.PBX, businessNumber, waUser
			if tc.bic {
				callerPeer, calleePeer, ruser, fromUser = e.Dialer, e.Meta, waUser, businessNumber
			}
			callee := startRingingUAS(t, calleePeer, calleeMode{tcp: tc.tcp, answersCancelled: tc.answers})
			caller := newRawPeer(t, callerPeer.IP, w)
			sdp := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
				callerPeer.IP, callerPeer.IP, callerPeer.MediaPort)
			callerVia := "SIP/2.0/UDP " + caller.local() + ";branch=z9hG4bK-crash-caller;rport"
			if err := caller.send([]byte(fmt.Sprintf("INVITE sip:%s@%s SIP/2.0\r\nVia: %s\r\nFrom: <sip:%s@%s>;tag=caller\r\nTo: <sip:%s@%s>\r\n"+
				"Call-ID: crash-caller@%s\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:caller@%s>\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
				ruser, w.SIPAddr, callerVia, fromUser, callerPeer.IP, ruser, w.SIPAddr, callerPeer.IP, caller.local(), len(sdp), sdp))); err != nil {
				t.Fatal(err)
			}
			inv := callee.wait(t, "INVITE", 1, replyLimit)[0]
			// The kill comes once the journal has the call as ringing
			// (its line at the callee's 180), not at an instant a busy
			// machine may have reached first.
			deadline := time.Now().Add(replyLimit)
			for {
				b, _ := os.ReadFile(filepath.Join(e.dir, "data", "live-calls.journal"))
				if strings.Contains(string(b), `"ringing":`) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the journal never had the call ringing")
				}
				time.Sleep(20 * time.Millisecond)
			}
			w.kill()

			e.startWagate(o)
			ready := time.Now()
			cancel := callee.wait(t, "CANCEL", 1, replyLimit)[0]
			if d := time.Since(ready); d > 5*time.Second {
				t.Errorf("the CANCEL came %v after the restarted wagate was ready, want within 5 s", d.Round(time.Millisecond))
			}
			checkCancelMatches(t, tc.name, inv, cancel)
			// The caller hears at once that its call failed, and why.
			var final *sipMsg
			for _, m := range caller.collect(replyLimit, func(m sipMsg) bool { return !strings.HasPrefix(m.StartLine(), "SIP/2.0 1") }) {
				if !strings.HasPrefix(m.StartLine(), "SIP/2.0 1") {
					final = &m
				}
			}
			switch {
			case final == nil:
				t.Errorf("the caller got no final response to its INVITE after the restart")
			case !strings.HasPrefix(final.StartLine(), "SIP/2.0 503") || !strings.Contains(final.Header("Via"), "branch=z9hG4bK-crash-caller") ||
				!strings.Contains(final.Header("To"), "tag=") || !strings.Contains(final.Header("Reason"), "restarted"):
				t.Errorf("the caller's final response after the restart, want 503 to its INVITE, To tagged, a Reason saying wagate restarted:\n%s", final.Text)
			}
			ack := callee.wait(t, "ACK", 1, replyLimit)[0]
			if !strings.Contains(agentHeader(ack, "To"), "tag=ringing") || agentHeader(ack, "Call-ID") != agentHeader(inv, "Call-ID") {
				t.Errorf("ACK does not name the INVITE's dialog:\n%s", ack)
			}
			if !tc.answers {
				// The 487's ACK is in the INVITE's transaction.
				if agentHeader(ack, "Via") != agentHeader(inv, "Via") {
					t.Errorf("ACK of the 487 not in the INVITE's transaction (Via %q, INVITE's %q)", agentHeader(ack, "Via"), agentHeader(inv, "Via"))
				}
				return
			}
			bye := callee.wait(t, "BYE", 1, replyLimit)[0]
			if agentHeader(bye, "Call-ID") != agentHeader(inv, "Call-ID") {
				t.Errorf("BYE for another dialog:\n%s", bye)
			}
		})
	}
}

// TestCrashAfterCallEndCancelsRingingLeg: a click-to-call's agent hangs
// up while the WhatsApp user's phone rings; wagate ends the call (its
// journal's "down" line) and CANCELs the user's INVITE, whose answer does
// not come (lost), and wagate is killed with SIGKILL before Meta's 487.
// The next start CANCELs the user's INVITE (its branch) and ACKs the
// 487. Before, the call's "down" line ended its INVITEs in the journal:
// after the crash nobody cancelled the user, whose phone rang on for a
// call that was gone.
func TestCrashAfterCallEndCancelsRingingLeg(t *testing.T) {
	t.Parallel()
	var o wagateOpts
	e, w, _, meta, agent := c2cEnvMeta(t, "", metapeer.Config{}, func(_ *env, opts *wagateOpts) { o = *opts })
	grantPermission(t, e, waUser, "temporary")
	// Meta is a raw UAS that rings and loses CANCELs.
	meta.Close()
	user := startRingingUAS(t, e.Meta, calleeMode{losesCancels: true})
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	agentAns := answerAsync(ctx, agent, metapeer.AnswerSpec{})
	startC2C(t, e, c2cBody(""), "")
	acall := waitAnswer(t, agentAns, "the agent")
	inv := user.wait(t, "INVITE", 1, replyLimit)[0]
	hangup(t, acall, "the agent")
	user.wait(t, "CANCEL", 1, replyLimit) // lost: no 200, no 487
	// The kill comes once the journal has the call's end.
	for deadline := time.Now().Add(replyLimit); ; time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(filepath.Join(e.dir, "data", "live-calls.journal"))
		if strings.Contains(string(b), `"op":"down"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the journal never had the call's end")
		}
	}
	w.kill()
	before := len(user.wait(t, "CANCEL", 0, 0))
	user.losesCancels.Store(false)

	e.startWagate(o)
	c := user.wait(t, "CANCEL", before+1, replyLimit)[before]
	checkCancelMatches(t, "after the call's end", inv, c)
	ack := user.wait(t, "ACK", 1, replyLimit)[0]
	if agentHeader(ack, "Via") != agentHeader(inv, "Via") {
		t.Errorf("ACK of the 487 not in the INVITE's transaction (Via %q, INVITE's %q)", agentHeader(ack, "Via"), agentHeader(inv, "Via"))
	}
}

// startRawTCPUAS serves SIP over TCP at addr until the test ends: each
// message read (framed by its Content-Length) goes to handle, whose
// replies go back on the connection it came on.
func startRawTCPUAS(t *testing.T, addr string, handle func(msg string, reply func(string))) {
	t.Helper()
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatalf("listen tcp %s: %v", addr, err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					var head strings.Builder
					n := 0
					for {
						l, err := r.ReadString('\n')
						if err != nil {
							return
						}
						if l == "\r\n" {
							if head.Len() == 0 {
								continue // a keep-alive
							}
							break
						}
						head.WriteString(l)
						if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "Content-Length") {
							n, _ = strconv.Atoi(strings.TrimSpace(v))
						}
					}
					body := make([]byte, n)
					if _, err := io.ReadFull(r, body); err != nil {
						return
					}
					handle(head.String()+"\r\n"+string(body), func(res string) { _, _ = c.Write([]byte(res)) })
				}
			}()
		}
	}()
}
