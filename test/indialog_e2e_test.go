package test

import (
	"context"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/sipua"
)

// TestInDialogOptions: an OPTIONS inside a dialog is how some PBXs and
// SBCs ask whether a call still exists (RFC 5057: 481 ends the dialog).
// On a live call wagate answers 200; once the call is over, 481, so the
// PBX can drop a leg it would otherwise hold (and its ports) forever.
func TestInDialogOptions(t *testing.T) {
	t.Parallel()
	c := startCtl(t, wagateOpts{})
	rc := c.call(t)
	options := func() int {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
		defer cancel()
		res, err := rc.pbx.Dialog.Request(ctx, "OPTIONS", nil, "", nil)
		if err != nil {
			t.Fatalf("in-dialog OPTIONS: %v", err)
		}
		return res.Status
	}
	if got := options(); got != 200 {
		t.Errorf("in-dialog OPTIONS on a live call answered %d, want 200", got)
	}
	hangup(t, rc.meta, "the caller")
	waitBye(t, rc.pbx, "the agent")
	c.w.waitIdle()
	if got := options(); got != 481 {
		t.Errorf("in-dialog OPTIONS after the call ended answered %d, want 481", got)
	}
}

// TestLateAckUDP: the caller's first four 200s are lost on the way (a
// caller on a lossy link), so it ACKs only the fifth. RFC 3261 §13.3.1.4:
// wagate resends its 2xx at T1, 2·T1, … up to T2 until the ACK, for 64·T1
// (32 s), past the 5 s its INVITE transaction lingers
// (sip.transaction_linger); the call must then be up and end normally.
func TestLateAckUDP(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{MetaEncryption: "sdes", APIExtra: tokenAPI})
	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas.xml", Peer: e.PBX, Calls: 1})
	meta := newGoPeer(t, e.Meta, metapeer.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	var (
		mu      sync.Mutex
		answers []time.Time
	)
	const lost = 4
	call, err := meta.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: businessNumber, From: waUser, LoseAnswers: lost,
		OnAnswer: func(*sipua.Msg) {
			mu.Lock()
			answers = append(answers, time.Now())
			mu.Unlock()
		}})
	mu.Lock()
	for i, at := range answers {
		t.Logf("200 #%d at +%v", i+1, at.Sub(answers[0]).Round(time.Millisecond))
	}
	mu.Unlock()
	if err != nil {
		t.Fatalf("call whose first %d 200s were lost: %v", lost, err)
	}
	hangup(t, call, "the caller")
	pbx.requireOK()
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
	cdr := cdrOfA(t, waitCDRs(t, e, 1), call.Dialog.CallID)
	if cdr.HangupBy != "a" || cdr.Cause != "bye" {
		t.Errorf("CDR hangup_by %q cause %q, want a / bye", cdr.HangupBy, cdr.Cause)
	}
}

// TestCrossingHangups: requests that cross a hangup inside wagate. Both
// parties hang up at once (BYE crossing BYE); the agent re-INVITEs as the
// caller hangs up (re-INVITE crossing BYE). Each request gets a final
// answer a UA takes as the end of the call or a refused request (never
// a timeout), the agent is hung up, and nothing is left: no call, no
// port.
func TestCrossingHangups(t *testing.T) {
	t.Parallel()
	c := startCtl(t, wagateOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()

	rc := c.call(t)
	var wg sync.WaitGroup
	codes := make([]int, 2)
	errs := make([]error, 2)
	for i, d := range []*sipua.Dialog{rc.meta.Dialog, rc.pbx.Dialog} {
		wg.Go(func() { codes[i], errs[i] = d.Bye(ctx) })
	}
	wg.Wait()
	for i, who := range []string{"the caller", "the agent"} {
		if errs[i] != nil || (codes[i] != 200 && codes[i] != 481) {
			t.Errorf("BYE crossing BYE: %s's BYE got %d (%v), want 200 or 481", who, codes[i], errs[i])
		}
	}
	rc.meta.Media.Close()
	rc.pbx.Media.Close()
	c.w.waitIdle()

	rc = c.call(t)
	var res *sipua.Msg
	var rerr error
	wg.Go(func() { res, rerr = rc.pbx.Dialog.Reinvite(ctx, withDirection(t, rc.pbx.Local, "sendonly", "")) })
	hangup(t, rc.meta, "the caller")
	wg.Wait()
	// 200 when it came first, 481 when the call was over (RFC 3261
	// §12.2.2); a 491 would have the agent try again on a dialog that is
	// gone.
	if rerr != nil || (res.Status != 200 && res.Status != 481) {
		t.Errorf("re-INVITE crossing BYE: %v %v, want 200 or 481", rerr, res)
	} else {
		t.Logf("re-INVITE crossing BYE answered %d %s", res.Status, res.Reason)
	}
	waitBye(t, rc.pbx, "the agent")
	c.w.waitIdle()
}

// transferAcked has the agent of rc blind-transfer the call to 2001 at
// pbx2, and returns the new agent's call as soon as it has wagate's ACK:
// what it does next may reach wagate before its leg has taken the old
// one's place.
func transferAcked(ctx context.Context, t *testing.T, c *ctl, rc recCall) *metapeer.Call {
	t.Helper()
	answered := answerAsync(ctx, c.pbx2, metapeer.AnswerSpec{})
	if code, warn := refer(t, rc.pbx.Dialog, c.target("2001")); code != 202 {
		t.Fatalf("REFER: %d (%s), want 202", code, warn)
	}
	nc := waitAnswer(t, answered, "the new agent (pbx2)")
	<-nc.Dialog.Acked()
	return nc
}

// TestTransferTargetReinvitesAtOnce: the agent a blind transfer reached
// re-INVITEs as soon as it has wagate's ACK (a PBX moving the media to
// the phone, as Asterisk's direct media does), which can reach wagate
// before the new leg has taken the old one's place. It must get 200, or
// 491 and then 200 when it tries again as RFC 3261 §14.1 says, never 481,
// which ends its dialog (RFC 5057); then the caller and the new agent
// hear each other. Racy by nature: run it with -count.
func TestTransferTargetReinvitesAtOnce(t *testing.T) {
	t.Parallel()
	c := startCtl(t, wagateOpts{})
	rc := c.call(t)
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	nc := transferAcked(ctx, t, c, rc)
	res, err := nc.Dialog.Reinvite(ctx, nc.Local)
	// Not the Call-ID's owner: again after 0–2 s (RFC 3261 §14.1), as
	// often as it takes the transfer to complete on a busy host (a few
	// tries; 491 for ever would fail).
	for try := 1; try <= 5 && err == nil && res.Status == 491; try++ {
		t.Logf("re-INVITE at once after the ACK: 491, trying again (%d)", try)
		time.Sleep(time.Duration(rand.Int64N(int64(2 * time.Second))))
		res, err = nc.Dialog.Reinvite(ctx, nc.Local)
	}
	if err != nil || res.Status != 200 {
		t.Fatalf("re-INVITE at once after the ACK: %v %v, want 200", err, res)
	}
	nc.Media.SetSource(newAgentTone())
	mustHear(t, "the caller hears the new agent", rc.meta.Media, 48000, newAgentHz, 1500*time.Millisecond)
	mustHear(t, "the new agent hears the caller", nc.Media, 8000, 1000, 1500*time.Millisecond)
	hangup(t, rc.meta, "the caller")
	waitBye(t, nc, "the new agent")
	c.w.waitIdle()
}

// TestTransferTargetByeAtOnce: the agent a blind transfer reached hangs
// up as soon as it has wagate's ACK, which can reach wagate before the
// new leg has taken the old one's place. Its BYE must get 200 and end
// the call: the caller gets BYE and nothing is left (before: 481, and the
// caller stayed on a leg that was gone, its ports held until the media
// timeout). Racy by nature: run it with -count.
func TestTransferTargetByeAtOnce(t *testing.T) {
	t.Parallel()
	c := startCtl(t, wagateOpts{})
	rc := c.call(t)
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	nc := transferAcked(ctx, t, c, rc)
	if code, err := nc.Dialog.Bye(ctx); err != nil || code != 200 {
		t.Errorf("the new agent's BYE at once after the ACK: %d %v, want 200", code, err)
	}
	nc.Media.Close()
	waitBye(t, rc.meta, "the caller")
	waitBye(t, rc.pbx, "the transferring agent")
	c.w.waitIdle()
	if log, _ := os.ReadFile(c.w.logPath); strings.Contains(string(log), "BYE from the transfer target before it took the call") {
		t.Logf("the BYE came before the new leg took the call's place")
	}
}

// TestAgentByeBeforeCallerAck: the caller's first two 200s are lost (a
// lossy link) and the agent hangs up as soon as the first is on its way,
// before the caller has ACKed any. RFC 3261 §15: wagate must not send the caller its
// BYE before the caller's ACK, and must go on resending the 200 until
// then. Before, the agent's BYE stopped the 200's retransmissions and
// sent a BYE for a dialog the caller never had: the WhatsApp user's
// phone went on ringing until its INVITE timed out, and no call was
// ever connected for it to end.
func TestAgentByeBeforeCallerAck(t *testing.T) {
	t.Parallel()
	c := startCtl(t, wagateOpts{})
	// The agent's BYE after wagate sent the caller its 200: a BYE before
	// that ends the call before it was answered, and the caller gets a
	// final error instead (TestAgentByeAtOnce).
	first := make(chan struct{})
	var once sync.Once
	spec := metapeer.CallSpec{Target: c.w.SIPAddr, To: businessNumber, From: waUser, LoseAnswers: 2,
		OnAnswer: func(*sipua.Msg) { once.Do(func() { close(first) }) }}
	mc, err := agentByeAtOnce(t, c, spec, first)
	if err != nil {
		t.Fatalf("the caller, whose first two 200s were lost, got no call to end: %v", err)
	}
	waitBye(t, mc, "the caller")
	s := c.w.waitIdle()
	c.w.expectCounts(s, 1, 1)
	cdr := cdrOfA(t, waitCDRs(t, c.e, 1), mc.Dialog.CallID)
	if cdr.HangupBy != "b" || cdr.Outcome != "answered" {
		t.Errorf("CDR hangup_by %q outcome %q, want b / answered", cdr.HangupBy, cdr.Outcome)
	}
}

// agentByeAtOnce places the caller's call (spec) and has the agent hang
// up as soon as wagate ACKs its 200 (and after, when given, is closed);
// it returns the caller's call as its INVITE ended.
func agentByeAtOnce(t *testing.T, c *ctl, spec metapeer.CallSpec, after <-chan struct{}) (*metapeer.Call, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	answered := answerAsync(ctx, c.pbx, metapeer.AnswerSpec{})
	type result struct {
		mc  *metapeer.Call
		err error
	}
	ch := make(chan result, 1)
	go func() {
		mc, err := c.meta.Call(ctx, spec)
		ch <- result{mc, err}
	}()
	pc := waitAnswer(t, answered, "the PBX")
	<-pc.Dialog.Acked()
	if after != nil {
		select {
		case <-after:
		case <-ctx.Done():
			t.Fatal("the caller got no 200")
		}
	}
	if code, err := pc.Dialog.Bye(ctx); err != nil || code != 200 {
		t.Errorf("the agent's BYE at once after the ACK: %d %v, want 200", code, err)
	}
	pc.Media.Close()
	r := <-ch
	return r.mc, r.err
}

// TestAgentByeAtOnce: the agent hangs up as soon as it has wagate's ACK
// (an IVR or an agent's phone that drops the call at once). Its BYE,
// handled on its own goroutine, can reach wagate before the goroutine that
// sent the ACK marked the agent's leg up. It must get 200 and end the
// call: the caller gets BYE (or, when the BYE came before the caller was
// answered, a final error), and nothing is left (before: 481, and the
// caller stayed up without an agent, its ports held until the media
// timeout). Racy by nature: run it with -count.
func TestAgentByeAtOnce(t *testing.T) {
	t.Parallel()
	c := startCtl(t, wagateOpts{})
	mc, err := agentByeAtOnce(t, c, metapeer.CallSpec{Target: c.w.SIPAddr, To: businessNumber, From: waUser}, nil)
	if err == nil {
		waitBye(t, mc, "the caller")
	} else {
		t.Logf("the caller's call: %v", err)
	}
	c.w.waitIdle()
}
