package test

import (
	"fmt"
	"strings"
	"testing"
)

// TestTLSBICStaleNonce: Meta's second 407 says stale=true (the nonce it
// gave expired before the INVITE with credentials arrived; the password
// was right): wagate answers the new nonce once (RFC 7616 §3.3) and the
// call goes on; a third challenge is not answered, and the dialer gets 503.
func TestTLSBICStaleNonce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pki := newTestPKI(t, t.TempDir(), e.WagateIP)
	meta := startTLSMeta(t, e, pki.issue(t, "wa.meta.vc"))
	w := e.startWagate(tlsOpts(e, pki, freeTCPPort(t, e.WagateIP)))

	challenge := func(req tlsSIPMsg, nonce string, stale bool) {
		t.Helper()
		v := `Proxy-Authenticate: Digest realm="wa.meta.vc", nonce="` + nonce + `", qop="auth", algorithm=MD5`
		if stale {
			v += ", stale=true"
		}
		meta.reply(req, "407 Proxy Authentication Required", "m407", []string{v}, "")
		meta.expect("ACK of the 407", "ACK ")
	}
	dialer := e.startSipp(sippSpec{Name: "dialer", Scenario: "bic_dialer.xml", Peer: e.Dialer, Remote: w.SIPAddr, Calls: 1,
		Args: bicArgs(waUser, phoneNumberID, businessNumber, "-d", "300")})
	challenge(meta.expect("INVITE", "INVITE "), "nonceOne", false)
	challenge(meta.expect("INVITE with credentials", "INVITE "), "nonceTwo", true)
	inv := meta.expect("INVITE with credentials for the new nonce", "INVITE ")
	if got := inv.Header("CSeq"); got != "3 INVITE" {
		t.Errorf("CSeq %q, want 3 INVITE", got)
	}
	checkDigest(t, inv.sipMsg, "Proxy-Authorization", metaDigestUser, metaPassword)
	if !strings.Contains(inv.Header("Proxy-Authorization"), `nonce="nonceTwo"`) {
		t.Errorf("Proxy-Authorization %q, want the stale challenge's nonce", inv.Header("Proxy-Authorization"))
	}
	meta.reply(inv, "200 OK", "mtag", []string{fmt.Sprintf("Contact: <sip:%s@%s:%d;transport=tls>", waUser, e.Meta.IP, e.Meta.Port)}, metaSDP(e))
	meta.expect("ACK of the 200", "ACK ")
	meta.reply(meta.expect("BYE", "BYE "), "200 OK", "", nil, "")
	dialer.requireOK()

	// Stale again and again: answered once, then the dialer hears 503.
	dialer = e.startSipp(sippSpec{Name: "dialer2", Scenario: "bic_dialer_expect.xml", Peer: e.Dialer, Remote: w.SIPAddr, Calls: 1,
		Args: append(bicArgs(waUser, phoneNumberID, businessNumber), "-key", "expect_code", "503")})
	challenge(meta.expect("INVITE", "INVITE "), "nonceThree", false)
	challenge(meta.expect("INVITE with credentials", "INVITE "), "nonceFour", true)
	challenge(meta.expect("INVITE with credentials for the new nonce", "INVITE "), "nonceFive", true)
	dialer.requireOK()
	s := w.waitIdle()
	w.expectCounts(s, 2, 2)
}
