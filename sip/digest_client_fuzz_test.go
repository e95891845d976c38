package sip

import (
	"errors"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// FuzzAnswerChallenge: whatever challenge headers Meta's 407 (or 401)
// carries, AnswerChallenge never panics and either refuses with one of
// its reasons or builds a retry whose credentials header is a single
// well-formed Digest value that Meta reads back with the challenge's
// own realm, nonce and opaque, and that verifies with the number's
// password: no challenge value can add a header or a parameter to what
// wagate sends. Run:
// go test -run '^$' -fuzz FuzzAnswerChallenge -parallel 1 ./sip/
func FuzzAnswerChallenge(f *testing.F) {
	for _, c := range []string{
		`Digest realm="wa.meta.vc", nonce="n1", qop="auth", algorithm=MD5`,
		`Digest realm="wa.meta.vc", nonce="n2", qop="auth", algorithm=SHA-256, opaque="o", stale=true`,
		`Digest realm="wa.meta.vc", nonce="n1", qop="auth-int,auth"`,
		`Digest realm="wa.meta.vc", nonce="n1"`,
		`Digest realm="wa.meta.vc", nonce="a\"b", qop="auth"`,
		`Digest realm="wa.meta.vc", nonce="a\\b", opaque="x, y=z", qop=auth`,
		`Digest realm=wa.meta.vc, nonce=n1, algorithm=md5-sess`,
	} {
		f.Add(c, "", true)
		f.Add(c, `Digest realm="evil.example", nonce="n", qop="auth"`, false)
	}
	cfg := parseConfig(f, authYAML)
	meta, num := cfg.Endpoint("meta"), cfg.NumberByE164("+15550100001")
	req := bLegInvite(f)
	f.Fuzz(func(t *testing.T, c1, c2 string, proxy bool) {
		code, name, auth := 401, "WWW-Authenticate", "Authorization"
		if proxy {
			code, name, auth = 407, "Proxy-Authenticate", "Proxy-Authorization"
		}
		res := sip.NewResponseFromRequest(req, code, "Challenge", nil)
		for _, c := range []string{c1, c2} {
			if c != "" {
				res.AppendHeader(sip.NewHeader(name, c))
			}
		}
		res.SetSource("127.0.0.2:5061")
		retry, err := AnswerChallenge(cfg, meta, num, req, res)
		if err != nil {
			if !errors.Is(err, errChallengeRealm) {
				t.Fatalf("unexpected refusal: %v", err)
			}
			return
		}
		hs := retry.GetHeaders(auth)
		if len(hs) != 1 {
			t.Fatalf("%d %s headers in the retry", len(hs), auth)
		}
		v := hs[0].Value()
		if strings.ContainsAny(v, "\r\n\x00") {
			t.Fatalf("credentials with a line break or NUL: %q", v)
		}
		p, err := parseDigest(v)
		if err != nil {
			t.Fatalf("our credentials do not parse: %v\n%q", err, v)
		}
		ch, ok := pickChallenge(res.GetHeaders(name), meta.DigestRealm)
		if !ok || p["realm"] != ch.realm || p["nonce"] != ch.nonce || p["opaque"] != ch.opaque || p["username"] != "15550100001" {
			t.Fatalf("credentials %v do not answer the challenge %+v", p, ch)
		}
		if p["qop"] != "auth-int" { // auth-int hashes the body too
			verifyCredentials(t, v, "15550100001", "metapass", "INVITE")
		}
		msg, err := sip.ParseMessage([]byte(retry.String()))
		if err != nil {
			t.Fatalf("the retry does not parse: %v", err)
		}
		if n := len(msg.(*sip.Request).GetHeaders(auth)); n != 1 {
			t.Fatalf("the retry on the wire has %d %s headers", n, auth)
		}
	})
}
