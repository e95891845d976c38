package sip

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
)

func TestRedactCredentials(t *testing.T) {
	out := string(redactCredentials([]byte(traceInvite)))
	for _, s := range traceSecrets {
		if strings.Contains(out, s) {
			t.Errorf("redacted message still holds %q:\n%s", s, out)
		}
	}
	want := `Proxy-Authorization: Digest algorithm=MD5, cnonce="redacted", nc=00000001, nonce="redacted", opaque="redacted", ` +
		`qop=auth, realm="127.0.0.1", response="redacted", uri="sip:1001@127.0.0.3", username="dialer1"` + "\r\n"
	if !strings.Contains(out, want) {
		t.Errorf("redacted header is not\n%s in\n%s", want, out)
	}
	// Everything else is as it was.
	if strings.Replace(traceInvite, headerLine(traceInvite, "Proxy-Authorization"), want, 1) != out {
		t.Errorf("other lines changed:\n%s", out)
	}

	for _, tc := range []struct{ name, in, want string }{
		{"lower-case name, folded", "authorization: Digest username=\"u\",\r\n  response=\"SECRET1\", nonce=\"n\"",
			`authorization: Digest nonce="redacted", response="redacted", username="u"`},
		{"space before the colon", "Authorization : Digest username=\"u\", response=\"SECRET1\"",
			`Authorization: Digest response="redacted", username="u"`},
		{"basic", "Authorization: Basic dXNlcjpTRUNSRVQx", "Authorization: Basic redacted"},
		{"bearer", "Proxy-Authorization: Bearer SECRET1.token", "Proxy-Authorization: Bearer redacted"},
		{"unterminated quote", "Authorization: Digest username=\"u\", response=\"SECRET1", "Authorization: Digest redacted"},
		{"repeated parameter", "Authorization: Digest response=a, response=\"SECRET1\"", "Authorization: Digest redacted"},
		{"kept value that is no token", "Authorization: Digest username=\"u\", qop=\"SECRET1 x\"", "Authorization: Digest redacted"},
		{"no scheme", "Authorization: =SECRET1", "Authorization: redacted"},
		{"empty", "Authorization:", "Authorization: redacted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := "REGISTER sip:x SIP/2.0\r\nCall-ID: 1\r\n" + tc.in + "\r\nCSeq: 1 REGISTER\r\n\r\nbody Authorization: kept"
			out := string(redactCredentials([]byte(msg)))
			want := "REGISTER sip:x SIP/2.0\r\nCall-ID: 1\r\n" + tc.want + "\r\nCSeq: 1 REGISTER\r\n\r\nbody Authorization: kept"
			if out != want {
				t.Errorf("got\n%q\nwant\n%q", out, want)
			}
		})
	}

	// A message without credentials is returned as is, not copied; one
	// that only names them elsewhere is not changed.
	plain := []byte("OPTIONS sip:x SIP/2.0\r\nCall-ID: 1\r\n\r\n")
	if out := redactCredentials(plain); &out[0] != &plain[0] || !bytes.Equal(out, plain) {
		t.Errorf("a message without credentials was rewritten: %q", out)
	}
	named := []byte("OPTIONS sip:x SIP/2.0\nAccept: x-authorization/y\nX-Authorization-Note: none\n\nAuthorization: Digest response=body")
	if out := redactCredentials(named); !bytes.Equal(out, named) {
		t.Errorf("a message that only names credentials was changed: %q", out)
	}
}

// FuzzRedactCredentials: whatever the message, every Authorization and
// Proxy-Authorization left in the header section keeps no parameter value
// but the harmless ones, no a=crypto line of the body keeps a key, and
// a message with neither is untouched.
func FuzzRedactCredentials(f *testing.F) {
	f.Add([]byte(traceInvite))
	f.Add([]byte("A\nAuthorization: Digest response=\"x\"\n\tnonce=y\n\nbody"))
	f.Add([]byte("A\r\nproxy-AUTHORIZATION :Basic abc\r\n"))
	f.Add([]byte("A\r\nl: 40\r\n\r\na=crypto:1 S inline:KEY|2^20;inline:K2 P\r\nk=clear:x\n"))
	f.Fuzz(func(t *testing.T, m []byte) {
		out := redactCredentials(m)
		end, sep := headerEnd(m)
		body := m[len(m):]
		if end >= 0 {
			body = m[end+sep:]
		}
		keys := bytes.Contains(body, []byte("a=crypto:")) || bytes.Contains(body, []byte("\nk=")) || bytes.HasPrefix(body, []byte("k="))
		if !containsFold(m, "authorization") && !keys && !bytes.Equal(out, m) {
			t.Fatal("changed a message without credentials")
		}
		if oe, osep := headerEnd(out); oe >= 0 {
			for _, line := range strings.Split(string(out[oe+osep:]), "\n") {
				if !strings.HasPrefix(line, "a=crypto:") {
					continue
				}
				for _, p := range strings.Split(line, "inline:")[1:] {
					if !strings.HasPrefix(p, "redacted") {
						t.Fatalf("a=crypto line kept a key: %q", line)
					}
				}
			}
		}
		eachHeader(out, func(name, value []byte) bool {
			if !isAuthorization(name) {
				return true
			}
			v := strings.TrimSpace(string(value))
			scheme, rest, _ := strings.Cut(v, " ")
			if v == "redacted" || rest == "redacted" {
				return true
			}
			if !strings.EqualFold(scheme, "Digest") {
				t.Fatalf("%s kept %q", name, v)
			}
			ps, err := parseDigest(v)
			if err != nil {
				t.Fatalf("redacted %s does not parse: %q", name, v)
			}
			for k, pv := range ps {
				if !keptDigestParams[k] && pv != "redacted" {
					t.Fatalf("%s kept %s=%q", name, k, pv)
				}
			}
			return true
		})
	})
}

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want traceSummary
	}{
		{traceInvite, traceSummary{method: "INVITE", cseq: "2 INVITE", callID: "call-1@127.0.0.4"}},
		{"SIP/2.0 180 Ringing\r\ni: compact@x\r\nCSeq:  1 INVITE \r\n\r\n", traceSummary{status: 180, reason: "Ringing", cseq: "1 INVITE", callID: "compact@x"}},
		{"sip/2.0 200 OK\nCall-ID: lf\n\nCall-ID: body", traceSummary{status: 200, reason: "OK", callID: "lf"}},
		{"garbage", traceSummary{}},
	} {
		if got := summarize([]byte(tc.in)); got != tc.want {
			t.Errorf("summarize(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// TestRedactSDPKeys: the SRTP master keys of an SDP body (a=crypto, k=)
// never reach a trace; what the lines say besides (tag, suite, lifetime,
// MKI, session parameters) stays, and Content-Length follows the body.
func TestRedactSDPKeys(t *testing.T) {
	const key1, key2 = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz", "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk"
	body := "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nk=base64:c2VjcmV0\r\n" +
		"m=audio 4000 RTP/SAVP 111\r\n" +
		"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + key1 + "|2^31|1:4\r\n" +
		"a=crypto:2 AES_256_CM_HMAC_SHA1_80 inline:" + key2 + ";inline:" + key1 + " UNENCRYPTED_SRTCP\r\n" +
		"a=crypto:3 bad\r\n" +
		"a=rtcp-mux\r\n"
	msg := "INVITE sip:x SIP/2.0\r\nCall-ID: 1\r\nContent-Type: application/sdp\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	out := string(redactCredentials([]byte(msg)))
	for _, s := range []string{key1, key2, "c2VjcmV0"} {
		if strings.Contains(out, s) {
			t.Errorf("the trace holds the key %q:\n%s", s, out)
		}
	}
	for _, want := range []string{
		"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:redacted|2^31|1:4\r\n",
		"a=crypto:2 AES_256_CM_HMAC_SHA1_80 inline:redacted;inline:redacted UNENCRYPTED_SRTCP\r\n",
		"a=crypto:3 redacted\r\n",
		"k=base64:redacted\r\n",
		"m=audio 4000 RTP/SAVP 111\r\n",
		"a=rtcp-mux\r\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no line %q in\n%s", want, out)
		}
	}
	head, newBody, _ := strings.Cut(out, "\r\n\r\n")
	if want := "Content-Length: " + strconv.Itoa(len(newBody)); !strings.Contains(head, want) {
		t.Errorf("head says %q, want %s:\n%s", headerLine(out, "Content-Length"), want, out)
	}
	// Compact form, and a body with no keys kept as is.
	compact := strings.Replace(msg, "Content-Length:", "l:", 1)
	if out := string(redactCredentials([]byte(compact))); !strings.Contains(out, "\r\nl: "+strconv.Itoa(len(out)-strings.Index(out, "\r\n\r\n")-4)+"\r\n") {
		t.Errorf("compact Content-Length not set:\n%s", out)
	}
	plain := []byte("INVITE sip:x SIP/2.0\r\nContent-Length: 13\r\n\r\nv=0\r\na=sendrecv")
	if out := redactCredentials(plain); &out[0] != &plain[0] {
		t.Errorf("a body without keys was rewritten: %q", out)
	}
}
