package media

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits that keep a hostile body from costing much: real offers are a few
// hundred bytes with one or two m= lines.
const (
	maxSDPSize    = 64 << 10
	maxSDPMedia   = 32
	maxSDPFormats = 64 // per m= line
)

// Direction is an SDP stream direction attribute (RFC 3264).
type Direction string

// Stream directions; the zero value means none was given (sendrecv).
const (
	SendRecv Direction = "sendrecv"
	SendOnly Direction = "sendonly"
	RecvOnly Direction = "recvonly"
	Inactive Direction = "inactive"
)

// Description is the part of an SDP session description (RFC 4566) that
// wagate uses. ParseSDP fills it from a body; Marshal writes one.
type Description struct {
	// Origin is the o= line's fields, kept as text.
	Origin Origin
	// SessionName is the s= line (Marshal writes "-" when empty).
	SessionName string
	// Connection is the session-level c= address; invalid when absent.
	Connection netip.Addr
	// Direction is the session-level direction attribute, "" when absent.
	Direction Direction
	// Attributes are the other session-level a= lines, in order.
	Attributes []Attribute
	// Media are the m= sections, in order.
	Media []Media
}

// Origin is an SDP o= line.
type Origin struct {
	Username       string
	SessionID      string
	SessionVersion string
	// Address is the unicast address as written.
	Address string
}

// Media is one m= section.
type Media struct {
	// Type is the media type: audio, video, image, application, …
	Type string
	// Port is the transport port; 0 means the stream is rejected/disabled.
	Port int
	// Proto is the transport protocol, e.g. RTP/AVP or RTP/SAVP.
	Proto string
	// Formats are the m= line's format tokens, as written.
	Formats []string
	// Connection is the stream's address: the media-level c= line, else the
	// session-level one (ParseSDP resolves it). Invalid when neither
	// exists. Marshal writes a media-level c= only when it differs from
	// the session's.
	Connection netip.Addr
	// Codecs describe the formats of an RTP stream, one per format in m=
	// order (Name is "" for a dynamic payload type without a=rtpmap). Nil
	// for non-RTP streams. Marshal writes the m= formats from Codecs when
	// Codecs is not nil.
	Codecs []Codec
	// Ptime and MaxPtime are a=ptime and a=maxptime in ms, 0 when absent.
	Ptime, MaxPtime int
	// RTCPMux is a=rtcp-mux.
	RTCPMux bool
	// Direction is the stream's direction attribute, "" when absent.
	Direction Direction
	// Attributes are the stream's other a= lines (a=crypto, a=rtcp, …) in
	// order; rtpmap, fmtp, ptime, maxptime, rtcp-mux and direction are in
	// the fields above instead.
	Attributes []Attribute
}

// Codec is an RTP payload format: a=rtpmap and a=fmtp of one payload type.
type Codec struct {
	PT        uint8
	Name      string // as written, e.g. "opus", "PCMU", "telephone-event"
	ClockRate int
	Channels  int    // 0 when not written
	Fmtp      string // a=fmtp parameters, "" when absent
}

// Attribute is an a= line: a=Key or a=Key:Value.
type Attribute struct {
	Key, Value string
}

// Addr returns the stream's RTP address (invalid if no usable address).
func (m *Media) Addr() netip.AddrPort {
	if !m.Connection.IsValid() {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(m.Connection, uint16(m.Port))
}

// IsRTP reports whether the stream is carried over RTP (RTP/AVP, RTP/SAVP,
// UDP/TLS/RTP/SAVPF, …).
func (m *Media) IsRTP() bool { return isRTPProto(m.Proto) }

// EffectiveDirection returns the stream's direction, falling back to the
// session's and then to sendrecv.
func (d *Description) EffectiveDirection(m *Media) Direction {
	switch {
	case m.Direction != "":
		return m.Direction
	case d.Direction != "":
		return d.Direction
	}
	return SendRecv
}

func isRTPProto(p string) bool {
	return strings.HasPrefix(p, "RTP/") || strings.Contains(p, "/RTP/")
}

// staticCodecs are the RFC 3551 payload types a peer may use without
// a=rtpmap; only the audio ones a PBX may send.
var staticCodecs = map[uint8]Codec{
	0:  {PT: 0, Name: "PCMU", ClockRate: 8000},
	3:  {PT: 3, Name: "GSM", ClockRate: 8000},
	4:  {PT: 4, Name: "G723", ClockRate: 8000},
	8:  {PT: 8, Name: "PCMA", ClockRate: 8000},
	9:  {PT: 9, Name: "G722", ClockRate: 8000},
	13: {PT: 13, Name: "CN", ClockRate: 8000},
	18: {PT: 18, Name: "G729", ClockRate: 8000},
}

func badSDP(line int, format string, args ...any) error {
	if line > 0 {
		return fmt.Errorf("%w: line %d: %s", ErrBadSDP, line, fmt.Sprintf(format, args...))
	}
	return fmt.Errorf("%w: %s", ErrBadSDP, fmt.Sprintf(format, args...))
}

// ParseSDP parses an SDP body. It is lenient about layout (LF or CRLF line
// ends, a missing final line end, blank lines, line order, unknown lines)
// and strict about what wagate relies on: c= addresses must be unicast IP
// literals, m= ports and RTP payload types must be numbers in range (each
// listed once per m= line, however it is written), and rtpmap/fmtp/ptime
// must be well formed. Control characters are rejected so
// that values copied into other SDP cannot inject lines. Every error wraps
// ErrBadSDP.
func ParseSDP(body []byte) (*Description, error) {
	if len(body) > maxSDPSize {
		return nil, badSDP(0, "body of %d bytes exceeds %d", len(body), maxSDPSize)
	}
	p := sdpParser{d: &Description{}}
	lineNo := 0
	// One copy of the body, the values kept being substrings of it: a
	// string per line was most of what parsing allocated.
	text := string(body)
	for len(text) > 0 {
		var line string
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			line, text = text, ""
		}
		lineNo++
		line = strings.TrimRight(line, "\r \t")
		if len(line) == 0 {
			continue
		}
		if err := p.line(lineNo, line); err != nil {
			return nil, err
		}
	}
	if !p.sawVersion {
		return nil, badSDP(0, "no v= line")
	}
	return p.finish()
}

// ptFmtp is an a=fmtp line's payload type, as a number so that "0101"
// and "101" name the same one (as in rtpmap), and its parameters.
type ptFmtp struct {
	pt     uint8
	params string
}

type sdpParser struct {
	d          *Description
	sawVersion bool
	// per media section, until finish resolves them into Codecs
	rtpmaps [][]Codec
	fmtps   [][]ptFmtp
	conns   []netip.Addr
}

func (p *sdpParser) line(n int, line string) error {
	for i := 0; i < len(line); i++ {
		if c := line[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return badSDP(n, "control character 0x%02x", c)
		}
	}
	if len(line) < 2 || line[1] != '=' || line[0] < 'a' || line[0] > 'z' {
		return badSDP(n, "not a <type>=<value> line")
	}
	typ, val := line[0], line[2:]
	if !p.sawVersion {
		if typ != 'v' || strings.TrimSpace(val) != "0" {
			return badSDP(n, "first line must be v=0")
		}
		p.sawVersion = true
		return nil
	}
	inMedia := len(p.d.Media) > 0
	switch typ {
	case 'v':
		return badSDP(n, "repeated v= line")
	case 'o':
		var buf [6]string
		f := fieldsInto(buf[:0], val)
		if len(f) != 6 {
			return badSDP(n, "o= wants 6 fields, has %d", len(f))
		}
		p.d.Origin = Origin{Username: f[0], SessionID: f[1], SessionVersion: f[2], Address: f[5]}
	case 's':
		if !inMedia {
			p.d.SessionName = val
		}
	case 'c':
		addr, err := parseConnection(val)
		if err != nil {
			return badSDP(n, "c=: %v", err)
		}
		if inMedia {
			p.conns[len(p.conns)-1] = addr
		} else {
			p.d.Connection = addr
		}
	case 'm':
		return p.media(n, val)
	case 'a':
		return p.attribute(n, val, inMedia)
	}
	// Other lines (i, u, e, p, b, t, r, z, k) do not matter to a relay.
	return nil
}

func parseConnection(val string) (netip.Addr, error) {
	var buf [3]string
	f := fieldsInto(buf[:0], val)
	if len(f) != 3 {
		return netip.Addr{}, fmt.Errorf("want \"IN IP4|IP6 <address>\", got %q", val)
	}
	if f[0] != "IN" {
		return netip.Addr{}, fmt.Errorf("network type %q is not IN", f[0])
	}
	addr, err := netip.ParseAddr(f[2])
	if err != nil {
		return netip.Addr{}, fmt.Errorf("address %q is not an IP literal", f[2])
	}
	switch {
	case f[1] == "IP4" && !addr.Is4() && !addr.Is4In6():
		return netip.Addr{}, fmt.Errorf("IP4 with address %s", addr)
	case f[1] == "IP6" && !addr.Is6():
		return netip.Addr{}, fmt.Errorf("IP6 with address %s", addr)
	case f[1] != "IP4" && f[1] != "IP6":
		return netip.Addr{}, fmt.Errorf("address type %q", f[1])
	case addr.Zone() != "":
		return netip.Addr{}, fmt.Errorf("address %s has a zone", addr)
	case addr.IsMulticast():
		return netip.Addr{}, fmt.Errorf("multicast address %s", addr)
	}
	return addr.Unmap(), nil
}

// fieldsInto is strings.Fields appending to dst, so that a caller with a
// few fields keeps them on its stack. Text that is not ASCII goes to
// strings.Fields, whose idea of a space is Unicode's.
func fieldsInto(dst []string, s string) []string {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return append(dst, strings.Fields(s)...)
		}
	}
	start := -1
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ' ', '\t', '\n', '\v', '\f', '\r':
			if start >= 0 {
				dst = append(dst, s[start:i])
				start = -1
			}
		default:
			if start < 0 {
				start = i
			}
		}
	}
	if start >= 0 {
		dst = append(dst, s[start:])
	}
	return dst
}

func (p *sdpParser) media(n int, val string) error {
	if len(p.d.Media) == maxSDPMedia {
		return badSDP(n, "more than %d m= lines", maxSDPMedia)
	}
	f := strings.Fields(val)
	if len(f) < 4 {
		return badSDP(n, "m= wants <media> <port> <proto> <fmt>…")
	}
	if len(f)-3 > maxSDPFormats {
		return badSDP(n, "more than %d formats", maxSDPFormats)
	}
	portStr, _, _ := strings.Cut(f[1], "/") // <port>/<number of ports>: one port is all we use
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return badSDP(n, "m= port %q", f[1])
	}
	m := Media{Type: f[0], Port: port, Proto: f[2], Formats: f[3:]}
	if m.IsRTP() {
		var seen [128]bool
		for _, ft := range m.Formats {
			pt, err := parsePT(ft)
			if err != nil {
				return badSDP(n, "m= payload type %q: %v", ft, err)
			}
			// A payload type listed twice ("0 8 0", or "101 0101") has no
			// meaning the peer could rely on: which rtpmap and fmtp belong
			// to which? Refused rather than guessed (488 upstream).
			if seen[pt] {
				return badSDP(n, "m= payload type %d listed twice", pt)
			}
			seen[pt] = true
		}
	}
	p.d.Media = append(p.d.Media, m)
	p.rtpmaps = append(p.rtpmaps, nil)
	p.fmtps = append(p.fmtps, nil)
	p.conns = append(p.conns, netip.Addr{})
	return nil
}

func parsePT(s string) (uint8, error) {
	v, err := strconv.ParseUint(s, 10, 8)
	if err != nil || v > 127 {
		return 0, fmt.Errorf("not a payload type 0-127")
	}
	return uint8(v), nil
}

func (p *sdpParser) attribute(n int, val string, inMedia bool) error {
	key, value, hasValue := strings.Cut(val, ":")
	if key = strings.TrimSpace(key); key == "" {
		return badSDP(n, "a= line without attribute name")
	}
	if !inMedia {
		switch Direction(key) {
		case SendRecv, SendOnly, RecvOnly, Inactive:
			p.d.Direction = Direction(key)
			return nil
		}
		p.d.Attributes = append(p.d.Attributes, Attribute{Key: key, Value: value})
		return nil
	}
	i := len(p.d.Media) - 1
	m := &p.d.Media[i]
	switch key {
	case string(SendRecv), string(SendOnly), string(RecvOnly), string(Inactive):
		m.Direction = Direction(key)
		return nil
	case "rtcp-mux":
		m.RTCPMux = true
		return nil
	case "ptime", "maxptime":
		v, err := strconv.Atoi(strings.TrimSpace(value))
		if !hasValue || err != nil || v < 1 || v > 1000 {
			return badSDP(n, "a=%s:%q", key, value)
		}
		if key == "ptime" {
			m.Ptime = v
		} else {
			m.MaxPtime = v
		}
		return nil
	}
	if !m.IsRTP() || (key != "rtpmap" && key != "fmtp") {
		m.Attributes = append(m.Attributes, Attribute{Key: key, Value: value})
		return nil
	}
	ptStr, rest, _ := strings.Cut(value, " ")
	pt, err := parsePT(ptStr)
	if err != nil {
		return badSDP(n, "a=%s payload type %q: %v", key, ptStr, err)
	}
	rest = strings.TrimSpace(rest)
	if key == "fmtp" {
		p.fmtps[i] = append(p.fmtps[i], ptFmtp{pt: pt, params: rest})
		return nil
	}
	c, err := parseRTPMap(pt, rest)
	if err != nil {
		return badSDP(n, "a=rtpmap:%s: %v", value, err)
	}
	p.rtpmaps[i] = append(p.rtpmaps[i], c)
	return nil
}

// parseRTPMap parses "<name>/<clock rate>[/<channels>]".
func parseRTPMap(pt uint8, s string) (Codec, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return Codec{}, fmt.Errorf("want <name>/<rate>[/<channels>]")
	}
	if !isToken(parts[0]) {
		return Codec{}, fmt.Errorf("bad encoding name")
	}
	rate, err := strconv.Atoi(parts[1])
	if err != nil || rate < 1 || rate > 1_000_000 {
		return Codec{}, fmt.Errorf("bad clock rate")
	}
	c := Codec{PT: pt, Name: parts[0], ClockRate: rate}
	if len(parts) == 3 {
		ch, err := strconv.Atoi(parts[2])
		if err != nil || ch < 1 || ch > 255 {
			return Codec{}, fmt.Errorf("bad channel count")
		}
		c.Channels = ch
	}
	return c, nil
}

// isToken reports whether s is a non-empty run of the characters an
// encoding name uses.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-_.+!", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// finish resolves per-stream connection addresses and codecs.
func (p *sdpParser) finish() (*Description, error) {
	d := p.d
	for i := range d.Media {
		m := &d.Media[i]
		m.Connection = p.conns[i]
		if !m.Connection.IsValid() {
			m.Connection = d.Connection
		}
		if !m.IsRTP() {
			continue
		}
		m.Codecs = make([]Codec, len(m.Formats))
		for j, ft := range m.Formats {
			pt, _ := parsePT(ft) // checked, and unique, in media()
			c, ok := staticCodecs[pt]
			c.PT = pt
			for _, r := range p.rtpmaps[i] {
				if r.PT == pt {
					c, ok = r, true
					break
				}
			}
			if !ok {
				c.Name = ""
			}
			for _, f := range p.fmtps[i] {
				if f.pt == pt {
					c.Fmtp = f.params
					break
				}
			}
			m.Codecs[j] = c
		}
	}
	return d, nil
}

// Marshal writes d as an SDP body with CRLF line ends. The result parses
// back with ParseSDP to the same description (given valid fields).
func (d *Description) Marshal() []byte {
	var b bytes.Buffer
	b.Grow(512)
	o := d.Origin
	b.WriteString("v=0\r\n")
	writeStrings(&b, "o=", orDash(o.Username), " ", orZero(o.SessionID), " ", orZero(o.SessionVersion), " IN ", originAddrType(o.Address), " ", orZero(o.Address), "\r\n")
	writeStrings(&b, "s=", orDash(d.SessionName), "\r\n")
	if d.Connection.IsValid() {
		writeConnection(&b, d.Connection)
	}
	b.WriteString("t=0 0\r\n")
	if d.Direction != "" {
		writeStrings(&b, "a=", string(d.Direction), "\r\n")
	}
	writeAttributes(&b, d.Attributes)
	for i := range d.Media {
		writeMedia(&b, &d.Media[i], d.Connection)
	}
	// A body lives as long as the call (the bridge keeps it for
	// re-offers, the SIP layer in its messages): an exact copy instead
	// of the builder's doubled buffer.
	return bytes.Clone(b.Bytes())
}

func writeMedia(b *bytes.Buffer, m *Media, session netip.Addr) {
	writeStrings(b, "m=", m.Type, " ")
	writeInt(b, m.Port)
	writeStrings(b, " ", m.Proto)
	if m.Codecs != nil {
		for _, c := range m.Codecs {
			b.WriteByte(' ')
			writeInt(b, int(c.PT))
		}
	} else {
		for _, f := range m.Formats {
			b.WriteString(" ")
			b.WriteString(f)
		}
	}
	b.WriteString("\r\n")
	if m.Connection.IsValid() && m.Connection != session {
		writeConnection(b, m.Connection)
	}
	for _, c := range m.Codecs {
		if c.Name != "" {
			b.WriteString("a=rtpmap:")
			writeInt(b, int(c.PT))
			writeStrings(b, " ", c.Name, "/")
			writeInt(b, c.ClockRate)
			if c.Channels > 0 {
				b.WriteByte('/')
				writeInt(b, c.Channels)
			}
			b.WriteString("\r\n")
		}
		if c.Fmtp != "" {
			b.WriteString("a=fmtp:")
			writeInt(b, int(c.PT))
			writeStrings(b, " ", c.Fmtp, "\r\n")
		}
	}
	if m.Ptime > 0 {
		b.WriteString("a=ptime:")
		writeInt(b, m.Ptime)
		b.WriteString("\r\n")
	}
	if m.MaxPtime > 0 {
		b.WriteString("a=maxptime:")
		writeInt(b, m.MaxPtime)
		b.WriteString("\r\n")
	}
	if m.RTCPMux {
		b.WriteString("a=rtcp-mux\r\n")
	}
	if m.Direction != "" {
		writeStrings(b, "a=", string(m.Direction), "\r\n")
	}
	writeAttributes(b, m.Attributes)
}

func writeAttributes(b *bytes.Buffer, attrs []Attribute) {
	for _, a := range attrs {
		if a.Value != "" {
			writeStrings(b, "a=", a.Key, ":", a.Value, "\r\n")
		} else {
			writeStrings(b, "a=", a.Key, "\r\n")
		}
	}
}

func writeConnection(b *bytes.Buffer, addr netip.Addr) {
	writeStrings(b, "c=IN ", addrType(addr), " ")
	b.Write(addr.AppendTo(b.AvailableBuffer()))
	b.WriteString("\r\n")
}

// writeStrings and writeInt are what Marshal writes with: fmt.Fprintf
// was most of its time, for text this plain.
func writeStrings(b *bytes.Buffer, ss ...string) {
	for _, s := range ss {
		b.WriteString(s)
	}
}

func writeInt(b *bytes.Buffer, n int) {
	b.Write(strconv.AppendInt(b.AvailableBuffer(), int64(n), 10))
}

func addrType(a netip.Addr) string {
	if a.Is4() {
		return "IP4"
	}
	return "IP6"
}

func originAddrType(s string) string {
	if a, err := netip.ParseAddr(s); err == nil {
		return addrType(a.Unmap())
	}
	return "IP4"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func orZero(s string) string {
	if s == "" {
		return "0"
	}
	return s
}
