package b2bua

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/events"
	"github.com/wagate/wagate/media"
	sipedge "github.com/wagate/wagate/sip"
)

// Hunt lists in process: the flow harness with three PBX peers (pbx on
// 127.0.0.3, pbx2 on .5, pbx3 on .6) and a record of every CDR. The same
// behaviour through the binary is in test/hunt_test.go.

// cdrSink passes the records on; order keeps the order of
// call.transferred and call.ended (transferend_test.go).
type cdrSink struct {
	ch    chan events.CDR
	order *orderSink
}

func (cdrSink) CallStarted(events.Call)  {}
func (cdrSink) CallRinging(events.Call)  {}
func (cdrSink) CallAnswered(events.Call) {}
func (s cdrSink) CallEnded(c events.CDR) {
	s.order.add("ended")
	s.ch <- c
}
func (s cdrSink) CallRefused(c events.CDR)        { s.ch <- c }
func (s cdrSink) CallTransferred(events.Transfer) { s.order.add("transferred") }

func (s cdrSink) next(t *testing.T) events.CDR {
	t.Helper()
	select {
	case c := <-s.ch:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no CDR")
	}
	return events.CDR{}
}

type huntFlow struct {
	*flow
	pbx2, pbx3 *peer
	cdrs       cdrSink
}

// startHuntFlow starts a B2BUA whose number routes to route, with the
// hunt lists in lists (YAML list items under hunt_lists).
func startHuntFlow(t *testing.T, route, lists string) *huntFlow {
	t.Helper()
	return startHuntFlowWith(t, route, lists, "")
}

// startHuntFlowWith is startHuntFlow with pbxExtra added to the pbx
// endpoint's entry (", transfer: {...}").
func startHuntFlowWith(t *testing.T, route, lists, pbxExtra string) *huntFlow {
	t.Helper()
	return startHuntFlowBridges(t, route, lists, pbxExtra, nil)
}

// startHuntFlowBridges is startHuntFlowWith whose calls get their media
// from newBridge (nil: fakeBridge).
func startHuntFlowBridges(t *testing.T, route, lists, pbxExtra string, newBridge BridgeFactory) *huntFlow {
	t.Helper()
	return startHuntFlowSetup(t, route, lists, pbxExtra, newBridge, nil)
}

// startHuntFlowSetup is startHuntFlowBridges with setup (if any) run on
// the engine before it runs.
func startHuntFlowSetup(t *testing.T, route, lists, pbxExtra string, newBridge BridgeFactory, setup func(*Engine)) *huntFlow {
	t.Helper()
	if newBridge == nil {
		newBridge = func(string, *slog.Logger, media.LegConfig, media.LegConfig) (Bridge, error) { return fakeBridge{}, nil }
	}
	f := &flow{t: t, meta: newPeer(t, "127.0.0.2"), pbx: newPeer(t, "127.0.0.3"), dialer: newPeer(t, "127.0.0.4"), gate: &fakeGate{}}
	h := &huntFlow{flow: f, pbx2: newPeer(t, "127.0.0.5"), pbx3: newPeer(t, "127.0.0.6"), cdrs: cdrSink{make(chan events.CDR, 16), &orderSink{}}}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = pc.LocalAddr().String()
	pc.Close()
	cfg := parseConfig(t, fmt.Sprintf(`
sip:
  listen: [{transport: udp, address: "%s"}]
  host: 127.0.0.1
  ring_timeout: 3s
endpoints:
  - {name: meta, kind: whatsapp, host: 127.0.0.2, port: %d, transport: udp, media_encryption: none, source_cidrs: [127.0.0.2/32]}
  - {name: pbx, kind: pbx, host: 127.0.0.3, port: %d, source_cidrs: [127.0.0.3/32]%s}
  - {name: pbx2, kind: pbx, host: 127.0.0.5, port: %d, source_cidrs: [127.0.0.5/32]}
  - {name: pbx3, kind: pbx, host: 127.0.0.6, port: %d, source_cidrs: [127.0.0.6/32]}
hunt_lists:
%s
numbers:
  - {number: "+15550100001", phone_number_id: "100000000000001", route: %s}
`, f.addr, f.meta.port(), f.pbx.port(), pbxExtra, h.pbx2.port(), h.pbx3.port(), lists, route))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	f.edge, err = sipedge.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = New(f.edge, newBridge, log)
	f.srv.AddObserver(h.cdrs)
	// Fake bridges carry no media: an attended transfer's join has
	// nothing to link.
	f.srv.ctl.link = func(Bridge, media.Side, Bridge, media.Side) error { return nil }
	if setup != nil {
		setup(f.srv)
	}
	f.edge.SetCalls(f.srv)
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan struct{})
	go func() {
		defer close(f.done)
		if err := f.edge.Run(ctx); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	select {
	case <-f.edge.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("server not ready")
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), time.Second)
		defer scancel()
		f.edge.Shutdown(sctx)
		cancel()
		<-f.done
	})
	return h
}

// answer makes p answer inv with 200 and SDP, and takes wagate's ACK.
func (h *huntFlow) answer(p *peer, inv *sip.Request, tag string) *sip.Response {
	h.t.Helper()
	p.reply(inv, 200, "OK", tag, answerWithSDP(p.addr()))
	ack := p.request(sip.ACK)
	if callIDOf(ack) != callIDOf(inv) {
		h.t.Errorf("ACK for Call-ID %s, want %s", callIDOf(ack), callIDOf(inv))
	}
	return nil
}

// metaCall sends a UIC from Meta and returns its INVITE.
func (h *huntFlow) metaCall() *sip.Request {
	inv := metaUICInvite(h.flow)
	h.meta.send(h.addr, inv)
	return inv
}

// hangUp ends an answered call from Meta; the callee p gets the BYE.
func (h *huntFlow) hangUp(inv *sip.Request, ok *sip.Response, p *peer) {
	h.t.Helper()
	h.meta.send(h.addr, byeFor(inv, ok, 2))
	h.meta.response(200)
	bye := p.request(sip.BYE)
	p.reply(bye, 200, "OK", "", nil)
}

func requestUser(r *sip.Request) string { return r.Recipient.User }

func attemptsOf(c events.CDR) string {
	var out []string
	for _, a := range c.Attempts {
		out = append(out, a.User+"@"+a.Endpoint+":"+a.Result+":"+strconv.Itoa(a.SIPCode))
	}
	return strings.Join(out, " ")
}

// TestHuntParallel: every target rings at once; A hears one 180; the
// first 2xx wins and the other target gets CANCEL; when that target
// answers 200 anyway (the CANCEL/200 race), wagate ACKs and hangs it up.
// The record names the target that answered, and each attempt.
func TestHuntParallel(t *testing.T) {
	h := startHuntFlow(t, "{hunt: all}", `  - {name: all, strategy: parallel, targets: [{endpoint: pbx, user: "1001"}, {endpoint: pbx2, user: "2001"}]}`)
	inv := h.metaCall()
	b1 := h.pbx.request(sip.INVITE)
	b2 := h.pbx2.request(sip.INVITE)
	if requestUser(b1) != "1001" || requestUser(b2) != "2001" || callIDOf(b1) == callIDOf(b2) {
		t.Fatalf("INVITEs %s (%s) and %s (%s): want 1001 and 2001, each its own Call-ID", b1.Recipient.String(), callIDOf(b1), b2.Recipient.String(), callIDOf(b2))
	}
	if header(b2, "X-WABA-Session") == "" || header(b2, "X-WABA-Session") != header(b1, "X-WABA-Session") {
		t.Errorf("both targets must carry the call's X-WABA headers")
	}
	h.pbx.reply(b1, 180, "Ringing", "p1", nil)
	h.meta.response(180)
	h.pbx2.reply(b2, 183, "Session Progress", "p2", answerWithSDP(h.pbx2.addr()))
	h.meta.silent(200 * time.Millisecond) // one ringing for A

	h.answer(h.pbx2, b2, "p2")
	ok := h.meta.response(200)
	h.meta.send(h.addr, ackFor(inv, ok))
	cancel := h.pbx.request(sip.CANCEL)
	if callIDOf(cancel) != callIDOf(b1) {
		t.Fatalf("CANCEL for %s, want the losing target's %s", callIDOf(cancel), callIDOf(b1))
	}
	h.pbx.reply(cancel, 200, "OK", "p1", nil)
	// The loser's agent picked up as the CANCEL flew: 200 to the INVITE.
	h.pbx.reply(b1, 200, "OK", "p1", answerWithSDP(h.pbx.addr()))
	if ack := h.pbx.request(sip.ACK); callIDOf(ack) != callIDOf(b1) {
		t.Errorf("ACK for %s", callIDOf(ack))
	}
	bye := h.pbx.request(sip.BYE)
	h.pbx.reply(bye, 200, "OK", "", nil)

	h.hangUp(inv, ok, h.pbx2)
	c := h.cdrs.next(t)
	if c.Outcome != events.Answered || c.B.Endpoint != "pbx2" || c.B.User != "2001" || c.B.SIPCallID != callIDOf(b2) || c.Hunt != "all" {
		t.Errorf("CDR b=%+v hunt=%q outcome=%s; want the answering target pbx2/2001 and its Call-ID", c.B, c.Hunt, c.Outcome)
	}
	if got, want := attemptsOf(c), "1001@pbx:cancelled:0 2001@pbx2:answered:200"; got != want {
		t.Errorf("attempts %s, want %s", got, want)
	}
}

// TestHuntSequentialTimeoutThenBusy: the first target rings past its own
// ring time and is cancelled, the second rings at once and is busy: A gets
// the busy target's 486 (what a target said beats wagate's timeout).
func TestHuntSequentialTimeoutThenBusy(t *testing.T) {
	h := startHuntFlow(t, "{hunt: seq}", `  - {name: seq, targets: [{endpoint: pbx, user: "1001", ring_timeout: 300ms}, {endpoint: pbx2, user: "2001"}]}`)
	inv := h.metaCall()
	b1 := h.pbx.request(sip.INVITE)
	h.pbx.reply(b1, 180, "Ringing", "p1", nil)
	h.meta.response(180)
	start := time.Now()
	cancel := h.pbx.request(sip.CANCEL)
	h.pbx.reply(cancel, 200, "OK", "p1", nil)
	b2 := h.pbx2.request(sip.INVITE)
	if d := time.Since(start); d > time.Second {
		t.Errorf("the second target rang %v after the first was cancelled", d)
	}
	h.pbx.reply(b1, 487, "Request Terminated", "p1", nil)
	h.pbx.request(sip.ACK)
	h.pbx2.reply(b2, 180, "Ringing", "p2", nil)
	h.meta.silent(100 * time.Millisecond) // no second 180 for A
	h.pbx2.reply(b2, 486, "Busy Here", "p2", nil)
	h.pbx2.request(sip.ACK)
	res := h.meta.response(486)
	h.meta.send(h.addr, ackFor(inv, res))
	c := h.cdrs.next(t)
	if c.SIPCode != 486 || c.Outcome != events.Busy {
		t.Errorf("CDR code %d outcome %s, want 486 busy", c.SIPCode, c.Outcome)
	}
	if got, want := attemptsOf(c), "1001@pbx:no_answer:0 2001@pbx2:busy:486"; got != want {
		t.Errorf("attempts %s, want %s", got, want)
	}
}

// TestHuntDecline: a 603 ends a hunt by default; with on_decline: next the
// hunt goes on.
func TestHuntDecline(t *testing.T) {
	t.Run("stop", func(t *testing.T) {
		h := startHuntFlow(t, "{hunt: seq}", `  - {name: seq, targets: [{endpoint: pbx, user: "1001"}, {endpoint: pbx2, user: "2001"}]}`)
		inv := h.metaCall()
		b1 := h.pbx.request(sip.INVITE)
		h.pbx.reply(b1, 603, "Decline", "p1", nil)
		h.pbx.request(sip.ACK)
		res := h.meta.response(603)
		h.meta.send(h.addr, ackFor(inv, res))
		h.pbx2.silent(200 * time.Millisecond)
	})
	t.Run("next", func(t *testing.T) {
		h := startHuntFlow(t, "{hunt: seq}", `  - {name: seq, on_decline: next, targets: [{endpoint: pbx, user: "1001"}, {endpoint: pbx2, user: "2001"}]}`)
		inv := h.metaCall()
		b1 := h.pbx.request(sip.INVITE)
		h.pbx.reply(b1, 603, "Decline", "p1", nil)
		h.pbx.request(sip.ACK)
		b2 := h.pbx2.request(sip.INVITE)
		h.pbx2.reply(b2, 480, "Temporarily Unavailable", "p2", nil)
		h.pbx2.request(sip.ACK)
		res := h.meta.response(480)
		h.meta.send(h.addr, ackFor(inv, res))
	})
}

// firstRung places a call and returns which peer got the first INVITE;
// that target declines, which ends the hunt (on_decline: stop).
func (h *huntFlow) firstRung() string {
	h.t.Helper()
	inv := h.metaCall()
	for {
		select {
		case m := <-h.pbx.in:
			return h.decline(h.pbx, inv, m, "pbx")
		case m := <-h.pbx2.in:
			return h.decline(h.pbx2, inv, m, "pbx2")
		case m := <-h.pbx3.in:
			return h.decline(h.pbx3, inv, m, "pbx3")
		case <-time.After(5 * time.Second):
			h.t.Fatal("no target rang")
		}
	}
}

func (h *huntFlow) decline(p *peer, inv *sip.Request, m sip.Message, name string) string {
	h.t.Helper()
	b, ok := m.(*sip.Request)
	if !ok || b.Method != sip.INVITE {
		h.t.Fatalf("%s got %s, want an INVITE", name, startLine(m))
	}
	p.reply(b, 603, "Decline", "x", nil)
	p.request(sip.ACK)
	res := h.meta.response(603)
	h.meta.send(h.addr, ackFor(inv, res))
	h.cdrs.next(h.t)
	return name
}

// TestHuntRoundRobin: each call starts one target further down the list.
func TestHuntRoundRobin(t *testing.T) {
	h := startHuntFlow(t, "{hunt: rr}", `  - {name: rr, strategy: round_robin, targets: [{endpoint: pbx, user: "1"}, {endpoint: pbx2, user: "2"}, {endpoint: pbx3, user: "3"}]}`)
	var got []string
	for range 4 {
		got = append(got, h.firstRung())
	}
	if s := strings.Join(got, " "); s != "pbx pbx2 pbx3 pbx" {
		t.Errorf("first targets %s, want pbx pbx2 pbx3 pbx", s)
	}
}

// TestHuntLeastRecent: the agent idle longest rings first; one on a call
// rings last.
func TestHuntLeastRecent(t *testing.T) {
	h := startHuntFlow(t, "{hunt: lr}", `  - {name: lr, strategy: least_recent, targets: [{endpoint: pbx, user: "1"}, {endpoint: pbx2, user: "2"}, {endpoint: pbx3, user: "3"}]}`)
	// Call 1: nobody has answered yet, list order: pbx answers and stays.
	inv1 := h.metaCall()
	b1 := h.pbx.request(sip.INVITE)
	h.answer(h.pbx, b1, "a")
	ok1 := h.meta.response(200)
	h.meta.send(h.addr, ackFor(inv1, ok1))
	// Call 2: pbx is busy with call 1, so pbx2 first; it answers.
	inv2 := h.metaCall()
	b2 := h.pbx2.request(sip.INVITE)
	h.answer(h.pbx2, b2, "b")
	ok2 := h.meta.response(200)
	h.meta.send(h.addr, ackFor(inv2, ok2))
	h.hangUp(inv1, ok1, h.pbx) // pbx idle since now
	h.cdrs.next(t)
	time.Sleep(20 * time.Millisecond)
	h.hangUp(inv2, ok2, h.pbx2) // pbx2 idle since later
	h.cdrs.next(t)
	// pbx3 never answered: it rings first, then pbx (idle longer than pbx2).
	var got []string
	for range 2 {
		got = append(got, h.firstRung())
	}
	if s := strings.Join(got, " "); s != "pbx3 pbx3" {
		t.Errorf("first targets %s, want pbx3 twice (a decline is no answered call)", s)
	}
	inv3 := h.metaCall()
	b3 := h.pbx3.request(sip.INVITE)
	h.answer(h.pbx3, b3, "c")
	ok3 := h.meta.response(200)
	h.meta.send(h.addr, ackFor(inv3, ok3))
	h.hangUp(inv3, ok3, h.pbx3)
	h.cdrs.next(t)
	if got := h.firstRung(); got != "pbx" {
		t.Errorf("first target %s, want pbx (idle longest)", got)
	}
}

// TestHuntHangupRinging: the API hangs up a parallel hunt while both
// targets ring: A gets 487 at once, each target its CANCEL, and the call
// ends, hung up by the API, when both have answered 487.
func TestHuntHangupRinging(t *testing.T) {
	h := startHuntFlow(t, "{hunt: all}", `  - {name: all, strategy: parallel, targets: [{endpoint: pbx, user: "1001"}, {endpoint: pbx2, user: "2001"}]}`)
	inv := h.metaCall()
	b1 := h.pbx.request(sip.INVITE)
	b2 := h.pbx2.request(sip.INVITE)
	h.pbx.reply(b1, 180, "Ringing", "p1", nil)
	h.pbx2.reply(b2, 180, "Ringing", "p2", nil)
	h.meta.response(180)

	calls := h.srv.Calls()
	if len(calls) != 1 || calls[0].State != "ringing" {
		t.Fatalf("live calls %+v, want one ringing", calls)
	}
	// The live view shows every target ringing, not only the first.
	var ringing []string
	for _, r := range calls[0].Ringing {
		ringing = append(ringing, r.Leg+":"+r.User+"@"+r.Endpoint+":"+r.SIPCallID)
	}
	if got, want := strings.Join(ringing, " "), "b:1001@pbx:"+callIDOf(b1)+" b:2001@pbx2:"+callIDOf(b2); got != want {
		t.Errorf("ringing %s, want %s", got, want)
	}
	if _, err := h.srv.Hangup(calls[0].ID, "supervisor"); err != nil {
		t.Fatal(err)
	}
	res := h.meta.response(487)
	h.meta.send(h.addr, ackFor(inv, res))
	for _, x := range []struct {
		p   *peer
		inv *sip.Request
		tag string
	}{{h.pbx, b1, "p1"}, {h.pbx2, b2, "p2"}} {
		cancel := x.p.request(sip.CANCEL)
		if callIDOf(cancel) != callIDOf(x.inv) {
			t.Fatalf("CANCEL for %s, want %s", callIDOf(cancel), callIDOf(x.inv))
		}
		x.p.reply(cancel, 200, "OK", x.tag, nil)
		x.p.reply(x.inv, 487, "Request Terminated", x.tag, nil)
		x.p.request(sip.ACK)
	}
	c := h.cdrs.next(t)
	if c.HangupBy != events.HangupAPI || c.Cause != CauseAPI+": supervisor" || c.Outcome != events.Cancelled || c.SIPCode != 487 {
		t.Errorf("CDR hangup_by %s cause %q outcome %s code %d", c.HangupBy, c.Cause, c.Outcome, c.SIPCode)
	}
	if got, want := attemptsOf(c), "1001@pbx:cancelled:487 2001@pbx2:cancelled:487"; got != want {
		t.Errorf("attempts %s, want %s", got, want)
	}
	if n := len(h.srv.Calls()); n != 0 {
		t.Errorf("%d calls left", n)
	}
}

// TestHuntLeastRecentConcurrent: calls that arrive together do not all
// ring the same idle agent. The first call rings the agent idle longest;
// a second call, while that agent still rings, starts with the next free
// agent rather than piling onto the one already ringing (whose phone
// would ring twice while the others sit idle). Once the first agent's
// ring ended, it is first again.
func TestHuntLeastRecentConcurrent(t *testing.T) {
	h := startHuntFlow(t, "{hunt: lr}", `  - {name: lr, strategy: least_recent, targets: [{endpoint: pbx, user: "1"}, {endpoint: pbx2, user: "2"}, {endpoint: pbx3, user: "3"}]}`)
	inv1 := h.metaCall()
	b1 := h.pbx.request(sip.INVITE)
	h.pbx.reply(b1, 180, "Ringing", "p1", nil)
	h.meta.response(180)

	inv2 := h.metaCall()
	select {
	case m := <-h.pbx2.in:
		b2, ok := m.(*sip.Request)
		if !ok || b2.Method != sip.INVITE {
			t.Fatalf("pbx2 got %s, want the second call's INVITE", startLine(m))
		}
		h.pbx2.reply(b2, 486, "Busy Here", "p2", nil)
		h.pbx2.request(sip.ACK)
	case m := <-h.pbx.in:
		t.Fatalf("the second call rang the agent already ringing for the first: pbx got %s", startLine(m))
	case <-time.After(5 * time.Second):
		t.Fatal("the second call rang nobody")
	}
	// The second call moves on to pbx3 (free), not back to pbx.
	b3 := h.pbx3.request(sip.INVITE)
	h.pbx3.reply(b3, 603, "Decline", "p3", nil)
	h.pbx3.request(sip.ACK)
	res2 := h.meta.response(603)
	h.meta.send(h.addr, ackFor(inv2, res2))
	h.cdrs.next(t)

	// The first call's agent declines: its ring is over, and it is the
	// first to ring for the next call again (never answered: idle
	// longest, list order).
	h.pbx.reply(b1, 603, "Decline", "p1", nil)
	h.pbx.request(sip.ACK)
	res1 := h.meta.response(603)
	h.meta.send(h.addr, ackFor(inv1, res1))
	h.cdrs.next(t)
	if got := h.firstRung(); got != "pbx" {
		t.Errorf("first target %s, want pbx once its ring for another call is over", got)
	}
}

// cancelOf builds the caller's CANCEL of inv.
func cancelOf(inv *sip.Request) *sip.Request {
	cancel := sip.NewRequest(sip.CANCEL, inv.Recipient)
	cancel.AppendHeader(inv.Via().Clone())
	cancel.AppendHeader(sip.HeaderClone(inv.From()))
	cancel.AppendHeader(sip.HeaderClone(inv.To()))
	cancel.AppendHeader(sip.HeaderClone(inv.CallID()))
	cancel.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	mf := sip.MaxForwardsHeader(70)
	cancel.AppendHeader(&mf)
	cancel.SetBody(nil)
	return cancel
}

// TestHuntCancelCrossesAnswer: the caller hangs up (CANCEL) as the agent
// of a wrap_up list picks up: the agent's 200 crosses the CANCEL. Which
// one wagate sees first varies, so the race is run a number of times.
// Whenever the caller got its 487 (the CANCEL won), the agent gets ACK
// and BYE, the record says its attempt was late and the caller
// cancelled, and the agent, who never was in a call, is not kept out of
// the next calls by wrap-up. (When wagate's 200 reached the caller
// first, the call was answered and the caller's BYE ends it.)
func TestHuntCancelCrossesAnswer(t *testing.T) {
	h := startHuntFlow(t, "{hunt: seq}", `  - {name: seq, wrap_up: 30s, targets: [{endpoint: pbx, user: "1001"}]}`)
	crossed := 0
	for i := range 16 {
		inv := h.metaCall()
		b1 := h.pbx.request(sip.INVITE)
		h.pbx.reply(b1, 180, "Ringing", "p1", nil)
		h.meta.response(180)
		h.meta.send(h.addr, cancelOf(inv))
		if i%2 == 1 {
			time.Sleep(time.Duration(i%5) * 200 * time.Microsecond)
		}
		h.pbx.reply(b1, 200, "OK", "p1", answerWithSDP(h.pbx.addr()))
		// The agent: wagate's CANCEL may still come (it crossed the 200)
		// before the ACK.
		agentGets := func(method sip.RequestMethod) {
			t.Helper()
			for {
				m := h.pbx.next(string(method))
				r, ok := m.(*sip.Request)
				if ok && r.Method == sip.CANCEL {
					h.pbx.reply(r, 200, "OK", "p1", nil)
					continue
				}
				if !ok || r.Method != method || callIDOf(r) != callIDOf(b1) {
					t.Fatalf("agent got %s, want a %s for its INVITE", startLine(m), method)
				}
				if method == sip.BYE {
					h.pbx.reply(r, 200, "OK", "", nil)
				}
				return
			}
		}
		agentGets(sip.ACK)
		// The caller: 200 for its CANCEL and the INVITE's final.
		final := 0
		for final == 0 {
			m := h.meta.next("the INVITE's final response")
			r, ok := m.(*sip.Response)
			if !ok {
				t.Fatalf("caller got %s", startLine(m))
			}
			if r.CSeq().MethodName == sip.INVITE && r.StatusCode >= 200 {
				final = r.StatusCode
				h.meta.send(h.addr, ackFor(inv, r))
				if final == 200 {
					h.meta.send(h.addr, byeFor(inv, r, 2))
				}
			}
		}
		agentGets(sip.BYE)
		c := h.cdrs.next(t)
		wrap := !h.srv.hunts.wrapsUntil("1001@pbx", time.Now()).IsZero()
		if final == 487 {
			crossed++
			if got := attemptsOf(c); got != "1001@pbx:late:200" || c.Cause != causeCancelledByA+"; b answered late" || wrap {
				t.Errorf("run %d, caller got 487: attempts %s, cause %q, agent in wrap-up %v; want the attempt late, the caller's cancel, no wrap-up",
					i, got, c.Cause, wrap)
			}
		}
		// Each run starts with the agent free, and without the answers
		// still on their way (the 200 for the CANCEL or for the BYE).
		h.srv.hunts.mu.Lock()
		delete(h.srv.hunts.agents, "1001@pbx")
		h.srv.hunts.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
		for _, p := range []*peer{h.meta, h.pbx} {
			for len(p.in) > 0 {
				<-p.in
			}
		}
	}
	t.Logf("%d of 16 runs: the CANCEL won", crossed)
	if crossed == 0 {
		t.Error("the CANCEL never won the race: the test tested nothing")
	}
}
