package test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestTLSMetaUDPOnlyFromProxy: Meta signals over TLS only, and a UDP
// source anyone can forge. With Meta's endpoint on transport tls, a UIC
// INVITE over UDP from Meta's address (its source_cidrs) rings no agent
// and is counted as wrong_transport; the same INVITE from the endpoint's
// proxy_cidrs (a Kamailio forwarding Meta's requests) rings the agent.
// Before proxy_cidrs the forged INVITE started a call.
func TestTLSMetaUDPOnlyFromProxy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pki := newTestPKI(t, t.TempDir(), e.WagateIP)
	o := tlsOpts(e, pki, freeTCPPort(t, e.WagateIP))
	proxyIP := e.ip(5)
	o.MetaProxyCIDRs = proxyIP + "/32"
	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas_486.xml", Peer: e.PBX, Calls: 1})
	w := e.startWagate(o)

	forged := newRawPeer(t, e.Meta.IP, w)
	if _, err := forged.conn.WriteToUDP([]byte(metaUDPInvite(e, forged, "forged")), forged.to); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second) // a wait for either outcome, not a timing
	var s status
	for s = w.status(); s.CallsStarted == 0 && s.Edge.Refused["wrong_transport"] == 0 && time.Now().Before(deadline); s = w.status() {
		time.Sleep(50 * time.Millisecond)
	}
	if s.CallsStarted != 0 {
		t.Fatalf("a UDP INVITE from Meta's address started a call (calls_started %d); Meta's endpoint is on TLS", s.CallsStarted)
	}
	if n, _ := metricValue(scrapeMetrics(t, e), "wagate_sip_edge_refused_total", `reason="wrong_transport"`); n != 1 {
		t.Errorf("wagate_sip_edge_refused_total{reason=\"wrong_transport\"} = %v, want 1 (refused: %v)", n, s.Edge.Refused)
	}

	proxy := newRawPeer(t, proxyIP, w)
	inv := metaUDPInvite(e, proxy, "proxied")
	res := proxy.exchangeMsg(inv, replyLimit)
	if !strings.HasPrefix(res, "SIP/2.0 486") {
		line, _, _ := strings.Cut(res, "\r\n")
		t.Fatalf("the INVITE from the proxy got %q, want the agent's 486", line)
	}
	ack := fmt.Sprintf("ACK sip:%s@%s SIP/2.0\r\nVia: %s\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
		businessNumber, w.SIPAddr, headerOf(inv, "Via"), headerOf(inv, "From"), headerOf(res, "To"), headerOf(inv, "Call-ID"))
	if _, err := proxy.conn.WriteToUDP([]byte(ack), proxy.to); err != nil {
		t.Fatal(err)
	}
	pbx.requireOK()
	w.expectCounts(w.waitIdle(), 1, 1)
}

// metaUDPInvite is Meta's UIC INVITE as p sends it over UDP.
func metaUDPInvite(e *env, p *rawPeer, id string) string {
	sdp := metaSDP(e)
	return fmt.Sprintf("INVITE sip:%s@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-%s\r\n"+
		"From: <sip:%s@wa.meta.vc>;tag=%s\r\nTo: <sip:%s@%s>\r\nCall-ID: outgoing:wacid.%s\r\nCSeq: 1 INVITE\r\n"+
		"Max-Forwards: 70\r\nContact: <sip:%s@%s>\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		businessNumber, p.to, p.local(), id, waUser, id, businessNumber, e.WagateIP, strings.ToUpper(id), waUser, p.local(), len(sdp), sdp)
}

// TestTLSMetaPrivateSourceWarned: a private address in the source_cidrs
// of Meta's endpoint on TLS is most likely Kamailio's META_SOCK from
// before proxy_cidrs, whose forwarded calls are now dropped: wagate
// -check-config prints a warning naming the key and proxy_cidrs, and
// wagate says it at start, before any call is lost.
func TestTLSMetaPrivateSourceWarned(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pki := newTestPKI(t, t.TempDir(), e.WagateIP)
	o := tlsOpts(e, pki, freeTCPPort(t, e.WagateIP))
	o.MetaCIDRs = ", 10.0.0.5/32"
	code, out := checkConfig(t, e.writeConfig(o))
	if code != 0 || !strings.Contains(out, "warning: ") || !strings.Contains(out, "endpoints[0].source_cidrs[1]: 10.0.0.5/32 is a private network") ||
		!strings.Contains(out, "move it to proxy_cidrs") {
		t.Errorf("wagate -check-config: exit %d, want 0 with a warning on endpoints[0].source_cidrs[1] naming proxy_cidrs:\n%s", code, out)
	}
	w := e.startWagate(o)
	if l := w.waitLogMsg("config: likely a mistake", 0); l.str("key") != "endpoints[0].source_cidrs[1]" || l.str("level") != "WARN" {
		t.Errorf("start-up advice: key %q level %q, want endpoints[0].source_cidrs[1] at WARN", l.str("key"), l.str("level"))
	}
}
