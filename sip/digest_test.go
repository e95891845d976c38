package sip

import (
	"strings"
	"testing"
)

// Test vectors from RFC 2617 §3.5 and RFC 7616 §3.9.1.
func TestDigestResponseVectors(t *testing.T) {
	tests := []struct {
		name string
		in   digestInput
		want string
	}{
		{
			name: "RFC 2617 MD5 qop=auth",
			in: digestInput{alg: algMD5, username: "Mufasa", realm: "testrealm@host.com", password: "Circle Of Life",
				method: "GET", uri: "/dir/index.html", nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
				nc: "00000001", cnonce: "0a4f113b", qop: "auth"},
			want: "6629fae49393a05397450978507c4ef1",
		},
		{
			name: "RFC 7616 MD5 qop=auth",
			in: digestInput{alg: algMD5, username: "Mufasa", realm: "http-auth@example.org", password: "Circle of Life",
				method: "GET", uri: "/dir/index.html", nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
				nc: "00000001", cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop: "auth"},
			want: "8ca523f5e9506fed4657c9700eebdbec",
		},
		{
			name: "RFC 7616 SHA-256 qop=auth",
			in: digestInput{alg: algSHA256, username: "Mufasa", realm: "http-auth@example.org", password: "Circle of Life",
				method: "GET", uri: "/dir/index.html", nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
				nc: "00000001", cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop: "auth"},
			want: "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
		},
		{
			// RFC 2069 (no qop): H(HA1:nonce:HA2), computed independently:
			// HA1 = md5("Mufasa:testrealm@host.com:Circle Of Life")
			//     = 939e7578ed9e3c518a452acee763bce9
			// HA2 = md5("GET:/dir/index.html") = 39aff3a2bab6126f332b942af96d3366
			name: "RFC 2069 MD5 without qop",
			in: digestInput{alg: algMD5, username: "Mufasa", realm: "testrealm@host.com", password: "Circle Of Life",
				method: "GET", uri: "/dir/index.html", nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093"},
			want: algMD5.hexOf("939e7578ed9e3c518a452acee763bce9", "dcd98b7102dd2f0e8b11d0f600bfb0c093", "39aff3a2bab6126f332b942af96d3366"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.response(); got != tt.want {
				t.Errorf("response %s, want %s", got, tt.want)
			}
		})
	}
	if got := (digestInput{alg: algMD5, username: "Mufasa", realm: "testrealm@host.com", password: "Circle Of Life"}).ha1(); got != "939e7578ed9e3c518a452acee763bce9" {
		t.Errorf("HA1 %s", got)
	}
}

func TestParseDigest(t *testing.T) {
	tests := []struct {
		in   string
		want map[string]string
		bad  bool
	}{
		{in: `Digest realm="wa.meta.vc", nonce="abc", qop="auth", algorithm=MD5`,
			want: map[string]string{"realm": "wa.meta.vc", "nonce": "abc", "qop": "auth", "algorithm": "MD5"}},
		{in: `digest  Realm = "a\"b" ,NONCE=x`, want: map[string]string{"realm": `a"b`, "nonce": "x"}},
		{in: `Digest qop="auth,auth-int", realm="r"`, want: map[string]string{"qop": "auth,auth-int", "realm": "r"}},
		{in: `Digest realm="a, nonce=b"`, want: map[string]string{"realm": "a, nonce=b"}},
		{in: `Basic realm="x"`, bad: true},
		{in: `Digest`, bad: true},
		{in: `Digest realm="x", realm="y"`, bad: true},
		{in: `Digest realm="x`, bad: true},
		{in: `Digest realm="x" nonce="y"`, bad: true},
		{in: `Digest ="x"`, bad: true},
		{in: "Digest realm=\"a\x00b\"", bad: true},
		{in: "Digest realm=\"a\nb\"", bad: true},
		{in: "Digest realm=x" + strings.Repeat(" ", maxDigestHeader), bad: true},
	}
	for _, tt := range tests {
		got, err := parseDigest(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("parseDigest(%q) = %v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseDigest(%q): %v", tt.in, err)
			continue
		}
		if len(got) != len(tt.want) {
			t.Errorf("parseDigest(%q) = %v, want %v", tt.in, got, tt.want)
		}
		for k, v := range tt.want {
			if got[k] != v {
				t.Errorf("parseDigest(%q)[%s] = %q, want %q", tt.in, k, got[k], v)
			}
		}
	}
	var b strings.Builder
	b.WriteString("Digest ")
	for i := 0; i <= maxDigestParams; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("p" + itoa(i) + "=1")
	}
	if _, err := parseDigest(b.String()); err == nil {
		t.Errorf("more than %d parameters accepted", maxDigestParams)
	}
}

func TestFormatDigestRefusesEscapes(t *testing.T) {
	if _, ok := formatDigest([]digestParam{{"nonce", `a"b`, true}}); ok {
		t.Error("a quote inside a quoted value was written")
	}
	if _, ok := formatDigest([]digestParam{{"algorithm", "MD5 x", false}}); ok {
		t.Error("a token with a space was written")
	}
	v, ok := formatDigest([]digestParam{{"realm", "r", true}, {"qop", "auth", false}})
	if !ok || v != `Digest realm="r", qop=auth` {
		t.Errorf("got %q %v", v, ok)
	}
}

// FuzzParseDigest: the parser never panics, and what it accepts written
// back (when writable) parses to the same parameters.
func FuzzParseDigest(f *testing.F) {
	f.Add(`Digest realm="wa.meta.vc", nonce="abc", qop="auth", algorithm=MD5`)
	f.Add(`Digest username="15550100001",realm="wa.meta.vc",uri="sip:+1@wa.meta.vc;transport=tls",response="00"`)
	f.Add(`Digest a="\\\""`)
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parseDigest(s)
		if err != nil {
			return
		}
		var params []digestParam
		for k, v := range p {
			params = append(params, digestParam{k, v, true})
		}
		out, ok := formatDigest(params)
		if !ok {
			return
		}
		q, err := parseDigest(out)
		if err != nil {
			t.Fatalf("re-parse of %q: %v", out, err)
		}
		for k, v := range p {
			if q[k] != v {
				t.Fatalf("%s: %q became %q", k, v, q[k])
			}
		}
	})
}
