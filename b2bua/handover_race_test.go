package b2bua

import (
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/events"
	"github.com/wagate/wagate/media"
	sipedge "github.com/wagate/wagate/sip"
)

// Races of a semi-attended transfer whose consultation is a
// click-to-call (join.go): the agent REFERs its first call with Replaces
// naming its click-to-call dialog while the user's phone rings, and
// something else happens just as the user answers.

// startHookBridge is an originFake whose Start runs the armed hook once:
// joinHandover starts the consulted call's media after takeAnswer gave
// it the handover and before it sets the join up.
type startHookBridge struct {
	originFake
	onStart *atomic.Pointer[func()]
}

func (b startHookBridge) Start(func(error)) {
	if f := b.onStart.Swap(nil); f != nil {
		(*f)()
	}
}

// c2cHandover is a semi-attended transfer under way, set up by
// startC2CHandover.
type c2cHandover struct {
	h       *huntFlow
	onStart *atomic.Pointer[func()]
	inv1    *sip.Request  // Meta's INVITE of the first call
	ok1     *sip.Response // wagate's 200 to it
	b1      *sip.Request  // the first call's INVITE to the agent (tag "a")
	b2      *sip.Request  // the click-to-call's INVITE to the agent (tag "c")
	u       *sip.Request  // the click-to-call's INVITE to the user (ringing, tag "u")
	first   *call
	c2c     *call
}

// startC2CHandover sets up startC2C and REFERs the first call with
// Replaces naming the click-to-call's agent dialog; published, when not
// nil, runs as takeHandover has published the handover. The REFER's
// answer and NOTIFYs are left to the test (pbxUntil).
func startC2CHandover(t *testing.T, published func(x *c2cHandover)) *c2cHandover {
	t.Helper()
	x := startC2C(t)
	if published != nil {
		f := func() { published(x) }
		x.h.srv.ctl.handoverPublished.Store(&f)
	}
	x.h.pbx.send(x.h.addr, x.refer())
	return x
}

// startC2C puts a UIC through to agent 1001@pbx and starts a
// click-to-call from the same agent whose user's phone rings.
func startC2C(t *testing.T) *c2cHandover {
	t.Helper()
	onStart := new(atomic.Pointer[func()])
	h := startHuntFlowBridges(t, `{endpoint: pbx, user: "1001"}`, `  - {name: x, targets: [{endpoint: pbx, user: "1001"}]}`,
		`, transfer: {allow: [{endpoint: pbx, users: ["*"]}]}`,
		func(string, *slog.Logger, media.LegConfig, media.LegConfig) (Bridge, error) {
			return startHookBridge{onStart: onStart}, nil
		})
	x := &c2cHandover{h: h, onStart: onStart}
	x.inv1, x.ok1, x.b1 = h.answeredBy(h.pbx, "a")
	x.first = h.srv.reg.find(h.callWithB(callIDOf(x.b1)))

	h.srv.SetPermissionGate(h.gate)
	info, ref, err := h.srv.Originate(sipedge.ClickToCall{Business: "+15550100001", User: "+447700900123", AgentEndpoint: "pbx", AgentUser: "1001"})
	if err != nil || ref != nil {
		t.Fatalf("click-to-call: refusal %+v, error %v", ref, err)
	}
	x.c2c = h.srv.reg.find(info.ID)
	x.b2 = h.pbx.request(sip.INVITE)
	h.answer(h.pbx, x.b2, "c")
	x.u = h.meta.request(sip.INVITE)
	h.meta.reply(x.u, 180, "Ringing", "u", nil)
	// Ringing once the ring loop took the 180: the handover is open.
	waitFor(t, "the click-to-call ringing", func() bool {
		ci, _ := h.srv.Call(info.ID)
		return ci.State == "ringing"
	})
	return x
}

// refer is the agent's REFER on the first call with Replaces naming its
// click-to-call dialog.
func (x *c2cHandover) refer() *sip.Request {
	wagateTag, _ := x.b2.From().Params.Get("tag")
	replaces := strings.NewReplacer("@", "%40", ";", "%3B", "=", "%3D").Replace(
		fmt.Sprintf("%s;to-tag=%s;from-tag=c", callIDOf(x.b2), wagateTag))
	return fromCallee(x.h.t, x.h.pbx, x.b1, "a", sip.REFER, 2,
		fmt.Sprintf("Refer-To: <sip:x@127.0.0.1?Replaces=%s>", replaces), "Referred-By: <sip:1001@127.0.0.3>")
}

// pbxUntil answers what the agent's phone gets (200 to each request)
// until done says so; it returns "NOTIFY <sipfrag>" for each NOTIFY,
// "BYE <Call-ID>" for each BYE and "<code> <method>" for each response,
// in order.
func (x *c2cHandover) pbxUntil(done func(got []string) bool) []string {
	x.h.t.Helper()
	var got []string
	for !done(got) {
		m := x.h.pbx.next("the agent's NOTIFYs and BYEs")
		req, ok := m.(*sip.Request)
		if !ok {
			res := m.(*sip.Response)
			got = append(got, fmt.Sprintf("%d %s", res.StatusCode, res.CSeq().MethodName))
			continue
		}
		x.h.pbx.reply(req, 200, "OK", "", nil)
		switch req.Method {
		case sip.NOTIFY:
			frag, _, _ := strings.Cut(string(req.Body()), "\r\n")
			got = append(got, "NOTIFY "+frag)
		case sip.BYE:
			got = append(got, "BYE "+callIDOf(req))
		}
	}
	return got
}

// waitHandedOver waits for the REFER's 202 and NOTIFYs 100 and 180: the
// handover is taken.
func (x *c2cHandover) waitHandedOver() {
	x.h.t.Helper()
	if got := x.pbxUntil(func(got []string) bool { return len(got) >= 3 }); strings.Join(got, ",") !=
		"202 REFER,NOTIFY SIP/2.0 100 Trying,NOTIFY SIP/2.0 180 Ringing" {
		x.h.t.Fatalf("agent got %q, want 202 and NOTIFYs 100, 180", got)
	}
}

func has(got []string, s string) bool {
	for _, g := range got {
		if g == s {
			return true
		}
	}
	return false
}

// waitFor polls cond until it holds, or fails the test (Errorf: hooks
// call it off the test's goroutine) after 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Errorf("waiting for %s: timed out", what)
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestClickToCallHandoverHangupAsUserAnswers: DELETE /v1/calls/{id}
// (Hangup) of the click-to-call lands after the user's 200 gave the call
// to the handover and before the join: the API said 202, so the user
// must not be joined to the first caller. The user gets BYE, and so does
// the agent's click-to-call leg; the agent's NOTIFY says 487 and the
// first caller stays with it; the click-to-call's record says the API
// hung it up. Before, the user was joined to the first caller (NOTIFY
// 200, the agent's first leg got BYE, the user none).
func TestClickToCallHandoverHangupAsUserAnswers(t *testing.T) {
	x := startC2CHandover(t, nil)
	h := x.h
	hook := func() {
		if _, err := h.srv.Hangup(x.c2c.id, "supervisor"); err != nil {
			t.Errorf("hangup: %v", err)
		}
	}
	x.waitHandedOver()
	x.onStart.Store(&hook)
	h.answer(h.meta, x.u, "u")
	bye := h.meta.request(sip.BYE)
	if callIDOf(bye) != callIDOf(x.u) {
		t.Fatalf("Meta got BYE for %s, want the user's %s", callIDOf(bye), callIDOf(x.u))
	}
	h.meta.reply(bye, 200, "OK", "", nil)
	got := x.pbxUntil(func(got []string) bool {
		return has(got, "BYE "+callIDOf(x.b2)) && len(got) >= 2
	})
	if want := "NOTIFY SIP/2.0 487 Request Terminated"; !has(got, want) || has(got, "BYE "+callIDOf(x.b1)) {
		t.Errorf("agent got %q, want %q and its first call kept", got, want)
	}
	c := h.cdrs.next(t)
	if c.HangupBy != events.HangupAPI || c.Cause != CauseAPI+": supervisor" {
		t.Errorf("click-to-call CDR hangup_by %s cause %q, want the API's hangup", c.HangupBy, c.Cause)
	}
	// The first caller is back with the agent.
	h.hangUp(x.inv1, x.ok1, h.pbx)
	if c := h.cdrs.next(t); c.HangupBy != "a" {
		t.Errorf("first call hangup_by %s, want a (its caller)", c.HangupBy)
	}
}

// TestClickToCallHandoverAgentByeAsUserAnswers: the agent hangs up its
// click-to-call leg after the user's 200 gave the call to the handover
// and before the join is set up. As at any other moment of the handover
// (docs/sip.md), only that leg ends: the user is joined to the first
// caller, the agent gets NOTIFY 200 and a BYE on its first call. Before,
// the BYE ended the whole click-to-call: the user, just answered, got
// BYE and the agent NOTIFY 487.
func TestClickToCallHandoverAgentByeAsUserAnswers(t *testing.T) {
	x := startC2CHandover(t, nil)
	h := x.h
	hook := func() {
		h.pbx.send(h.addr, fromCallee(t, h.pbx, x.b2, "c", sip.BYE, 1))
		// onBye has taken it (the leg left, or the call ended).
		waitFor(t, "the agent's BYE taken", func() bool {
			x.c2c.mu.Lock()
			defer x.c2c.mu.Unlock()
			return x.c2c.a.retired || x.c2c.state == stateEnded
		})
	}
	x.waitHandedOver()
	x.onStart.Store(&hook)
	h.answer(h.meta, x.u, "u")
	// The 200 to its BYE, NOTIFY 200, then BYE on its first call (the
	// 200 may come before or after the NOTIFY).
	got := x.pbxUntil(func(got []string) bool {
		return has(got, "200 BYE") && (has(got, "BYE "+callIDOf(x.b1)) || has(got, "NOTIFY SIP/2.0 487 Request Terminated"))
	})
	if !has(got, "NOTIFY SIP/2.0 200 OK") || !has(got, "BYE "+callIDOf(x.b1)) {
		t.Fatalf("agent got %q, want 200 to its BYE, NOTIFY 200 and BYE on its first call", got)
	}
	h.meta.silent(300 * time.Millisecond) // the user stays
	// Joined: the first caller hangs up, and the user gets BYE.
	h.meta.send(h.addr, byeFor(x.inv1, x.ok1, 2))
	h.meta.response(200)
	bye := h.meta.request(sip.BYE)
	if callIDOf(bye) != callIDOf(x.u) {
		t.Errorf("Meta got BYE for %s, want the user's %s", callIDOf(bye), callIDOf(x.u))
	}
	h.meta.reply(bye, 200, "OK", "", nil)
	h.pbx.silent(300 * time.Millisecond) // the agent left both calls
	for range 2 {
		if c := h.cdrs.next(t); len(c.Transfers) != 1 || !c.Transfers[0].Connected {
			t.Errorf("CDR %s transfers %+v, want the attended transfer, connected", c.CallID, c.Transfers)
		}
	}
}

// TestHandoverSettledBeforeNoted: the user declines as the REFER hands
// the click-to-call over, before takeHandover noted on the first call
// which call it waits for. The transfer fails (NOTIFY 486, the caller
// back with the agent), and the first call must not keep pointing at the
// ended click-to-call as the call it waits for (before, handoverTo was
// set after the failure had cleared it, and stayed).
func TestHandoverSettledBeforeNoted(t *testing.T) {
	x := startC2CHandover(t, func(x *c2cHandover) {
		x.h.meta.reply(x.u, 486, "Busy Here", "u", nil)
		// Settled: handoverFailed gave the first call its transfer back.
		waitFor(t, "the handover settled", func() bool {
			x.first.mu.Lock()
			defer x.first.mu.Unlock()
			return x.first.cc.xfer == nil
		})
	})
	got := x.pbxUntil(func(got []string) bool {
		return has(got, "BYE "+callIDOf(x.b2)) && has(got, "NOTIFY SIP/2.0 486 Busy Here")
	})
	if has(got, "BYE "+callIDOf(x.b1)) {
		t.Errorf("agent got %q: its first call must stay", got)
	}
	x.h.meta.request(sip.ACK) // of the 486
	x.first.mu.Lock()
	to := x.first.cc.handoverTo
	x.first.mu.Unlock()
	if to != nil {
		t.Errorf("first call still waits on call %s, which ended", to.id)
	}
	x.h.cdrs.next(t)
	x.h.hangUp(x.inv1, x.ok1, x.h.pbx)
	x.h.cdrs.next(t)
}

// TestClickToCallReferAsUserAnswers: the agent's REFER with Replaces
// naming its click-to-call dialog comes as the user answers, once the
// answer went to the agent (takeAnswer) and before the call is up: no
// handover is left to take, but the Replaces now names an answered call,
// and the REFER joins it as an ordinary attended transfer: NOTIFY 100,
// 200, a BYE on each of the agent's legs, the two users joined. Before,
// the NOTIFY said 491 and the agent had to transfer again.
func TestClickToCallReferAsUserAnswers(t *testing.T) {
	x := startC2C(t)
	h := x.h
	hook := func() {
		h.pbx.send(h.addr, x.refer())
		// The REFER has looked at the click-to-call (still calling) and
		// begun its transfer on the first call: it tries the handover
		// next, and finds the answer taken.
		waitFor(t, "the REFER begun", func() bool {
			x.first.mu.Lock()
			defer x.first.mu.Unlock()
			return x.first.cc.count >= 1
		})
	}
	h.srv.ctl.userAnswerTaken.Store(&hook)
	h.answer(h.meta, x.u, "u")
	got := x.pbxUntil(func(got []string) bool {
		return has(got, "BYE "+callIDOf(x.b1)) && has(got, "BYE "+callIDOf(x.b2)) ||
			len(got) > 0 && strings.HasPrefix(got[len(got)-1], "NOTIFY SIP/2.0 4")
	})
	if len(got) != 5 || strings.Join(got[:3], ",") != "202 REFER,NOTIFY SIP/2.0 100 Trying,NOTIFY SIP/2.0 200 OK" {
		t.Fatalf("agent got %q, want 202, NOTIFY 100, 200 and a BYE on each of its legs", got)
	}
	h.meta.silent(300 * time.Millisecond) // both users stay
	// Joined: the first caller hangs up, and the user gets BYE.
	h.meta.send(h.addr, byeFor(x.inv1, x.ok1, 2))
	h.meta.response(200)
	bye := h.meta.request(sip.BYE)
	if callIDOf(bye) != callIDOf(x.u) {
		t.Errorf("Meta got BYE for %s, want the user's %s", callIDOf(bye), callIDOf(x.u))
	}
	h.meta.reply(bye, 200, "OK", "", nil)
	for range 2 {
		if c := h.cdrs.next(t); len(c.Transfers) != 1 || !c.Transfers[0].Connected || c.Transfers[0].Kind != events.TransferAttended {
			t.Errorf("CDR %s transfers %+v, want the attended transfer, connected", c.CallID, c.Transfers)
		}
	}
}

// TestDialerHandoverHangupAsUserAnswers: as
// TestClickToCallHandoverHangupAsUserAnswers, for a dialer's
// consultation: the dialer's agent has a first BIC up and consults a
// second user through wagate; its REFER with Replaces naming that
// ringing INVITE hands the second user over (its INVITE gets 487); the
// API hangs the consultation up after the user's 200 was taken for the
// handover, before the join. The user gets BYE, the agent NOTIFY 487 and
// keeps its first call; the record says the API hung it up. Before, the
// user was joined to the first user.
func TestDialerHandoverHangupAsUserAnswers(t *testing.T) {
	onStart := new(atomic.Pointer[func()])
	cdrs := cdrSink{make(chan events.CDR, 16), &orderSink{}}
	f := startFlow(t, "", `, transfer: {allow: [{endpoint: pbx, users: ["*"]}]}`, "", func(e *Engine) {
		e.newBridge = func(string, *slog.Logger, media.LegConfig, media.LegConfig) (Bridge, error) {
			return startHookBridge{onStart: onStart}, nil
		}
		e.ctl.link = func(Bridge, media.Side, Bridge, media.Side) error { return nil }
		e.AddObserver(cdrs)
	})
	// The first call: the dialer's agent and a user, up.
	inv1 := f.dialerInvite(waUser, hdrPNID)
	f.dialer.send(f.addr, inv1)
	m1 := f.meta.request(sip.INVITE)
	f.meta.reply(m1, 200, "OK", "m1", answerWithSDP(f.meta.addr()))
	f.meta.request(sip.ACK)
	ok1 := f.dialer.response(200)
	f.dialer.send(f.addr, ackFor(inv1, ok1))
	// The consultation: a second user's phone rings.
	inv2 := f.dialerInvite("+447700900124", hdrPNID)
	f.dialer.send(f.addr, inv2)
	m2 := f.meta.request(sip.INVITE)
	f.meta.reply(m2, 180, "Ringing", "m2", nil)
	r2 := f.dialer.response(180)
	var c2 string
	for _, ci := range f.srv.Calls() {
		if ci.B.SIPCallID == callIDOf(m2) {
			c2 = ci.ID
		}
	}
	wagateTag, _ := r2.To().Params.Get("tag")
	replaces := strings.NewReplacer("@", "%40", ";", "%3B", "=", "%3D").Replace(
		fmt.Sprintf("%s;to-tag=%s;from-tag=dtag", callIDOf(inv2), wagateTag))
	refer := byeFor(inv1, ok1, 2)
	refer.Method = sip.REFER
	refer.CSeq().MethodName = sip.REFER
	refer.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "agent", Host: f.dialer.ip(), Port: f.dialer.port()}})
	refer.AppendHeader(sip.NewHeader("Refer-To", fmt.Sprintf("<sip:x@127.0.0.1?Replaces=%s>", replaces)))
	f.dialer.send(f.addr, refer)
	// 202, NOTIFYs 100 and 180, and the consultation's INVITE ends (487).
	var got []string
	dialerUntil := func(done func() bool) {
		for !done() {
			switch m := f.dialer.next("the dialer's REFER progress").(type) {
			case *sip.Response:
				got = append(got, fmt.Sprintf("%d %s", m.StatusCode, m.CSeq().MethodName))
				if m.StatusCode == 487 {
					f.dialer.send(f.addr, ackFor(inv2, m))
				}
			case *sip.Request:
				f.dialer.reply(m, 200, "OK", "", nil)
				switch m.Method {
				case sip.NOTIFY:
					frag, _, _ := strings.Cut(string(m.Body()), "\r\n")
					got = append(got, "NOTIFY "+frag)
				case sip.BYE:
					got = append(got, "BYE "+callIDOf(m))
				}
			}
		}
	}
	dialerUntil(func() bool { return len(got) >= 4 })
	for _, w := range []string{"202 REFER", "NOTIFY SIP/2.0 100 Trying", "NOTIFY SIP/2.0 180 Ringing", "487 INVITE"} {
		if !has(got, w) {
			t.Fatalf("dialer got %q, want %q among them", got, w)
		}
	}
	hook := func() {
		if _, err := f.srv.Hangup(c2, "supervisor"); err != nil {
			t.Errorf("hangup: %v", err)
		}
	}
	onStart.Store(&hook)
	f.meta.reply(m2, 200, "OK", "m2", answerWithSDP(f.meta.addr()))
	f.meta.request(sip.ACK)
	bye := f.meta.request(sip.BYE)
	if callIDOf(bye) != callIDOf(m2) {
		t.Fatalf("Meta got BYE for %s, want the second user's %s", callIDOf(bye), callIDOf(m2))
	}
	f.meta.reply(bye, 200, "OK", "", nil)
	got = nil
	dialerUntil(func() bool { return len(got) >= 1 })
	if got[0] != "NOTIFY SIP/2.0 487 Request Terminated" {
		t.Errorf("dialer got %q, want NOTIFY 487", got)
	}
	f.dialer.silent(300 * time.Millisecond) // its first call stays
	if c := cdrs.next(t); c.HangupBy != events.HangupAPI || c.Cause != CauseAPI+": supervisor" {
		t.Errorf("consultation CDR hangup_by %s cause %q, want the API's hangup", c.HangupBy, c.Cause)
	}
	// The first call is up: the dialer hangs up, and its user gets BYE.
	f.dialer.send(f.addr, byeFor(inv1, ok1, 3))
	f.dialer.response(200)
	bye = f.meta.request(sip.BYE)
	if callIDOf(bye) != callIDOf(m1) {
		t.Errorf("Meta got BYE for %s, want the first user's %s", callIDOf(bye), callIDOf(m1))
	}
	f.meta.reply(bye, 200, "OK", "", nil)
}
