package test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
)

// How a queue rings its agents: an agent who rejects rests for the hunt
// list's reject_backoff; the ring ends with the wait (the caller hanging
// up, limit_time); a call that rings hundreds of times keeps a bounded
// record.

// queueCDR is the part of a queued call's record these tests check.
type queueCDR struct {
	huntCDR
	HangupBy        string `json:"hangup_by"`
	AttemptsOmitted int    `json:"attempts_omitted"`
}

// oneQueueCDR waits for the test's only call record.
func oneQueueCDR(t *testing.T, e *env) queueCDR {
	t.Helper()
	var c queueCDR
	if err := json.Unmarshal(waitCDRs(t, e, 1)[0].raw, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitEvents waits until a has n events of kind what (a little longer
// than limit at most) and returns them.
func waitEvents(a *agent, what string, n int, limit time.Duration) []agentEvent {
	deadline := time.Now().Add(limit)
	for len(a.got(what)) < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	return a.got(what)
}

// TestQueueRejectBackoff: the only agent of a queue's hunt list looks
// free to wagate but rejects every call (480, do not disturb on its
// phone). With reject_backoff 3s it is rung about every 3 s while the
// caller waits — not every second as before — and the record lists each
// ring as failed 480.
func TestQueueRejectBackoff(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a1 := startAgent(t, "a1", e.PBX, agentRefuses, func(a *agent) { a.code = 480 })
	w := e.startWagate(wagateOpts{MetaEncryption: "sdes", APIExtra: tokenAPI,
		Route: `{queue: {hunt: team, limit_time: 8s, announce_every: 5s}}`,
		Extra: `hunt_lists: [{name: team, reject_backoff: 3s, targets: [{endpoint: pbx, user: "1001"}]}]`})
	meta := newGoPeer(t, e.Meta, metapeer.Config{})
	start := time.Now()
	c := flowCall(t, w, meta)
	waitBye(t, c, "the caller, after limit_time without a fallback")
	waited := time.Since(start)
	invs := a1.got("INVITE")
	var gaps []string
	for i := 1; i < len(invs); i++ {
		gap := invs[i].at.Sub(invs[i-1].at)
		gaps = append(gaps, gap.Round(time.Millisecond).String())
		if gap < 2900*time.Millisecond || gap > 3900*time.Millisecond {
			t.Errorf("INVITE %d came %v after the one before, want the 3 s back-off (and not a second more)", i+1, gap)
		}
	}
	t.Logf("limit_time 8s, reject_backoff 3s: %d INVITEs in %v, gaps %v", len(invs), waited.Round(time.Millisecond), gaps)
	if len(invs) != 3 {
		t.Errorf("the rejecting agent got %d INVITEs in 8 s, want 3 (at about 0, 3 and 6 s)", len(invs))
	}
	w.expectCounts(w.waitIdle(), 1, 1)
	cdr := oneQueueCDR(t, e)
	if got, want := cdr.attempts(), strings.TrimSpace(strings.Repeat("1001@pbx:failed:480 ", len(invs))); got != want {
		t.Errorf("CDR attempts %s, want %s", got, want)
	}
}

// TestQueueAttemptsCapped: a queue over a parallel list of 50 agents who
// all answer 486 and never rest (reject_backoff 0s) rings them all about
// every second for limit_time (5.5 s, so that the limit never falls on
// a round's second): hundreds of INVITEs. The call's
// record lists 60 attempts (the first 10, the latest 50) and counts the
// rest, each busy (but a last round the limit cancelled); the latest is numbered as the agents saw it, so the numbering
// and the Call-IDs went on past what the record shows.
func TestQueueAttemptsCapped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := startAgent(t, "agents", e.PBX, agentRefuses)
	var targets []string
	for i := range 50 {
		targets = append(targets, fmt.Sprintf(`{endpoint: pbx, user: "%d"}`, 1001+i))
	}
	w := e.startWagate(wagateOpts{MetaEncryption: "sdes", APIExtra: tokenAPI,
		Route: `{queue: {hunt: all, limit_time: 5500ms, announce_every: 5s}}`,
		Extra: `hunt_lists: [{name: all, strategy: parallel, reject_backoff: 0s, targets: [` + strings.Join(targets, ", ") + `]}]`})
	meta := newGoPeer(t, e.Meta, metapeer.Config{})
	c := flowCall(t, w, meta)
	waitBye(t, c, "the caller, after limit_time without a fallback")
	w.expectCounts(w.waitIdle(), 1, 1)
	cdr := oneQueueCDR(t, e)
	invs := a.got("INVITE")
	t.Logf("%d INVITEs in 5.5 s; record: %d attempts, %d omitted", len(invs), len(cdr.Attempts), cdr.AttemptsOmitted)
	if len(invs) < 100 {
		t.Fatalf("the agents got %d INVITEs, want 50 a second for 5.5 s", len(invs))
	}
	if len(cdr.Attempts) != 60 || cdr.AttemptsOmitted != len(invs)-60 {
		t.Fatalf("record: %d attempts and %d omitted, want 60 and %d", len(cdr.Attempts), cdr.AttemptsOmitted, len(invs)-60)
	}
	// Every attempt was refused busy, but for those of the round the
	// limit fell on: the limit is timed, rounds are not, and on a busy host
	// a round drifts onto it. Those are cancelled: only in the last round
	// (the latest 50), never among the first 10.
	for i, at := range cdr.Attempts {
		if at.Result == "cancelled" && i >= 10 {
			continue
		}
		if at.Result != "busy" || at.SIPCode != 486 {
			t.Errorf("attempt %d: %s %d, want busy 486", i, at.Result, at.SIPCode)
		}
	}
	sent := map[string]bool{}
	for _, inv := range invs {
		sent[inv.callID] = true
	}
	for i, at := range cdr.Attempts {
		if !sent[at.SIPCallID] {
			t.Errorf("attempt %d's Call-ID %q is none the agents got", i, at.SIPCallID)
		}
	}
	if first := cdr.Attempts[0].SIPCallID; strings.Contains(first, "-") {
		t.Errorf("first attempt's Call-ID %q, want the call's first (no number)", first)
	}
	if last := cdr.Attempts[59].SIPCallID; !strings.HasSuffix(last, fmt.Sprintf("-%d@wagate", len(invs))) {
		t.Errorf("latest attempt's Call-ID %q, want it numbered %d", last, len(invs))
	}
}

// TestQueueCallerHangsUpMidRing: the caller hangs up while the queue
// rings an agent (who never answers, ring time 60 s): the agent gets
// CANCEL at once, and the record says the caller hung up and the ring
// was cancelled.
func TestQueueCallerHangsUpMidRing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a1 := startAgent(t, "a1", e.PBX, agentRings)
	w := e.startWagate(wagateOpts{MetaEncryption: "sdes", APIExtra: tokenAPI,
		Route: `{queue: {hunt: team, limit_time: 60s, announce_every: 5s}}`,
		Extra: `hunt_lists: [{name: team, ring_timeout: 60s, targets: [{endpoint: pbx, user: "1001"}]}]`})
	meta := newGoPeer(t, e.Meta, metapeer.Config{})
	c := flowCall(t, w, meta)
	inv := a1.one("INVITE")
	time.Sleep(500 * time.Millisecond)
	gone := time.Now()
	hangup(t, c, "the caller")
	cancels := waitEvents(a1, "CANCEL", 1, 5*time.Second)
	if len(cancels) != 1 || cancels[0].callID != inv.callID {
		t.Fatalf("the ringing agent got CANCELs %v after the caller hung up, want one for its INVITE (events %v)", cancels, a1.all())
	}
	d := cancels[0].at.Sub(gone)
	t.Logf("caller hung up → CANCEL to the ringing agent after %v", d.Round(time.Millisecond))
	if d > time.Second {
		t.Errorf("the agent got CANCEL %v after the caller hung up, want at once", d)
	}
	w.expectCounts(w.waitIdle(), 1, 1)
	cdr := oneQueueCDR(t, e)
	if got := cdr.attempts(); got != "1001@pbx:cancelled:0" || cdr.HangupBy != "a" {
		t.Errorf("CDR attempts %s, hangup_by %q; want the ring cancelled and the caller (a) hanging up", got, cdr.HangupBy)
	}
}

// TestQueueLimitTimeMidRing: limit_time (5 s) passes while the queue
// rings an agent who never answers (ring time 60 s): the agent gets
// CANCEL at the limit, not after its ring time, and the queue's fallback
// is rung at once and connected; the record lists both.
func TestQueueLimitTimeMidRing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p2 := e.newPeer("pbx2", 5)
	a1 := startAgent(t, "a1", e.PBX, agentRings)
	fb := startAgent(t, "fallback", p2, agentAnswers)
	w := e.startWagate(wagateOpts{MetaEncryption: "sdes", APIExtra: tokenAPI,
		Route:          `{queue: {hunt: team, limit_time: 5s, announce_every: 5s, fallback: {endpoint: pbx2, user: "2999"}}}`,
		EndpointsExtra: pbxEndpoint("pbx2", p2, ""),
		Extra:          `hunt_lists: [{name: team, ring_timeout: 60s, targets: [{endpoint: pbx, user: "1001"}]}]`})
	meta := newGoPeer(t, e.Meta, metapeer.Config{})
	start := time.Now()
	c := flowCall(t, w, meta)
	inv := a1.one("INVITE")
	cancels := waitEvents(a1, "CANCEL", 1, 10*time.Second)
	if len(cancels) != 1 || cancels[0].callID != inv.callID {
		t.Fatalf("the ringing agent got CANCELs %v, want one at limit_time (events %v)", cancels, a1.all())
	}
	at := cancels[0].at.Sub(start)
	fbInv := fb.one("INVITE")
	fb.one("ACK")
	t.Logf("limit_time 5s → CANCEL to the ringing agent at %v, fallback rung at %v",
		at.Round(time.Millisecond), fbInv.at.Sub(start).Round(time.Millisecond))
	if at < 5*time.Second || at > 6500*time.Millisecond {
		t.Errorf("the agent got CANCEL %v after the call, want at limit_time (5 s)", at)
	}
	if fbInv.user != "2999" || fbInv.at.Sub(start) < 5*time.Second {
		t.Errorf("fallback INVITE to %s %v after the call, want 2999 after limit_time (5 s)", fbInv.user, fbInv.at.Sub(start))
	}
	if n := len(a1.got("INVITE")); n != 1 {
		t.Errorf("the agent got %d INVITEs, want 1", n)
	}
	time.Sleep(300 * time.Millisecond)
	hangup(t, c, "the caller")
	w.expectCounts(w.waitIdle(), 1, 1)
	cdr := oneQueueCDR(t, e)
	if got, want := cdr.attempts(), "1001@pbx:cancelled:0 2999@pbx2:answered:200"; got != want || cdr.Outcome != "answered" {
		t.Errorf("CDR outcome %s, attempts %s; want answered, %s", cdr.Outcome, got, want)
	}
}
