// Package sipua is a small SIP user agent over UDP for the end-to-end
// tests: enough of RFC 3261 to place a call (INVITE with retransmission,
// 2xx ACK, route sets), to answer one (100/180/200 retransmitted until the
// ACK), and to end it with BYE from either side. It is a test peer, not a
// SIP stack: no TCP/TLS, no forking, no digest, one dialog per call.
//
// It is hand-written rather than built on sipgo so that the peers under
// test share no code with wagate's own SIP layer, and so that a test can
// send exactly the messages WhatsApp's SIP edge sends (Record-Route on the
// INVITE, x-wa-meta-* headers, Meta's SDP) and see exactly what came back.
package sipua

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Msg is one SIP request or response.
type Msg struct {
	Request bool
	Method  string // requests
	RURI    string // requests
	Status  int    // responses
	Reason  string // responses
	Headers []Header
	Body    []byte
	Src     *net.UDPAddr // who sent it (received messages)
}

// Header is one header line.
type Header struct{ Name, Value string }

var compact = map[string]string{
	"v": "Via", "f": "From", "t": "To", "i": "Call-ID", "m": "Contact",
	"l": "Content-Length", "c": "Content-Type", "k": "Supported", "s": "Subject",
}

// Parse parses one SIP message from a datagram.
func Parse(b []byte) (*Msg, error) {
	head, body, ok := bytes.Cut(b, []byte("\r\n\r\n"))
	if !ok {
		head, body, ok = bytes.Cut(b, []byte("\n\n"))
		if !ok {
			return nil, errors.New("sip: no end of headers")
		}
	}
	lines := strings.Split(strings.ReplaceAll(string(head), "\r\n", "\n"), "\n")
	m := &Msg{}
	start := strings.TrimSpace(lines[0])
	if strings.HasPrefix(start, "SIP/2.0 ") {
		f := strings.SplitN(start, " ", 3)
		code, err := strconv.Atoi(f[1])
		if err != nil {
			return nil, fmt.Errorf("sip: bad status line %q", start)
		}
		m.Status = code
		if len(f) == 3 {
			m.Reason = f[2]
		}
	} else {
		f := strings.Fields(start)
		if len(f) != 3 || f[2] != "SIP/2.0" {
			return nil, fmt.Errorf("sip: bad request line %q", start)
		}
		m.Request, m.Method, m.RURI = true, f[0], f[1]
	}
	for _, l := range lines[1:] {
		if l == "" {
			continue
		}
		if (l[0] == ' ' || l[0] == '\t') && len(m.Headers) > 0 { // folded
			m.Headers[len(m.Headers)-1].Value += " " + strings.TrimSpace(l)
			continue
		}
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			return nil, fmt.Errorf("sip: bad header line %q", l)
		}
		k = strings.TrimSpace(k)
		if full, ok := compact[strings.ToLower(k)]; ok {
			k = full
		}
		m.Headers = append(m.Headers, Header{k, strings.TrimSpace(v)})
	}
	if cl := m.Get("Content-Length"); cl != "" {
		n, err := strconv.Atoi(cl)
		if err != nil || n < 0 || n > len(body) {
			return nil, fmt.Errorf("sip: Content-Length %q with %d body bytes", cl, len(body))
		}
		body = body[:n]
	}
	m.Body = append([]byte(nil), body...)
	return m, nil
}

// Get returns the first value of a header (case-insensitive), or "".
func (m *Msg) Get(name string) string {
	for _, h := range m.Headers {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

// GetAll returns every value of a header, comma-separated values split.
func (m *Msg) GetAll(name string) []string {
	var out []string
	for _, h := range m.Headers {
		if strings.EqualFold(h.Name, name) {
			out = append(out, splitComma(h.Value)...)
		}
	}
	return out
}

// Set replaces a header's values with one (appends when absent).
func (m *Msg) Set(name, value string) {
	kept := m.Headers[:0]
	for _, h := range m.Headers {
		if !strings.EqualFold(h.Name, name) {
			kept = append(kept, h)
		}
	}
	m.Headers = append(kept, Header{name, value})
}

// Add appends a header.
func (m *Msg) Add(name, value string) { m.Headers = append(m.Headers, Header{name, value}) }

// CSeq returns the CSeq number and method.
func (m *Msg) CSeq() (uint32, string) {
	f := strings.Fields(m.Get("CSeq"))
	if len(f) != 2 {
		return 0, ""
	}
	n, _ := strconv.ParseUint(f[0], 10, 32)
	return uint32(n), f[1]
}

// Branch is the branch parameter of the top Via.
func (m *Msg) Branch() string { return param(m.Get("Via"), "branch") }

// FromTag and ToTag are the tags of From and To.
func (m *Msg) FromTag() string { return param(m.Get("From"), "tag") }
func (m *Msg) ToTag() string   { return param(m.Get("To"), "tag") }

// Bytes serialises the message (Content-Length is set from the body).
func (m *Msg) Bytes() []byte {
	var b bytes.Buffer
	if m.Request {
		fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", m.Method, m.RURI)
	} else {
		fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", m.Status, m.Reason)
	}
	for _, h := range m.Headers {
		if strings.EqualFold(h.Name, "Content-Length") {
			continue
		}
		fmt.Fprintf(&b, "%s: %s\r\n", h.Name, h.Value)
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", len(m.Body))
	b.Write(m.Body)
	return b.Bytes()
}

func (m *Msg) String() string { return string(m.Bytes()) }

// splitComma splits a header value on commas outside <> and quotes.
func splitComma(v string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '"':
			quoted = !quoted
		case '<':
			if !quoted {
				depth++
			}
		case '>':
			if !quoted && depth > 0 {
				depth--
			}
		case ',':
			if !quoted && depth == 0 {
				out = append(out, strings.TrimSpace(v[start:i]))
				start = i + 1
			}
		}
	}
	if s := strings.TrimSpace(v[start:]); s != "" {
		out = append(out, s)
	}
	return out
}

// param returns a ;name=value parameter of a header value (after any <>).
func param(v, name string) string {
	if i := strings.LastIndexByte(v, '>'); i >= 0 {
		v = v[i+1:]
	}
	for _, p := range strings.Split(v, ";")[1:] {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, name) {
			return val
		}
	}
	return ""
}

// URIOf returns the URI inside a name-addr (`"x" <sip:…>;tag=…`) or the
// addr-spec itself.
func URIOf(v string) string {
	if i := strings.IndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			return v[i+1 : i+j]
		}
	}
	if i := strings.IndexByte(v, ';'); i >= 0 {
		return strings.TrimSpace(v[:i])
	}
	return strings.TrimSpace(v)
}

// URIUser returns the user part of a SIP URI ("" when absent).
func URIUser(uri string) string {
	uri = URIOf(uri)
	_, rest, ok := strings.Cut(uri, ":")
	if !ok {
		return ""
	}
	user, _, ok := strings.Cut(rest, "@")
	if !ok {
		return ""
	}
	return user
}

// URIAddr resolves the host:port of a SIP URI (default port 5060).
func URIAddr(uri string) (*net.UDPAddr, error) {
	uri = URIOf(uri)
	_, rest, ok := strings.Cut(uri, ":")
	if !ok {
		return nil, fmt.Errorf("sip: bad URI %q", uri)
	}
	if _, after, ok := strings.Cut(rest, "@"); ok {
		rest = after
	}
	if i := strings.IndexAny(rest, ";?"); i >= 0 {
		rest = rest[:i]
	}
	host, port := rest, "5060"
	if h, p, err := net.SplitHostPort(rest); err == nil {
		host, port = h, p
	}
	return net.ResolveUDPAddr("udp4", net.JoinHostPort(host, port))
}
