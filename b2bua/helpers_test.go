package b2bua

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
)

func parseConfig(t testing.TB, yaml string) *configs.Config {
	t.Helper()
	cfg, err := configs.Parse([]byte(yaml), "test.yaml")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

func parseReq(t testing.TB, raw string) *sip.Request {
	t.Helper()
	msg, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return msg.(*sip.Request)
}

// The digest helpers below are the test's own, written from RFC 7616 and
// not shared with the sip package, so that they check its digest code
// rather than repeat it.

const algMD5 = "MD5"

// digestParams reads a Digest header value whose quoted strings hold no
// commas or escapes (all the tests' values).
func digestParams(t testing.TB, v string) map[string]string {
	t.Helper()
	rest, ok := strings.CutPrefix(v, "Digest ")
	if !ok {
		t.Fatalf("not a Digest value: %q", v)
	}
	p := map[string]string{}
	for _, kv := range strings.Split(rest, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			t.Fatalf("digest parameter %q", kv)
		}
		p[strings.ToLower(k)] = strings.Trim(val, `"`)
	}
	return p
}

func digestHex(alg string, parts ...string) string {
	var h hash.Hash
	if strings.EqualFold(alg, "SHA-256") {
		h = sha256.New()
	} else {
		h = md5.New()
	}
	h.Write([]byte(strings.Join(parts, ":")))
	return hex.EncodeToString(h.Sum(nil))
}

func digestResponse(alg, user, realm, password, method, uri, nonce, nc, cnonce, qop string) string {
	ha1 := digestHex(alg, user, realm, password)
	ha2 := digestHex(alg, method, uri)
	return digestHex(alg, ha1, nonce, nc, cnonce, qop, ha2)
}

// verifyCredentials checks a Proxy-Authorization value wagate sent.
func verifyCredentials(t *testing.T, value, wantUser, password, method string) map[string]string {
	t.Helper()
	p := digestParams(t, value)
	if p["username"] != wantUser {
		t.Errorf("username %q, want %q", p["username"], wantUser)
	}
	want := digestResponse(p["algorithm"], p["username"], p["realm"], password, method, p["uri"], p["nonce"], p["nc"], p["cnonce"], p["qop"])
	if p["response"] != want {
		t.Errorf("response %s, want %s", p["response"], want)
	}
	return p
}

// credentials answers a challenge the way a client would; mut may change
// the parameters before they are written.
func credentials(t testing.TB, chal, user, password, method, uri, alg, cnonce string, mut func(map[string]string)) string {
	t.Helper()
	p := digestParams(t, chal)
	vals := map[string]string{
		"username": user, "realm": p["realm"], "nonce": p["nonce"], "uri": uri, "algorithm": alg,
		"response": digestResponse(alg, user, p["realm"], password, method, uri, p["nonce"], "00000001", cnonce, "auth"),
		"cnonce":   cnonce, "qop": "auth", "nc": "00000001",
	}
	if mut != nil {
		mut(vals)
	}
	var out []string
	for _, k := range []string{"username", "realm", "nonce", "uri", "response", "algorithm", "cnonce", "qop", "nc"} {
		if v, ok := vals[k]; ok {
			if k == "algorithm" || k == "qop" || k == "nc" {
				out = append(out, k+"="+v)
			} else {
				out = append(out, k+`="`+v+`"`)
			}
		}
	}
	return "Digest " + strings.Join(out, ", ")
}
