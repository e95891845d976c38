package test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/rtppeer"
	"github.com/wagate/wagate/test/internal/sipua"
)

// TestTransferBIC: a dialer's business-initiated call to a WhatsApp user,
// answered; the dialer REFERs it to user 2001 of pbx2 (its transfer.allow
// lists pbx2). The WhatsApp user then talks to the new agent — tones both
// ways — the dialer gets NOTIFY 200 and BYE, and Meta, which answered the
// call, gets no further SIP message.
func TestTransferBIC(t *testing.T) {
	t.Parallel()
	c := startCtl(t, wagateOpts{MetaCodecs: bicMetaCodecs, DialerExtra: `, transfer: {allow: [{endpoint: pbx2, users: ["2*"]}]}`})
	dialer := newGoPeer(t, c.e.Dialer, metapeer.Config{Profile: metapeer.ProfileG711})
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	answered := answerAsync(ctx, c.meta, metapeer.AnswerSpec{})
	dc, err := dialer.Call(ctx, metapeer.CallSpec{Target: c.w.SIPAddr, To: waUser, From: businessNumber})
	if err != nil {
		t.Fatalf("BIC: %v", err)
	}
	mc := waitAnswer(t, answered, "the WhatsApp user")
	since := time.Now()
	mc.Media.SetSource(metaTone())
	dc.Media.SetSource(rtppeer.NewTone(440, toneAmp, 8000))
	time.Sleep(mediaFirstLimit) // the BIC's media toward Meta starts on its own
	mustHear(t, "the WhatsApp user hears the dialer", mc.Media, 48000, 440, time.Second)

	agent := answerAsync(ctx, c.pbx2, metapeer.AnswerSpec{Ring: 200 * time.Millisecond})
	if code, warn := refer(t, dc.Dialog, c.target("2001")); code != 202 {
		t.Fatalf("REFER from the dialer: %d (%s), want 202", code, warn)
	}
	nc := waitAnswer(t, agent, "the new agent")
	nc.Media.SetSource(newAgentTone())
	if d := nc.Dialog.Invite.Get("X-WABA-Direction"); d != "BIC" || nc.Dialog.Invite.Get("X-WABA-Business-Number") != businessNumber {
		t.Errorf("the new agent's INVITE: X-WABA-Direction %q business %q", d, nc.Dialog.Invite.Get("X-WABA-Business-Number"))
	}
	waitBye(t, dc, "the dialer")
	if n := waitNotifies(t, dc.Dialog); n[len(n)-1] != "SIP/2.0 200 OK" {
		t.Errorf("NOTIFY sipfrags %q, want the last 200 OK", n)
	}
	mustHear(t, "the new agent hears the WhatsApp user", nc.Media, 8000, 1000, 1500*time.Millisecond)
	mustHear(t, "the WhatsApp user hears the new agent", mc.Media, 48000, newAgentHz, 1500*time.Millisecond)
	checkNoSIPToMetaSince(t, c.meta, since, time.Now())
	hangup(t, nc, "the new agent")
	waitBye(t, mc, "the WhatsApp user")
	c.w.waitIdle()
	cdr := cdrOfA(t, waitCDRs(t, c.e, 1), nc.Dialog.CallID)
	if xs := cdrTransfers(t, cdr); cdr.Direction != "BIC" || len(xs) != 1 || xs[0].By != "dialer" || xs[0].From.SIPCallID != dc.Dialog.CallID {
		t.Errorf("CDR direction %s a %+v transfers %+v", cdr.Direction, cdr.A, xs)
	}
}

// TestHoldAndTransferBICDTLS: a dialer's BIC to a WhatsApp user keyed with
// DTLS-SRTP over ICE (Meta's default). The dialer holds (a=sendonly): the
// user's stream goes on; it resumes: tones both ways on the keyed ICE
// pair; then it REFERs the call to 2001@pbx2: the user talks with the new
// agent. The routes wagate rebuilds after each change must keep the DTLS
// peer it keyed, and Meta sees no SIP after its answer.
func TestHoldAndTransferBICDTLS(t *testing.T) {
	t.Parallel()
	c := startCtl(t, dtlsOpts(wagateOpts{DialerExtra: `, transfer: {allow: [{endpoint: pbx2, users: ["2*"]}]}`}))
	dialer := newGoPeer(t, c.e.Dialer, metapeer.Config{Profile: metapeer.ProfileG711})
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	answered := answerAsync(ctx, c.meta, metapeer.AnswerSpec{})
	dc, err := dialer.Call(ctx, metapeer.CallSpec{Target: c.w.SIPAddr, To: waUser, From: businessNumber})
	if err != nil {
		t.Fatalf("BIC toward a DTLS Meta: %v", err)
	}
	mc := waitAnswer(t, answered, "the WhatsApp user")
	waitKeyed(t, mc, "BIC")
	since := time.Now()
	mc.Media.SetSource(metaTone())
	dc.Media.SetSource(rtppeer.NewTone(440, toneAmp, 8000))
	mustHear(t, "the user hears the dialer", mc.Media, 48000, 440, time.Second)

	if ans := reinvite(t, dc, withDirection(t, dc.Local, "sendonly", "")); direction(ans) != "recvonly" {
		t.Errorf("hold answered a=%s, want recvonly", direction(ans))
	}
	dc.Media.SetSource(nil)
	from := time.Now()
	time.Sleep(1500 * time.Millisecond)
	checkStream(t, "held, toward the DTLS user", mc.Media, from, time.Now())
	reinvite(t, dc, dc.Local)
	dc.Media.SetSource(rtppeer.NewTone(440, toneAmp, 8000))
	mustHear(t, "after the resume: the user hears the dialer", mc.Media, 48000, 440, time.Second)
	mustHear(t, "after the resume: the dialer hears the user", dc.Media, 8000, 1000, time.Second)

	agent := answerAsync(ctx, c.pbx2, metapeer.AnswerSpec{Ring: 200 * time.Millisecond})
	if code, warn := refer(t, dc.Dialog, c.target("2001")); code != 202 {
		t.Fatalf("REFER: %d (%s), want 202", code, warn)
	}
	nc := waitAnswer(t, agent, "the new agent")
	nc.Media.SetSource(newAgentTone())
	waitBye(t, dc, "the dialer")
	mustHear(t, "the user hears the new agent", mc.Media, 48000, newAgentHz, 1500*time.Millisecond)
	mustHear(t, "the new agent hears the user", nc.Media, 8000, 1000, 1500*time.Millisecond)
	if st := mc.Media.Stats(); st.AuthFailures > 0 {
		t.Errorf("%d SRTP packets toward the user failed authentication", st.AuthFailures)
	}
	checkNoSIPToMetaSince(t, c.meta, since, time.Now())
	hangup(t, nc, "the new agent")
	waitBye(t, mc, "the WhatsApp user")
	c.w.waitIdle()
}

// TestTransferClickToCall: a click-to-call (POST /v1/calls: the agent,
// then the WhatsApp user) whose agent then REFERs the user to 2001@pbx2:
// the user talks with the new agent, the first agent gets BYE, Meta no SIP
// after its answer.
func TestTransferClickToCall(t *testing.T) {
	t.Parallel()
	var p2 peer
	e, w, _, meta, agent := c2cEnvWith(t, "", func(e *env, o *wagateOpts) {
		p2 = e.newPeer("pbx2", 5)
		o.PBXExtra += `, transfer: {allow: [{endpoint: pbx2, users: ["2*"]}]}`
		o.EndpointsExtra += fmt.Sprintf("\n  - {name: pbx2, kind: pbx, host: %s, port: %d, transport: udp, source_cidrs: [%s/32], codecs: [PCMU, PCMA]}",
			p2.IP, p2.Port, p2.IP)
	})
	pbx2 := newGoPeer(t, p2, metapeer.Config{Profile: metapeer.ProfileG711})
	grantPermission(t, e, waUser, "temporary")
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	agentAns := answerAsync(ctx, agent, metapeer.AnswerSpec{})
	metaAns := answerAsync(ctx, meta, metapeer.AnswerSpec{Ring: 200 * time.Millisecond})
	doc := startC2C(t, e, c2cBody(""), "")
	ac := waitAnswer(t, agentAns, "the agent")
	mc := waitAnswer(t, metaAns, "the WhatsApp user")
	since := time.Now()
	mc.Media.SetSource(metaTone())
	ac.Media.SetSource(pbxTone())
	mustHear(t, "the user hears the agent", mc.Media, 48000, 440, time.Second)

	newAns := answerAsync(ctx, pbx2, metapeer.AnswerSpec{Ring: 200 * time.Millisecond})
	if code, warn := refer(t, ac.Dialog, fmt.Sprintf("<sip:2001@%s>", p2.Addr())); code != 202 {
		t.Fatalf("REFER from the click-to-call's agent: %d (%s), want 202", code, warn)
	}
	nc := waitAnswer(t, newAns, "the new agent")
	nc.Media.SetSource(newAgentTone())
	waitBye(t, ac, "the first agent")
	mustHear(t, "the user hears the new agent", mc.Media, 48000, newAgentHz, 1500*time.Millisecond)
	mustHear(t, "the new agent hears the user", nc.Media, 8000, 1000, 1500*time.Millisecond)
	checkNoSIPToMetaSince(t, meta, since, time.Now())
	lc := waitLiveCall(t, e, "the call on its new agent", func(lc liveCallDoc) bool { return lc.A.Endpoint == "pbx2" })
	if lc.CallID != doc.CallID || lc.A.SIPCallID != nc.Dialog.CallID {
		t.Errorf("GET /v1/calls: %+v, want call %s with a = the new agent's leg", lc, doc.CallID)
	}
	hangup(t, nc, "the new agent")
	waitBye(t, mc, "the WhatsApp user")
	w.waitIdle()
}

// TestTransferReplacesRingingCall: semi-attended transfer. A dialer's
// agent has a WhatsApp user on one call, consults a second user through
// wagate and transfers while that phone still rings: a REFER whose
// Replaces names its own INVITE, an early dialog. wagate answers 202 and
// NOTIFYs 100 and 180, ends the agent's INVITE with 487, and when the
// second user answers NOTIFYs 200, hangs up the agent's first leg and
// joins the two users, who hear each other (before: the REFER got 491).
func TestTransferReplacesRingingCall(t *testing.T) {
	t.Parallel()
	c, dc, mc, ringing, answer := semiAttended(t, metapeer.AnswerSpec{})
	answer()
	mc2 := waitAnswer(t, ringing, "the second user")
	mc2.Media.SetSource(rtppeer.NewTone(700, toneAmp, 48000))
	waitBye(t, dc, "the agent's first call")
	if n := waitNotifies(t, dc.Dialog); strings.Join(n, ",") != "SIP/2.0 100 Trying,SIP/2.0 180 Ringing,SIP/2.0 200 OK" {
		t.Errorf("NOTIFY sipfrags %q, want 100, 180, 200", n)
	}
	mustHear(t, "the first user hears the second", mc.Media, 48000, 700, time.Second)
	mustHear(t, "the second user hears the first", mc2.Media, 48000, 1000, time.Second)
	hangup(t, mc, "the first user")
	waitBye(t, mc2, "the second user")
	c.w.waitIdle()
}

// TestTransferReplacesRingingCallDeclined: the second user of a
// semi-attended transfer declines (486): the agent's NOTIFY says so, and
// the first user is back with the agent, hearing it.
func TestTransferReplacesRingingCallDeclined(t *testing.T) {
	t.Parallel()
	c, dc, mc, _, decline := semiAttended(t, metapeer.AnswerSpec{Reject: 486})
	decline()
	if n := waitNotifies(t, dc.Dialog); !strings.HasPrefix(n[len(n)-1], "SIP/2.0 486 ") {
		t.Errorf("NOTIFY sipfrags %q, want the last 486", n)
	}
	dc.Media.SetSource(rtppeer.NewTone(440, toneAmp, 8000))
	mustHear(t, "the first user hears the agent again", mc.Media, 48000, 440, time.Second)
	hangup(t, dc, "the agent")
	waitBye(t, mc, "the first user")
	c.w.waitIdle()
}

// semiAttended places a dialer's BIC to the first user (answered, sending
// 1 kHz) and a second BIC that Meta rings until the returned func is
// called, then answers as spec says; the dialer REFERs the first call
// with Replaces naming its ringing INVITE, which must get 202, and whose
// INVITE must end with 487.
func semiAttended(t *testing.T, spec metapeer.AnswerSpec) (*ctl, *metapeer.Call, *metapeer.Call, <-chan answerResult, func()) {
	t.Helper()
	c := startCtl(t, wagateOpts{MetaCodecs: bicMetaCodecs, DialerExtra: `, transfer: {allow: [{endpoint: pbx2, users: ["2*"]}]}`})
	dialer := newGoPeer(t, c.e.Dialer, metapeer.Config{Profile: metapeer.ProfileG711})
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	t.Cleanup(cancel)
	answered := answerAsync(ctx, c.meta, metapeer.AnswerSpec{})
	dc, err := dialer.Call(ctx, metapeer.CallSpec{Target: c.w.SIPAddr, To: waUser, From: businessNumber})
	if err != nil {
		t.Fatalf("BIC: %v", err)
	}
	mc := waitAnswer(t, answered, "the first user")
	mc.Media.SetSource(metaTone())

	release := make(chan struct{})
	answer := sync.OnceFunc(func() { close(release) })
	t.Cleanup(answer)
	spec.RingUntil = release
	ringing := answerAsync(ctx, c.meta, spec)
	consult := make(chan error, 1)
	go func() {
		_, err := dialer.Call(ctx, metapeer.CallSpec{Target: c.w.SIPAddr, To: "+447700900124", From: businessNumber})
		consult <- err
	}()
	var early *sipua.Msg
	for deadline := time.Now().Add(replyLimit); early == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the dialer's consultation call got no 180")
		}
		_, early = firstRecv(dialer.UA, func(m *sipua.Msg) bool { return !m.Request && m.Status == 180 })
	}
	referTo := replacesURI(c.e.WagateIP, early.Get("Call-ID"), early.ToTag(), early.FromTag())
	if code, warn := refer(t, dc.Dialog, referTo); code != 202 {
		t.Fatalf("REFER with Replaces of the ringing call: %d (%s), want 202", code, warn)
	}
	var se *sipua.StatusError
	if err := <-consult; !errors.As(err, &se) || se.Code != 487 {
		t.Errorf("the agent's consultation INVITE ended with %v, want 487", err)
	}
	return c, dc, mc, ringing, answer
}

// TestTransferReplacesRingingCallCallerHangsUp: the first user of a
// semi-attended transfer hangs up while the second user's phone rings:
// Meta's INVITE for the second is cancelled and nothing is left, the
// REFER's NOTIFYs included (their sender held the shutdown 5 s).
func TestTransferReplacesRingingCallCallerHangsUp(t *testing.T) {
	t.Parallel()
	c, _, mc, ringing, _ := semiAttended(t, metapeer.AnswerSpec{})
	hangup(t, mc, "the first user")
	select {
	case r := <-ringing:
		if r.err == nil {
			t.Error("the second user was connected after the first hung up")
		}
	case <-time.After(replyLimit):
		t.Error("the second user's INVITE was not cancelled")
	}
	c.w.waitIdle()
	c.w.terminate()
	for _, l := range c.w.logLines() {
		if l.str("level") == "WARN" {
			t.Errorf("wagate warned: %s", l.str("msg"))
		}
	}
}

// TestTransferReplacesRingingCallAgentGone: the agent hangs up as soon as
// its semi-attended transfer is accepted, and the second user declines:
// the first user, with nobody left, gets BYE.
func TestTransferReplacesRingingCallAgentGone(t *testing.T) {
	t.Parallel()
	c, dc, mc, _, decline := semiAttended(t, metapeer.AnswerSpec{Reject: 486})
	hangup(t, dc, "the agent")
	decline()
	waitBye(t, mc, "the first user")
	c.w.waitIdle()
}
