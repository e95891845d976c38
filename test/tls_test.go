package test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// SIP over TLS, end to end: the real binary with a TLS listener and a TLS
// Meta endpoint, against a Go peer playing Meta (SIPp here has no TLS).
// The certificates come from a CA made for the test; Meta's certificate
// names wa.meta.vc while the peer listens on a 127.0.N.2 address, as in
// production where the endpoint is configured by address or name and the
// certificate is checked against tls_server_name.

// testPKI is a test CA and the files wagate is configured with.
type testPKI struct {
	caCert   *x509.Certificate
	caKey    *ecdsa.PrivateKey
	caFile   string
	certFile string // wagate's listener certificate (its IP and wagate.test)
	keyFile  string
	roots    *x509.CertPool
}

func newTestPKI(t *testing.T, dir, wagateIP string) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "wagate test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{caKey: key, roots: x509.NewCertPool()}
	p.caCert, _ = x509.ParseCertificate(der)
	p.roots.AddCert(p.caCert)
	p.caFile = filepath.Join(dir, "ca.pem")
	writePEM(t, p.caFile, "CERTIFICATE", der)
	cert := p.issue(t, "wagate.test", wagateIP)
	p.certFile, p.keyFile = filepath.Join(dir, "wagate.crt"), filepath.Join(dir, "wagate.key")
	writePEM(t, p.certFile, "CERTIFICATE", cert.Certificate[0])
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, p.keyFile, "PRIVATE KEY", keyDER)
	return p
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

var certSerial struct {
	sync.Mutex
	n int64
}

// issue makes a server certificate for names (DNS names or IPs), valid
// for a day.
func (p *testPKI) issue(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	return p.issueUntil(t, time.Now().Add(24*time.Hour), names...)
}

// issueUntil is issue with the certificate's expiry.
func (p *testPKI) issueUntil(t *testing.T, notAfter time.Time, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	certSerial.Lock()
	certSerial.n++
	serialN := certSerial.n + 100
	certSerial.Unlock()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serialN),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tlsOpts configures wagate with a TLS listener on tlsPort and the meta
// endpoint over TLS, trusting the test CA.
func tlsOpts(e *env, p *testPKI, tlsPort int) wagateOpts {
	return wagateOpts{
		ListenExtra: fmt.Sprintf("\n    - {transport: tls, address: \"%s:%d\", cert_file: %q, key_file: %q}",
			e.WagateIP, tlsPort, p.certFile, p.keyFile),
		MetaTransport: "tls",
		MetaExtra:     fmt.Sprintf(", ca_file: %q, tls_server_name: wa.meta.vc", p.caFile),
		NumberExtra:   withDigest,
	}
}

// ---------------------------------------------------------------------------
// A SIP-over-TLS peer

// tlsSIPMsg is one message the peer read, and the connection it came on.
type tlsSIPMsg struct {
	sipMsg
	conn *tlsConn
}

// tlsConn is one TLS connection carrying SIP, either way.
type tlsConn struct {
	c  *tls.Conn
	mu sync.Mutex
}

func (c *tlsConn) write(t *testing.T, msg string) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c.c, msg); err != nil {
		t.Errorf("TLS write: %v", err)
	}
}

// readSIP reads SIP messages from a TLS connection until it fails, passing
// each on.
func readSIP(c *tlsConn, out chan<- tlsSIPMsg) {
	readSIPStream(c.c, func(m sipMsg) { out <- tlsSIPMsg{sipMsg: m, conn: c} })
}

// readSIPStream reads SIP messages from a stream (TLS or TCP) until it fails,
// framing each by its Content-Length, and passes each to emit.
func readSIPStream(rd io.Reader, emit func(sipMsg)) {
	r := bufio.NewReader(rd)
	for {
		var head strings.Builder
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if head.Len() == 0 && strings.TrimSpace(line) == "" {
				continue // keep-alive CRLFs between messages
			}
			head.WriteString(line)
			if line == "\r\n" || line == "\n" {
				break
			}
		}
		m := sipMsg{Text: strings.ReplaceAll(head.String(), "\r\n", "\n")}
		n, _ := strconv.Atoi(m.Header("Content-Length"))
		if n == 0 {
			n, _ = strconv.Atoi(m.Header("l"))
		}
		if n < 0 || n > 1<<20 {
			return // not framed by anything a test peer can trust
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		m.Text = strings.TrimRight(m.Text, "\n") + "\n\n" + strings.ReplaceAll(string(body), "\r\n", "\n")
		emit(m)
	}
}

// tlsMeta is the Go peer playing Meta: it listens for TLS on the meta
// endpoint's address with a certificate for wa.meta.vc, and can dial
// wagate's TLS listener from the same IP.
type tlsMeta struct {
	t      *testing.T
	ln     net.Listener
	in     chan tlsSIPMsg
	mu     sync.Mutex
	alpn   [][]string // ALPN values offered by each client hello
	hsErrs []error
}

func startTLSMeta(t *testing.T, e *env, cert tls.Certificate) *tlsMeta {
	t.Helper()
	m := &tlsMeta{t: t, in: make(chan tlsSIPMsg, 64)}
	conf := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			m.mu.Lock()
			m.alpn = append(m.alpn, h.SupportedProtos)
			m.mu.Unlock()
			return nil, nil
		},
	}
	ln, err := tls.Listen("tcp4", e.Meta.Addr(), conf)
	if err != nil {
		t.Fatalf("meta TLS listener: %v", err)
	}
	m.ln = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			go func() {
				_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
				if err := tc.Handshake(); err != nil {
					m.mu.Lock()
					m.hsErrs = append(m.hsErrs, err)
					m.mu.Unlock()
					tc.Close()
					return
				}
				_ = tc.SetDeadline(time.Time{})
				readSIP(&tlsConn{c: tc}, m.in)
				tc.Close()
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return m
}

// dial connects to wagate's TLS listener from the Meta IP, verifying
// wagate's certificate for its IP against the test CA.
func (m *tlsMeta) dial(e *env, p *testPKI, addr string) *tlsConn {
	m.t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(e.Meta.IP)}, Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp4", addr, &tls.Config{RootCAs: p.roots, ServerName: e.WagateIP, MinVersion: tls.VersionTLS12})
	if err != nil {
		m.t.Fatalf("TLS to wagate: %v", err)
	}
	tc := &tlsConn{c: c}
	go readSIP(tc, m.in)
	m.t.Cleanup(func() { c.Close() })
	return tc
}

// next returns the next message that is not a 100, or fails after 10 s.
func (m *tlsMeta) next(what string) tlsSIPMsg {
	m.t.Helper()
	for {
		select {
		case msg := <-m.in:
			if strings.HasPrefix(msg.StartLine(), "SIP/2.0 100") {
				continue
			}
			return msg
		case <-time.After(10 * time.Second):
			m.t.Fatalf("Meta peer: no %s within 10s", what)
			return tlsSIPMsg{}
		}
	}
}

func (m *tlsMeta) expect(what, prefix string) tlsSIPMsg {
	m.t.Helper()
	msg := m.next(what)
	if !strings.HasPrefix(msg.StartLine(), prefix) {
		m.t.Fatalf("Meta peer: got %q, want %s\n%s", msg.StartLine(), what, msg.Text)
	}
	return msg
}

// reply answers req on its connection.
func (m *tlsMeta) reply(req tlsSIPMsg, status, toTag string, extra []string, body string) {
	m.t.Helper()
	var b strings.Builder
	b.WriteString("SIP/2.0 " + status + "\r\n")
	for _, v := range req.Headers("Via") {
		b.WriteString("Via: " + v + "\r\n")
	}
	b.WriteString("From: " + req.Header("From") + "\r\n")
	to := req.Header("To")
	if toTag != "" && !strings.Contains(to, ";tag=") {
		to += ";tag=" + toTag
	}
	b.WriteString("To: " + to + "\r\n")
	b.WriteString("Call-ID: " + req.Header("Call-ID") + "\r\n")
	b.WriteString("CSeq: " + req.Header("CSeq") + "\r\n")
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	if body != "" {
		b.WriteString("Content-Type: application/sdp\r\n")
	}
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	req.conn.write(m.t, b.String())
}

func (m *tlsMeta) offeredALPN() [][]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([][]string(nil), m.alpn...)
}

func (m *tlsMeta) handshakeErrors() []error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]error(nil), m.hsErrs...)
}

func metaSDP(e *env) string {
	return "v=0\r\no=- 1 1 IN IP4 " + e.Meta.IP + "\r\ns=-\r\nc=IN IP4 " + e.Meta.IP + "\r\nt=0 0\r\n" +
		"m=audio " + strconv.Itoa(e.Meta.MediaPort) + " RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n"
}

// ---------------------------------------------------------------------------

// TestTLSUIC: Meta calls over TLS: the INVITE arrives on wagate's TLS
// listener, is answered on the same connection with a Contact that says
// transport=tls, reaches the PBX with its X-WABA headers; when the agent
// hangs up, wagate's BYE goes to Meta over TLS following Meta's
// Record-Route (a new connection, whose certificate wagate checks against
// ca_file and tls_server_name).
func TestTLSUIC(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pki := newTestPKI(t, t.TempDir(), e.WagateIP)
	tlsPort := freeTCPPort(t, e.WagateIP)
	meta := startTLSMeta(t, e, pki.issue(t, "wa.meta.vc"))
	w := e.startWagate(tlsOpts(e, pki, tlsPort))
	waitBound(t, "wagate", "tcp", e.WagateIP, tlsPort, w.exited)

	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas_bye.xml", Peer: e.PBX, Calls: 1, Args: []string{"-d", "700"}})
	conn := meta.dial(e, pki, net.JoinHostPort(e.WagateIP, strconv.Itoa(tlsPort)))

	metaURI := fmt.Sprintf("sip:%s:%d;transport=tls", e.Meta.IP, e.Meta.Port)
	const wacid = "wacid.HBgLTLSTESTMTU1NTAxMDAwMDEVAgARGCA="
	sdp := metaSDP(e)
	inv := fmt.Sprintf("INVITE sip:%s@%s:%d;transport=tls SIP/2.0\r\n"+
		"Via: SIP/2.0/TLS %s:%d;branch=z9hG4bK-tls1\r\n"+
		"Record-Route: <%s;lr>\r\n"+
		"From: <sip:%s@wa.meta.vc>;tag=meta1\r\n"+
		"To: <sip:%s@%s>\r\n"+
		"Call-ID: outgoing:%s\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"+
		"Contact: <sip:%s@%s:%d;transport=tls>\r\n"+
		"x-wa-meta-wacid: %s\r\n"+
		"Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		businessNumber, e.WagateIP, tlsPort, e.Meta.IP, e.Meta.Port, metaURI, waUser, businessNumber, e.WagateIP,
		wacid, waUser, e.Meta.IP, e.Meta.Port, wacid, len(sdp), sdp)
	conn.write(t, inv)

	var ok200 tlsSIPMsg
	for ok200.Text == "" {
		m := meta.next("200 to the INVITE")
		switch {
		case strings.HasPrefix(m.StartLine(), "SIP/2.0 180"):
		case strings.HasPrefix(m.StartLine(), "SIP/2.0 200"):
			ok200 = m
		default:
			t.Fatalf("got %q, want 180/200\n%s", m.StartLine(), m.Text)
		}
	}
	if m := ok200.conn; m != conn {
		t.Errorf("the 200 came on another connection than the INVITE")
	}
	contact := ok200.Header("Contact")
	wantContact := fmt.Sprintf("%s:%d;transport=tls", e.WagateIP, tlsPort)
	if !strings.Contains(contact, wantContact) {
		t.Errorf("Contact %q toward Meta, want one ending in %s", contact, wantContact)
	}
	if ip, _, _, err := sdpAudio(ok200.Body()); err != nil || ip != e.WagateIP {
		t.Errorf("200 SDP: %v %s", err, ip)
	}
	ack := fmt.Sprintf("ACK sip:wagate@%s SIP/2.0\r\nVia: SIP/2.0/TLS %s:%d;branch=z9hG4bK-tls2\r\nFrom: <sip:%s@wa.meta.vc>;tag=meta1\r\nTo: %s\r\nCall-ID: outgoing:%s\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
		wantContact, e.Meta.IP, e.Meta.Port, waUser, ok200.Header("To"), wacid)
	conn.write(t, ack)

	// The agent hangs up: wagate's BYE follows Meta's Record-Route.
	bye := meta.expect("BYE from wagate", "BYE ")
	if want := fmt.Sprintf("BYE sip:%s@%s:%d;transport=tls SIP/2.0", waUser, e.Meta.IP, e.Meta.Port); bye.StartLine() != want {
		t.Errorf("BYE request line %q, want %q", bye.StartLine(), want)
	}
	if r := bye.Header("Route"); !strings.Contains(r, metaURI) {
		t.Errorf("BYE Route %q, want Meta's Record-Route %s", r, metaURI)
	}
	if v := bye.Header("Via"); !strings.HasPrefix(v, "SIP/2.0/TLS ") {
		t.Errorf("BYE Via %q, want TLS", v)
	}
	meta.reply(bye, "200 OK", "", nil, "")
	pbx.requireOK()

	inv2, ok := findMsg(pbx.messages(), false, "INVITE ")
	if !ok {
		t.Fatal("the PBX got no INVITE")
	}
	if got := inv2.Header("X-WABA-Call-ID"); got != wacid {
		t.Errorf("X-WABA-Call-ID %q, want %q", got, wacid)
	}
	for _, alpn := range meta.offeredALPN() {
		if len(alpn) != 0 {
			t.Errorf("wagate offered ALPN %v (Meta rejects \"sip\")", alpn)
		}
	}
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}

// TestTLSBIC: the dialer's call goes to Meta over TLS: Request-URI
// sip:+<user>@wa.meta.vc;transport=tls sent to the configured address,
// From sip:+<business>@<sip.host>, the certificate checked for
// wa.meta.vc; Meta challenges with SHA-256, wagate answers once; after the
// 200 the ACK and the BYE go over TLS following Meta's Record-Route.
func TestTLSBIC(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pki := newTestPKI(t, t.TempDir(), e.WagateIP)
	meta := startTLSMeta(t, e, pki.issue(t, "wa.meta.vc"))
	w := e.startWagate(tlsOpts(e, pki, freeTCPPort(t, e.WagateIP)))

	dialer := e.startSipp(sippSpec{Name: "dialer", Scenario: "bic_dialer.xml", Peer: e.Dialer, Remote: w.SIPAddr, Calls: 1,
		Args: bicArgs(waUser, phoneNumberID, businessNumber, "-d", "500")})

	inv := meta.expect("INVITE", "INVITE ")
	if want := "INVITE sip:" + waUser + "@wa.meta.vc;transport=tls SIP/2.0"; inv.StartLine() != want {
		t.Errorf("request line %q, want %q", inv.StartLine(), want)
	}
	if from := inv.Header("From"); !strings.Contains(from, "<sip:"+businessNumber+"@"+e.WagateIP+">") {
		t.Errorf("From %q, want sip:%s@%s", from, businessNumber, e.WagateIP)
	}
	if to := inv.Header("To"); !strings.Contains(to, "<sip:"+waUser+"@wa.meta.vc>") {
		t.Errorf("To %q", to)
	}
	if v := inv.Header("Via"); !strings.HasPrefix(v, "SIP/2.0/TLS ") {
		t.Errorf("Via %q, want TLS", v)
	}
	if c := inv.Header("Contact"); !strings.Contains(c, "transport=tls") {
		t.Errorf("Contact %q, want transport=tls", c)
	}
	for _, l := range strings.Split(inv.Text, "\n") {
		if strings.HasPrefix(strings.ToLower(l), "x-waba-") {
			t.Errorf("INVITE toward Meta carries %q", l)
		}
	}
	meta.reply(inv, "407 Proxy Authentication Required", "m407", []string{
		`Proxy-Authenticate: Digest realm="wa.meta.vc", nonce="tlsNonce123", qop="auth", algorithm=SHA-256`,
	}, "")
	meta.expect("ACK of the 407", "ACK ")
	inv2 := meta.expect("INVITE with credentials", "INVITE ")
	if inv2.Header("CSeq") != "2 INVITE" || inv2.Header("Call-ID") != inv.Header("Call-ID") {
		t.Errorf("retried INVITE: CSeq %q Call-ID %q", inv2.Header("CSeq"), inv2.Header("Call-ID"))
	}
	checkDigest(t, inv2.sipMsg, "Proxy-Authorization", metaDigestUser, metaPassword)
	if !strings.Contains(inv2.Header("Proxy-Authorization"), "algorithm=SHA-256") {
		t.Errorf("Proxy-Authorization %q, want SHA-256", inv2.Header("Proxy-Authorization"))
	}
	metaRoute := fmt.Sprintf("<sip:%s:%d;transport=tls;lr>", e.Meta.IP, e.Meta.Port)
	metaContact := fmt.Sprintf("<sip:%s@%s:%d;transport=tls>", waUser, e.Meta.IP, e.Meta.Port)
	meta.reply(inv2, "180 Ringing", "mtag", nil, "")
	meta.reply(inv2, "200 OK", "mtag", []string{"Record-Route: " + metaRoute, "Contact: " + metaContact}, metaSDP(e))
	ack := meta.expect("ACK of the 200", "ACK ")
	if r := ack.Header("Route"); r != metaRoute {
		t.Errorf("ACK Route %q, want %s", r, metaRoute)
	}
	// RFC 3261 §13.2.2.4: the ACK of a 2xx carries the INVITE's credentials.
	if got, want := ack.Header("Proxy-Authorization"), inv2.Header("Proxy-Authorization"); got != want {
		t.Errorf("ACK Proxy-Authorization %q, want the INVITE's %q", got, want)
	}
	bye := meta.expect("BYE", "BYE ")
	if want := fmt.Sprintf("BYE sip:%s@%s:%d;transport=tls SIP/2.0", waUser, e.Meta.IP, e.Meta.Port); bye.StartLine() != want {
		t.Errorf("BYE request line %q, want %q", bye.StartLine(), want)
	}
	if r := bye.Header("Route"); r != metaRoute {
		t.Errorf("BYE Route %q, want %s", r, metaRoute)
	}
	if n, _ := strconv.Atoi(strings.Fields(bye.Header("CSeq"))[0]); n <= 2 {
		t.Errorf("BYE CSeq %q, want above the INVITE's 2", bye.Header("CSeq"))
	}
	meta.reply(bye, "200 OK", "", nil, "")
	dialer.requireOK()
	checkAnswer(t, e, dialer)

	for _, alpn := range meta.offeredALPN() {
		if len(alpn) != 0 {
			t.Errorf("wagate offered ALPN %v (Meta rejects \"sip\")", alpn)
		}
	}
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}

// TestTLSBICWrongCertificate: a peer at Meta's address whose certificate
// is not for wa.meta.vc (or not from the configured CA) gets no INVITE:
// the handshake fails and the dialer gets 503.
func TestTLSBICWrongCertificate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cert func(p, other *testPKI, t *testing.T) tls.Certificate
	}{
		{"certificate for another name", func(p, _ *testPKI, t *testing.T) tls.Certificate { return p.issue(t, "evil.example") }},
		{"certificate for the address only", func(p, _ *testPKI, t *testing.T) tls.Certificate { return p.issue(t, "127.0.0.1") }},
		{"certificate from another CA", func(_, other *testPKI, t *testing.T) tls.Certificate { return other.issue(t, "wa.meta.vc") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			dir := t.TempDir()
			pki := newTestPKI(t, dir, e.WagateIP)
			other := newTestPKI(t, t.TempDir(), e.WagateIP)
			meta := startTLSMeta(t, e, tc.cert(pki, other, t))
			w := e.startWagate(tlsOpts(e, pki, freeTCPPort(t, e.WagateIP)))

			e.runSipp(sippSpec{Name: "dialer", Scenario: "bic_dialer_expect.xml", Peer: e.Dialer, Remote: w.SIPAddr, Calls: 1,
				Args: append(bicArgs(waUser, phoneNumberID, businessNumber), "-key", "expect_code", "503")})
			select {
			case m := <-meta.in:
				t.Errorf("the peer got a message over an unverified connection:\n%s", m.Text)
			default:
			}
			if len(meta.handshakeErrors()) == 0 {
				t.Errorf("no TLS handshake was attempted (or it succeeded)")
			}
			s := w.waitIdle()
			w.expectCounts(s, 1, 1)
		})
	}
}

// TestTLSCertificateReload: the listener's certificate expiry is a
// metric, and a SIGHUP after a renewal that keeps the file names (as
// certbot does) serves the new certificate, says so in the log, and moves
// the metric, although no config key changed.
func TestTLSCertificateReload(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pki := newTestPKI(t, t.TempDir(), e.WagateIP)
	tlsPort := freeTCPPort(t, e.WagateIP)
	w := e.startWagate(wagateOpts{APIExtra: ", token: {value: t}", ListenExtra: fmt.Sprintf("\n    - {transport: tls, address: \"%s:%d\", cert_file: %q, key_file: %q}",
		e.WagateIP, tlsPort, pki.certFile, pki.keyFile)})
	waitBound(t, "wagate", "tcp", e.WagateIP, tlsPort, w.exited)
	listener := fmt.Sprintf(`listener="%s:%d"`, e.WagateIP, tlsPort)
	expiry := func() time.Time {
		v, ok := metricValue(scrapeMetrics(t, e), "wagate_tls_certificate_expiry_timestamp_seconds", listener)
		if !ok {
			t.Fatalf("no wagate_tls_certificate_expiry_timestamp_seconds{%s}", listener)
		}
		return time.Unix(int64(v), 0)
	}
	if got := expiry(); got.Before(time.Now().Add(23*time.Hour)) || got.After(time.Now().Add(25*time.Hour)) {
		t.Errorf("expiry of the day-long certificate: %v", got)
	}

	until := time.Now().Add(90 * 24 * time.Hour).Truncate(time.Second)
	renewed := pki.issueUntil(t, until, "renewed.test", e.WagateIP)
	writePEM(t, pki.certFile, "CERTIFICATE", renewed.Certificate[0])
	keyDER, err := x509.MarshalPKCS8PrivateKey(renewed.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, pki.keyFile, "PRIVATE KEY", keyDER)
	skip := len(w.logLines())
	w.hup()
	if l := w.waitLogMsg("TLS certificate reloaded", skip); !strings.Contains(l.str("subject"), "renewed.test") {
		t.Errorf("reload line: %v", l)
	}
	if l := w.waitLogMsg("config reloaded", skip); l.str("changed") != "(nothing)" {
		t.Errorf("changed = %q", l.str("changed"))
	}
	if got := expiry(); !got.Equal(until) {
		t.Errorf("expiry after the renewal: %v, want %v", got, until)
	}
	// From an endpoint's address: a stranger's connection is closed at accept.
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(e.Meta.IP)}}
	c, err := tls.DialWithDialer(d, "tcp", net.JoinHostPort(e.WagateIP, strconv.Itoa(tlsPort)),
		&tls.Config{RootCAs: pki.roots, ServerName: "renewed.test"})
	if err != nil {
		t.Fatalf("a client of renewed.test after the reload: %v", err)
	}
	c.Close()
}
