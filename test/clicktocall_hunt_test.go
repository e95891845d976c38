package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/rtppeer"
	"github.com/wagate/wagate/test/internal/sipua"
)

// Click-to-call to a hunt list of agents, and agents' redirects: the
// agents ring through the same hunt as a UIC's callees (sequential
// failover, parallel forks, 3xx followed to configured pbx targets).

// c2cHuntCDR is the part of a click-to-call's CDR about its agents.
type c2cHuntCDR struct {
	Outcome  string `json:"outcome"`
	HangupBy string `json:"hangup_by"`
	Hunt     string `json:"hunt"`
	A        struct {
		Endpoint  string `json:"endpoint"`
		SIPCallID string `json:"sip_call_id"`
	} `json:"a"`
	Attempts []struct {
		Endpoint, User, Result string
		SIPCode                int    `json:"sip_code"`
		SIPCallID              string `json:"sip_call_id"`
	} `json:"attempts"`
}

func (c c2cHuntCDR) attempts() string {
	var out []string
	for _, a := range c.Attempts {
		out = append(out, fmt.Sprintf("%s@%s:%s:%d", a.User, a.Endpoint, a.Result, a.SIPCode))
	}
	return fmt.Sprint(out)
}

// c2cHuntCDROf returns the call's CDR as GET /v1/cdrs/{id} serves it.
func c2cHuntCDROf(t *testing.T, e *env, callID string) (c2cHuntCDR, string) {
	t.Helper()
	body := storedCDR(t, e, callID)
	var c c2cHuntCDR
	if json.Unmarshal(body, &c) != nil {
		t.Fatalf("CDR: %s", body)
	}
	return c, string(body)
}

// TestClickToCallHuntList: the agent is a hunt list: the first agent is
// busy (486), the second answers, and only then is the user called; the
// CDR names the hunt, the answering agent and both attempts.
func TestClickToCallHuntList(t *testing.T) {
	t.Parallel()
	var p2 peer
	e, w, rx, meta, agent1 := c2cEnvWith(t, "", func(e *env, o *wagateOpts) {
		p2 = e.newPeer("pbx2", 5)
		o.EndpointsExtra = pbxEndpoint("pbx2", p2, "")
		o.Extra += "\nhunt_lists: [{name: agents, targets: [{endpoint: pbx, user: \"1001\"}, {endpoint: pbx2, user: \"2001\"}]}]\n"
	})
	agent2 := newGoPeer(t, p2, metapeer.Config{Profile: metapeer.ProfileG711})
	grantPermission(t, e, waUser, "temporary")
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	busy := make(chan error, 1)
	go func() {
		_, _, err := agent1.Answer(ctx, metapeer.AnswerSpec{Reject: 486})
		busy <- err
	}()
	agentAns := answerAsync(ctx, agent2, metapeer.AnswerSpec{Ring: 100 * time.Millisecond})
	metaAns := answerAsync(ctx, meta, metapeer.AnswerSpec{Ring: 300 * time.Millisecond})
	doc := startC2C(t, e, `{"business_number":"`+businessNumber+`","user":"`+waUser+`","agent":{"hunt":"agents"}}`, "")
	if err := <-busy; !errors.Is(err, metapeer.ErrRejected) {
		t.Fatalf("first agent: %v", err)
	}
	acall := waitAnswer(t, agentAns, "the second agent")
	mcall := waitAnswer(t, metaAns, "the Meta peer")
	t1, _ := firstRecv(agent1.UA, isInvite)
	t2, _ := firstRecv(agent2.UA, isInvite)
	tm, _ := firstRecv(meta.UA, isInvite)
	t.Logf("first agent's INVITE → second agent's INVITE %v", t2.Sub(t1).Round(time.Microsecond))
	if !t2.After(t1) || !tm.After(t2) {
		t.Errorf("INVITEs at agent 1 %v, agent 2 %v, Meta %v: want in that order", t1, t2, tm)
	}
	// Meta's peer returns as its 200 leaves: the agent hangs up once
	// wagate bridged the two.
	waitLiveCall(t, e, "the call confirmed", func(lc liveCallDoc) bool { return lc.State == "confirmed" })
	hangup(t, acall, "the second agent")
	waitBye(t, mcall, "the Meta peer")
	w.waitIdle()
	c2cEvents(t, rx, doc.CallID)
	c, body := c2cHuntCDROf(t, e, doc.CallID)
	if c.Outcome != "answered" || c.HangupBy != "a" || c.Hunt != "agents" || c.A.Endpoint != "pbx2" || c.A.SIPCallID != acall.Dialog.CallID ||
		len(c.Attempts) != 2 || c.Attempts[0].Result != "busy" || c.Attempts[0].SIPCode != 486 || c.Attempts[1].Result != "answered" || c.Attempts[1].Endpoint != "pbx2" {
		t.Errorf("CDR %s", body)
	}
}

// TestClickToCallHuntParallel: the agents are a parallel hunt list: both
// ring at once, the second answers, the first gets CANCEL (and no BYE);
// only then is the user called, and when the user answers the second
// agent and the user hear each other. The CDR names the list, the
// answering agent and both attempts.
func TestClickToCallHuntParallel(t *testing.T) {
	t.Parallel()
	var p2 peer
	e, w, rx, meta, agent1 := c2cEnvWith(t, "", func(e *env, o *wagateOpts) {
		p2 = e.newPeer("pbx2", 5)
		o.EndpointsExtra = pbxEndpoint("pbx2", p2, "")
		o.Extra += "\nhunt_lists: [{name: agents, strategy: parallel, targets: [{endpoint: pbx, user: \"1001\"}, {endpoint: pbx2, user: \"2001\"}]}]\n"
	})
	agent2 := newGoPeer(t, p2, metapeer.Config{Profile: metapeer.ProfileG711})
	grantPermission(t, e, waUser, "temporary")
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	cancelled := make(chan error, 1)
	go func() {
		in, err := agent1.UA.Accept(ctx)
		if err != nil {
			cancelled <- err
			return
		}
		in.Ring()
		select {
		case <-in.Cancelled():
			cancelled <- nil
		case <-time.After(5 * time.Second):
			cancelled <- errors.New("no CANCEL within 5 s")
		}
	}()
	agentAns := answerAsync(ctx, agent2, metapeer.AnswerSpec{Ring: 300 * time.Millisecond})
	metaAns := answerAsync(ctx, meta, metapeer.AnswerSpec{Ring: 300 * time.Millisecond})
	doc := startC2C(t, e, `{"business_number":"`+businessNumber+`","user":"`+waUser+`","agent":{"hunt":"agents"}}`, "")
	acall := waitAnswer(t, agentAns, "the second agent")
	if err := <-cancelled; err != nil {
		t.Fatalf("the first agent: %v", err)
	}
	mcall := waitAnswer(t, metaAns, "the Meta peer")
	t1, _ := firstRecv(agent1.UA, isInvite)
	t2, _ := firstRecv(agent2.UA, isInvite)
	tc, _ := firstRecv(agent1.UA, func(m *sipua.Msg) bool { return m.Request && m.Method == "CANCEL" })
	ok2 := firstSent(agent2.UA, func(m *sipua.Msg) bool { return !m.Request && m.Status == 200 })
	tm, _ := firstRecv(meta.UA, isInvite)
	t.Logf("agents' INVITEs %v apart; second agent's 200 → first agent's CANCEL %v, → Meta's INVITE %v",
		t2.Sub(t1).Abs().Round(time.Microsecond), tc.Sub(ok2).Round(time.Microsecond), tm.Sub(ok2).Round(time.Microsecond))
	if d := t2.Sub(t1).Abs(); d > parallelRingLimit {
		t.Errorf("the agents rang %v apart, want at once", d)
	}
	if !tm.After(ok2) || !tc.After(ok2) {
		t.Errorf("second agent answered at %v; first agent's CANCEL %v, Meta's INVITE %v: want both after", ok2, tc, tm)
	}

	acall.Media.SetSource(rtppeer.NewTone(1000, toneAmp, 8000))
	mcall.Media.SetSource(rtppeer.NewTone(700, toneAmp, 48000))
	waitLiveCall(t, e, "the call confirmed with media both ways", func(lc liveCallDoc) bool {
		return lc.State == "confirmed" && lc.A.Endpoint == "pbx2" && lc.A.SIPCallID == acall.Dialog.CallID && lc.A.Received.Packets > 0 && lc.B.Received.Packets > 0
	})
	acall.Media.ResetRecording()
	mcall.Media.ResetRecording()
	// 1.5 s of tone each way counted in packets, and its tail waited for
	// (a loaded machine stalls the senders: wall time says nothing).
	playFor(t, 1500*time.Millisecond, play{acall.Media, rtppeer.NewTone(1000, toneAmp, 8000)}, play{mcall.Media, rtppeer.NewTone(700, toneAmp, 48000)})
	checkTone(t, "second agent's tone at the WhatsApp user", mcall.Media.Recording(), 48000, 1000, time.Second)
	checkTone(t, "WhatsApp user's tone at the second agent", acall.Media.Recording(), 8000, 700, time.Second)

	hangup(t, acall, "the second agent")
	waitBye(t, mcall, "the Meta peer")
	w.waitIdle()
	for _, m := range agent1.UA.Trace() {
		if !m.Sent && m.Msg.Request && m.Msg.Method == "BYE" {
			t.Errorf("the cancelled agent got a BYE")
		}
	}
	got, _ := c2cEvents(t, rx, doc.CallID)
	want := []string{"call.started", "call.progress:agent_ringing", "call.progress:agent_ringing", "call.progress:agent_answered",
		"call.ringing", "call.answered", "call.ended"}
	if !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
	c, body := c2cHuntCDROf(t, e, doc.CallID)
	if c.Outcome != "answered" || c.HangupBy != "a" || c.Hunt != "agents" || c.A.Endpoint != "pbx2" || c.A.SIPCallID != acall.Dialog.CallID ||
		c.attempts() != "[1001@pbx:cancelled:0 2001@pbx2:answered:200]" || c.Attempts[0].SIPCallID == c.Attempts[1].SIPCallID {
		t.Errorf("CDR attempts %s; %s", c.attempts(), body)
	}
}

// TestClickToCallRedirect: the agent's endpoint follows redirects, and
// the agent answers 302 naming an extension on another configured pbx:
// that agent is rung (as a new attempt), answers, and gets the user.
func TestClickToCallRedirect(t *testing.T) {
	t.Parallel()
	var a2 *agent
	e, w, rx, meta, target := c2cEnvWith(t, "", func(e *env, o *wagateOpts) {
		p2 := e.newPeer("pbx2", 5)
		a2 = startAgent(t, "a2", p2, agentRedirect, func(a *agent) { a.contact = fmt.Sprintf("<sip:1001@%s>", e.PBX.Addr()) })
		o.EndpointsExtra = pbxEndpoint("pbx2", p2, ", follow_redirects: true")
	})
	grantPermission(t, e, waUser, "temporary")
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	agentAns := answerAsync(ctx, target, metapeer.AnswerSpec{Ring: 100 * time.Millisecond})
	metaAns := answerAsync(ctx, meta, metapeer.AnswerSpec{Ring: 100 * time.Millisecond})
	doc := startC2C(t, e, `{"business_number":"`+businessNumber+`","user":"`+waUser+`","agent":{"endpoint":"pbx2","extension":"3001"}}`, "")
	if inv := a2.one("INVITE"); inv.user != "3001" {
		t.Errorf("the first agent got an INVITE for %q", inv.user)
	}
	acall := waitAnswer(t, agentAns, "the redirect's target")
	mcall := waitAnswer(t, metaAns, "the Meta peer")
	if _, inv := firstRecv(target.UA, isInvite); inv == nil || inv.Get("X-WABA-Session") != doc.CallID {
		t.Errorf("the redirect's target got %v", inv)
	}
	waitLiveCall(t, e, "the call confirmed", func(lc liveCallDoc) bool {
		return lc.State == "confirmed" && lc.A.Endpoint == "pbx" && lc.A.SIPCallID == acall.Dialog.CallID
	})
	hangup(t, acall, "the redirect's target")
	waitBye(t, mcall, "the Meta peer")
	w.waitIdle()
	got, _ := c2cEvents(t, rx, doc.CallID)
	if want := []string{"call.started", "call.progress:agent_ringing", "call.progress:agent_answered", "call.ringing", "call.answered", "call.ended"}; !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
	c, body := c2cHuntCDROf(t, e, doc.CallID)
	if c.Outcome != "answered" || c.HangupBy != "a" || c.A.Endpoint != "pbx" || c.A.SIPCallID != acall.Dialog.CallID ||
		c.attempts() != "[3001@pbx2:redirected:302 1001@pbx:answered:200]" {
		t.Errorf("CDR attempts %s; %s", c.attempts(), body)
	}
}

// TestClickToCallHuntParallelLateAnswer: in a parallel list, the second
// agent answers while the first, cancelled, answers anyway (its 200
// crosses the CANCEL): that 200 is ACKed and hung up at once, and the
// call stays with the winner.
func TestClickToCallHuntParallelLateAnswer(t *testing.T) {
	t.Parallel()
	var late *agent
	e, w, rx, meta, winner := c2cEnvWith(t, "", func(e *env, o *wagateOpts) {
		p2 := e.newPeer("pbx2", 5)
		late = startAgent(t, "late", p2, agentAnswers, func(a *agent) { a.delay, a.answersCancelled = 600*time.Millisecond, true })
		o.EndpointsExtra = pbxEndpoint("pbx2", p2, "")
		o.Extra += "\nhunt_lists: [{name: agents, strategy: parallel, targets: [{endpoint: pbx2, user: \"2001\"}, {endpoint: pbx, user: \"1001\"}]}]\n"
	})
	grantPermission(t, e, waUser, "temporary")
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	agentAns := answerAsync(ctx, winner, metapeer.AnswerSpec{Ring: 100 * time.Millisecond})
	metaAns := answerAsync(ctx, meta, metapeer.AnswerSpec{Ring: 300 * time.Millisecond})
	doc := startC2C(t, e, `{"business_number":"`+businessNumber+`","user":"`+waUser+`","agent":{"hunt":"agents"}}`, "")
	acall := waitAnswer(t, agentAns, "the winning agent")
	mcall := waitAnswer(t, metaAns, "the Meta peer")
	late.one("CANCEL")
	late.one("SIP/2.0 200")
	late.one("ACK")
	late.one("BYE")
	waitLiveCall(t, e, "the call confirmed with the winner", func(lc liveCallDoc) bool {
		return lc.State == "confirmed" && lc.A.Endpoint == "pbx" && lc.A.SIPCallID == acall.Dialog.CallID
	})
	hangup(t, acall, "the winning agent")
	waitBye(t, mcall, "the Meta peer")
	w.waitIdle()
	c2cEvents(t, rx, doc.CallID)
	c, body := c2cHuntCDROf(t, e, doc.CallID)
	if c.Outcome != "answered" || c.A.Endpoint != "pbx" || c.attempts() != "[2001@pbx2:cancelled:0 1001@pbx:answered:200]" {
		t.Errorf("CDR attempts %s; %s", c.attempts(), body)
	}
}
