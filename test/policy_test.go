package test

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"regexp"
	"strings"
	"testing"
)

// End-to-end tests of the WhatsApp policy on business-initiated calls: the
// X-WABA header contract, digest authentication toward Meta, and (in
// policy_permissions_test.go) the call-permission gate.

const (
	phoneNumberID = "100000000000001"
	metaPassword  = "metapass-Secret1"
	// metaDigestUser is what Meta expects as the digest username: the
	// business number's digits without '+'.
	metaDigestUser = "15550100001"
)

// bicArgs are the arguments of bic_dialer.xml / bic_dialer_expect.xml.
func bicArgs(user, pnid, bnum string, extra ...string) []string {
	return append([]string{"-s", user, "-key", "from_user", "agent42", "-key", "pnid", pnid, "-key", "bnum", bnum,
		"-key", "campaign", "spring-2026", "-key", "cbdata", "crm:4711"}, extra...)
}

// metaAuthArgs are the arguments of bic_meta_auth.xml.
func metaAuthArgs(extra ...string) []string {
	return append([]string{"-key", "username", metaDigestUser, "-key", "password", metaPassword}, extra...)
}

// withDigest is the number's digest password in the generated config.
const withDigest = `, digest: {value: "` + metaPassword + `"}`

// TestPolicyBICDigestToMeta: the dialer's call, with the business number
// named by X-WABA headers, reaches the Meta peer, which challenges it like
// Meta (407, realm wa.meta.vc, qop=auth); wagate retries once with
// Proxy-Authorization for the number's credentials, and the call is
// answered and hung up. SIPp 3.6's verifyauth cannot read
// Proxy-Authorization, so the Meta scenario checks its shape and this test
// recomputes the response from the trace (TestPolicyBICDigest401 lets SIPp
// verify it). Neither INVITE toward Meta carries an X-WABA header (the
// Meta scenario fails on one).
func TestPolicyBICDigestToMeta(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{NumberExtra: withDigest})

	meta := e.startSipp(sippSpec{Name: "meta", Scenario: "bic_meta_auth.xml", Peer: e.Meta, Calls: 1})
	dialer := e.runSipp(sippSpec{Name: "dialer", Scenario: "bic_dialer.xml", Peer: e.Dialer, Remote: w.SIPAddr, Calls: 1,
		Args: bicArgs(waUser, phoneNumberID, businessNumber, "-d", "500")})
	meta.requireOK()

	checkAnswer(t, e, dialer)
	invites := checkRetriedInvite(t, meta, "Proxy-Authorization")
	if len(invites) == 2 {
		checkDigest(t, invites[1], "Proxy-Authorization", metaDigestUser, metaPassword)
	}
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}

// TestPolicyBICDigest401: the same with a 401 challenge, which SIPp's
// verifyauth can check (the Meta scenario fails the call otherwise).
func TestPolicyBICDigest401(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{NumberExtra: withDigest})

	meta := e.startSipp(sippSpec{Name: "meta", Scenario: "bic_meta_auth401.xml", Peer: e.Meta, Calls: 1, Args: metaAuthArgs()})
	dialer := e.runSipp(sippSpec{Name: "dialer", Scenario: "bic_dialer.xml", Peer: e.Dialer, Remote: w.SIPAddr, Calls: 1,
		Args: bicArgs(waUser, phoneNumberID, businessNumber, "-d", "300")})
	meta.requireOK()

	checkAnswer(t, e, dialer)
	if logs := strings.Join(meta.logLines(), "\n"); !strings.Contains(logs, "verifyauth true") {
		t.Errorf("Meta's verifyauth did not pass: %q", logs)
	}
	invites := checkRetriedInvite(t, meta, "Authorization")
	if len(invites) == 2 {
		checkDigest(t, invites[1], "Authorization", metaDigestUser, metaPassword)
	}
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}

// checkRetriedInvite checks the two INVITEs Meta got: the second retries
// the first (same Call-ID, CSeq+1) with credentials in header, and neither
// carries an X-WABA header or the password.
func checkRetriedInvite(t *testing.T, meta *sippProc, header string) []sipMsg {
	t.Helper()
	var invites []sipMsg
	for _, m := range meta.messages() {
		if !m.Sent && strings.HasPrefix(m.StartLine(), "INVITE ") {
			invites = append(invites, m)
		}
	}
	if len(invites) != 2 {
		t.Errorf("Meta got %d INVITEs, want 2 (challenged, then with credentials)", len(invites))
		return invites
	}
	if invites[0].Header(header) != "" {
		t.Errorf("the first INVITE already carries %s", header)
	}
	if c1, c2 := invites[0].Header("CSeq"), invites[1].Header("CSeq"); c1 != "1 INVITE" || c2 != "2 INVITE" {
		t.Errorf("CSeq %q then %q, want 1 and 2", c1, c2)
	}
	if invites[0].Header("Call-ID") != invites[1].Header("Call-ID") || invites[0].Header("From") != invites[1].Header("From") {
		t.Errorf("the retried INVITE changed Call-ID or From")
	}
	if invites[0].Header("Via") == invites[1].Header("Via") {
		t.Errorf("the retried INVITE reuses the branch: %s", invites[1].Header("Via"))
	}
	for _, inv := range invites {
		if strings.Contains(inv.Text, metaPassword) {
			t.Errorf("the password itself was sent")
		}
		for _, l := range strings.Split(inv.Text, "\n") {
			if strings.HasPrefix(strings.ToLower(l), "x-waba-") {
				t.Errorf("INVITE toward Meta carries internal header %q", strings.TrimSpace(l))
			}
		}
	}
	return invites
}

var digestParam = regexp.MustCompile(`([a-z]+)=("([^"]*)"|[^", ]+)`)

// checkDigest recomputes the digest response of the credentials in header
// of inv (RFC 7616 §3.4.1, written out here independently of package sip)
// and checks it and the parameters Meta requires.
func checkDigest(t *testing.T, inv sipMsg, header, user, password string) {
	t.Helper()
	v := inv.Header(header)
	p := map[string]string{}
	for _, m := range digestParam.FindAllStringSubmatch(v, -1) {
		val := m[2]
		if strings.HasPrefix(val, `"`) {
			val = m[3]
		}
		p[m[1]] = val
	}
	var newHash func() hash.Hash
	switch p["algorithm"] {
	case "", "MD5":
		newHash = md5.New
	case "SHA-256":
		newHash = sha256.New
	default:
		t.Fatalf("%s: algorithm %q", header, p["algorithm"])
	}
	h := func(parts ...string) string {
		x := newHash()
		x.Write([]byte(strings.Join(parts, ":")))
		return hex.EncodeToString(x.Sum(nil))
	}
	method, _, _ := strings.Cut(inv.StartLine(), " ")
	ruri := strings.Fields(inv.StartLine())[1]
	if p["username"] != user || p["realm"] != "wa.meta.vc" || p["uri"] != ruri || p["qop"] != "auth" || p["nc"] != "00000001" || p["cnonce"] == "" {
		t.Errorf("%s parameters %v (Request-URI %s)", header, p, ruri)
	}
	want := h(h(user, p["realm"], password), p["nonce"], p["nc"], p["cnonce"], p["qop"], h(method, p["uri"]))
	if p["response"] != want {
		t.Errorf("%s response %s, want %s", header, p["response"], want)
	}
}

// TestPolicyUICHeaders: Meta's x-wa-meta-* headers become the X-WABA
// headers of the INVITE to the PBX (the PBX scenario checks each with a
// regexp and fails on any x-wa-meta header or the caller's name).
func TestPolicyUICHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{})

	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uic_waba_pbx.xml", Peer: e.PBX, Calls: 1})
	meta := e.runSipp(sippSpec{Name: "meta", Scenario: "uic_waba_meta.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1,
		Args: callArgs(businessNumber, waUser, "-d", "300")})
	pbx.requireOK()

	checkAnswer(t, e, meta)
	if logs := strings.Join(pbx.logLines(), "\n"); !strings.Contains(logs, "x-waba ok") {
		t.Errorf("the PBX scenario did not log its checks: %q", logs)
	}
	// What Meta gets back carries nothing X-WABA either.
	for _, m := range meta.messages() {
		if m.Sent {
			continue
		}
		for _, l := range strings.Split(m.Text, "\n") {
			if strings.HasPrefix(strings.ToLower(l), "x-waba-") {
				t.Errorf("%s toward Meta carries %q", m.StartLine(), strings.TrimSpace(l))
			}
		}
	}
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}

// TestPolicyScenariosFailClosed runs the checking scenarios SIPp to SIPp,
// without wagate, where their checks must fail: the PBX scenario sees raw
// x-wa-meta headers and no X-WABA ones, the Meta scenario sees X-WABA
// headers. So a pass through wagate means the checks ran and held.
func TestPolicyScenariosFailClosed(t *testing.T) {
	t.Parallel()
	requireSipp(t)
	pairs := []struct {
		name, caller, callee string
		callerArgs           []string
		calleeArgs           []string
	}{
		{"pbx sees x-wa-meta", "uic_waba_meta.xml", "uic_waba_pbx.xml", callArgs(businessNumber, waUser, "-d", "100"), nil},
		{"meta sees x-waba", "bic_dialer.xml", "bic_meta_auth.xml", bicArgs(waUser, phoneNumberID, businessNumber, "-d", "100"), nil},
		{"meta 401 sees x-waba", "bic_dialer.xml", "bic_meta_auth401.xml", bicArgs(waUser, phoneNumberID, businessNumber, "-d", "100"), metaAuthArgs()},
	}
	for _, pc := range pairs {
		t.Run(pc.name, func(t *testing.T) {
			t.Parallel()
			e := makeEnv(t)
			callee := e.startSipp(sippSpec{Name: "callee", Scenario: pc.callee, Peer: e.PBX, Calls: 1, Args: append(pc.calleeArgs, "-timeout", "5s")})
			caller := e.startSipp(sippSpec{Name: "caller", Scenario: pc.caller, Peer: e.Meta, Remote: e.PBX.Addr(), Calls: 1, Args: append(pc.callerArgs, "-timeout", "5s")})
			if err := callee.wait(); err == nil {
				t.Errorf("%s passed SIPp to SIPp; its checks do not bite", pc.callee)
			}
			callee.checked = true
			_ = caller.wait()
			caller.checked = true
		})
	}
}
