package sip

import (
	"errors"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

const metaRURI = "sip:+447700900123@wa.meta.vc;transport=tls"

func bLegInvite(t testing.TB) *sip.Request {
	t.Helper()
	return parseReq(t, "INVITE "+metaRURI+" SIP/2.0\r\n"+
		"Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bKorig\r\n"+
		"From: <sip:+15550100001@127.0.0.1>;tag=ftag\r\n"+
		"To: <sip:+447700900123@wa.meta.vc>\r\n"+
		"Call-ID: b1@wagate\r\nCSeq: 1 INVITE\r\nMax-Forwards: 69\r\n"+
		"Content-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n")
}

func challengeResponse(t testing.TB, req *sip.Request, code int, src string, challenges ...string) *sip.Response {
	t.Helper()
	res := sip.NewResponseFromRequest(req, code, "Challenge", nil)
	name := "WWW-Authenticate"
	if code == 407 {
		name = "Proxy-Authenticate"
	}
	for _, c := range challenges {
		res.AppendHeader(sip.NewHeader(name, c))
	}
	res.SetSource(src)
	return res
}

// verifyCredentials checks an Authorization value the way Meta would,
// from the challenge's nonce and the number's password.
func verifyCredentials(t *testing.T, value, wantUser, password, method string) map[string]string {
	t.Helper()
	p, err := parseDigest(value)
	if err != nil {
		t.Fatalf("credentials %q: %v", value, err)
	}
	alg, ok := digestAlgorithm(p["algorithm"])
	if !ok {
		t.Fatalf("algorithm %q", p["algorithm"])
	}
	if p["username"] != wantUser {
		t.Errorf("username %q, want %q", p["username"], wantUser)
	}
	in := digestInput{alg: alg, username: p["username"], realm: p["realm"], password: password, method: method,
		uri: p["uri"], nonce: p["nonce"], nc: p["nc"], cnonce: p["cnonce"], qop: p["qop"]}
	if got, want := p["response"], in.response(); got != want {
		t.Errorf("response %s, want %s", got, want)
	}
	return p
}

func TestAnswerChallenge(t *testing.T) {
	cfg := parseConfig(t, authYAML)
	meta, num := cfg.Endpoint("meta"), cfg.NumberByE164("+15550100001")
	req := bLegInvite(t)

	tests := []struct {
		name       string
		code       int
		src        string
		challenges []string
		wantAlg    string
		wantQop    string
		wantErr    error
	}{
		{name: "407 MD5 qop=auth", code: 407, src: "127.0.0.2:5061",
			challenges: []string{`Digest realm="wa.meta.vc", nonce="n1", qop="auth", algorithm=MD5`}, wantAlg: "MD5", wantQop: "auth"},
		{name: "SHA-256 preferred", code: 407, src: "127.0.0.2:5061",
			challenges: []string{`Digest realm="wa.meta.vc", nonce="n1", qop="auth", algorithm=MD5`, `Digest realm="wa.meta.vc", nonce="n2", qop="auth", algorithm=SHA-256`},
			wantAlg:    "SHA-256", wantQop: "auth"},
		{name: "401 without algorithm", code: 401, src: "127.0.0.2:5061",
			challenges: []string{`Digest realm="wa.meta.vc", nonce="n1", qop="auth-int,auth"`}, wantAlg: "MD5", wantQop: "auth"},
		{name: "no qop (RFC 2069)", code: 407, src: "127.0.0.2:5061",
			challenges: []string{`Digest realm="wa.meta.vc", nonce="n1"`}, wantAlg: "MD5", wantQop: ""},
		{name: "other realm", code: 407, src: "127.0.0.2:5061",
			challenges: []string{`Digest realm="evil.example", nonce="n1", qop="auth"`}, wantErr: errChallengeRealm},
		{name: "realm differs in case", code: 407, src: "127.0.0.2:5061",
			challenges: []string{`Digest realm="WA.META.VC", nonce="n1", qop="auth"`}, wantErr: errChallengeRealm},
		{name: "unsupported algorithm only", code: 407, src: "127.0.0.2:5061",
			challenges: []string{`Digest realm="wa.meta.vc", nonce="n1", qop="auth", algorithm=SHA-512-256`}, wantErr: errChallengeRealm},
		{name: "unsupported qop only", code: 407, src: "127.0.0.2:5061",
			challenges: []string{`Digest realm="wa.meta.vc", nonce="n1", qop="auth-conf"`}, wantErr: errChallengeRealm},
		{name: "nonce that needs escaping", code: 407, src: "127.0.0.2:5061",
			challenges: []string{`Digest realm="wa.meta.vc", nonce="a\"b", qop="auth"`}, wantErr: errChallengeRealm},
		{name: "from another address", code: 407, src: "127.0.0.66:5061",
			challenges: []string{`Digest realm="wa.meta.vc", nonce="n1", qop="auth"`}, wantErr: errChallengeSource},
		{name: "from the PBX's address", code: 407, src: "127.0.0.3:5060",
			challenges: []string{`Digest realm="wa.meta.vc", nonce="n1", qop="auth"`}, wantErr: errChallengeSource},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := challengeResponse(t, req, tt.code, tt.src, tt.challenges...)
			retry, err := AnswerChallenge(cfg, meta, num, req, res)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			hdr := "Proxy-Authorization"
			if tt.code == 401 {
				hdr = "Authorization"
			}
			h := retry.GetHeader(hdr)
			if h == nil {
				t.Fatalf("retry has no %s:\n%s", hdr, retry)
			}
			p := verifyCredentials(t, h.Value(), "15550100001", "metapass", "INVITE")
			if p["algorithm"] != tt.wantAlg || p["qop"] != tt.wantQop || p["uri"] != metaRURI || p["realm"] != "wa.meta.vc" {
				t.Errorf("credentials %v", p)
			}
			if tt.wantQop != "" && (p["nc"] != "00000001" || len(p["cnonce"]) < 16) {
				t.Errorf("nc/cnonce %q/%q", p["nc"], p["cnonce"])
			}
			if retry.CSeq().SeqNo != 2 || req.CSeq().SeqNo != 1 {
				t.Errorf("CSeq %d (original now %d), want 2 (and 1)", retry.CSeq().SeqNo, req.CSeq().SeqNo)
			}
			if retry.Via() != nil {
				t.Errorf("retry keeps the old Via (branch); sipgo must add a new one")
			}
			if tag, _ := retry.From().Params.Get("tag"); callIDOf(retry) != "b1@wagate" || tag != "ftag" || string(retry.Body()) != "v=0\n" {
				t.Errorf("retry changed Call-ID/From tag/body:\n%s", retry)
			}
			if strings.Contains(retry.String(), "metapass") {
				t.Error("the password itself is in the request")
			}
		})
	}
}

func TestAnswerChallengeRefusals(t *testing.T) {
	cfg := parseConfig(t, authYAML)
	req := bLegInvite(t)
	res := challengeResponse(t, req, 407, "127.0.0.3:5060", `Digest realm="wa.meta.vc", nonce="n1", qop="auth"`)
	if _, err := AnswerChallenge(cfg, cfg.Endpoint("pbx"), cfg.NumberByE164("+15550100001"), req, res); !errors.Is(err, errChallengeNotWhatsApp) {
		t.Errorf("PBX challenge: %v, want %v", err, errChallengeNotWhatsApp)
	}
	num := *cfg.NumberByE164("+15550100001")
	num.Digest.Value = ""
	res = challengeResponse(t, req, 407, "127.0.0.2:5060", `Digest realm="wa.meta.vc", nonce="n1", qop="auth"`)
	if _, err := AnswerChallenge(cfg, cfg.Endpoint("meta"), &num, req, res); !errors.Is(err, errNoDigestPassword) {
		t.Errorf("no password: %v, want %v", err, errNoDigestPassword)
	}
}

// TestDigestRoundTrip: what wagate sends as a client passes wagate's own
// server check (a second, independent path through the same primitives).
func TestDigestRoundTrip(t *testing.T) {
	cfg := parseConfig(t, authYAML)
	ep := cfg.Endpoint("dialer")
	d, _ := newTestDigestServer()
	req := authInvite(t)
	res := sip.NewResponseFromRequest(req, 407, "Proxy Authentication Required", nil)
	res.AppendHeader(sip.NewHeader("Proxy-Authenticate", d.challenge(ep, false)))
	res.SetSource("127.0.0.2:5060")
	// Pretend the dialer endpoint were Meta: a whatsapp endpoint with the
	// dialer's realm and a number whose password is dialer1's.
	wa := *cfg.Endpoint("meta")
	wa.DigestRealm = "wagate.test"
	num := *cfg.NumberByE164("+15550100001")
	num.Number = "+dialer1"
	num.Digest.Value = "s3cret"
	retry, err := AnswerChallenge(cfg, &wa, &num, req, res)
	if err != nil {
		t.Fatal(err)
	}
	if r := d.check(ep, retry, srcA); r.verdict != authOK {
		t.Fatalf("wagate does not accept its own credentials: %+v\n%s", r, retry)
	}
}
