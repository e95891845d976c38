package sip

// What the SIP trace reads from a raw message without parsing it (the
// summary of a log line, the Call-ID a HEP packet is correlated by) and
// the redaction of credentials before a message leaves wagate in a trace.

import (
	"bytes"
	"sort"
	"strconv"
	"strings"
)

// traceSummary is what a log line says of a message.
type traceSummary struct {
	method string // a request's
	status int    // a response's
	reason string
	cseq   string
	callID string
}

// summarize reads the start line, CSeq and Call-ID of m.
func summarize(m []byte) traceSummary {
	var s traceSummary
	line := m
	if i := bytes.IndexByte(m, '\n'); i >= 0 {
		line = m[:i]
	}
	line = bytes.TrimRight(line, "\r")
	if len(line) >= 12 && equalFold(line[:8], "sip/2.0 ") {
		code, reason, _ := strings.Cut(string(line[8:]), " ")
		if n, err := strconv.Atoi(code); err == nil && n > 0 {
			s.status, s.reason = n, reason
		}
	} else if sp := bytes.IndexByte(line, ' '); sp > 0 {
		s.method = string(line[:sp])
	}
	eachHeader(m, func(n, v []byte) bool {
		switch {
		case s.cseq == "" && equalFold(n, "cseq"):
			s.cseq = string(bytes.TrimSpace(v))
		case s.callID == "" && (equalFold(n, "call-id") || equalFold(n, "i")):
			s.callID = string(bytes.TrimSpace(v))
		}
		return s.cseq == "" || s.callID == ""
	})
	return s
}

// rawHeaderValue returns the value of the first header of m named name (or
// its compact form, when not ""), trimmed; "" when there is none.
func rawHeaderValue(m []byte, name, compact string) string {
	var v string
	eachHeader(m, func(n, val []byte) bool {
		if equalFold(n, name) || (compact != "" && equalFold(n, compact)) {
			v = string(bytes.TrimSpace(val))
			return false
		}
		return true
	})
	return v
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// equalFold reports whether b is the lower-case ASCII word, ignoring case.
func equalFold(b []byte, word string) bool {
	if len(b) != len(word) {
		return false
	}
	for i := range len(b) {
		if lower(b[i]) != word[i] {
			return false
		}
	}
	return true
}

// eachHeader calls f with the name and value of each header line of m (the
// start line and folded continuation lines are not headers) until f
// returns false or the header section ends.
func eachHeader(m []byte, f func(name, value []byte) bool) {
	first := true
	for len(m) > 0 {
		var line []byte
		if i := bytes.IndexByte(m, '\n'); i >= 0 {
			line, m = m[:i], m[i+1:]
		} else {
			line, m = m, nil
		}
		line = bytes.TrimRight(line, "\r")
		if first {
			first = false
			continue
		}
		if len(line) == 0 {
			return
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		if !f(bytes.TrimSpace(name), value) {
			return
		}
	}
}

// Digest parameters kept by redactCredentials: they say who authenticated
// for what, and none of them can help recover a password.
var keptDigestParams = map[string]bool{"username": true, "realm": true, "uri": true, "algorithm": true, "qop": true, "nc": true}

// tokenDigestParams are written without quotes.
var tokenDigestParams = map[string]bool{"algorithm": true, "qop": true, "nc": true}

// redactCredentials returns m with the credentials in its Authorization and
// Proxy-Authorization headers replaced: a Digest keeps its username, realm,
// uri, algorithm, qop and nc, and every other parameter (response, nonce,
// cnonce, opaque, …) reads "redacted"; any other scheme, or a Digest that
// does not parse, keeps only its scheme. m itself is returned when it has
// no such header; otherwise a copy (header lines end in CRLF).
func redactCredentials(m []byte) []byte {
	end, sep := headerEnd(m)
	head := m
	if end >= 0 {
		head = m[:end+sep]
	}
	if !containsFold(head, "authorization") {
		return m
	}
	out := make([]byte, 0, len(m))
	rest := head
	first := true
	for len(rest) > 0 {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i+1], rest[i+1:]
		} else {
			rest = nil
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if first || !ok || len(name) == 0 || name[0] == ' ' || name[0] == '\t' || !isAuthorization(bytes.TrimSpace(name)) {
			first = false
			out = append(out, line...)
			continue
		}
		// The header's value, with its folded continuation lines.
		v := string(bytes.TrimSpace(value))
		for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
			cont := rest
			if i := bytes.IndexByte(rest, '\n'); i >= 0 {
				cont, rest = rest[:i+1], rest[i+1:]
			} else {
				rest = nil
			}
			v += " " + string(bytes.TrimSpace(cont))
		}
		out = append(out, bytes.TrimSpace(name)...)
		out = append(out, ": "...)
		out = append(out, redactAuthorization(v)...)
		out = append(out, "\r\n"...)
	}
	return append(out, m[len(head):]...)
}

func isAuthorization(name []byte) bool {
	return equalFold(name, "authorization") || equalFold(name, "proxy-authorization")
}

// redactAuthorization redacts one credentials value (see
// redactCredentials).
func redactAuthorization(v string) string {
	scheme, _, _ := strings.Cut(strings.TrimSpace(v), " ")
	if scheme == "" || !isToken(scheme) {
		return "redacted"
	}
	if !strings.EqualFold(scheme, "Digest") {
		return scheme + " redacted"
	}
	params, err := parseDigest(v)
	if err != nil {
		return scheme + " redacted"
	}
	names := make([]string, 0, len(params))
	for n := range params {
		names = append(names, n)
	}
	sort.Strings(names)
	ps := make([]digestParam, 0, len(names))
	for _, n := range names {
		switch {
		case !keptDigestParams[n]:
			ps = append(ps, digestParam{name: n, value: "redacted", quote: true})
		case tokenDigestParams[n]:
			ps = append(ps, digestParam{name: n, value: params[n]})
		default:
			ps = append(ps, digestParam{name: n, value: params[n], quote: true})
		}
	}
	out, ok := formatDigest(ps)
	if !ok {
		return scheme + " redacted"
	}
	return out
}

// containsFold reports whether b contains the lower-case ASCII word,
// ignoring case.
func containsFold(b []byte, word string) bool {
	for i := 0; i+len(word) <= len(b); i++ {
		j := 0
		for j < len(word) && lower(b[i+j]) == word[j] {
			j++
		}
		if j == len(word) {
			return true
		}
	}
	return false
}
