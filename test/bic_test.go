package test

import (
	"strings"
	"testing"
)

// Call-flow tests for business-initiated calls (dialer → business →
// WhatsApp user): the dialer calls the user's number with the business
// number as From, and wagate places the B-leg to Meta.

// TestBICBasicCall: the dialer's call reaches Meta as
// INVITE sip:+<user>@<meta host> with From sip:+<business>@<wagate host>,
// carries no internal X-WABA-* header, is answered, and the dialer hangs up.
func TestBICBasicCall(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{})

	meta := e.startSipp(sippSpec{Name: "meta", Scenario: "uas.xml", Peer: e.Meta, Calls: 1})
	dialer := e.runSipp(sippSpec{Name: "dialer", Scenario: "uac.xml", Peer: e.Dialer, Remote: w.SIPAddr, Calls: 1,
		Args: callArgs(waUser, businessNumber, "-d", "1000")})
	meta.requireOK()

	checkBLegInvite(t, e, meta, waUser, businessNumber)
	checkAnswer(t, e, dialer)
	if inv, ok := findMsg(meta.messages(), false, "INVITE "); ok {
		for _, l := range strings.Split(inv.Text, "\n") {
			if strings.HasPrefix(strings.ToLower(l), "x-waba-") {
				t.Errorf("INVITE toward Meta carries internal header %q", strings.TrimSpace(l))
			}
		}
	}

	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}

// TestBICByeFromWhatsApp: the WhatsApp user hangs up; the dialer gets the BYE.
func TestBICByeFromWhatsApp(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{})

	meta := e.startSipp(sippSpec{Name: "meta", Scenario: "uas_bye.xml", Peer: e.Meta, Calls: 1, Args: []string{"-d", "500"}})
	e.runSipp(sippSpec{Name: "dialer", Scenario: "uac_wait_bye.xml", Peer: e.Dialer, Remote: w.SIPAddr, Calls: 1,
		Args: callArgs(waUser, businessNumber)})
	meta.requireOK()

	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}

// TestBICEarlyMedia: early media never involves a WhatsApp leg (wagate
// would have to send Meta media before the answer, which the WhatsApp
// client takes as the answer), so Meta's 183s — with or without SDP — reach
// the dialer as 180 without SDP; then the call is answered.
// (On a UIC wagate likewise turns the PBX's 183 into 180 toward Meta.)
func TestBICEarlyMedia(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{})

	meta := e.startSipp(sippSpec{Name: "meta", Scenario: "uas_early.xml", Peer: e.Meta, Calls: 1})
	dialer := e.runSipp(sippSpec{Name: "dialer", Scenario: "uac.xml", Peer: e.Dialer, Remote: w.SIPAddr, Calls: 1,
		Args: callArgs(waUser, businessNumber, "-d", "500")})
	meta.requireOK()

	var got180 int
	for _, m := range dialer.messages() {
		if m.Sent {
			continue
		}
		switch line := m.StartLine(); {
		case strings.HasPrefix(line, "SIP/2.0 183"):
			t.Errorf("the dialer got a 183 (%q); early media from a WhatsApp leg must become 180", line)
		case strings.HasPrefix(line, "SIP/2.0 180"):
			got180++
			if body := m.Body(); strings.TrimSpace(body) != "" {
				t.Errorf("180 to the dialer carries a body:\n%s", body)
			}
		}
	}
	if got180 == 0 {
		t.Errorf("the dialer got no 180 for Meta's 183s")
	}
	checkAnswer(t, e, dialer)
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}
