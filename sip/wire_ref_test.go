package sip

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// The edge's split and canonical form skip work in the common case (no
// string copy of the message, pooled header arrays, Via and From/To
// values left alone when there is nothing to normalise, the top Via
// rebuilt in one buffer). refCanonical is the code as it was before those
// shortcuts, kept here as the reference: whatever a peer sends, the
// message handed to sipgo must be byte for byte what it was.

func refSplit(b []byte) (rawMessage, error) {
	var m rawMessage
	for len(b) > 0 && (b[0] == '\r' || b[0] == '\n') {
		b = b[1:]
	}
	text := string(b)
	pos := 0
	first := true
	for {
		line, next, lf, err := nextRawLine(text, pos)
		if err != nil {
			return m, err
		}
		pos = next
		if lf {
			m.folded = true
		}
		if first {
			if line == "" {
				return m, errEmptyStart
			}
			m.start = line
			first = false
			continue
		}
		if line == "" {
			m.body = b[pos:]
			return m, nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(m.headers) == 0 {
				return m, errLeadingSpace
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
			return m, errNoColon
		}
		name := strings.TrimRight(line[:i], " \t")
		if !isToken(name) {
			return m, errBadName
		}
		m.headers = append(m.headers, rawHeader{name: name, value: strings.TrimSpace(line[i+1:]), key: keyOf(name)})
	}
}

func refIsRequest(m *rawMessage) bool {
	return !strings.HasPrefix(strings.ToUpper(m.start), "SIP/")
}

func refRequestLine(m *rawMessage) (method, uri, version string, ok bool) {
	parts := strings.Split(m.start, " ")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

func refIsResponseBytes(b []byte) bool {
	b = bytes.TrimLeft(b, "\r\n")
	return len(b) >= 4 && (bytes.HasPrefix(b, []byte("SIP/")) || bytes.HasPrefix(bytes.ToUpper(b[:4]), []byte("SIP/")))
}

func refNormalizeVias(m *rawMessage) {
	for i := range m.headers {
		h := &m.headers[i]
		if h.key != hdrVia {
			continue
		}
		parts := refSplitOutsideQuotes(h.value, ',')
		for j, part := range parts {
			params := refSplitOutsideQuotes(part, ';')
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

func refNormalizeNameAddrs(m *rawMessage) {
	for i := range m.headers {
		h := &m.headers[i]
		if h.key != hdrFrom && h.key != hdrTo {
			continue
		}
		cut := strings.LastIndexByte(h.value, '>') + 1
		if cut == 0 {
			cut = strings.IndexByte(h.value, ';')
			if cut < 0 {
				continue
			}
		}
		params := refSplitOutsideQuotes(h.value[cut:], ';')
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

func refForceSource(m *rawMessage, src netip.AddrPort, stream bool) bool {
	for i := range m.headers {
		h := &m.headers[i]
		if h.key != hdrVia {
			continue
		}
		vias := refSplitOutsideQuotes(h.value, ',')
		params := refSplitOutsideQuotes(vias[0], ';')
		first := strings.TrimSpace(params[0])
		if first == "" {
			return false
		}
		kept := []string{first}
		for _, p := range params[1:] {
			k, _, _ := strings.Cut(p, "=")
			k = strings.TrimSpace(k)
			if strings.EqualFold(k, "rport") || strings.EqualFold(k, "received") {
				continue
			}
			kept = append(kept, strings.TrimSpace(p))
		}
		if stream {
			kept = append(kept, "received="+src.Addr().Unmap().String(), "rport="+strconv.Itoa(int(src.Port())))
		} else {
			kept = append(kept, "rport")
		}
		vias[0] = strings.Join(kept, ";")
		h.value = strings.Join(vias, ",")
		return true
	}
	return false
}

// checkAgainstReference runs data through the edge's wire steps and the
// reference's and fails on any difference. prev is split first into the
// same pooled message, so that nothing of an earlier message shows.
func checkAgainstReference(t *testing.T, prev, data []byte, src netip.AddrPort, stream bool) {
	t.Helper()
	if refIsResponseBytes(data) != isResponseBytes(data) {
		t.Fatalf("isResponseBytes differs on %q", data)
	}
	want, wantErr := refSplit(data)
	m, _ := getRawMessage(prev)
	err := m.split(data)
	defer putRaw(m)
	if err != wantErr {
		t.Fatalf("split error %v, reference %v, on %q", err, wantErr, data)
	}
	if m.start != want.start || m.folded != want.folded || !bytes.Equal(m.body, want.body) ||
		!(len(m.headers) == 0 && len(want.headers) == 0 || reflect.DeepEqual(m.headers, want.headers)) {
		t.Fatalf("split differs on %q:\n got %+v\nwant %+v", data, *m, want)
	}
	if err != nil {
		return
	}
	if m.isRequest() != refIsRequest(&want) {
		t.Fatalf("isRequest differs on start line %q", m.start)
	}
	a1, b1, c1, ok1 := m.requestLine()
	a2, b2, c2, ok2 := refRequestLine(&want)
	if a1 != a2 || b1 != b2 || c1 != c2 || ok1 != ok2 {
		t.Fatalf("requestLine differs on %q", m.start)
	}
	m.normalizeVias()
	m.normalizeNameAddrs()
	refNormalizeVias(&want)
	refNormalizeNameAddrs(&want)
	if got, ref := m.canonical(), want.canonical(); !bytes.Equal(got, ref) {
		t.Fatalf("normalised form differs on %q:\n got %q\nwant %q", data, got, ref)
	}
	if got, ref := m.forceSource(src, stream), refForceSource(&want, src, stream); got != ref {
		t.Fatalf("forceSource %v, reference %v, on %q", got, ref, data)
	}
	m.ensureContentLength()
	want.ensureContentLength()
	ref := want.canonical()
	if got := m.canonical(); !bytes.Equal(got, ref) {
		t.Fatalf("canonical form differs on %q:\n got %q\nwant %q", data, got, ref)
	}
	// Written into a reader's buffer, too small or large enough.
	for _, size := range []int{0, len(ref) - 1, len(ref), len(ref) + 100} {
		if size < 0 {
			continue
		}
		dst := bytes.Repeat([]byte{'#'}, size)
		if got := m.appendCanonical(dst, m.canonicalLen()); !bytes.Equal(got, ref) {
			t.Fatalf("canonical form in a %d-byte buffer differs on %q:\n got %q\nwant %q", size, data, got, ref)
		}
	}
}

// wireCases are messages with every kind of whitespace and parameter the
// normalisation handles, besides the ordinary ones.
func wireCases() []string {
	cases := []string{
		string(benchInvite), benchResponse, benchACK, benchBYE, options(),
		options("Require: 100rel,  timer"),
		"INVITE sip:x SIP/2.0\r\nTO :\r\n <sip:a@b>\r\n\r\n",
		"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1\r\nf: <sip:a@b>;tag=1\r\nt: <sip:c@d>\r\ni: x\r\nCSeq: 1 INVITE\r\n\r\n",
		"OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/TCP h\n ;branch=z9hG4bK2\nFrom: <sip:a@b>;tag=2\nTo: <sip:a@b>\nCall-ID: 2\nCSeq: 2 OPTIONS\nMax-Forwards: 1\nl: 3\n\nabc",
		"sip/2.0 180 Ringing\r\nVia: SIP / 2.0 / UDP  h:5060 ; branch = z9hG4bK3 ; rport ; received=1.2.3.4 , SIP/2.0/TCP g\r\n\r\n",
		"ſIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\n\r\n",
		"BYE sip:a@b  SIP/2.0\r\nVia:SIP/2.0/UDP h;x=\"a;b,c\";rport=9 ;received = 1.1.1.1\r\nFrom: \"A, B\" <sip:a@b> ; tag = 1\r\nTo: sip:c@d;tag=2 \r\nTo: sip:c@d ;tag=3\r\nCall-ID: 3\r\n\r\n",
		"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=a\u00a0b;rport\r\nFrom: <sip:a@b>;tag=\u00a01\r\nFrom: <sip:a@b>\t;tag=1\r\nTo: ;tag=x\r\nVia: ,SIP/2.0/UDP  h\r\nVia:\r\nVia: ;\r\nVia: SIP/2.0/UDP h;\"q\\\";x\r\n\r\n",
		"\r\n\r\nOPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP [::1]:5060;branch=z\r\nContent-Length: 0\r\n\r\n",
	}
	return cases
}

func TestWireMatchesReference(t *testing.T) {
	srcs := []netip.AddrPort{fromMeta, netip.MustParseAddrPort("[2001:db8::1]:5061"), netip.MustParseAddrPort("[::ffff:10.0.0.1]:7"), {}}
	cases := wireCases()
	// And the fuzz corpus.
	files, _ := filepath.Glob("testdata/fuzz/FuzzEdgeInbound/*")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		if i := strings.Index(s, "[]byte("); i >= 0 {
			if v, err := strconv.Unquote(strings.SplitN(s[i+len("[]byte("):], ")\n", 2)[0]); err == nil {
				cases = append(cases, v)
			}
		}
	}
	if len(cases) < len(wireCases())+len(files) {
		t.Fatalf("read %d of %d corpus files", len(cases)-len(wireCases()), len(files))
	}
	for i, c := range cases {
		for _, src := range srcs {
			for _, stream := range []bool{false, true} {
				checkAgainstReference(t, []byte(cases[(i+1)%len(cases)]), []byte(c), src, stream)
			}
		}
	}
}

// FuzzWireMatchesReference: the edge's split, normalisation and canonical
// form give exactly the reference's bytes for any input. Run: go test
// -run '^$' -fuzz FuzzWireMatchesReference ./sip/
func FuzzWireMatchesReference(f *testing.F) {
	for _, c := range wireCases() {
		f.Add([]byte(c), false, []byte(string(benchInvite)))
	}
	f.Fuzz(func(t *testing.T, data []byte, stream bool, prev []byte) {
		checkAgainstReference(t, prev, data, netip.MustParseAddrPort("[2001:db8::7]:5062"), stream)
		checkAgainstReference(t, prev, data, fromMeta, stream)
	})
}

// refSplitOutsideQuotes is splitOutsideQuotes as it was, one pass keeping
// the quote state across pieces.
func refSplitOutsideQuotes(s string, sep byte) []string {
	var out []string
	quoted, escaped, start := false, false, 0
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
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func FuzzSplitOutsideQuotes(f *testing.F) {
	for _, s := range []string{``, `a,b`, `"a,b",c`, `"a\",b",c`, `<sip:x>;tag=1,"q;x";p`, `"unterminated,x`, `\",x`, `,,`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, sep := range []byte{',', ';'} {
			if got, want := splitOutsideQuotes(s, sep), refSplitOutsideQuotes(s, sep); !reflect.DeepEqual(got, want) {
				t.Fatalf("splitOutsideQuotes(%q, %q) = %q, want %q", s, sep, got, want)
			}
		}
	})
}
