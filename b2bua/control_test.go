package b2bua

import (
	"errors"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/events"
)

// cdrObserver hands over the records of ended calls.
type cdrObserver struct{ ended chan events.CDR }

func (cdrObserver) CallStarted(events.Call)    {}
func (cdrObserver) CallRinging(events.Call)    {}
func (cdrObserver) CallAnswered(events.Call)   {}
func (o cdrObserver) CallEnded(c events.CDR)   { o.ended <- c }
func (o cdrObserver) CallRefused(c events.CDR) { o.ended <- c }

func (o cdrObserver) next(t *testing.T) events.CDR {
	t.Helper()
	select {
	case c := <-o.ended:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no CDR")
	}
	return events.CDR{}
}

// startControlFlow is startFlow with a CDR observer.
func startControlFlow(t *testing.T) (*flow, cdrObserver) {
	o := cdrObserver{ended: make(chan events.CDR, 4)}
	f := startFlow(t, "", "", "", func(e *Engine) { e.AddObserver(o) })
	return f, o
}

// onlyCall returns the one live call, failing otherwise.
func onlyCall(t *testing.T, e *Engine) CallInfo {
	t.Helper()
	calls := e.Calls()
	if len(calls) != 1 {
		t.Fatalf("%d live calls, want 1: %+v", len(calls), calls)
	}
	return calls[0]
}

// TestControlHangupAnswered: an answered UIC is listed with both legs,
// and Hangup sends both sides a BYE; the record says the API ended it.
func TestControlHangupAnswered(t *testing.T) {
	f, o := startControlFlow(t)
	inv := metaUICInvite(f)
	f.meta.send(f.addr, inv)
	b := f.pbx.request(sip.INVITE)
	f.pbx.reply(b, 200, "OK", "p1", answerWithSDP(f.pbx.addr()))
	f.pbx.request(sip.ACK)
	ok := f.meta.response(200)
	f.meta.send(f.addr, ackFor(inv, ok))

	var c CallInfo
	deadline := time.Now().Add(5 * time.Second)
	for c = onlyCall(t, f.srv); c.State != "confirmed"; c = onlyCall(t, f.srv) {
		if time.Now().After(deadline) {
			t.Fatalf("call state %q, want confirmed", c.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if c.Direction != events.UIC || c.A.Endpoint != "meta" || c.B.Endpoint != "pbx" ||
		c.A.SIPCallID != inv.CallID().Value() || c.B.SIPCallID != b.CallID().Value() ||
		c.User != waUser || c.BusinessNumber != "+15550100001" || c.AnsweredAt.Before(c.CreatedAt) {
		t.Errorf("listed call %+v", c)
	}
	if got, ok := f.srv.Call(c.ID); !ok || got.ID != c.ID {
		t.Errorf("Call(%q) = %+v, %v", c.ID, got, ok)
	}
	if _, ok := f.srv.Call("0123456789abcdef01234567"); ok {
		t.Error("Call found an unknown id")
	}
	if _, err := f.srv.Hangup("0123456789abcdef01234567", ""); !errors.Is(err, ErrNoSuchCall) {
		t.Errorf("Hangup of an unknown id: %v", err)
	}

	got, err := f.srv.Hangup(c.ID, "agent stuck")
	if err != nil || got.ID != c.ID || got.State != "confirmed" {
		t.Fatalf("Hangup: %+v, %v", got, err)
	}
	byeA := f.meta.request(sip.BYE)
	f.meta.reply(byeA, 200, "OK", "", nil)
	byeB := f.pbx.request(sip.BYE)
	f.pbx.reply(byeB, 200, "OK", "", nil)
	if byeA.CallID().Value() != c.A.SIPCallID || byeB.CallID().Value() != c.B.SIPCallID {
		t.Errorf("BYEs on %s and %s", byeA.CallID().Value(), byeB.CallID().Value())
	}

	cdr := o.next(t)
	if cdr.CallID != c.ID || cdr.HangupBy != events.HangupAPI || cdr.Cause != "api hangup: agent stuck" || cdr.Outcome != events.Answered || cdr.SIPCode != 200 {
		t.Errorf("CDR %+v", cdr)
	}
	if n := len(f.srv.Calls()); n != 0 {
		t.Errorf("%d calls left", n)
	}
	if _, err := f.srv.Hangup(c.ID, ""); !errors.Is(err, ErrNoSuchCall) {
		t.Errorf("second Hangup: %v", err)
	}
}

// TestControlHangupRinging: before the answer A gets 487 and B a CANCEL;
// the record is a cancelled call with sip_code 487, ended by the API.
func TestControlHangupRinging(t *testing.T) {
	f, o := startControlFlow(t)
	inv := f.dialerInvite(waUser, hdrPNID)
	f.dialer.send(f.addr, inv)
	b := f.meta.request(sip.INVITE)
	f.meta.reply(b, 180, "Ringing", "m1", nil)
	f.dialer.response(180)

	c := onlyCall(t, f.srv)
	if c.State != "ringing" || c.Direction != events.BIC || c.RingingAt.IsZero() || !c.AnsweredAt.IsZero() {
		t.Errorf("ringing call %+v", c)
	}
	if _, err := f.srv.Hangup(c.ID, ""); err != nil {
		t.Fatal(err)
	}
	res := f.dialer.response(487)
	f.dialer.send(f.addr, ackFor(inv, res))
	cancel := f.meta.request(sip.CANCEL)
	// Until B ends its INVITE the call is there, ending; asking again
	// changes nothing.
	if got, ok := f.srv.Call(c.ID); !ok || got.State != "ending" {
		t.Errorf("while B is cancelled: %+v, %v", got, ok)
	}
	if _, err := f.srv.Hangup(c.ID, "again"); err != nil {
		t.Errorf("second Hangup: %v", err)
	}
	f.meta.reply(cancel, 200, "OK", "m1", nil)
	f.meta.reply(b, 487, "Request Terminated", "m1", nil)
	f.meta.request(sip.ACK)

	cdr := o.next(t)
	if cdr.HangupBy != events.HangupAPI || cdr.Cause != CauseAPI || cdr.Outcome != events.Cancelled || cdr.SIPCode != 487 {
		t.Errorf("CDR %+v", cdr)
	}
	f.gate.ticket(t).wait(t, OutcomeCancelled, false)
	if n := len(f.srv.Calls()); n != 0 {
		t.Errorf("%d calls left", n)
	}
}

// TestControlHangupAnswerRace: B answers just as the call is hung up
// (before wagate saw any provisional): B's 2xx is acknowledged and B gets
// a BYE, and A gets a final 487 rather than a 200.
func TestControlHangupAnswerRace(t *testing.T) {
	f, o := startControlFlow(t)
	inv := metaUICInvite(f)
	f.meta.send(f.addr, inv)
	b := f.pbx.request(sip.INVITE)
	c := onlyCall(t, f.srv)
	if _, err := f.srv.Hangup(c.ID, "race"); err != nil {
		t.Fatal(err)
	}
	f.meta.response(487)
	f.pbx.reply(b, 200, "OK", "p1", answerWithSDP(f.pbx.addr()))
	f.pbx.request(sip.ACK)
	bye := f.pbx.request(sip.BYE)
	f.pbx.reply(bye, 200, "OK", "", nil)
	if cdr := o.next(t); cdr.HangupBy != events.HangupAPI || cdr.SIPCode != 487 {
		t.Errorf("CDR %+v", cdr)
	}
}
