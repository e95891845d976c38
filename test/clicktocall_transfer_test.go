package test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/rtppeer"
)

// Semi-attended transfer whose consultation is a click-to-call: the agent
// has a WhatsApp caller (a UIC) and consults a second user with POST
// /v1/calls (wagate calls the agent, then the user, and plays the agent
// ringback); while the user's phone rings it REFERs the caller's call
// with Replaces naming its click-to-call dialog, which is answered.
// Before, that REFER got 491 ("the call is not answered").

// c2cXfer is a semi-attended transfer set up by c2cSemiAttended.
type c2cXfer struct {
	e       *env
	w       *wagate
	rx      *receiver
	meta    *metapeer.Peer // Meta: the first caller's and the user's
	mc      *metapeer.Call // the first caller (1 kHz), with Meta
	dc      *metapeer.Call // the agent's leg of the first call
	ac      *metapeer.Call // the agent's leg of the click-to-call
	c2c     string         // the click-to-call's call id
	ringing <-chan answerResult
	release func() // the user's phone stops ringing and does as spec says
}

// c2cSemiAttended puts a UIC through to the agent (answered, the caller
// sending 1 kHz), starts a click-to-call from the same agent whose user's
// phone rings until release, then answers as spec says, and REFERs the
// first call with Replaces naming the click-to-call's agent dialog: the
// REFER must get 202. rtpTimeout, when set, is media.rtp_timeout.
func c2cSemiAttended(t *testing.T, spec metapeer.AnswerSpec, rtpTimeout string) *c2cXfer {
	t.Helper()
	e, w, rx, meta, agent := c2cEnvWith(t, "", func(_ *env, o *wagateOpts) {
		o.PBXExtra += `, transfer: {allow: [{endpoint: pbx, users: ["2*"]}]}`
		o.RTPTimeout = rtpTimeout
	})
	grantPermission(t, e, waUser, "temporary")
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	t.Cleanup(cancel)
	x := &c2cXfer{e: e, w: w, rx: rx, meta: meta}

	first := answerAsync(ctx, agent, metapeer.AnswerSpec{})
	mc, err := meta.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: businessNumber, From: "+447700900124"})
	if err != nil {
		t.Fatalf("the first caller's UIC: %v", err)
	}
	x.mc, x.dc = mc, waitAnswer(t, first, "the agent (first call)")
	mc.Media.SetSource(metaTone())

	release := make(chan struct{})
	x.release = sync.OnceFunc(func() { close(release) })
	t.Cleanup(x.release)
	spec.RingUntil = release
	x.ringing = answerAsync(ctx, meta, spec)
	consult := answerAsync(ctx, agent, metapeer.AnswerSpec{})
	x.c2c = startC2C(t, e, c2cBody(""), "").CallID
	x.ac = waitAnswer(t, consult, "the agent (click-to-call)")
	x.ac.Media.SetSource(pbxTone())
	waitRinging(t, rx, x.c2c)

	d := x.ac.Dialog
	if code, warn := refer(t, x.dc.Dialog, replacesURI(e.WagateIP, d.CallID, d.RemoteTag, d.LocalTag)); code != 202 {
		t.Fatalf("REFER with Replaces of the click-to-call while the user rings: %d (%s), want 202", code, warn)
	}
	return x
}

// answered releases the user's phone, which answers sending 700 Hz, and
// checks that the two users are joined: the agent's first leg gets BYE
// after NOTIFYs 100, 180, 200, and the two hear each other.
func (x *c2cXfer) answered(t *testing.T) *metapeer.Call {
	t.Helper()
	x.release()
	mu := waitAnswer(t, x.ringing, "the user")
	mu.Media.SetSource(rtppeer.NewTone(700, toneAmp, 48000))
	waitBye(t, x.dc, "the agent's first call")
	if n := waitNotifies(t, x.dc.Dialog); strings.Join(n, ",") != "SIP/2.0 100 Trying,SIP/2.0 180 Ringing,SIP/2.0 200 OK" {
		t.Errorf("NOTIFY sipfrags %q, want 100, 180, 200", n)
	}
	mustHear(t, "the first caller hears the user", x.mc.Media, 48000, 700, time.Second)
	mustHear(t, "the user hears the first caller", mu.Media, 48000, 1000, time.Second)
	return mu
}

// TestTransferReplacesClickToCall: the user answers: the two WhatsApp
// users talk, both of the agent's legs get BYE, and both calls' events
// and records show the attended transfer joining them.
func TestTransferReplacesClickToCall(t *testing.T) {
	t.Parallel()
	x := c2cSemiAttended(t, metapeer.AnswerSpec{}, "")
	mu := x.answered(t)
	waitBye(t, x.ac, "the agent's click-to-call leg")
	hangup(t, x.mc, "the first caller")
	waitBye(t, mu, "the user")
	x.w.waitIdle()

	got, _ := c2cEvents(t, x.rx, x.c2c)
	if want := []string{"call.started", "call.progress:agent_answered", "call.ringing", "call.answered", "call.transferred", "call.ended"}; !slices.Equal(got, want) {
		t.Errorf("click-to-call events %v, want %v", got, want)
	}
	cdr, _ := c2cCDR(t, x.e, x.c2c)
	xs := cdrTransfers(t, cdr)
	if len(xs) != 1 || xs[0].Kind != "attended" || !xs[0].Connected || xs[0].From.SIPCallID != x.ac.Dialog.CallID || xs[0].Joined == "" {
		t.Errorf("click-to-call CDR transfers %+v, want one attended, connected, from the agent's leg", xs)
	}
	first := cdrOfA(t, waitCDRs(t, x.e, 2), x.mc.Dialog.CallID)
	fx := cdrTransfers(t, first)
	if len(fx) != 1 || fx[0].Kind != "attended" || !fx[0].Connected || fx[0].Joined != x.c2c || fx[0].From.SIPCallID != x.dc.Dialog.CallID {
		t.Errorf("first call's CDR transfers %+v, want one attended, connected, joined to %s", fx, x.c2c)
	}
	if len(xs) == 1 && xs[0].Joined != first.CallID {
		t.Errorf("click-to-call joined to %q, want the first call %s", xs[0].Joined, first.CallID)
	}
}

// TestTransferReplacesClickToCallAgentHangsUp: the agent hangs up its
// click-to-call leg as soon as the REFER is accepted and sends nothing
// more; the user rings on longer than rtp_timeout and is still joined to
// the first caller when it answers.
func TestTransferReplacesClickToCallAgentHangsUp(t *testing.T) {
	t.Parallel()
	x := c2cSemiAttended(t, metapeer.AnswerSpec{}, "1s")
	hangup(t, x.ac, "the agent's click-to-call leg")
	// Longer than rtp_timeout (1 s, plus the timeout job's grace): the
	// agent's silent side must not end the call the user rings for.
	time.Sleep(2500 * time.Millisecond)
	select {
	case r := <-x.ringing:
		t.Fatalf("the user's INVITE ended before the answer: %v", r.err)
	default:
	}
	mu := x.answered(t)
	hangup(t, mu, "the user")
	waitBye(t, x.mc, "the first caller")
	x.w.waitIdle()
}

// TestTransferReplacesClickToCallDeclined: the user declines (486): the
// agent's NOTIFY says so, its click-to-call leg gets BYE, and the first
// caller is back with the agent.
func TestTransferReplacesClickToCallDeclined(t *testing.T) {
	t.Parallel()
	x := c2cSemiAttended(t, metapeer.AnswerSpec{Reject: 486}, "")
	x.release()
	if n := waitNotifies(t, x.dc.Dialog); len(n) == 0 || !strings.HasPrefix(n[len(n)-1], "SIP/2.0 486 ") {
		t.Errorf("NOTIFY sipfrags %q, want the last 486", n)
	}
	waitBye(t, x.ac, "the agent's click-to-call leg")
	x.dc.Media.SetSource(rtppeer.NewTone(440, toneAmp, 8000))
	mustHear(t, "the first caller hears the agent again", x.mc.Media, 48000, 440, time.Second)
	hangup(t, x.dc, "the agent")
	waitBye(t, x.mc, "the first caller")
	x.w.waitIdle()
}

// TestTransferReplacesClickToCallAgentGone: the agent hangs up both legs
// once the REFER is accepted. Its click-to-call leg's BYE ends that leg
// only: the user's phone rings on for the first caller (no CANCEL), and
// the first caller stays on while it rings. When the user declines,
// nobody is left for the first caller, who then gets BYE; the
// click-to-call's record says the user declined. Were the agent's BYE to
// end the click-to-call (as for a click-to-call without a transfer), the
// user's phone would be cancelled at once and the first caller hung up
// before the user had a say.
func TestTransferReplacesClickToCallAgentGone(t *testing.T) {
	t.Parallel()
	x := c2cSemiAttended(t, metapeer.AnswerSpec{Reject: 486}, "")
	hangup(t, x.ac, "the agent's click-to-call leg")
	hangup(t, x.dc, "the agent's first leg")
	// Nothing is to happen until the user decides: watched for a second,
	// long enough for a CANCEL or a BYE that follows a BYE on loopback.
	userCancelled := func() bool {
		for _, ev := range x.meta.UA.Trace() {
			if !ev.Sent && ev.Msg.Request && ev.Msg.Method == "CANCEL" {
				return true
			}
		}
		return false
	}
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if userCancelled() {
			t.Fatal("the agent's BYE on its click-to-call leg cancelled the user's phone, which was ringing for the first caller")
		}
		select {
		case <-x.mc.Dialog.Done():
			t.Fatal("the first caller was hung up while the user's phone still rang for it")
		default:
		}
	}
	x.release()
	waitBye(t, x.mc, "the first caller")
	x.w.waitIdle()
	if userCancelled() {
		t.Error("the user's INVITE was cancelled; want it declined by the user (486)")
	}
	cdr, _ := c2cCDR(t, x.e, x.c2c)
	if cdr.SIPCode != 486 {
		t.Errorf("click-to-call record: SIP code %d, cause %q; want the user's 486", cdr.SIPCode, cdr.Cause)
	}
}

// TestTransferReplacesClickToCallCallerHangsUp: the first caller hangs up
// while the user's phone rings: Meta's INVITE to the user is cancelled
// and the agent's click-to-call leg gets BYE.
func TestTransferReplacesClickToCallCallerHangsUp(t *testing.T) {
	t.Parallel()
	x := c2cSemiAttended(t, metapeer.AnswerSpec{}, "")
	hangup(t, x.mc, "the first caller")
	select {
	case r := <-x.ringing:
		if r.err == nil {
			t.Error("the user was connected after the first caller hung up")
		}
	case <-time.After(replyLimit):
		t.Error("the user's INVITE was not cancelled")
	}
	waitBye(t, x.ac, "the agent's click-to-call leg")
	x.w.waitIdle()
}
