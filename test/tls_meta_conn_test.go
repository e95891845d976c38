package test

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
)

// The TLS connection toward Meta during a business-initiated call: Meta
// may send its in-dialog requests on the connection wagate dialled, or,
// when that connection broke, on a new one to wagate's TLS listener; and
// wagate's own BYE must reach Meta after the connection it dialled broke.

// bicUpOverTLS places a BIC over TLS (the dialer waits for the BYE when
// waitBye) and answers it as Meta; it returns the INVITE Meta got (on the
// connection wagate dialled) and Meta's To tag.
func bicUpOverTLS(t *testing.T, e *env, w *wagate, meta *tlsMeta, scenario string, args []string) (*sippProc, tlsSIPMsg) {
	t.Helper()
	dialer := e.startSipp(sippSpec{Name: "dialer", Scenario: scenario, Peer: e.Dialer, Remote: w.SIPAddr, Calls: 1, Args: args})
	inv := meta.expect("INVITE", "INVITE ")
	metaRoute := fmt.Sprintf("<sip:%s:%d;transport=tls;lr>", e.Meta.IP, e.Meta.Port)
	metaContact := fmt.Sprintf("<sip:%s@%s:%d;transport=tls>", waUser, e.Meta.IP, e.Meta.Port)
	meta.reply(inv, "200 OK", "mtag", []string{"Record-Route: " + metaRoute, "Contact: " + metaContact}, metaSDP(e))
	meta.expect("ACK of the 200", "ACK ")
	// The dialer has its 200 before Meta hangs up (a BYE before that is
	// a call that ended before its answer: 503 for the dialer).
	w.waitLogMsg("call answered", 0)
	return dialer, inv
}

// metaBye is Meta's BYE for the dialog the INVITE inv opened (Meta's To
// tag mtag), sent to wagate's Contact.
func metaBye(e *env, inv tlsSIPMsg, branch string) string {
	contact := inv.Header("Contact")
	uri := strings.TrimSuffix(strings.TrimPrefix(contact[strings.Index(contact, "<"):], "<"), ">")
	if i := strings.Index(uri, ">"); i >= 0 {
		uri = uri[:i]
	}
	return fmt.Sprintf("BYE %s SIP/2.0\r\nVia: SIP/2.0/TLS %s:%d;branch=z9hG4bK-%s\r\n"+
		"From: %s;tag=mtag\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 10 BYE\r\nMax-Forwards: 70\r\n"+
		"x-wa-meta-call-duration: 1\r\nContent-Length: 0\r\n\r\n",
		uri, e.Meta.IP, e.Meta.Port, branch, inv.Header("To"), inv.Header("From"), inv.Header("Call-ID"))
}

// TestTLSMetaConnection: Meta's BYE on the connection wagate dialled; on a
// new connection after that one broke; and wagate's BYE after it broke.
func TestTLSMetaConnection(t *testing.T) {
	t.Parallel()
	for _, tc := range []string{"bye on the dialled connection", "bye on a new connection", "wagate's bye after the connection broke",
		"closed under the invite", "closed while ringing"} {
		t.Run(tc, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			pki := newTestPKI(t, t.TempDir(), e.WagateIP)
			tlsPort := freeTCPPort(t, e.WagateIP)
			meta := startTLSMeta(t, e, pki.issue(t, "wa.meta.vc"))
			w := e.startWagate(tlsOpts(e, pki, tlsPort))
			waitBound(t, "wagate", "tcp", e.WagateIP, tlsPort, w.exited)

			switch tc {
			case "closed under the invite", "closed while ringing":
				// Meta's end of the connection goes away before it
				// answers: the dialer hears 503 at once (a transport
				// error), not 408 after Timer B's 32 s nor 480 after
				// the ring timeout.
				dialer := e.startSipp(sippSpec{Name: "dialer", Scenario: "bic_dialer_expect.xml", Peer: e.Dialer, Remote: w.SIPAddr, Calls: 1,
					Args: append(bicArgs(waUser, phoneNumberID, businessNumber), "-key", "expect_code", "503")})
				inv := meta.expect("INVITE", "INVITE ")
				if tc == "closed while ringing" {
					meta.reply(inv, "180 Ringing", "mtag", nil, "")
				}
				inv.conn.c.Close()
				dialer.requireOK()
			case "wagate's bye after the connection broke":
				dialer, inv := bicUpOverTLS(t, e, w, meta, "bic_dialer.xml", bicArgs(waUser, phoneNumberID, businessNumber, "-d", "1500"))
				inv.conn.c.Close()
				bye := meta.expect("BYE from wagate on a new connection", "BYE ")
				if bye.conn == inv.conn {
					t.Errorf("the BYE came on the closed connection")
				}
				meta.reply(bye, "200 OK", "", nil, "")
				dialer.requireOK()
			default:
				dialer, inv := bicUpOverTLS(t, e, w, meta, "uac_wait_bye.xml", callArgs(waUser, businessNumber))
				conn := inv.conn
				if tc == "bye on a new connection" {
					inv.conn.c.Close()
					conn = meta.dial(e, pki, net.JoinHostPort(e.WagateIP, strconv.Itoa(tlsPort)))
				}
				conn.write(t, metaBye(e, inv, "bye1"))
				ok := meta.expect("200 to Meta's BYE", "SIP/2.0 ")
				if !strings.HasPrefix(ok.StartLine(), "SIP/2.0 200") {
					t.Errorf("Meta's BYE got %q, want 200", ok.StartLine())
				}
				if ok.conn != conn {
					t.Errorf("the 200 to Meta's BYE came on another connection")
				}
				dialer.requireOK()
			}
			s := w.waitIdle()
			w.expectCounts(s, 1, 1)
		})
	}
}

// TestTLSUICConnectionClosedWhileRinging: Meta's TLS connection that
// carried a UIC INVITE closes while the agent's phone rings. The 200 could
// never reach Meta (a response goes on the INVITE's connection), so the
// agent's INVITE is cancelled at once instead of ringing on until the ring
// timeout, or being answered by an agent who would get a BYE at once.
func TestTLSUICConnectionClosedWhileRinging(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pki := newTestPKI(t, t.TempDir(), e.WagateIP)
	tlsPort := freeTCPPort(t, e.WagateIP)
	meta := startTLSMeta(t, e, pki.issue(t, "wa.meta.vc"))
	w := e.startWagate(tlsOpts(e, pki, tlsPort))
	waitBound(t, "wagate", "tcp", e.WagateIP, tlsPort, w.exited)

	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas_ring.xml", Peer: e.PBX, Calls: 1})
	conn := meta.dial(e, pki, net.JoinHostPort(e.WagateIP, strconv.Itoa(tlsPort)))
	sdp := metaSDP(e)
	conn.write(t, fmt.Sprintf("INVITE sip:%s@%s:%d;transport=tls SIP/2.0\r\n"+
		"Via: SIP/2.0/TLS %s:%d;branch=z9hG4bK-uicclose\r\n"+
		"From: <sip:%s@wa.meta.vc>;tag=meta1\r\nTo: <sip:%s@%s>\r\n"+
		"Call-ID: outgoing:wacid.UICCLOSE\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"+
		"Contact: <sip:%s@%s:%d;transport=tls>\r\n"+
		"Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		businessNumber, e.WagateIP, tlsPort, e.Meta.IP, e.Meta.Port, waUser, businessNumber, e.WagateIP,
		waUser, e.Meta.IP, e.Meta.Port, len(sdp), sdp))
	meta.expect("180 from the agent", "SIP/2.0 180")
	conn.c.Close()
	pbx.requireOK() // the agent's INVITE was cancelled
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}
