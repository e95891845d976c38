package sip

// What the SIP trace reads from a raw message without parsing it (the
// summary of a log line, the Call-ID a HEP packet is correlated by) and
// the redaction of credentials and SRTP keys before a message leaves
// wagate in a trace.

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

// redactCredentials returns m with its secrets replaced: the credentials
// in its Authorization and Proxy-Authorization headers (a Digest keeps
// its username, realm, uri, algorithm, qop and nc, and every other
// parameter — response, nonce, cnonce, opaque, … — reads "redacted"; any
// other scheme, or a Digest that does not parse, keeps only its scheme)
// and the SRTP keys in its SDP (redactSDPKeys), with Content-Length set to
// the body's new length. m itself is returned when it holds none;
// otherwise a copy (rewritten header lines end in CRLF).
func redactCredentials(m []byte) []byte {
	end, sep := headerEnd(m)
	head, body := m, []byte(nil)
	if end >= 0 {
		head, body = m[:end+sep], m[end+sep:]
	}
	nh, authz := redactAuthorizations(head)
	nb, keys := redactSDPKeys(body)
	if !authz && !keys {
		return m
	}
	if len(nb) != len(body) {
		nh = setContentLength(nh, len(nb))
	}
	out := make([]byte, 0, len(nh)+len(nb))
	return append(append(out, nh...), nb...)
}

// redactAuthorizations redacts the credentials headers of head (see
// redactCredentials); head itself, and false, when it has none.
func redactAuthorizations(head []byte) ([]byte, bool) {
	if !containsFold(head, "authorization") {
		return head, false
	}
	out := make([]byte, 0, len(head))
	rest := head
	first := true
	for len(rest) > 0 {
		var line []byte
		line, rest = cutLine(rest)
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
	return out, true
}

// redactSDPKeys returns body with the SRTP master keys of its SDP
// replaced: in each a=crypto line (RFC 4568) the key of every inline
// key-param reads "redacted", its lifetime and MKI kept
// ("inline:redacted|2^31|1:4"), and a k= line keeps only its method
// ("k=base64:redacted"). SIP over TLS protects these keys in transit; a
// trace sent to HEP in cleartext, or a log, must not undo that. body
// itself, and false, is returned when it holds none.
func redactSDPKeys(body []byte) ([]byte, bool) {
	if !bytes.Contains(body, []byte("a=crypto:")) && !bytes.Contains(body, []byte("\nk=")) && !bytes.HasPrefix(body, []byte("k=")) {
		return body, false
	}
	out := make([]byte, 0, len(body))
	rest := body
	for len(rest) > 0 {
		var line []byte
		line, rest = cutLine(rest)
		text := bytes.TrimRight(line, "\r\n")
		eol := line[len(text):]
		switch {
		case bytes.HasPrefix(text, []byte("a=crypto:")):
			out = append(out, redactCryptoLine(string(text))...)
		case bytes.HasPrefix(text, []byte("k=")):
			method, _, _ := strings.Cut(string(text[2:]), ":")
			out = append(out, "k="...)
			out = append(out, method...)
			if method != "prompt" {
				out = append(out, ":redacted"...)
			}
		default:
			out = append(out, text...)
		}
		out = append(out, eol...)
	}
	return out, true
}

// redactCryptoLine redacts one "a=crypto:<tag> <suite> <key-params>
// [<session-params>]" line; one it cannot read keeps only its tag.
func redactCryptoLine(line string) string {
	fields := strings.Fields(line)
	if len(fields) < 3 {
		tag, _, _ := strings.Cut(strings.TrimPrefix(line, "a=crypto:"), " ")
		if strings.Contains(tag, "inline:") {
			return "a=crypto:redacted"
		}
		return "a=crypto:" + tag + " redacted"
	}
	params := strings.Split(fields[2], ";")
	for i, p := range params {
		method, info, ok := strings.Cut(p, ":")
		if !ok {
			params[i] = "redacted"
			continue
		}
		_, tail, hasTail := strings.Cut(info, "|")
		params[i] = method + ":redacted"
		if hasTail {
			params[i] += "|" + tail
		}
	}
	fields[2] = strings.Join(params, ";")
	out := strings.Join(fields, " ")
	for _, p := range strings.Split(out, "inline:")[1:] {
		if !strings.HasPrefix(p, "redacted") {
			// A key where no key belongs: keep nothing of the line.
			return "a=crypto:redacted"
		}
	}
	return out
}

// setContentLength returns head with its Content-Length (or l) header set
// to n; head itself when it has none.
func setContentLength(head []byte, n int) []byte {
	out := make([]byte, 0, len(head)+4)
	rest := head
	first, found := true, false
	for len(rest) > 0 {
		var line []byte
		line, rest = cutLine(rest)
		name, _, ok := bytes.Cut(line, []byte(":"))
		if !first && !found && ok && len(name) > 0 && name[0] != ' ' && name[0] != '\t' {
			if nm := bytes.TrimSpace(name); equalFold(nm, "content-length") || equalFold(nm, "l") {
				found = true
				eol := line[len(bytes.TrimRight(line, "\r\n")):]
				out = append(out, nm...)
				out = append(out, ": "...)
				out = strconv.AppendInt(out, int64(n), 10)
				out = append(out, eol...)
				continue
			}
		}
		first = false
		out = append(out, line...)
	}
	if !found {
		return head
	}
	return out
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

// cutLine splits b after its first line feed: the line (with its end)
// and the rest; all of b and nil when it has none.
func cutLine(b []byte) (line, rest []byte) {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i+1], b[i+1:]
	}
	return b, nil
}
