package sip

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
)

// authYAML is a config whose dialer endpoint demands digest authentication.
const authYAML = `
sip:
  listen: [{transport: udp, address: "127.0.0.1:5072"}]
  host: 127.0.0.1
endpoints:
  - {name: meta, kind: whatsapp, host: 127.0.0.2, port: 5060, transport: udp, media_encryption: none, source_cidrs: [127.0.0.2/32]}
  - {name: pbx, kind: pbx, host: 127.0.0.3, port: 5060, transport: udp, source_cidrs: [127.0.0.3/32]}
  - name: dialer
    kind: dialer
    host: 127.0.0.4
    port: 5060
    transport: udp
    source_cidrs: [127.0.0.4/32]
    auth:
      realm: wagate.test
      users: [{username: dialer1, password: s3cret}, {username: dialer2, password: other}]
      nonce_ttl: 1m
      max_failures: 3
      failure_window: 1m
numbers:
  - {number: "+15550100001", phone_number_id: "100000000000001", route: {endpoint: pbx, user: "1001"}, dialers: [dialer], callback_permission: true, digest: {value: metapass}}
`

func parseConfig(t testing.TB, yaml string) *configs.Config {
	t.Helper()
	cfg, err := configs.Parse([]byte(yaml), "test.yaml")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// fakeClock is a settable time source.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

const testRURI = "sip:+447700900123@127.0.0.1:5072"

// credentials answers a challenge value for user/password the way a
// client would, with the given algorithm; mut may change the parameters
// before they are written.
func credentials(t testing.TB, chal, user, password, method, uri string, alg digestAlg, cnonce string, mut func(map[string]string)) string {
	t.Helper()
	p, err := parseDigest(chal)
	if err != nil {
		t.Fatalf("challenge %q: %v", chal, err)
	}
	in := digestInput{alg: alg, username: user, realm: p["realm"], password: password, method: method, uri: uri,
		nonce: p["nonce"], nc: "00000001", cnonce: cnonce, qop: "auth"}
	vals := map[string]string{
		"username": user, "realm": p["realm"], "nonce": p["nonce"], "uri": uri,
		"response": in.response(), "algorithm": alg.name, "cnonce": cnonce, "qop": "auth", "nc": "00000001",
	}
	if mut != nil {
		mut(vals)
	}
	var params []digestParam
	for _, k := range []string{"username", "realm", "nonce", "uri", "response", "algorithm", "cnonce", "qop", "nc"} {
		if v, ok := vals[k]; ok {
			params = append(params, digestParam{k, v, k != "algorithm" && k != "qop" && k != "nc"})
		}
	}
	v, ok := formatDigest(params)
	if !ok {
		t.Fatalf("credentials not writable: %v", vals)
	}
	return v
}

func authInvite(t testing.TB, hdrs ...string) *sip.Request {
	t.Helper()
	raw := "INVITE " + testRURI + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.4:5060;branch=z9hG4bK1\r\n" +
		"From: <sip:+15550100001@127.0.0.4>;tag=1\r\n" +
		"To: <" + testRURI + ">\r\n" +
		"Call-ID: c1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
	for _, h := range hdrs {
		raw += h + "\r\n"
	}
	raw += "Content-Length: 0\r\n\r\n"
	return parseReq(t, raw)
}

func newTestDigestServer() (*digestServer, *fakeClock) {
	d := newDigestServer()
	clk := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	d.now = clk.now
	return d, clk
}

var (
	srcA = netip.MustParseAddr("127.0.0.4")
	srcB = netip.MustParseAddr("127.0.0.5")
)

func TestDigestServerFlow(t *testing.T) {
	cfg := parseConfig(t, authYAML)
	ep := cfg.Endpoint("dialer")
	d, _ := newTestDigestServer()

	r := d.check(ep, authInvite(t), srcA)
	if r.verdict != authChallenge || r.failed {
		t.Fatalf("no credentials: %+v, want a challenge that is no failure", r)
	}
	chal := d.challenge(ep, false)
	for _, want := range []string{`realm="wagate.test"`, `qop="auth"`, `algorithm=MD5`, `nonce="`} {
		if !strings.Contains(chal, want) {
			t.Errorf("challenge %q lacks %s", chal, want)
		}
	}
	if strings.Contains(chal, "stale") {
		t.Errorf("fresh challenge says stale: %q", chal)
	}

	good := credentials(t, chal, "dialer1", "s3cret", "INVITE", testRURI, algMD5, "c0ffee01", nil)
	if r := d.check(ep, authInvite(t, "Proxy-Authorization: "+good), srcA); r.verdict != authOK || r.user != "dialer1" {
		t.Fatalf("good MD5 credentials: %+v", r)
	}
	// The very same credentials again are a replay.
	if r := d.check(ep, authInvite(t, "Proxy-Authorization: "+good), srcA); r.verdict != authChallenge {
		t.Fatalf("replayed credentials: %+v, want a challenge", r)
	}
	// A new cnonce with the same nonce is a new, valid use.
	good2 := credentials(t, chal, "dialer1", "s3cret", "INVITE", testRURI, algMD5, "c0ffee02", nil)
	if r := d.check(ep, authInvite(t, "Proxy-Authorization: "+good2), srcA); r.verdict != authOK {
		t.Fatalf("second use of the nonce: %+v", r)
	}
	// SHA-256 answers to the MD5 challenge are accepted; the Authorization
	// header (after a 401-style client) too.
	sha := credentials(t, chal, "dialer2", "other", "INVITE", testRURI, algSHA256, "c0ffee03", nil)
	if r := d.check(ep, authInvite(t, "Authorization: "+sha), srcA); r.verdict != authOK || r.user != "dialer2" {
		t.Fatalf("SHA-256 credentials: %+v", r)
	}
}

func TestDigestServerRejects(t *testing.T) {
	cfg := parseConfig(t, authYAML)
	ep := cfg.Endpoint("dialer")
	tests := []struct {
		name   string
		user   string
		pass   string
		method string
		uri    string
		mut    func(map[string]string)
		failed bool
	}{
		{name: "wrong password", user: "dialer1", pass: "guess", failed: true},
		{name: "unknown user", user: "root", pass: "s3cret", failed: true},
		{name: "digest for another Request-URI", user: "dialer1", pass: "s3cret", uri: "sip:+447700900999@127.0.0.1:5072", failed: true},
		{name: "digest for another method", user: "dialer1", pass: "s3cret", method: "OPTIONS", failed: true},
		{name: "forged nonce", user: "dialer1", pass: "s3cret", mut: func(m map[string]string) { m["nonce"] = "AAAA" + m["nonce"][4:] }, failed: true},
		{name: "no qop", user: "dialer1", pass: "s3cret", mut: func(m map[string]string) { delete(m, "qop") }, failed: true},
		{name: "bad nc", user: "dialer1", pass: "s3cret", mut: func(m map[string]string) { m["nc"] = "1" }, failed: true},
		{name: "unsupported algorithm", user: "dialer1", pass: "s3cret", mut: func(m map[string]string) { m["algorithm"] = "SHA-512-256" }, failed: true},
		{name: "other realm only", user: "dialer1", pass: "s3cret", mut: func(m map[string]string) { m["realm"] = "elsewhere" }, failed: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := newTestDigestServer()
			chal := d.challenge(ep, false)
			method, uri := "INVITE", testRURI
			if tt.method != "" {
				method = tt.method
			}
			if tt.uri != "" {
				uri = tt.uri
			}
			cred := credentials(t, chal, tt.user, tt.pass, method, uri, algMD5, "c0ffee01", tt.mut)
			r := d.check(ep, authInvite(t, "Proxy-Authorization: "+cred), srcA)
			if r.verdict != authChallenge || r.failed != tt.failed {
				t.Errorf("%+v, want a challenge with failed=%v", r, tt.failed)
			}
		})
	}
}

// TestDigestServerSameAnswer: an unknown username and a wrong password get
// the same verdict, so a scanner cannot tell which names exist.
func TestDigestServerSameAnswer(t *testing.T) {
	cfg := parseConfig(t, authYAML)
	ep := cfg.Endpoint("dialer")
	d, _ := newTestDigestServer()
	chal := d.challenge(ep, false)
	a := d.check(ep, authInvite(t, "Proxy-Authorization: "+credentials(t, chal, "nobody", "x", "INVITE", testRURI, algMD5, "c1", nil)), srcA)
	b := d.check(ep, authInvite(t, "Proxy-Authorization: "+credentials(t, chal, "dialer1", "x", "INVITE", testRURI, algMD5, "c2", nil)), srcB)
	a.why, b.why = "", ""
	if a != b {
		t.Errorf("unknown user %+v, wrong password %+v: different answers", a, b)
	}
}

func TestDigestServerDuplicateCredentials(t *testing.T) {
	cfg := parseConfig(t, authYAML)
	ep := cfg.Endpoint("dialer")
	d, _ := newTestDigestServer()
	chal := d.challenge(ep, false)
	good := credentials(t, chal, "dialer1", "s3cret", "INVITE", testRURI, algMD5, "c1", nil)
	bad := credentials(t, chal, "dialer1", "wrong", "INVITE", testRURI, algMD5, "c2", nil)
	r := d.check(ep, authInvite(t, "Proxy-Authorization: "+bad, "proxy-authorization: "+good), srcA)
	if r.verdict == authOK || !r.failed {
		t.Errorf("two credentials for the realm: %+v, want a failure", r)
	}
	r = d.check(ep, authInvite(t, `Proxy-Authorization: Digest username="dialer1", realm="wagate.test", nonce="x`), srcA)
	if r.verdict == authOK || !r.failed {
		t.Errorf("unparsable credentials naming the realm: %+v, want a failure", r)
	}
}

func TestDigestServerNonceExpiry(t *testing.T) {
	cfg := parseConfig(t, authYAML)
	ep := cfg.Endpoint("dialer")
	d, clk := newTestDigestServer()
	chal := d.challenge(ep, false)
	clk.advance(59 * time.Second)
	if r := d.check(ep, authInvite(t, "Proxy-Authorization: "+credentials(t, chal, "dialer1", "s3cret", "INVITE", testRURI, algMD5, "c1", nil)), srcA); r.verdict != authOK {
		t.Fatalf("nonce within nonce_ttl: %+v", r)
	}
	clk.advance(2 * time.Second)
	r := d.check(ep, authInvite(t, "Proxy-Authorization: "+credentials(t, chal, "dialer1", "s3cret", "INVITE", testRURI, algMD5, "c2", nil)), srcA)
	if r.verdict != authChallenge || !r.stale || r.failed {
		t.Fatalf("expired nonce with the right password: %+v, want a stale challenge", r)
	}
	if !strings.Contains(d.challenge(ep, true), "stale=true") {
		t.Error("stale challenge lacks stale=true")
	}
	r = d.check(ep, authInvite(t, "Proxy-Authorization: "+credentials(t, chal, "dialer1", "nope", "INVITE", testRURI, algMD5, "c3", nil)), srcA)
	if r.verdict != authChallenge || r.stale || !r.failed {
		t.Fatalf("expired nonce with a wrong password: %+v, want a failure", r)
	}
	// A nonce from another endpoint's realm (or another wagate) is forged.
	other := newDigestServer()
	foreign := other.challenge(ep, false)
	r = d.check(ep, authInvite(t, "Proxy-Authorization: "+credentials(t, foreign, "dialer1", "s3cret", "INVITE", testRURI, algMD5, "c4", nil)), srcA)
	if r.verdict == authOK || !r.failed {
		t.Fatalf("nonce from another key: %+v", r)
	}
}

func TestDigestServerFailureLimit(t *testing.T) {
	cfg := parseConfig(t, authYAML) // max_failures 3 in 1m
	ep := cfg.Endpoint("dialer")
	d, clk := newTestDigestServer()
	try := func(src netip.Addr, pass, cnonce string) authResult {
		chal := d.challenge(ep, false)
		return d.check(ep, authInvite(t, "Proxy-Authorization: "+credentials(t, chal, "dialer1", pass, "INVITE", testRURI, algMD5, cnonce, nil)), src)
	}
	for i := 1; i <= 2; i++ {
		if r := try(srcA, "bad", "c"+itoa(i)); r.verdict != authChallenge || !r.failed {
			t.Fatalf("failure %d: %+v", i, r)
		}
		clk.advance(10 * time.Second)
	}
	if r := try(srcA, "bad", "c3"); r.verdict != authForbidden {
		t.Fatalf("third failure: %+v, want 403", r)
	}
	// Locked out: even the right password, and even without credentials.
	if r := try(srcA, "s3cret", "c4"); r.verdict != authForbidden {
		t.Fatalf("right password while locked out: %+v, want 403", r)
	}
	if r := d.check(ep, authInvite(t), srcA); r.verdict != authForbidden {
		t.Fatalf("no credentials while locked out: %+v, want 403", r)
	}
	// Another source is not affected.
	if r := try(srcB, "s3cret", "c5"); r.verdict != authOK {
		t.Fatalf("other source: %+v", r)
	}
	// The window (from the first failure) passes.
	clk.advance(41 * time.Second)
	if r := try(srcA, "s3cret", "c6"); r.verdict != authOK {
		t.Fatalf("after the window: %+v", r)
	}
}

func TestDigestServerSweeps(t *testing.T) {
	cfg := parseConfig(t, authYAML)
	ep := cfg.Endpoint("dialer")
	d, clk := newTestDigestServer()
	for i := 0; i < 3*sweepMin; i++ {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		d.failure(failKey{endpoint: ep.Name, src: ip}, ep, clk.now(), "test")
		clk.advance(time.Second)
	}
	d.mu.Lock()
	n := len(d.fails)
	d.mu.Unlock()
	if n > 2*sweepMin {
		t.Errorf("%d failure windows kept; expired ones are not swept", n)
	}
}
