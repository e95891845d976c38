package sip

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"unsafe"
)

// The SIP edge reads every message twice: first this splitter, which only
// finds lines, names and the body, then sipgo's parser. The split is what
// lets wagate size a message, answer one that sipgo would refuse (a 400
// needs the Via, From, To, Call-ID and CSeq lines as they were written),
// and hand sipgo one canonical form: CRLF line ends and folded header
// lines joined, so that sipgo and the edge always agree on which header
// fields a message has.

// rawMessage is a SIP message split into its start line, header fields and
// body, with no value interpreted. Its strings and body share the memory of
// the bytes it was split from (a socket's read buffer, reused for the next
// message): anything kept after the message is decided must be copied
// (edge.refuse copies the detail it logs and keeps).
type rawMessage struct {
	start   string
	headers []rawHeader
	body    []byte
	// folded is set when the message had a bare LF line end or a folded
	// header line (sipgo would read those differently).
	folded bool
}

// rawHeader is one header field: the name as written (trimmed), the value
// with continuation lines joined by one space, and which header it is.
type rawHeader struct {
	name  string
	value string
	key   hdrKey
}

// hdrKey names the headers the edge looks at; everything else is other.
type hdrKey uint8

const (
	hdrOther hdrKey = iota
	hdrVia
	hdrFrom
	hdrTo
	hdrCallID
	hdrCSeq
	hdrMaxForwards
	hdrContentLength
	hdrRequire
)

// keyOf classifies a header name, full or compact (RFC 3261 §7.3.3), in
// any case, without allocating.
func keyOf(name string) hdrKey {
	if len(name) == 1 {
		switch name[0] | 0x20 {
		case 'v':
			return hdrVia
		case 'f':
			return hdrFrom
		case 't':
			return hdrTo
		case 'i':
			return hdrCallID
		case 'l':
			return hdrContentLength
		}
		return hdrOther
	}
	for _, k := range [...]struct {
		name string
		key  hdrKey
	}{{"via", hdrVia}, {"from", hdrFrom}, {"to", hdrTo}, {"call-id", hdrCallID}, {"cseq", hdrCSeq},
		{"max-forwards", hdrMaxForwards}, {"content-length", hdrContentLength}, {"require", hdrRequire}} {
		if len(name) == len(k.name) && strings.EqualFold(name, k.name) {
			return k.key
		}
	}
	return hdrOther
}

var (
	errNoHeaderEnd  = errors.New("no empty line ends the header")
	errBareCR       = errors.New("a CR without LF")
	errNoColon      = errors.New("a header line without a colon")
	errBadName      = errors.New("a header name that is not a token")
	errLeadingSpace = errors.New("a continuation line before any header")
	errEmptyStart   = errors.New("an empty start line")
)

// splitMessage splits b. Leading CRLFs (keep-alives before a message) are
// skipped. The body is whatever follows the empty line; the caller applies
// Content-Length. Names and values are substrings of b, not copies.
func splitMessage(b []byte) (rawMessage, error) {
	var m rawMessage
	err := m.split(b)
	return m, err
}

// rawPool keeps split messages and their header arrays between messages,
// so that the edge's split allocates nothing per message.
var rawPool = sync.Pool{New: func() any { return &rawMessage{headers: make([]rawHeader, 0, 32)} }}

// getRawMessage splits b into a pooled message; the caller must putRaw it
// when done with it and everything taken from it.
func getRawMessage(b []byte) (*rawMessage, error) {
	m := rawPool.Get().(*rawMessage)
	return m, m.split(b)
}

// putRaw returns m to the pool, dropping its references to the message
// bytes. A message with unusually many headers is left to the collector.
func putRaw(m *rawMessage) {
	if cap(m.headers) > 128 {
		return
	}
	clear(m.headers)
	*m = rawMessage{headers: m.headers[:0]}
	rawPool.Put(m)
}

// split fills m from b, reusing m's header array.
func (m *rawMessage) split(b []byte) error {
	m.start, m.body, m.folded = "", nil, false
	m.headers = m.headers[:0]
	for len(b) > 0 && (b[0] == '\r' || b[0] == '\n') {
		b = b[1:]
	}
	// The message is read in place: no string copy of the datagram (see
	// rawMessage on what that asks of the caller).
	text := unsafe.String(unsafe.SliceData(b), len(b))
	pos := 0
	first := true
	for {
		line, next, lf, err := nextRawLine(text, pos)
		if err != nil {
			return err
		}
		pos = next
		if lf {
			m.folded = true
		}
		if first {
			if line == "" {
				return errEmptyStart
			}
			m.start = line
			first = false
			continue
		}
		if line == "" {
			m.body = b[pos:]
			return nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(m.headers) == 0 {
				return errLeadingSpace
			}
			h := &m.headers[len(m.headers)-1]
			if cont := strings.TrimSpace(line); cont != "" {
				if h.value == "" {
					h.value = cont
				} else {
					h.value += " " + cont
				}
			}
			m.folded = true
			continue
		}
		i := strings.IndexByte(line, ':')
		if i < 0 {
			return errNoColon
		}
		name := strings.TrimRight(line[:i], " \t")
		if !isToken(name) {
			return errBadName
		}
		if m.headers == nil {
			m.headers = make([]rawHeader, 0, 24)
		}
		m.headers = append(m.headers, rawHeader{name: name, value: strings.TrimSpace(line[i+1:]), key: keyOf(name)})
	}
}

// nextRawLine returns the line of s starting at pos without its end, where
// the next one starts, and whether it ended in a bare LF.
func nextRawLine(s string, pos int) (line string, next int, lf bool, err error) {
	i := strings.IndexAny(s[pos:], "\r\n")
	if i < 0 {
		return "", 0, false, errNoHeaderEnd
	}
	end := pos + i
	if s[end] == '\n' {
		return s[pos:end], end + 1, true, nil
	}
	if end+1 >= len(s) || s[end+1] != '\n' {
		return "", 0, false, errBareCR
	}
	return s[pos:end], end + 2, false, nil
}

// isToken reports whether s is an RFC 3261 token (header names, methods).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-.!%*_+`'~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// values returns the values of every field that is header k, in order.
func (m *rawMessage) values(k hdrKey) []string {
	var out []string
	for _, h := range m.headers {
		if h.key == k {
			out = append(out, h.value)
		}
	}
	return out
}

// count is the number of fields that are header k.
func (m *rawMessage) count(k hdrKey) int {
	n := 0
	for _, h := range m.headers {
		if h.key == k {
			n++
		}
	}
	return n
}

// isRequest reports whether the start line is a request line.
func (m *rawMessage) isRequest() bool {
	if len(m.start) >= 4 && m.start[0]|m.start[1]|m.start[2]|m.start[3] < 0x80 {
		return !strings.EqualFold(m.start[:4], "SIP/")
	}
	// Upper-casing a non-ASCII start can still make "SIP/" ("ſ" is an s).
	return !strings.HasPrefix(strings.ToUpper(m.start), "SIP/")
}

// requestLine splits a request line into its three parts; ok is false
// unless there are exactly three separated by single spaces.
func (m *rawMessage) requestLine() (method, uri, version string, ok bool) {
	method, rest, ok1 := strings.Cut(m.start, " ")
	uri, version, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || method == "" || uri == "" || version == "" || strings.IndexByte(version, ' ') >= 0 {
		return "", "", "", false
	}
	return method, uri, version, true
}

// normalizeVias removes the whitespace RFC 3261 allows inside Via values
// (around "/" in the sent-protocol, around ";" and "=" in parameters,
// around ","), which sipgo's Via parser does not take. Nothing else
// changes: an empty parameter or value stays, for sipgo to refuse.
func (m *rawMessage) normalizeVias() {
	for i := range m.headers {
		h := &m.headers[i]
		if h.key != hdrVia || viaIsNormal(h.value) {
			continue
		}
		parts := splitOutsideQuotes(h.value, ',')
		for j, part := range parts {
			params := splitOutsideQuotes(part, ';')
			params[0] = normalizeSentBy(params[0])
			for k := 1; k < len(params); k++ {
				name, value, hasValue := strings.Cut(params[k], "=")
				params[k] = strings.TrimSpace(name)
				if hasValue {
					params[k] += "=" + strings.TrimSpace(value)
				}
			}
			parts[j] = strings.Join(params, ";")
		}
		h.value = strings.Join(parts, ",")
	}
}

// viaIsNormal reports a Via value that normalizeVias would leave as it is
// (nearly every Via a real peer sends), so that it is not rebuilt: printable
// ASCII, where every space is between two characters that are neither
// whitespace nor "/", ";", "=" or ",". FuzzWireMatchesReference holds it
// to that (the normalised form against the code as it was).
func viaIsNormal(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == ' ' {
			if i == 0 || i == len(v)-1 || isViaSep(v[i-1]) || isViaSep(v[i+1]) {
				return false
			}
			continue
		}
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

func isViaSep(c byte) bool {
	return c == ' ' || c == '/' || c == ';' || c == '=' || c == ','
}

// paramsAreNormal reports header parameters (";a=b;c") that the
// normalisation would leave as they are: printable ASCII, no space next to
// ";" or "=" or at the end.
func paramsAreNormal(p string) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == ' ' {
			if i == len(p)-1 || p[i+1] == ';' || p[i+1] == '=' || p[i+1] == ' ' ||
				(i > 0 && (p[i-1] == ';' || p[i-1] == '=')) {
				return false
			}
			continue
		}
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// normalizeNameAddrs removes the whitespace RFC 3261 allows around ";"
// and "=" in the header parameters of From and To ("<sip:a@b> ; tag =
// 1"), where sipgo would not find the tag.
func (m *rawMessage) normalizeNameAddrs() {
	for i := range m.headers {
		h := &m.headers[i]
		if h.key != hdrFrom && h.key != hdrTo {
			continue
		}
		// Parameters follow the closing ">" of a name-addr, or the
		// first ";" of an addr-spec.
		cut := strings.LastIndexByte(h.value, '>') + 1
		if cut == 0 {
			cut = strings.IndexByte(h.value, ';')
			if cut < 0 {
				continue
			}
		}
		if (cut == 0 || (h.value[cut-1] != ' ' && h.value[cut-1] != '\t')) && paramsAreNormal(h.value[cut:]) {
			continue // nothing to change (the common case)
		}
		params := splitOutsideQuotes(h.value[cut:], ';')
		for k := 1; k < len(params); k++ {
			name, value, hasValue := strings.Cut(params[k], "=")
			params[k] = strings.TrimSpace(name)
			if hasValue {
				params[k] += "=" + strings.TrimSpace(value)
			}
		}
		h.value = strings.TrimRight(h.value[:cut], " \t") + strings.Join(params, ";")
	}
}

// normalizeSentBy turns "SIP / 2.0 / UDP   host:port " into
// "SIP/2.0/UDP host:port".
func normalizeSentBy(s string) string {
	fields := strings.Fields(strings.ReplaceAll(s, "/", " / "))
	var b strings.Builder
	for i, f := range fields {
		if i > 0 && f != "/" && fields[i-1] != "/" {
			b.WriteByte(' ')
		}
		b.WriteString(f)
	}
	return b.String()
}

// forceSource rewrites the first value of the top Via so that responses go
// to src: a bare rport on datagrams (RFC 3581, as if the client had asked),
// received and rport naming src on streams. rport and received the sender
// wrote there are replaced. It fails when there is no Via to rewrite.
func (m *rawMessage) forceSource(src netip.AddrPort, stream bool) bool {
	for i := range m.headers {
		h := &m.headers[i]
		if h.key != hdrVia {
			continue
		}
		// The value is rebuilt in one buffer: the first Via value's
		// sent-by, its parameters but rport and received (each trimmed),
		// the forced ones, then the other Via values as they were.
		top, others, more := cutOutsideQuotes(h.value, ',')
		first, params, hasParams := cutOutsideQuotes(top, ';')
		first = strings.TrimSpace(first)
		if first == "" {
			return false
		}
		buf := make([]byte, 0, len(h.value)+64)
		buf = append(buf, first...)
		for hasParams {
			var p string
			p, params, hasParams = cutOutsideQuotes(params, ';')
			k, _, _ := strings.Cut(p, "=")
			k = strings.TrimSpace(k)
			if strings.EqualFold(k, "rport") || strings.EqualFold(k, "received") {
				continue
			}
			buf = append(buf, ';')
			buf = append(buf, strings.TrimSpace(p)...)
		}
		if stream {
			buf = append(buf, ";received="...)
			if a := src.Addr().Unmap(); a.IsValid() {
				buf = a.AppendTo(buf)
			} else {
				buf = append(buf, a.String()...) // "invalid IP", as before
			}
			buf = append(buf, ";rport="...)
			buf = strconv.AppendUint(buf, uint64(src.Port()), 10)
		} else {
			buf = append(buf, ";rport"...)
		}
		if more {
			buf = append(buf, ',')
			buf = append(buf, others...)
		}
		h.value = unsafe.String(unsafe.SliceData(buf), len(buf)) // buf is not written again
		return true
	}
	return false
}

// ensureContentLength adds Content-Length when the message has none, so
// that sipgo can frame it on a stream; it reports whether it did.
func (m *rawMessage) ensureContentLength() bool {
	if m.count(hdrContentLength) > 0 {
		return false
	}
	m.headers = append(m.headers, rawHeader{name: "Content-Length", value: strconv.Itoa(len(m.body)), key: hdrContentLength})
	return true
}

// cutOutsideQuotes cuts s around the first sep that is not inside a quoted
// string; splitting the rest again gives what splitOutsideQuotes would.
func cutOutsideQuotes(s string, sep byte) (before, after string, found bool) {
	quoted, escaped := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case escaped:
			escaped = false
		case quoted && c == '\\':
			escaped = true
		case c == '"':
			quoted = !quoted
		case c == sep && !quoted:
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// splitOutsideQuotes splits s at sep where sep is not inside a quoted
// string. A split point is never inside quotes, so each piece can be cut
// afresh.
func splitOutsideQuotes(s string, sep byte) []string {
	var out []string
	for {
		before, after, found := cutOutsideQuotes(s, sep)
		out = append(out, before)
		if !found {
			return out
		}
		s = after
	}
}

// canonical returns the message with CRLF line ends and one line per
// header field, the only form handed to sipgo.
func (m *rawMessage) canonical() []byte { return m.appendCanonical(nil, m.canonicalLen()) }

// canonicalLen is the length of the canonical form.
func (m *rawMessage) canonicalLen() int {
	n := len(m.start) + 4 + len(m.body)
	for _, h := range m.headers {
		n += len(h.name) + len(h.value) + 4
	}
	return n
}

// appendCanonical writes the canonical form, n bytes (canonicalLen, which
// the edge has already measured against the read buffer), to dst[:0], in
// place when it has room (a reader's buffer), else to one new buffer of
// the exact size.
func (m *rawMessage) appendCanonical(dst []byte, n int) []byte {
	out := dst[:0]
	if cap(out) < n {
		out = make([]byte, 0, n)
	}
	out = append(out, m.start...)
	out = append(out, "\r\n"...)
	for _, h := range m.headers {
		out = append(out, h.name...)
		out = append(out, ": "...)
		out = append(out, h.value...)
		out = append(out, "\r\n"...)
	}
	out = append(out, "\r\n"...)
	return append(out, m.body...)
}

// hasControl reports a byte that must never be echoed into a header: any
// control character but HT.
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return true
		}
	}
	return false
}
