package sip

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"strings"
)

// Digest authentication shared by both directions (RFC 2617, RFC 7616 and
// RFC 8760 for SIP): parsing and writing the parameters of challenges and
// credentials, and the response computation. wagate writes its own instead
// of using sipgo's (github.com/icholy/digest) so that parsing is strict
// (duplicate or oversized parameters are refused) and so that the same code
// checks what it computes.

// digestAlg is a hash algorithm of digest authentication.
type digestAlg struct {
	name string // as written in algorithm=
	new  func() hash.Hash
}

var (
	algMD5    = digestAlg{name: "MD5", new: md5.New}
	algSHA256 = digestAlg{name: "SHA-256", new: sha256.New}
)

// digestAlgorithm looks up an algorithm= value; an absent one means MD5
// (RFC 2617). The -sess variants and SHA-512-256 are not supported.
func digestAlgorithm(name string) (digestAlg, bool) {
	switch {
	case name == "" || strings.EqualFold(name, "MD5"):
		return algMD5, true
	case strings.EqualFold(name, "SHA-256"):
		return algSHA256, true
	}
	return digestAlg{}, false
}

// hexOf hashes the parts joined by ':' and returns lower-case hex.
func (a digestAlg) hexOf(parts ...string) string {
	h := a.new()
	for i, p := range parts {
		if i > 0 {
			h.Write([]byte{':'})
		}
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// digestInput is everything a digest response is computed from.
type digestInput struct {
	alg                       digestAlg
	username, realm, password string
	method, uri               string
	nonce, nc, cnonce, qop    string
	body                      []byte // for qop=auth-int
}

// ha1 is H(username:realm:password).
func (in digestInput) ha1() string { return in.alg.hexOf(in.username, in.realm, in.password) }

// responseWithHA1 computes the request-digest from a precomputed HA1.
func (in digestInput) responseWithHA1(ha1 string) string {
	var ha2 string
	if in.qop == "auth-int" {
		h := in.alg.new()
		h.Write(in.body)
		ha2 = in.alg.hexOf(in.method, in.uri, hex.EncodeToString(h.Sum(nil)))
	} else {
		ha2 = in.alg.hexOf(in.method, in.uri)
	}
	if in.qop == "" {
		// RFC 2069 compatibility: no qop, no cnonce, no nc.
		return in.alg.hexOf(ha1, in.nonce, ha2)
	}
	return in.alg.hexOf(ha1, in.nonce, in.nc, in.cnonce, in.qop, ha2)
}

// response computes the request-digest (the response= value).
func (in digestInput) response() string { return in.responseWithHA1(in.ha1()) }

// Limits on what wagate parses from a peer's digest header.
const (
	maxDigestHeader = 4096
	maxDigestParams = 32
)

var errDigestSyntax = errors.New("malformed digest parameters")

// parseDigest reads the value of a WWW-/Proxy-Authenticate or an
// Authorization/Proxy-Authorization header whose scheme is Digest. Parameter
// names are returned lower-case; quoted values are unescaped. A repeated
// parameter, an empty name, an unterminated quote, a control character or
// an oversized header is an error: a header that two parsers could read
// differently is refused rather than guessed at.
func parseDigest(v string) (map[string]string, error) {
	if len(v) > maxDigestHeader {
		return nil, errDigestSyntax
	}
	v = strings.TrimLeft(v, " \t")
	if len(v) < 7 || !strings.EqualFold(v[:6], "Digest") || (v[6] != ' ' && v[6] != '\t') {
		return nil, errDigestSyntax
	}
	s := v[7:]
	out := make(map[string]string, 8)
	i := 0
	skipWS := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
	}
	for {
		skipWS()
		if i >= len(s) {
			break
		}
		start := i
		for i < len(s) && isTokenChar(s[i]) {
			i++
		}
		name := strings.ToLower(s[start:i])
		if name == "" {
			return nil, errDigestSyntax
		}
		skipWS()
		if i >= len(s) || s[i] != '=' {
			return nil, errDigestSyntax
		}
		i++
		skipWS()
		var val string
		if i < len(s) && s[i] == '"' {
			i++
			var b strings.Builder
			closed := false
			for i < len(s) {
				c := s[i]
				switch {
				case c == '"':
					closed = true
				case c == '\\' && i+1 < len(s):
					i++
					c = s[i]
					fallthrough
				default:
					if c < 0x20 && c != '\t' || c == 0x7f {
						return nil, errDigestSyntax
					}
					b.WriteByte(c)
				}
				i++
				if closed {
					break
				}
			}
			if !closed {
				return nil, errDigestSyntax
			}
			val = b.String()
		} else {
			start := i
			for i < len(s) && isTokenChar(s[i]) {
				i++
			}
			val = s[start:i]
		}
		if _, dup := out[name]; dup {
			return nil, errDigestSyntax
		}
		out[name] = val
		if len(out) > maxDigestParams {
			return nil, errDigestSyntax
		}
		skipWS()
		if i >= len(s) {
			break
		}
		if s[i] != ',' {
			return nil, errDigestSyntax
		}
		i++
	}
	return out, nil
}

// isTokenChar reports whether c may appear in an RFC 3261 token.
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-.!%*_+`'~", c) >= 0
}

// digestParam is one parameter to write.
type digestParam struct {
	name, value string
	quote       bool
}

// formatDigest writes "Digest a="x", b=y". It reports false when a quoted
// value cannot be written without escaping or a token value is not a token;
// wagate never escapes, it refuses.
func formatDigest(params []digestParam) (string, bool) {
	var b strings.Builder
	b.WriteString("Digest ")
	for i, p := range params {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p.name)
		b.WriteByte('=')
		if p.quote {
			if !quotableValue(p.value) {
				return "", false
			}
			b.WriteByte('"')
			b.WriteString(p.value)
			b.WriteByte('"')
		} else {
			if p.value == "" {
				return "", false
			}
			for j := 0; j < len(p.value); j++ {
				if !isTokenChar(p.value[j]) {
					return "", false
				}
			}
			b.WriteString(p.value)
		}
	}
	return b.String(), true
}

// quotableValue reports whether s can sit inside a quoted-string as is.
func quotableValue(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '"' || c == '\\' || c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// qopList splits a challenge's qop="auth,auth-int" into its options.
func qopList(v string) []string {
	var out []string
	for _, q := range strings.Split(v, ",") {
		if q = strings.ToLower(strings.TrimSpace(q)); q != "" {
			out = append(out, q)
		}
	}
	return out
}
