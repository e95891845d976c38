package test

import (
	"strings"
	"testing"
	"time"
)

// Call-flow tests for user-initiated calls (WhatsApp → business → PBX): the
// Meta peer calls the business number and wagate places the B-leg to the PBX.

// callArgs are the sipp arguments of a caller: the number called (-s), the
// From user and, for uac.xml, how long the call is held.
func callArgs(service, fromUser string, extra ...string) []string {
	return append([]string{"-s", service, "-key", "from_user", fromUser}, extra...)
}

// expectArgs are the sipp arguments of uac_expect.xml / uac_nosdp.xml.
func expectArgs(service, fromUser, code string) []string {
	return callArgs(service, fromUser, "-key", "expect_code", code)
}

// checkBLegInvite checks the INVITE the callee got: Request-URI
// sip:<user>@<callee host>, From user, and an SDP offer from wagate's media
// address with a port in the configured range.
func checkBLegInvite(t *testing.T, e *env, callee *sippProc, wantUser, wantFromUser string) {
	t.Helper()
	inv, ok := findMsg(callee.messages(), false, "INVITE ")
	if !ok {
		t.Errorf("%s received no INVITE", callee.spec.Name)
		return
	}
	wantRURI := "INVITE sip:" + wantUser + "@" + callee.spec.Peer.Addr()
	if rl := inv.StartLine(); rl != wantRURI+" SIP/2.0" && !strings.HasPrefix(rl, wantRURI+";") {
		t.Errorf("B-leg request line %q, want %q", rl, wantRURI+" SIP/2.0")
	}
	if wantFromUser != "" {
		from := inv.Header("From")
		if !strings.Contains(from, "sip:"+wantFromUser+"@"+e.WagateIP) {
			t.Errorf("B-leg From %q, want sip:%s@%s", from, wantFromUser, e.WagateIP)
		}
	}
	checkWagateSDP(t, e, "B-leg INVITE", inv)
}

// checkWagateSDP checks that a message wagate sent carries an SDP naming
// wagate's media address and a port in the media range.
func checkWagateSDP(t *testing.T, e *env, what string, m sipMsg) {
	t.Helper()
	ip, port, _, err := sdpAudio(m.Body())
	if err != nil {
		t.Errorf("%s: SDP: %v\n%s", what, err, m.Text)
		return
	}
	if ip != e.WagateIP {
		t.Errorf("%s: SDP c= %s, want wagate's media address %s", what, ip, e.WagateIP)
	}
	if port < 30000 || port > 40000 {
		t.Errorf("%s: SDP audio port %d outside the media range 30000-40000", what, port)
	}
}

// checkAnswer checks the 200 the caller got: SDP from wagate.
func checkAnswer(t *testing.T, e *env, caller *sippProc) {
	t.Helper()
	ok200, ok := findMsg(caller.messages(), false, "SIP/2.0 200")
	if !ok {
		t.Errorf("%s received no 200", caller.spec.Name)
		return
	}
	if !strings.Contains(ok200.Header("CSeq"), "INVITE") {
		t.Errorf("first 200 the caller got is for %q, want the INVITE", ok200.Header("CSeq"))
	}
	checkWagateSDP(t, e, "A-leg 200", ok200)
}

// TestUICBasicCall: Meta calls the business number, the PBX extension
// rings and answers, Meta hangs up.
func TestUICBasicCall(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{})

	// The PBX rings 200 ms before answering: sipgo hands each UDP
	// response to a goroutine of its own, and a 200 right behind the 180
	// may overtake it (the 180 is then dropped, as RFC 3261 wants).
	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas.xml", Peer: e.PBX, Calls: 1, Args: []string{"-d", "200"}})
	meta := e.runSipp(sippSpec{Name: "meta", Scenario: "uac.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1,
		Args: callArgs(businessNumber, waUser, "-d", "1000")})
	pbx.requireOK()

	checkBLegInvite(t, e, pbx, routeUser, waUser)
	checkAnswer(t, e, meta)
	if _, ok := findMsg(meta.messages(), false, "SIP/2.0 180"); !ok {
		t.Errorf("the caller got no 180 Ringing (the PBX sent one)")
	}
	// The PBX got the BYE that Meta sent.
	if _, ok := findMsg(pbx.messages(), false, "BYE "); !ok {
		t.Errorf("the PBX received no BYE")
	}

	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}

// TestUICByeFromCallee: the agent hangs up; Meta gets the BYE.
func TestUICByeFromCallee(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{})

	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas_bye.xml", Peer: e.PBX, Calls: 1, Args: []string{"-d", "1000"}})
	meta := e.runSipp(sippSpec{Name: "meta", Scenario: "uac_wait_bye.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1,
		Args: callArgs(businessNumber, waUser)})
	pbx.requireOK()

	checkAnswer(t, e, meta)
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}

// TestUICOverTCP: the same basic call, Meta's side over TCP.
func TestUICOverTCP(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{MetaTransport: "tcp"})

	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas.xml", Peer: e.PBX, Calls: 1})
	meta := e.runSipp(sippSpec{Name: "meta", Scenario: "uac.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1,
		Args: callArgs(businessNumber, waUser, "-d", "500", "-t", "t1")})
	pbx.requireOK()

	checkAnswer(t, e, meta)
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}

// TestUICEarlyMediaBecomes180: toward WhatsApp the PBX's 183s become 180
// (docs/sip.md: the WhatsApp client takes the first media as the answer);
// the call is then answered normally.
func TestUICEarlyMediaBecomes180(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{})

	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas_early.xml", Peer: e.PBX, Calls: 1})
	meta := e.runSipp(sippSpec{Name: "meta", Scenario: "uac.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1,
		Args: callArgs(businessNumber, waUser, "-d", "500")})
	pbx.requireOK()

	if m, ok := findMsg(meta.messages(), false, "SIP/2.0 183"); ok {
		t.Errorf("Meta got a 183, want 180 instead:\n%s", m.Text)
	}
	if _, ok := findMsg(meta.messages(), false, "SIP/2.0 180"); !ok {
		t.Errorf("Meta got no 180 for the PBX's 183")
	}
	checkAnswer(t, e, meta)
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}

// TestUICCancelWhileRinging: Meta gives up while the agent's phone rings:
// the PBX gets a CANCEL, Meta gets 200 (CANCEL) and 487.
func TestUICCancelWhileRinging(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{})

	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas_ring.xml", Peer: e.PBX, Calls: 1})
	meta := e.runSipp(sippSpec{Name: "meta", Scenario: "uac_cancel.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1,
		Args: callArgs(businessNumber, waUser)})
	pbx.requireOK() // it got the CANCEL and answered 200 + 487

	if _, ok := findMsg(meta.messages(), false, "SIP/2.0 487"); !ok {
		t.Errorf("the caller got no 487 Request Terminated")
	}
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}

// TestUICBusy: the agent is busy (486); Meta gets 486.
func TestUICBusy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{})

	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas_486.xml", Peer: e.PBX, Calls: 1})
	e.runSipp(sippSpec{Name: "meta", Scenario: "uac_expect.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1,
		Args: expectArgs(businessNumber, waUser, "486")})
	pbx.requireOK() // it got its ACK

	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}

// TestUICRingTimeout: the agent's phone rings past sip.ring_timeout: wagate
// cancels the B-leg and answers Meta 480 Temporarily Unavailable.
func TestUICRingTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{RingTimeout: "2s"})

	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas_ring.xml", Peer: e.PBX, Calls: 1})
	start := time.Now()
	e.runSipp(sippSpec{Name: "meta", Scenario: "uac_expect.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1,
		Args: expectArgs(businessNumber, waUser, "480")})
	pbx.requireOK() // the B-leg was cancelled
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("the call ended after %v, before the 2s ring timeout", d)
	}

	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}

// TestUICUnknownNumber: a call to a number wagate does not serve gets 404
// and nothing reaches the PBX.
func TestUICUnknownNumber(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{})
	pbx := listenUDP(t, e.PBX.Addr())

	e.runSipp(sippSpec{Name: "meta", Scenario: "uac_expect.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1,
		Args: expectArgs("+15550100999", waUser, "404")})
	pbx.expectSilence(t, "the PBX", time.Second)

	s := w.waitIdle()
	w.expectCounts(s, 0, 0)
}

// TestUnknownSource: an INVITE from an address that is no configured
// endpoint gets 403, nothing leaves wagate and no call is counted.
func TestUnknownSource(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{})
	pbx := listenUDP(t, e.PBX.Addr())
	meta := listenUDP(t, e.Meta.Addr())
	dialer := listenUDP(t, e.Dialer.Addr())

	// The default (unknown_sources: drop): a stranger gets nothing back,
	// not even a 100, and nothing is routed.
	p := newRawPeer(t, e.Stranger.IP, w)
	if got := p.exchange(rawInvite(p, "stranger-1", businessNumber, "application/sdp", "v=0\r\n"), 1500*time.Millisecond); got != "" {
		t.Errorf("stranger's INVITE answered %q, want silence", got)
	}
	pbx.expectSilence(t, "the PBX", 500*time.Millisecond)
	meta.expectSilence(t, "the Meta peer", 0)
	dialer.expectSilence(t, "the dialer", 0)

	s := w.waitIdle()
	w.expectCounts(s, 0, 0)
	if n := s.Edge.Refused["stranger"]; n < 1 {
		t.Errorf("status sip_edge.refused.stranger = %d, want the stranger's INVITE counted", n)
	}
}

// TestUnknownSourceReject: with unknown_sources: reject a stranger gets one
// stateless 403 (no retransmission: SIPp would fail on a second one) and
// nothing is routed.
func TestUnknownSourceReject(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{SIPExtra: "\n  unknown_sources: reject"})
	pbx := listenUDP(t, e.PBX.Addr())

	e.runSipp(sippSpec{Name: "stranger", Scenario: "uac_expect.xml", Peer: e.Stranger, Remote: w.SIPAddr, Calls: 1,
		Args: expectArgs(businessNumber, waUser, "403")})
	pbx.expectSilence(t, "the PBX", time.Second)
	s := w.waitIdle()
	w.expectCounts(s, 0, 0)
}

// TestInviteWithoutSDP: an INVITE with no offer gets 488; nothing reaches
// the PBX.
func TestInviteWithoutSDP(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{})
	pbx := listenUDP(t, e.PBX.Addr())

	e.runSipp(sippSpec{Name: "meta", Scenario: "uac_nosdp.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1,
		Args: expectArgs(businessNumber, waUser, "488")})
	pbx.expectSilence(t, "the PBX", 500*time.Millisecond)

	s := w.waitIdle()
	w.expectCounts(s, 0, 0)
}

// TestOptions: a configured peer's OPTIONS gets 200.
func TestOptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{})
	e.runSipp(sippSpec{Name: "meta", Scenario: "options.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1,
		Args: callArgs("ping", "wagate-test")})
	s := w.waitIdle()
	w.expectCounts(s, 0, 0)
}
