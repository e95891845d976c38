package sip

import (
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// statelessResponse builds the answer to a request the edge refuses before
// sipgo sees it (RFC 3261 §8.2.7): no transaction, so nothing is kept and
// nothing is retransmitted. It echoes the request's Via, From, To, Call-ID
// and CSeq fields as written, so the sender can match it. It returns nil
// when no answer can be built: a response the sender cannot match (no Via
// or CSeq), or a field that would carry a control character back.
//
// The To tag is derived from the request, so a retransmitted request gets
// the same answer.
func statelessResponse(m *rawMessage, code int, reason, userAgent string, extra ...string) []byte {
	var b strings.Builder
	b.Grow(512)
	b.WriteString("SIP/2.0 ")
	b.WriteString(strconv.Itoa(code))
	b.WriteByte(' ')
	b.WriteString(reason)
	b.WriteString("\r\n")
	var via, cseq, toTagged bool
	var seed string
	for _, h := range m.headers {
		name := echoNames[h.key]
		if name == "" {
			continue
		}
		value := h.value
		switch h.key {
		case hdrVia, hdrCSeq:
			// The sender matches the answer by these: without them as
			// it sent them there is no answer worth sending.
			if !plausible(h.key, value) {
				return nil
			}
		default:
			// Anything else is echoed only if it is clean; a To left
			// out is replaced below.
			if hasControl(value) || value == "" || !parsesAs(name, value) {
				continue
			}
		}
		switch h.key {
		case hdrVia:
			via = true
			if seed == "" {
				seed = value
			}
		case hdrCSeq:
			cseq = true
		case hdrTo:
			if toTagged {
				continue // a second To is not echoed
			}
			toTagged = true
			if code > 100 && !hasTag(value) {
				value += ";tag=" + statelessTag(m, seed)
			}
		}
		b.WriteString(name)
		b.WriteString(": ")
		b.WriteString(value)
		b.WriteString("\r\n")
	}
	if !via || !cseq {
		return nil
	}
	if !toTagged {
		// A response needs a To; for a request that has none, the
		// Request-URI is where it was sent.
		if _, uri, _, ok := m.requestLine(); ok && !hasControl(uri) && !strings.ContainsAny(uri, "<>\"") {
			if to := "<" + uri + ">;tag=" + statelessTag(m, seed); parsesAs("to", to) {
				b.WriteString("To: " + to + "\r\n")
			}
		}
	}
	if userAgent != "" {
		b.WriteString("Server: ")
		b.WriteString(userAgent)
		b.WriteString("\r\n")
	}
	if code >= 300 {
		// wagate's own refusal, as every refusal it makes (RFC 3326).
		b.WriteString(`Reason: SIP;cause=` + strconv.Itoa(code) + `;text="` + reason + "\"\r\n")
	}
	for _, h := range extra {
		b.WriteString(h)
		b.WriteString("\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return []byte(b.String())
}

// plausible reports whether a Via or CSeq value is one a sender can match
// an answer by: a SIP/2.0 sent-protocol and a host in every Via value, a
// number and a method in CSeq. It is looser than sipgo (RFC 4475 has
// valid messages sipgo cannot parse, and invalid ones that deserve a 400).
func plausible(k hdrKey, v string) bool {
	if hasControl(v) {
		return false
	}
	switch k {
	case hdrVia:
		// Only the first value: the rest is the sender's problem.
		first := splitOutsideQuotes(v, ',')[0]
		sentBy, _, _ := strings.Cut(first, ";")
		f := strings.Fields(normalizeSentBy(sentBy))
		if len(f) != 2 {
			return false
		}
		proto := strings.Split(f[0], "/")
		return len(proto) == 3 && strings.EqualFold(proto[0], "SIP") && proto[1] != "" && isToken(proto[2])
	case hdrCSeq:
		n, method, ok := strings.Cut(strings.TrimSpace(v), " ")
		if !ok || n == "" || strings.TrimLeft(n, "0123456789") != "" {
			return false
		}
		return isToken(strings.TrimSpace(method))
	}
	return false
}

// parsesAs reports whether sipgo reads value as a valid header named name
// (lower-case), so that every answer the edge builds parses.
func parsesAs(name, value string) bool {
	_, err := sipHeaders.ParseHeader(nil, []byte(name+": "+value))
	return err == nil
}

var sipHeaders = sip.HeadersParser(sip.DefaultHeadersParser())

// echoNames are the fields a stateless answer copies from the request.
var echoNames = [...]string{hdrVia: "Via", hdrFrom: "From", hdrTo: "To", hdrCallID: "Call-ID", hdrCSeq: "CSeq", hdrRequire: ""}

// hasTag reports whether a To or From value already carries a tag
// parameter (outside the angle brackets of its URI).
func hasTag(v string) bool {
	if i := strings.LastIndexByte(v, '>'); i >= 0 {
		v = v[i:]
	}
	for _, p := range strings.Split(v, ";")[1:] {
		k, _, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(k), "tag") {
			return true
		}
	}
	return false
}

func statelessTag(m *rawMessage, via string) string {
	h := fnv.New64a()
	h.Write([]byte(via))
	for _, v := range m.values(hdrCallID) {
		h.Write([]byte(v))
	}
	return strconv.FormatUint(h.Sum64(), 36)
}

// warningHeader is wagate's Warning (RFC 3261 §20.43) saying what is wrong.
func warningHeader(text string) string {
	text = strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < 0x20 || r == 0x7f {
			return '\''
		}
		return r
	}, text)
	if len(text) > 160 {
		text = text[:160]
	}
	return `Warning: 399 wagate "` + text + `"`
}
