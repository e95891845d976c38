package sip

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
)

// edge is wagate's SIP front door. Every message read from a listener
// passes through it before sipgo sees it, so that what reaches sipgo and
// the B2BUA is guaranteed:
//
//   - it comes from a configured endpoint's address: a stranger's message
//     is dropped (or answered 403 statelessly) here and never creates a
//     transaction, a retransmission, a log line of its own or a connection;
//   - it is within the size limits and parses, and a request carries
//     exactly one To, From, Call-ID, CSeq (whose method is the request's)
//     and Max-Forwards, at least one Via, at most one Content-Length, no
//     Require wagate does not support, a sip/sips/tel Request-URI and
//     SIP/2.0; otherwise the edge answers it statelessly (400, 416, 420,
//     483, 505, 513) or, when no answer can be built, drops it;
//   - its top Via makes sipgo answer the packet's source (rport forced;
//     received and rport set on streams), so no response ever goes to a
//     host or port named in the message;
//   - it is in a canonical form (CRLF, no folded lines) that sipgo parses
//     exactly as the edge did.
//
// The checks are RFC 3261 §8.2 and §18.3 (and RFC 4475's torture cases);
// docs/security.md has the table.
type edge struct {
	cfg    *atomic.Pointer[configs.Config]
	log    *slog.Logger
	parser *sip.Parser
	flood  *floodGuard
	pace   *streamPacer
	conns  *connLimiter
	// busy reports whether a stream connection from src carries a live
	// call, so that the idle timeout spares it.
	busy func(src string) bool
	// dialogPeer returns the endpoint of a live call's leg whose source
	// addresses hold ip (Calls.DialogPeer): a source the running config
	// no longer has passes, but only within the dialogs it has up.
	dialogPeer func(ip netip.Addr) *configs.Endpoint

	stats   edgeCounters
	summary edgeSummary
}

// edgeReason names why the edge did not pass a message on; the names are
// log and metric labels.
type edgeReason uint8

const (
	reasonStranger edgeReason = iota
	reasonBlocked
	reasonTooLarge
	reasonMalformed
	reasonVersion
	reasonScheme
	reasonExtension
	reasonHops
	reasonBadResponse
	reasonConnRefused
	reasonIdle
	reasonWriteTimeout
	reasonTransport
	numReasons
)

var reasonNames = [numReasons]string{
	"stranger", "blocked", "too_large", "malformed", "version", "uri_scheme",
	"bad_extension", "too_many_hops", "bad_response", "connection_refused", "idle_timeout",
	"write_timeout", "wrong_transport",
}

func (r edgeReason) String() string { return reasonNames[r] }

// EdgeReasons lists every reason the edge counts refusals by (the keys of
// EdgeStats.Refused), so that a metric can show each from zero.
func EdgeReasons() []string { return reasonNames[:] }

// fromEndpoint reports a reason that only a configured endpoint's message
// can have: something an operator should look at, unlike the background
// noise of scanners.
func (r edgeReason) fromEndpoint() bool {
	switch r {
	case reasonStranger, reasonBlocked, reasonConnRefused, reasonIdle, reasonWriteTimeout:
		return false
	}
	return true
}

// edgeCounters are the edge's totals since start.
type edgeCounters struct {
	passed  atomic.Uint64
	replied atomic.Uint64 // stateless answers sent
	reasons [numReasons]atomic.Uint64
	panics  atomic.Uint64
	paced   atomic.Uint64 // stream requests read late (sip.tcp.paced_request_rate)
}

// EdgeStats is a snapshot of the SIP edge's counters.
type EdgeStats struct {
	// Passed counts messages handed to the B2BUA.
	Passed uint64 `json:"passed"`
	// Answered counts stateless answers the edge sent itself.
	Answered uint64 `json:"answered"`
	// Refused counts messages and connections not passed on, by reason.
	Refused map[string]uint64 `json:"refused"`
	// Connections is the number of open inbound stream connections.
	Connections int `json:"connections"`
	// PanicsRecovered counts handler panics caught (each is a bug).
	PanicsRecovered uint64 `json:"panics_recovered"`
	// Paced counts requests over TCP/TLS read late because their source
	// was over sip.tcp.paced_request_rate: passed on, not refused.
	Paced uint64 `json:"paced"`
}

// action is what the reader does with a message after the edge.
type action uint8

const (
	actDrop  action = iota // nothing leaves
	actPass                // msg goes to sipgo
	actReply               // reply goes back to the source; msg is dropped
)

// verdict is the edge's decision on one message.
type verdict struct {
	act   action
	msg   []byte // actPass: the canonical message
	reply []byte // actReply: the stateless answer
	// close ends a stream connection after the reply (or at once): its
	// framing or its peer can no longer be trusted.
	close bool
}

func newEdge(cfg *atomic.Pointer[configs.Config], log *slog.Logger) *edge {
	e := &edge{
		cfg:    cfg,
		log:    log,
		parser: sip.NewParser(),
		flood:  newFloodGuard(),
		pace:   newStreamPacer(),
		conns:  newConnLimiter(),
		busy:   func(string) bool { return false },

		dialogPeer: func(netip.Addr) *configs.Endpoint { return nil },
	}
	e.summary.log = log
	return e
}

// inbound decides one message read from src on transport tr ("UDP",
// "TCP" or "TLS").
func (e *edge) inbound(b []byte, src netip.AddrPort, tr string) verdict {
	return e.inboundTo(nil, b, src, tr)
}

// inboundTo is inbound writing a passed message into dst's memory when it
// fits (the reader's buffer), so that the canonical form costs no
// allocation. dst must not overlap b. On UDP a non-nil dst is sipgo's
// read buffer, which the whole datagram must fit: a message whose
// canonical form (longer than what was read: ";rport", ": " after each
// name, a Content-Length) would not is refused as too large.
func (e *edge) inboundTo(dst, b []byte, src netip.AddrPort, tr string) verdict {
	if isKeepalive(b) {
		return verdict{}
	}
	cfg := e.cfg.Load()
	ip := src.Addr().Unmap()
	ep := cfg.EndpointForSource(ip)
	dialogOnly := false
	if ep == nil {
		// A peer a reload removed or moved ends the calls it has up as
		// it would have before (docs/configuration.md, Reload).
		if ep = e.dialogPeer(ip); ep == nil {
			return e.stranger(cfg, b, ip, src)
		}
		dialogOnly = true
	}
	stream := tr != "UDP"
	if tr != "TLS" && ep.TLSOnly() && !ep.HasProxy(ip) {
		// Meta signals over TLS only, and a UDP source anyone can
		// forge: over UDP or TCP only a proxy the endpoint lists
		// forwards Meta's requests (a forged UIC INVITE would ring an
		// agent and grant the "caller" a callback permission).
		return e.refuse(reasonTransport, src, tr+" from "+ep.Name+"'s source_cidrs; a proxy forwarding Meta's requests goes in its proxy_cidrs", verdict{close: stream})
	}
	response := isResponseBytes(b)
	if ep.MaxRequestRate > 0 && !response {
		if v := e.flood.allow(ip, ep.MaxRequestRate, cfg.SIP.Flood.BlockTime.D()); v != floodAllow {
			if v == floodBlocked {
				e.log.Warn("sip edge: source over its request rate, blocked", "endpoint", ep.Name, "source", ip.String(),
					"rate", ep.MaxRequestRate, "for", cfg.SIP.Flood.BlockTime.D().String())
			}
			return e.refuse(reasonBlocked, src, "", verdict{})
		}
	}
	lim := cfg.SIP.Limits
	m, err := getRawMessage(b)
	defer putRaw(m)
	if err != nil {
		if response {
			return e.refuse(reasonBadResponse, src, err.Error(), verdict{close: stream})
		}
		return e.answer(reasonMalformed, src, err.Error(), m, 400, "Bad Request", stream)
	}
	if len(b) > lim.MaxMessageSize || len(m.headers) > lim.MaxHeaders || len(m.body) > lim.MaxBodySize {
		if response {
			return e.refuse(reasonTooLarge, src, "response", verdict{close: stream})
		}
		return e.answer(reasonTooLarge, src, strconv.Itoa(len(b))+" bytes, "+strconv.Itoa(len(m.headers))+" headers",
			m, 513, "Message Too Large", stream)
	}
	if !m.isRequest() {
		return e.response(dst, m, src, stream)
	}
	if dialogOnly && !inDialogBytes(m) {
		return e.stranger(cfg, b, ip, src)
	}
	return e.request(dst, m, src, tr)
}

// request checks a request from an endpoint.
func (e *edge) request(dst []byte, m *rawMessage, src netip.AddrPort, tr string) verdict {
	stream := tr != "UDP"
	method, uri, version, ok := m.requestLine()
	if !ok || !isToken(method) {
		return e.answer(reasonMalformed, src, "malformed request line", m, 400, "Bad Request", false)
	}
	ack := method == "ACK"
	if method != strings.ToUpper(method) {
		// Methods are case-sensitive and wagate implements none with
		// lower-case letters; sipgo would upper-case it into one it does.
		return e.answer(reasonMalformed, src, "method "+method, m, 501, "Not Implemented", false, "Allow: "+allowedMethods)
	}
	if !strings.EqualFold(version, "SIP/2.0") {
		if strings.HasPrefix(strings.ToUpper(version), "SIP/") {
			return e.answerUnlessACK(ack, reasonVersion, src, version, m, 505, "Version Not Supported")
		}
		return e.answerUnlessACK(ack, reasonMalformed, src, "malformed SIP version", m, 400, "Bad Request")
	}
	if msg := missingOrRepeated(m); msg != "" {
		return e.answerUnlessACK(ack, reasonMalformed, src, msg, m, 400, "Bad Request")
	}
	if msg := badNameAddr(m); msg != "" {
		return e.answerUnlessACK(ack, reasonMalformed, src, msg, m, 400, "Bad Request")
	}
	if code, msg := checkRequestURI(uri); code != 0 {
		r, phrase := reasonMalformed, "Bad Request"
		if code == 416 {
			r, phrase = reasonScheme, "Unsupported URI Scheme"
		}
		return e.answerUnlessACK(ack, r, src, msg, m, code, phrase)
	}
	m.normalizeVias()
	m.normalizeNameAddrs()
	// Every response goes back to where the request came from: forced
	// rport on UDP; on a stream, the connection's peer if sipgo must
	// reconnect (RFC 3261 §18.2.2 would dial the Via host). The rewrite
	// is made before the parse, so sipgo gets exactly what was checked.
	if !m.forceSource(src, stream) {
		return e.answerUnlessACK(ack, reasonMalformed, src, "malformed Via header", m, 400, "Bad Request")
	}
	m.ensureContentLength()
	n := m.canonicalLen()
	if !stream && dst != nil && n > cap(dst) {
		return e.answerUnlessACK(ack, reasonTooLarge, src, strconv.Itoa(n)+" bytes once canonical, over the "+strconv.Itoa(cap(dst))+"-byte read buffer",
			m, 513, "Message Too Large")
	}
	in := m.appendCanonical(dst, n)
	parsed, err := e.parser.ParseSIP(in)
	if err != nil {
		return e.answerUnlessACK(ack, reasonMalformed, src, "unparseable: "+err.Error(), m, 400, "Bad Request")
	}
	req, ok := parsed.(*sip.Request)
	if !ok || req.Via() == nil || req.To() == nil || req.From() == nil || req.CallID() == nil || req.CSeq() == nil || req.MaxForwards() == nil {
		return e.answerUnlessACK(ack, reasonMalformed, src, "a mandatory header does not parse", m, 400, "Bad Request")
	}
	if tag, _ := req.From().Params.Get("tag"); tag == "" {
		// RFC 3261 §8.1.1.3; sipgo keys transactions by it.
		return e.answerUnlessACK(ack, reasonMalformed, src, "From has no tag", m, 400, "Bad Request")
	}
	if string(req.CSeq().MethodName) != method {
		return e.answerUnlessACK(ack, reasonMalformed, src, "CSeq method "+string(req.CSeq().MethodName)+" is not the request method", m, 400, "Bad Request")
	}
	if tags := requiredOptions(m); len(tags) > 0 && !ack && method != "CANCEL" {
		return e.answer(reasonExtension, src, strings.Join(tags, ","), m, 420, "Bad Extension", false,
			"Unsupported: "+strings.Join(tags, ", "))
	}
	if req.MaxForwards().Val() == 0 && method != "OPTIONS" {
		return e.answerUnlessACK(ack, reasonHops, src, "Max-Forwards 0", m, 483, "Too Many Hops")
	}
	e.stats.passed.Add(1)
	return verdict{act: actPass, msg: in}
}

// response checks a response from an endpoint: sipgo must be able to
// match it to a transaction, or it goes no further.
func (e *edge) response(dst []byte, m *rawMessage, src netip.AddrPort, stream bool) verdict {
	m.normalizeVias()
	m.normalizeNameAddrs()
	m.ensureContentLength()
	n := m.canonicalLen()
	if !stream && dst != nil && n > cap(dst) {
		return e.refuse(reasonTooLarge, src, "response", verdict{})
	}
	in := m.appendCanonical(dst, n)
	parsed, err := e.parser.ParseSIP(in)
	if err != nil {
		return e.refuse(reasonBadResponse, src, err.Error(), verdict{close: stream})
	}
	res, ok := parsed.(*sip.Response)
	if !ok || res.Via() == nil || res.CSeq() == nil || res.CallID() == nil || res.From() == nil || res.To() == nil ||
		res.StatusCode < 100 || res.StatusCode > 699 {
		return e.refuse(reasonBadResponse, src, "a mandatory header is missing", verdict{close: stream})
	}
	if host := e.cfg.Load().SIP.Host; !strings.EqualFold(res.Via().Host, host) {
		// RFC 3261 §18.1.2: a response whose top Via is not one wagate
		// writes answers no request of wagate's.
		return e.refuse(reasonBadResponse, src, "top Via "+res.Via().Host+" is not "+host, verdict{})
	}
	e.stats.passed.Add(1)
	return verdict{act: actPass, msg: in}
}

// stranger handles a message from no endpoint's address.
func (e *edge) stranger(cfg *configs.Config, b []byte, ip netip.Addr, src netip.AddrPort) verdict {
	if cfg.SIP.UnknownSources != configs.UnknownSourcesReject || isResponseBytes(b) {
		return e.refuse(reasonStranger, src, "", verdict{close: true})
	}
	if e.flood.allow(ip, cfg.SIP.Flood.StrangerRate, cfg.SIP.Flood.BlockTime.D()) != floodAllow {
		return e.refuse(reasonBlocked, src, "", verdict{close: true})
	}
	m, err := getRawMessage(b)
	defer putRaw(m)
	if err != nil || !m.isRequest() || strings.HasPrefix(m.start, "ACK ") {
		return e.refuse(reasonStranger, src, "", verdict{close: true})
	}
	reply := statelessResponse(m, 403, "Forbidden", cfg.SIP.UserAgent)
	if reply == nil {
		return e.refuse(reasonStranger, src, "", verdict{close: true})
	}
	e.stats.replied.Add(1)
	return e.refuse(reasonStranger, src, "", verdict{act: actReply, reply: reply, close: true})
}

// answer refuses a request with a stateless response when one can be
// built, else drops it.
func (e *edge) answer(r edgeReason, src netip.AddrPort, detail string, m *rawMessage, code int, reason string, closeConn bool, extra ...string) verdict {
	if code != 420 && code != 501 {
		extra = append(extra, warningHeader(detail))
	}
	v := verdict{close: closeConn}
	if m.isRequest() && !strings.HasPrefix(m.start, "ACK ") {
		if reply := statelessResponse(m, code, reason, e.cfg.Load().SIP.UserAgent, extra...); reply != nil {
			v.act, v.reply = actReply, reply
			e.stats.replied.Add(1)
		}
	}
	return e.refuse(r, src, strconv.Itoa(code)+" "+detail, v)
}

// answerUnlessACK answers like answer, but an ACK never gets a response.
func (e *edge) answerUnlessACK(ack bool, r edgeReason, src netip.AddrPort, detail string, m *rawMessage, code int, reason string) verdict {
	if ack {
		return e.refuse(r, src, "ACK: "+detail, verdict{})
	}
	return e.answer(r, src, detail, m, code, reason, false)
}

// refuse counts a message not passed on and returns v.
func (e *edge) refuse(r edgeReason, src netip.AddrPort, detail string, v verdict) verdict {
	// The detail may quote the message, whose memory is the reader's
	// buffer: what is logged and kept is a copy.
	detail = strings.Clone(detail)
	e.stats.reasons[r].Add(1)
	e.summary.note(r, src, detail)
	return v
}

// missingOrRepeated names the first mandatory header (RFC 3261 §8.1.1)
// missing or given more than once, and a repeated Content-Length.
func missingOrRepeated(m *rawMessage) string {
	var n [hdrRequire + 1]int
	for _, h := range m.headers {
		n[h.key]++
	}
	for _, k := range [...]struct {
		key  hdrKey
		name string
	}{{hdrTo, "To"}, {hdrFrom, "From"}, {hdrCallID, "Call-ID"}, {hdrCSeq, "CSeq"}, {hdrMaxForwards, "Max-Forwards"}} {
		switch {
		case n[k.key] == 0:
			return "missing " + k.name + " header"
		case n[k.key] > 1:
			return k.name + " header given " + strconv.Itoa(n[k.key]) + " times"
		}
	}
	if n[hdrContentLength] > 1 {
		return "Content-Length header given " + strconv.Itoa(n[hdrContentLength]) + " times"
	}
	if n[hdrVia] == 0 {
		return "missing Via header"
	}
	return ""
}

// checkRequestURI checks the Request-URI as written: a scheme wagate
// serves (416 otherwise, RFC 3261 §8.2.2.1, even for schemes sipgo cannot
// parse) and no headers component (not allowed in a Request-URI, §19.1.1).
func checkRequestURI(uri string) (int, string) {
	scheme, rest, ok := strings.Cut(uri, ":")
	if !ok || !isScheme(scheme) {
		return 400, "malformed Request-URI"
	}
	switch {
	case strings.EqualFold(scheme, "sip"), strings.EqualFold(scheme, "sips"):
		hostPart := rest[strings.LastIndexByte(rest, '@')+1:]
		if strings.Contains(hostPart, "?") {
			return 400, "headers in the Request-URI"
		}
	case strings.EqualFold(scheme, "tel"):
	default:
		return 416, "Request-URI scheme " + scheme
	}
	return 0, ""
}

// isScheme reports an RFC 3986 URI scheme: ALPHA *( ALPHA / DIGIT / "+" /
// "-" / "." ).
func isScheme(s string) bool {
	if s == "" || !(s[0] >= 'a' && s[0] <= 'z' || s[0] >= 'A' && s[0] <= 'Z') {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// badNameAddr names a From or To whose display name is neither a quoted
// string nor tokens (RFC 3261 §25.1: "Bell, Alexander <sip:…>" is not a
// display name, and sipgo would read it as one).
func badNameAddr(m *rawMessage) string {
	for _, h := range m.headers {
		if h.key != hdrFrom && h.key != hdrTo {
			continue
		}
		lt := strings.IndexByte(h.value, '<')
		if lt < 0 {
			continue
		}
		dn := strings.TrimSpace(h.value[:lt])
		if dn == "" || isQuoted(dn) {
			continue
		}
		for w := range strings.FieldsSeq(dn) {
			if !isToken(w) {
				return "display name of " + h.name + " is neither quoted nor tokens"
			}
		}
	}
	return ""
}

// isQuoted reports whether s is exactly one quoted string (with
// quoted-pairs).
func isQuoted(s string) bool {
	if len(s) < 2 || s[0] != '"' {
		return false
	}
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i == len(s)-1
		}
	}
	return false
}

// requiredOptions lists the option tags of the Require header fields.
// wagate supports no SIP extension that a peer may require.
func requiredOptions(m *rawMessage) []string {
	var tags []string
	for _, v := range m.values(hdrRequire) {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" && !hasControl(t) {
				tags = append(tags, t)
			}
		}
	}
	return tags
}

// isKeepalive reports a CRLF keep-alive (RFC 5626 §3.5.1) or an empty
// datagram.
func isKeepalive(b []byte) bool {
	return len(bytes.Trim(b, "\r\n\x00")) == 0
}

func isResponseBytes(b []byte) bool {
	b = bytes.TrimLeft(b, "\r\n")
	return len(b) >= 4 && bytes.EqualFold(b[:4], []byte("SIP/"))
}

// Stats returns the edge's counters.
func (e *edge) snapshot() EdgeStats {
	s := EdgeStats{
		Passed:          e.stats.passed.Load(),
		Answered:        e.stats.replied.Load(),
		Refused:         make(map[string]uint64, numReasons),
		Connections:     e.conns.count(),
		PanicsRecovered: e.stats.panics.Load(),
		Paced:           e.stats.paced.Load(),
	}
	for r := range numReasons {
		if n := e.stats.reasons[r].Load(); n > 0 {
			s.Refused[r.String()] = n
		}
	}
	return s
}

// edgeSummary turns a stream of refusals into one log line per interval:
// a flood must not become a flood of log lines. The first refusal of each
// reason in an interval is kept as a sample (source and detail).
type edgeSummary struct {
	log     *slog.Logger
	mu      sync.Mutex
	counts  [numReasons]uint64
	samples [numReasons]string
	// paced and pacedSample: requests read late since the last flush,
	// and the first source. Not a refusal, but a trunk slowed by the
	// default rate must be visible to its operator.
	paced       uint64
	pacedSample string
}

// notePaced counts a request whose connection waits before its next read.
func (s *edgeSummary) notePaced(src netip.AddrPort) {
	s.mu.Lock()
	s.paced++
	if s.paced == 1 {
		s.pacedSample = src.Addr().Unmap().String()
	}
	s.mu.Unlock()
}

func (s *edgeSummary) note(r edgeReason, src netip.AddrPort, detail string) {
	s.mu.Lock()
	s.counts[r]++
	first := s.counts[r] == 1
	if first {
		s.samples[r] = src.String()
		if detail != "" {
			s.samples[r] += ": " + truncate(detail, 120)
		}
	}
	s.mu.Unlock()
	if first && s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("sip edge refused a message", "reason", r.String(), "source", src.String(), "detail", detail)
	}
}

// flush logs what was refused since the last flush, if anything.
func (s *edgeSummary) flush(interval time.Duration) {
	s.mu.Lock()
	var attrs []any
	level := slog.LevelInfo
	for r := range numReasons {
		if s.counts[r] > 0 {
			attrs = append(attrs, slog.Group(r.String(), "count", s.counts[r], "sample", s.samples[r]))
			if r.fromEndpoint() {
				level = slog.LevelWarn
			}
		}
	}
	s.counts = [numReasons]uint64{}
	s.samples = [numReasons]string{}
	paced, pacedSample := s.paced, s.pacedSample
	s.paced, s.pacedSample = 0, ""
	s.mu.Unlock()
	if len(attrs) > 0 {
		s.log.Log(context.Background(), level, "sip edge: messages refused in the last "+interval.String(), attrs...)
	}
	if paced > 0 {
		s.log.Warn("sip edge: requests over TCP/TLS read late in the last "+interval.String()+": a source is over sip.tcp.paced_request_rate",
			"count", paced, "source", pacedSample,
			"hint", "raise sip.tcp.paced_request_rate if this is a trunk (0 turns pacing off)")
	}
}

// run flushes the summary every interval until ctx ends.
func (e *edge) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			e.summary.flush(interval)
			return
		case <-t.C:
			e.summary.flush(interval)
		}
	}
}

// inDialogBytes reports whether request m belongs to a dialog or a
// transaction already under way: its To has a tag (BYE, re-INVITE, ACK,
// in-dialog OPTIONS …), or it is a CANCEL. All a source that is a peer
// of live calls only, and no endpoint any more, may send.
func inDialogBytes(m *rawMessage) bool {
	if strings.HasPrefix(m.start, "CANCEL ") {
		return true
	}
	to := m.values(hdrTo)
	if len(to) != 1 {
		return false
	}
	var uri sip.Uri
	params := sip.NewParams()
	if _, err := sip.ParseAddressValue(to[0], &uri, &params); err != nil {
		return false
	}
	tag, _ := params.Get("tag")
	return tag != ""
}
