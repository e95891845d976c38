package test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The RFC 4475 and RFC 5118 torture messages, sent to the real wagate over
// UDP and TCP from configured endpoints and from a stranger. The messages
// and their provenance are in test/torture (README there); what each must
// get is the table in torture_cases_test.go.
//
// Every combination of transport and sender gets its own wagate: the
// corpus was written for sending each message to a fresh element, and many
// messages share a branch and sent-by, so the same message sent twice to one
// wagate (UDP then TCP, meta then dialer) would be a retransmission of the
// first transaction rather than a new request.

// Waits of the torture tests: bounded per message so that the whole corpus
// runs in seconds. The waits for what must happen return as soon as it
// does, and are long: a loaded machine may take seconds to answer.
const (
	tortureAnswerWait = replyLimit             // for an answer that must come
	tortureQuietWait  = 300 * time.Millisecond // for proving nothing comes
	tortureCloseWait  = replyLimit             // for wagate to close a TCP connection
)

// tortureMsg is one message of the corpus, as committed, with its verdict.
type tortureMsg struct {
	tortureCase
	raw []byte
}

func (m tortureMsg) name() string { return fmt.Sprintf("rfc%d/%s", m.RFC, m.File) }

// loadTorture reads the corpus and checks that the table covers every file
// and every INVITE says what a dialer must get.
func loadTorture(t *testing.T) []tortureMsg {
	t.Helper()
	var msgs []tortureMsg
	seen := map[string]bool{}
	for _, c := range tortureCases {
		m := tortureMsg{tortureCase: c}
		if seen[m.name()] {
			t.Fatalf("torture table: %s listed twice", m.name())
		}
		seen[m.name()] = true
		raw, err := os.ReadFile(filepath.Join("torture", fmt.Sprintf("rfc%d", c.RFC), c.File+".dat"))
		if err != nil {
			t.Fatalf("torture corpus: %v", err)
		}
		m.raw = raw
		if len(c.Want) == 0 {
			t.Fatalf("torture table: %s has no Want", m.name())
		}
		if bytes.HasPrefix(raw, []byte("INVITE ")) && c.Dialer == nil {
			t.Fatalf("torture table: %s is an INVITE: say what a dialer gets", m.name())
		}
		msgs = append(msgs, m)
	}
	for _, rfc := range []int{4475, 5118} {
		files, err := filepath.Glob(filepath.Join("torture", fmt.Sprintf("rfc%d", rfc), "*.dat"))
		if err != nil || len(files) == 0 {
			t.Fatalf("torture corpus rfc%d: no messages (%v)", rfc, err)
		}
		for _, f := range files {
			if n := fmt.Sprintf("rfc%d/%s", rfc, strings.TrimSuffix(filepath.Base(f), ".dat")); !seen[n] {
				t.Fatalf("torture table: %s has no verdict", n)
			}
		}
	}
	return msgs
}

// wire returns the octets to send over transport ("udp" or "tcp"). The
// committed files are never edited; what has to change is changed here:
//   - RFC 5118's archive has bare LF line ends, two of its files lack the
//     blank line that ends the header, and two Content-Lengths match the
//     body with neither LF nor CRLF line ends (268 for a 251-octet body):
//     the lines become CRLF (RFC 3261 §7), the header is terminated and
//     Content-Length is set to the body's length.
//   - A message whose header is not ended by an empty line (RFC 4475's
//     baddn, like two of RFC 5118's) gets one: RFC 3261 §7 requires it
//     (on a stream nothing else would end the header), and what the RFC
//     describes as wrong with baddn is its display names, not that.
//   - Over TCP a message without Content-Length (RFC 4475's RFC 2543
//     INVITE) gets one: RFC 3261 §18.3 requires it on a stream, where the
//     body cannot end with the datagram.
//
// Hosts and ports in the messages are left alone: a datagram or a
// connection reaches wagate whatever the Request-URI and Via name, and
// wagate answers the packet's source (edge rules).
func (m tortureMsg) wire(transport string) []byte {
	b := m.raw
	if m.RFC == 5118 {
		b = crlfMessage(b)
	}
	if !bytes.Contains(b, []byte("\r\n\r\n")) && bytes.HasSuffix(b, []byte("\r\n")) {
		b = append(slices.Clip(b), "\r\n"...)
	}
	if transport == "tcp" {
		b = withContentLength(b)
	}
	return b
}

// txKey is what makes two requests one transaction to wagate: the top
// Via's branch and the method (RFC 3261 §17.2.3; sent-by is left out to
// err on the side of calling two requests one). "" for a response or a
// request without a branch.
func txKey(b []byte) string {
	method, _, _ := strings.Cut(string(b), " ")
	if method == "" || strings.HasPrefix(method, "SIP/") {
		return ""
	}
	if br := topBranch(b); br != "" {
		return br + " " + method
	}
	return ""
}

// topBranch returns the branch parameter of a message's top Via ("" when
// it has none).
func topBranch(b []byte) string {
	top, _, _ := strings.Cut(tortureHeader(b, "Via", "v"), ",")
	for _, p := range strings.Split(top, ";")[1:] {
		if name, v, ok := strings.Cut(p, "="); ok && strings.EqualFold(strings.TrimSpace(name), "branch") {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// withBranchSuffix appends suffix to the top Via's branch. The corpus
// reuses branches (z9hG4bKkdjuw in 22 of RFC 4475's messages, z9hG4bKas3-111
// in 11 of RFC 5118's): each message was written to be sent to an element
// on its own, and sent after another with the same branch and method it
// would be a retransmission of that transaction (RFC 3261 §17.2.3) and get
// that one's answer. A fresh branch makes it the new request it is meant
// to be; nothing else of the message changes.
func withBranchSuffix(t *testing.T, b []byte, suffix string) []byte {
	t.Helper()
	br := topBranch(b)
	i := bytes.Index(b, []byte("branch="+br))
	if br == "" || i < 0 {
		t.Fatalf("cannot give a fresh branch to:\n%s", b)
	}
	end := i + len("branch=") + len(br)
	out := slices.Concat(b[:end], []byte(suffix), b[end:])
	if topBranch(out) != br+suffix {
		t.Fatalf("giving a fresh branch changed something else:\n%s", out)
	}
	return out
}

// crlfMessage turns an LF message into a CRLF one with a terminated header
// and a Content-Length equal to its body's length.
func crlfMessage(b []byte) []byte {
	s := strings.ReplaceAll(string(b), "\n", "\r\n")
	head, body, ok := strings.Cut(s, "\r\n\r\n")
	if !ok {
		head, body = strings.TrimSuffix(s, "\r\n"), ""
	}
	lines := strings.Split(head, "\r\n")
	for i, l := range lines {
		if name, _, ok := strings.Cut(l, ":"); ok && isContentLength(name) {
			lines[i] = "Content-Length: " + strconv.Itoa(len(body))
		}
	}
	return []byte(strings.Join(lines, "\r\n") + "\r\n\r\n" + body)
}

// withContentLength adds a Content-Length to a CRLF message that has none.
func withContentLength(b []byte) []byte {
	head, body, ok := bytes.Cut(b, []byte("\r\n\r\n"))
	if !ok {
		return b
	}
	for _, l := range strings.Split(string(head), "\r\n")[1:] {
		if name, _, ok := strings.Cut(l, ":"); ok && isContentLength(name) {
			return b
		}
	}
	return fmt.Appendf(nil, "%s\r\nContent-Length: %d\r\n\r\n%s", head, len(body), body)
}

func isContentLength(name string) bool {
	name = strings.TrimSpace(name)
	return strings.EqualFold(name, "Content-Length") || strings.EqualFold(name, "l")
}

// tortureHeader returns the first value of a header of a raw message, by its
// long or compact name, after unfolding continuation lines; "" when absent.
func tortureHeader(raw []byte, long, compact string) string {
	s := strings.ReplaceAll(string(raw), "\r\n", "\n")
	head, _, _ := strings.Cut(s, "\n\n")
	var lines []string
	for i, l := range strings.Split(head, "\n") {
		if i > 0 && len(l) > 0 && (l[0] == ' ' || l[0] == '\t') && len(lines) > 1 {
			lines[len(lines)-1] += " " + strings.TrimSpace(l)
			continue
		}
		lines = append(lines, l)
	}
	for _, l := range lines[1:] {
		name, v, ok := strings.Cut(l, ":")
		name = strings.TrimSpace(name)
		if ok && (strings.EqualFold(name, long) || (compact != "" && strings.EqualFold(name, compact))) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// cseqOf parses a CSeq value into its number and method; ok is false when
// the number is no 32-bit unsigned integer.
func cseqOf(v string) (n uint64, method string, ok bool) {
	f := strings.Fields(v)
	if len(f) != 2 {
		return 0, "", false
	}
	n, err := strconv.ParseUint(f[0], 10, 32)
	return n, f[1], err == nil
}

// answers reports whether r is a response to the raw request req: same
// Call-ID when req has one, same CSeq when req's can be read (several of
// RFC 5118's messages share a Call-ID).
func answers(req []byte, r sipMsg) bool {
	if !strings.HasPrefix(r.StartLine(), "SIP/2.0 ") {
		return false
	}
	id := tortureHeader(req, "Call-ID", "i")
	if id != "" {
		rid := r.Header("Call-ID")
		if rid == "" {
			rid = r.Header("i")
		}
		if rid != id {
			return false
		}
	}
	if n, method, ok := cseqOf(tortureHeader(req, "CSeq", "")); ok {
		rn, rmethod, rok := cseqOf(r.Header("CSeq"))
		if !rok || rn != n || rmethod != method {
			return false
		}
	}
	return id != "" || tortureHeader(req, "CSeq", "") != ""
}

// statusCode is the code of a response's status line (0 when it is none).
func statusCode(r sipMsg) int {
	f := strings.Fields(r.StartLine())
	if len(f) < 2 || f[0] != "SIP/2.0" {
		return 0
	}
	n, err := strconv.Atoi(f[1])
	if err != nil {
		return 0
	}
	return n
}

// ---------------------------------------------------------------------------
// Raw peers

// torturePeer sends raw octets to wagate from one address and reads what
// comes back.
type torturePeer interface {
	send(b []byte) error
	// collect returns the messages received until done returns true for one
	// (done may be nil) or wait has passed.
	collect(wait time.Duration, done func(sipMsg) bool) []sipMsg
	// closedWithin reports whether wagate closed the connection within d
	// (TCP); a datagram peer has no connection and reports false.
	closedWithin(d time.Duration) bool
	// reset ends the current connection: the next send opens a new one.
	reset()
}

func (p *rawPeer) send(b []byte) error {
	_, err := p.conn.WriteToUDP(b, p.to)
	return err
}

func (p *rawPeer) collect(wait time.Duration, done func(sipMsg) bool) []sipMsg {
	var out []sipMsg
	buf := make([]byte, 65535)
	deadline := time.Now().Add(wait)
	for {
		_ = p.conn.SetReadDeadline(deadline)
		n, _, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			return out
		}
		m := sipMsg{Text: string(buf[:n])}
		out = append(out, m)
		if done != nil && done(m) {
			return out
		}
	}
}

func (p *rawPeer) closedWithin(time.Duration) bool { return false }
func (p *rawPeer) reset()                          {}

// tcpRawPeer is a TCP client at a peer's address that sends hand-written
// SIP, one connection at a time.
type tcpRawPeer struct {
	t  *testing.T
	ip string
	to string
	c  *tcpRawConn
}

// tcpRawConn is one connection and the goroutine reading it.
type tcpRawConn struct {
	conn net.Conn
	msgs chan sipMsg
	eof  chan struct{} // closed when reading ends (wagate closed, or reset)
	stop chan struct{}
}

func newTCPRawPeer(t *testing.T, ip string, w *wagate) *tcpRawPeer {
	p := &tcpRawPeer{t: t, ip: ip, to: w.SIPAddr}
	t.Cleanup(p.reset)
	return p
}

func (p *tcpRawPeer) send(b []byte) error {
	if p.c == nil {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(p.ip)}, Timeout: 2 * time.Second}
		conn, err := d.Dial("tcp4", p.to)
		if err != nil {
			return fmt.Errorf("dial %s from %s: %w", p.to, p.ip, err)
		}
		c := &tcpRawConn{conn: conn, msgs: make(chan sipMsg), eof: make(chan struct{}), stop: make(chan struct{})}
		go func() {
			defer close(c.eof)
			readSIPStream(conn, func(m sipMsg) {
				select {
				case c.msgs <- m:
				case <-c.stop:
				}
			})
		}()
		p.c = c
	}
	_ = p.c.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, err := p.c.conn.Write(b)
	return err
}

func (p *tcpRawPeer) collect(wait time.Duration, done func(sipMsg) bool) []sipMsg {
	if p.c == nil {
		return nil
	}
	var out []sipMsg
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case m := <-p.c.msgs:
			out = append(out, m)
			if done != nil && done(m) {
				return out
			}
		case <-p.c.eof:
			return out
		case <-timer.C:
			return out
		}
	}
}

func (p *tcpRawPeer) closedWithin(d time.Duration) bool {
	if p.c == nil {
		return true
	}
	select {
	case <-p.c.eof:
		return true
	default:
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-p.c.msgs: // anything more is not the point here
		case <-p.c.eof:
			return true
		case <-timer.C:
			return false
		}
	}
}

func (p *tcpRawPeer) reset() {
	if p.c == nil {
		return
	}
	close(p.c.stop)
	p.c.conn.Close()
	<-p.c.eof
	p.c = nil
}

// ---------------------------------------------------------------------------
// Peers that must hear nothing

// silentPeers listen (UDP and TCP) where the configured endpoints are, to
// prove that no torture message was routed anywhere.
type silentPeers struct {
	names []string
	udp   []*udpListener
	tcp   []*tcpListener
}

func listenSilent(t *testing.T, peers ...peer) *silentPeers {
	s := &silentPeers{}
	for _, p := range peers {
		s.names = append(s.names, p.Name+" ("+p.Addr()+")")
		s.udp = append(s.udp, listenUDP(t, p.Addr()))
		s.tcp = append(s.tcp, listenTCP(t, p.Addr()))
	}
	return s
}

// check waits d, fails the test for anything that arrived, and stops
// listening (so that SIPp can take the ports).
func (s *silentPeers) check(t *testing.T, d time.Duration) {
	t.Helper()
	time.Sleep(d)
	for i := range s.names {
		s.udp[i].expectSilence(t, s.names[i], 0)
		s.tcp[i].expectSilence(t, s.names[i], 0)
		s.udp[i].close()
		s.tcp[i].close()
	}
}

// ---------------------------------------------------------------------------

// TestTorture sends every message of RFC 4475 and RFC 5118 to wagate, over
// UDP and TCP, from the whatsapp endpoint, from the dialer (the INVITEs)
// and from a stranger: wagate lives, answers each endpoint's message as
// the table says, answers the stranger nothing, routes nothing anywhere,
// and places a normal call afterwards with no call left behind.
func TestTorture(t *testing.T) {
	t.Parallel()
	requireSipp(t)
	requireWagate(t)
	msgs := loadTorture(t)
	watchLoopbackLeaks(t)

	for _, tr := range []string{"udp", "tcp"} {
		for _, sender := range []string{"meta", "dialer"} {
			t.Run(tr+"-"+sender, func(t *testing.T) {
				t.Parallel()
				tortureEndpoint(t, msgs, tr, sender)
			})
		}
	}
	t.Run("stranger", func(t *testing.T) {
		t.Parallel()
		tortureStranger(t, msgs)
	})
}

// watchLoopbackLeaks listens on the loopback addresses RFC 4475's MESSAGE
// names in its Via, Contact and Route (127.0.0.1:5070 and :5080): nothing
// may be sent there. Best effort: a port someone else holds is not watched.
func watchLoopbackLeaks(t *testing.T) {
	var udp []*udpListener
	var tcp []*tcpListener
	for _, addr := range []string{"127.0.0.1:5070", "127.0.0.1:5080"} {
		if c, err := net.ListenPacket("udp4", addr); err == nil {
			c.Close()
			udp = append(udp, listenUDP(t, addr))
		} else {
			t.Logf("not watching udp %s: %v", addr, err)
		}
		if l, err := net.Listen("tcp4", addr); err == nil {
			l.Close()
			tcp = append(tcp, listenTCP(t, addr))
		} else {
			t.Logf("not watching tcp %s: %v", addr, err)
		}
	}
	// Registered after the listeners, so it runs before they close, once
	// every subtest is over.
	t.Cleanup(func() {
		for _, l := range udp {
			l.expectSilence(t, "udp "+l.conn.LocalAddr().String()+" (named in rfc4475/mpart01)", 0)
		}
		for _, l := range tcp {
			l.expectSilence(t, "tcp "+l.ln.Addr().String()+" (named in rfc4475/mpart01)", 0)
		}
	})
}

// tortureEndpoint sends the corpus from a configured endpoint (sender
// "meta": every message; "dialer": the INVITEs) over one transport.
func tortureEndpoint(t *testing.T, msgs []tortureMsg, transport, sender string) {
	e := newEnv(t)
	opts := wagateOpts{}
	if transport == "tcp" {
		opts.MetaTransport = "tcp"
	}
	w := e.startWagate(opts)
	silent := listenSilent(t, e.Meta, e.PBX, e.Dialer)

	from := e.Meta.IP
	if sender == "dialer" {
		from = e.Dialer.IP
	}
	var p torturePeer
	if transport == "udp" {
		p = newRawPeer(t, from, w)
	} else {
		p = newTCPRawPeer(t, from, w)
	}

	sent := 0
	txs := map[string]bool{}
	var fresh []string // messages given a fresh branch
	for _, m := range msgs {
		want := m.Want
		if sender == "dialer" {
			if m.Dialer == nil {
				continue
			}
			want = m.Dialer
		}
		if transport == "tcp" && m.TCP != nil {
			want = m.TCP
		}
		b := m.wire(transport)
		if key := txKey(b); key != "" {
			if txs[key] {
				b = withBranchSuffix(t, b, fmt.Sprintf("-fresh%d", sent))
				fresh = append(fresh, m.name())
			}
			txs[txKey(b)] = true
		}
		suspect := tortureOne(t, p, m, b, transport, sender, want)
		// A crash shows first as silence or a closed connection; give the
		// process a moment to be seen exiting, so the death is blamed on
		// the message that caused it.
		if suspect || (transport == "tcp" && !m.CloseTCP && p.closedWithin(0)) {
			select {
			case <-w.exited:
			case <-time.After(250 * time.Millisecond):
			}
		}
		p.reset()
		sent++
		if tortureDied(t, w, m.name()+" over "+transport+" from "+sender) {
			w = restartWagate(e, w, opts)
		}
	}
	t.Logf("%d messages sent over %s from %s; %d given a fresh branch (an earlier one had theirs): %s",
		sent, transport, sender, len(fresh), strings.Join(fresh, " "))

	silent.check(t, 200*time.Millisecond)
	checkNoRecoveredPanic(t, w)
	tortureNormalCall(t, e, w, transport)
}

// tortureOne sends one message from a configured endpoint and checks the
// answer. It returns true when an answer was due and none came.
func tortureOne(t *testing.T, p torturePeer, m tortureMsg, b []byte, transport, sender string, want []int) (silent bool) {
	t.Helper()
	where := fmt.Sprintf("%s over %s from %s", m.name(), transport, sender)
	if err := p.send(b); err != nil {
		t.Errorf("%s: send: %v", where, err)
		return true
	}
	expectAnswer := !slices.Contains(want, noAnswer)
	wait := tortureQuietWait
	if expectAnswer {
		wait = tortureAnswerWait
	}
	got := p.collect(wait, func(r sipMsg) bool {
		return expectAnswer && statusCode(r) >= 200 && answers(b, r)
	})
	var finals, others []sipMsg
	for _, r := range got {
		switch {
		case !answers(b, r):
		case statusCode(r) >= 200:
			finals = append(finals, r)
		default:
			others = append(others, r)
		}
	}
	report := func(gotWhat string) {
		t.Errorf("%s: got %s, want %s [%s; RFC %d §%s says: %s]",
			where, gotWhat, codesString(want), m.Verdict, m.RFC, m.Section, m.RFCSays)
	}

	if !expectAnswer {
		if len(finals)+len(others) > 0 {
			r := append(finals, others...)[0]
			report(strconv.Quote(r.StartLine()))
		}
		return false
	}
	if len(finals) == 0 {
		gotWhat := "no answer"
		var unmatched []string
		for _, r := range got {
			if !answers(b, r) {
				unmatched = append(unmatched, fmt.Sprintf("%q (Call-ID %q, CSeq %q)", r.StartLine(), r.Header("Call-ID"), r.Header("CSeq")))
			}
		}
		if len(unmatched) > 0 {
			gotWhat += "; answers to other requests only: " + strings.Join(unmatched, ", ")
		}
		report(gotWhat)
		return true
	}
	res := finals[0]
	code := statusCode(res)
	if !slices.Contains(want, code) {
		gotWhat := strconv.Quote(res.StartLine())
		if w := res.Header("Warning"); w != "" {
			gotWhat += " (Warning: " + w + ")"
		}
		report(gotWhat)
		return false
	}
	if (m.Verdict == valid || m.Verdict == tolerated) && (code == 400 || code == 505 || code == 513) {
		t.Errorf("%s: a %s message got the parse error %q", where, m.Verdict, res.StartLine())
	}
	need := map[int]string{405: "Allow", 415: "Accept", 420: "Unsupported"}[code]
	for _, h := range []string{need, m.Need} {
		if h != "" && res.Header(h) == "" {
			t.Errorf("%s: the %d has no %s header:\n%s", where, code, h, res.Text)
		}
	}
	if m.Warning && code == 400 && !strings.HasPrefix(res.Header("Warning"), "399 ") {
		t.Errorf("%s: the 400 carries no \"Warning: 399 …\" saying what is wrong:\n%s", where, res.Text)
	}
	if code == 420 {
		listed := strings.Split(strings.Join(res.Headers("Unsupported"), ","), ",")
		for i := range listed {
			listed[i] = strings.TrimSpace(listed[i])
		}
		for _, tag := range m.Unsupported {
			if !slices.Contains(listed, tag) {
				t.Errorf("%s: Unsupported %q does not list %s", where, res.Header("Unsupported"), tag)
			}
		}
	}
	if m.IgnoredCallID != "" && transport == "udp" {
		more := append(got, p.collect(tortureQuietWait, nil)...)
		for _, r := range more {
			if r.Header("Call-ID") == m.IgnoredCallID {
				t.Errorf("%s: the octets after the message were answered (%q); RFC 3261 §18.3 says ignore them", where, r.StartLine())
			}
		}
	}
	if m.CloseTCP && transport == "tcp" && !p.closedWithin(tortureCloseWait) {
		t.Errorf("%s: the connection is still open %v after the %d: the framing error is not recoverable (RFC %d §%s)",
			where, tortureCloseWait, code, m.RFC, m.Section)
	}
	return false
}

func codesString(codes []int) string {
	var s []string
	for _, c := range codes {
		if c == noAnswer {
			s = append(s, "no answer")
		} else {
			s = append(s, strconv.Itoa(c))
		}
	}
	return strings.Join(s, " or ")
}

// tortureStranger sends every message from the stranger's address: over
// UDP nothing comes back and wagate logs no line per message; over TCP each
// connection is closed at once and nothing comes back (the default
// sip.unknown_sources: drop).
func tortureStranger(t *testing.T, msgs []tortureMsg) {
	e := newEnv(t)
	w := e.startWagate(wagateOpts{})
	silent := listenSilent(t, e.Meta, e.PBX, e.Dialer)
	logBefore := strangerLogLines(t, w, e.Stranger.IP)

	udp := newRawPeer(t, e.Stranger.IP, w)
	for _, m := range msgs {
		if err := udp.send(m.wire("udp")); err != nil {
			t.Errorf("%s over udp from the stranger: send: %v", m.name(), err)
		}
	}
	for _, r := range udp.collect(time.Second, nil) {
		t.Errorf("the stranger got %q over udp, want nothing", r.StartLine())
	}
	if n := strangerLogLines(t, w, e.Stranger.IP) - logBefore; n > 5 {
		t.Errorf("wagate logged %d lines about the stranger's %d datagrams, want rate-limited summary lines only", n, len(msgs))
	}
	if tortureDied(t, w, "the stranger's datagrams") {
		w = restartWagate(e, w, wagateOpts{})
	}

	// All connections at once, then one deadline for all of them: a
	// connection from a stranger is closed right after accept.
	peers := make([]*tcpRawPeer, len(msgs))
	for i, m := range msgs {
		peers[i] = newTCPRawPeer(t, e.Stranger.IP, w)
		// A write may fail once wagate has closed the connection; what
		// matters is what comes back.
		_ = peers[i].send(m.wire("tcp"))
	}
	deadline := time.Now().Add(tortureCloseWait)
	open := 0
	for i, m := range msgs {
		for _, r := range peers[i].collect(time.Until(deadline), nil) {
			t.Errorf("%s over tcp from the stranger: got %q, want nothing", m.name(), r.StartLine())
		}
		if !peers[i].closedWithin(time.Until(deadline)) {
			open++
		}
		peers[i].reset()
	}
	if open > 0 {
		t.Errorf("%d of %d TCP connections from the stranger still open after %v, want each closed right after accept", open, len(msgs), tortureCloseWait)
	}
	if tortureDied(t, w, "the stranger's TCP connections") {
		w = restartWagate(e, w, wagateOpts{})
	}

	silent.check(t, 200*time.Millisecond)
	checkNoRecoveredPanic(t, w)
	tortureNormalCall(t, e, w, "udp")
}

// tortureDied reports (as a failure) whether wagate has exited, after what.
func tortureDied(t *testing.T, w *wagate, after string) bool {
	t.Helper()
	select {
	case <-w.exited:
		t.Errorf("wagate died after %s: %v (its log is shown at the end)", after, w.waitErr)
		return true
	default:
		return false
	}
}

// restartWagate starts another wagate after one died, so that the rest of
// the corpus is still judged (the death is already a failure). The dead
// one's log is kept beside the new one's, and shown when its cleanup runs.
func restartWagate(e *env, dead *wagate, o wagateOpts) *wagate {
	e.t.Helper()
	kept := fmt.Sprintf("%s.died-%d", dead.logPath, time.Now().UnixNano())
	if err := os.Rename(dead.logPath, kept); err == nil {
		dead.logPath = kept
	}
	return e.startWagate(o)
}

// strangerLogLines counts wagate's log lines that name ip.
func strangerLogLines(t *testing.T, w *wagate, ip string) int {
	t.Helper()
	data, err := os.ReadFile(w.logPath)
	if err != nil {
		t.Fatalf("wagate log: %v", err)
	}
	n := 0
	for _, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, ip) {
			n++
		}
	}
	return n
}

// checkNoRecoveredPanic fails the test when wagate recovered a panic in a
// handler: it lived, but some input reached a bug.
func checkNoRecoveredPanic(t *testing.T, w *wagate) {
	t.Helper()
	data, err := os.ReadFile(w.logPath)
	if err != nil {
		t.Fatalf("wagate log: %v", err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, "panic recovered") {
			t.Errorf("wagate recovered a panic: %s", l)
		}
	}
}

// tortureNormalCall places a UIC as TestUICBasicCall does (over TCP on the
// TCP half) and checks that it is the only call wagate ever started.
func tortureNormalCall(t *testing.T, e *env, w *wagate, transport string) {
	t.Helper()
	args := callArgs(businessNumber, waUser, "-d", "200")
	if transport == "tcp" {
		args = append(args, "-t", "t1")
	}
	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas.xml", Peer: e.PBX, Calls: 1})
	meta := e.runSipp(sippSpec{Name: "meta", Scenario: "uac.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1, Args: args})
	pbx.requireOK()
	checkAnswer(t, e, meta)
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}
