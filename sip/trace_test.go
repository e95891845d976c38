package sip

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sipgo "github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
)

const traceInvite = "INVITE sip:1001@127.0.0.3 SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.4:5060;branch=z9hG4bK-1;rport\r\n" +
	"From: <sip:agent@127.0.0.4>;tag=d1\r\n" +
	"To: <sip:+447700900123@127.0.0.1>\r\n" +
	"Call-ID: call-1@127.0.0.4\r\n" +
	"CSeq: 2 INVITE\r\n" +
	"Max-Forwards: 70\r\n" +
	"Proxy-Authorization: Digest username=\"dialer1\", realm=\"127.0.0.1\", nonce=\"NONCE-abc\", uri=\"sip:1001@127.0.0.3\", " +
	"response=\"0123456789abcdef0123456789abcdef\", algorithm=MD5, cnonce=\"CNONCE-xyz\", opaque=\"OPAQUE-1\", qop=auth, nc=00000001\r\n" +
	"Content-Type: application/sdp\r\n" +
	"Content-Length: 9\r\n\r\nv=0\r\ns=-\r\n"

// secrets are the values of traceInvite that must never be traced.
var traceSecrets = []string{"0123456789abcdef0123456789abcdef", "NONCE-abc", "CNONCE-xyz", "OPAQUE-1"}

// headerLine is the line (with CRLF) of header name in msg.
func headerLine(msg, name string) string {
	i := strings.Index(msg, "\r\n"+name+":")
	j := strings.Index(msg[i+2:], "\r\n")
	return msg[i+2 : i+2+j+2]
}

// FuzzTraceStream: however a stream carrying credentials is cut into
// reads, with garbage before it and whichever read is lost, no traced text
// holds a credential, and nothing panics.
func FuzzTraceStream(f *testing.F) {
	f.Add([]byte(""), uint16(10), uint16(400), uint8(0))
	f.Add([]byte("\r\n\r\n"), uint16(300), uint16(301), uint8(1))
	f.Add([]byte("garbage\r\n\r\n"), uint16(0), uint16(700), uint8(2))
	f.Fuzz(func(t *testing.T, prefix []byte, cut1, cut2 uint16, lost uint8) {
		for _, s := range traceSecrets {
			if bytes.Contains(prefix, []byte(s)) {
				return // not a credential: the fuzzer wrote it
			}
		}
		tr, recs := testTracer(t, "{log: true}")
		w := &traceWorker{t: tr, tcpPort: 5072, streams: map[string]*traceStream{}}
		data := append(append(prefix, traceInvite...), traceInvite...)
		a, b := min(int(cut1), len(data)), min(int(cut2), len(data))
		if a > b {
			a, b = b, a
		}
		for i, chunk := range [][]byte{data[:a], data[a:b], data[b:]} {
			if int(lost)%4 == i+1 {
				tr.dropped.Add(1) // as the hook counts a read it could not queue
				continue
			}
			tr.enqueue(false, "TCP", "127.0.0.1:5072", "127.0.0.4:40000", chunk)
			drain(tr, w)
		}
		for _, r := range recs.messages() {
			for _, s := range traceSecrets {
				if strings.Contains(r["message"], s) {
					t.Fatalf("traced text holds %q:\n%s", s, r["message"])
				}
			}
		}
	})
}

// logRecords collects what the tracer logs.
type logRecords struct {
	mu   sync.Mutex
	recs []map[string]string
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecords) WithGroup(string) slog.Handler            { return l }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	m := map[string]string{"msg": r.Message, "level": r.Level.String()}
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.String()
		return true
	})
	l.mu.Lock()
	l.recs = append(l.recs, m)
	l.mu.Unlock()
	return nil
}

func (l *logRecords) messages() []map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]string
	for _, r := range l.recs {
		if r["msg"] == "sip message" {
			out = append(out, r)
		}
	}
	return out
}

// testTracer is a tracer for cfg (YAML under sip.trace) whose log is
// collected, with no worker running.
func testTracer(t *testing.T, trace string) (*tracer, *logRecords) {
	t.Helper()
	cfg := parseConfig(t, "node_id: node-7\nsip:\n  host: 192.0.2.1\n  trace: "+trace+"\n")
	recs := &logRecords{}
	tr := newTracer(cfg, slog.New(recs))
	if tr == nil {
		t.Fatal("no tracer for " + trace)
	}
	return tr, recs
}

// drain runs the worker over what is queued.
func drain(tr *tracer, w *traceWorker) {
	for {
		select {
		case it := <-tr.q:
			w.handle(it)
		default:
			return
		}
	}
}

func TestTraceOff(t *testing.T) {
	if tr := newTracer(parseConfig(t, "sip: {trace: {log: false}}\n"), slog.Default()); tr != nil {
		t.Fatal("a tracer for a config that asks for none")
	}
	s, err := New(parseConfig(t, ""), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if s.trace != nil || s.Status().Trace != nil {
		t.Error("sip.trace off, but the server has a trace")
	}
	// sipgo's hook is on for the message counts, but passes nothing on.
	if s.msgs.next.Load() != nil {
		t.Error("sip.trace off, but the message hook forwards to a tracer")
	}
}

// TestTraceLogLines: one line per message with the summary, the redacted
// text at debug, the transport told from the listener port or from
// wagate's own Via on a connection it dialled, and stream reads framed
// into messages whatever their cut.
func TestTraceLogLines(t *testing.T) {
	tr, recs := testTracer(t, "{log: true}")
	w := &traceWorker{t: tr, tcpPort: 5072, tlsPort: 5061, streams: map[string]*traceStream{}}

	res := "SIP/2.0 100 Trying\r\nVia: SIP/2.0/TLS 192.0.2.1:5061;branch=z9hG4bK-w\r\nCall-ID: out-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
	ringing := strings.Replace(res, "100 Trying", "180 Ringing", 1)
	outInvite := "INVITE sip:+1@wa.meta.vc SIP/2.0\r\nVia: SIP/2.0/TLS 192.0.2.1:5061;branch=z9hG4bK-w\r\nCall-ID: out-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
	inv := []byte(traceInvite)

	tr.enqueue(false, "UDP", "0.0.0.0:5072", "127.0.0.4:5060", inv)
	tr.enqueue(true, "UDP", "0.0.0.0:5072", "127.0.0.4:5060", []byte("\r\n\r\n")) // keep-alive: not traced
	// Meta's connection to the TLS listener, read in odd pieces.
	for _, chunk := range []string{traceInvite[:10], traceInvite[10:300], traceInvite[300 : len(traceInvite)-2], traceInvite[len(traceInvite)-2:] + "\r\n\r\n" + res[:5], res[5:]} {
		tr.enqueue(false, "TCP", "192.0.2.1:5061", "203.0.113.5:40000", []byte(chunk))
	}
	// A connection wagate dialled toward Meta: its TLS shows in its Via.
	tr.enqueue(true, "TCP", "192.0.2.1:43210", "203.0.113.5:5061", []byte(outInvite))
	tr.enqueue(false, "TCP", "192.0.2.1:43210", "203.0.113.5:5061", []byte(res+ringing))
	// A read from the middle of a message (an earlier read was dropped)
	// is not traced: it could start inside a credential.
	tr.enqueue(false, "TCP", "192.0.2.1:5072", "198.51.100.7:50000", []byte("response=\"SECRET\"\r\n\r\n"+res))
	tr.enqueue(false, "TCP", "192.0.2.1:43210", "203.0.113.5:5061", nil) // sipgo's reader ended
	drain(tr, w)

	type line struct{ dir, transport, local, remote, what, callID string }
	var got []line
	for _, r := range recs.messages() {
		what := r["method"]
		if r["status"] != "" {
			what = r["status"] + " " + r["reason"]
		}
		got = append(got, line{r["dir"], r["transport"], r["local"], r["remote"], what, r["call_id"]})
		if r["level"] != "INFO" || r["bytes"] == "" || r["cseq"] == "" {
			t.Errorf("line %v", r)
		}
		for _, s := range traceSecrets {
			if strings.Contains(r["message"], s) {
				t.Errorf("the logged text holds %q", s)
			}
		}
		if r["message"] == "" {
			t.Errorf("no text at debug: %v", r)
		}
	}
	want := []line{
		{"in", "udp", "0.0.0.0:5072", "127.0.0.4:5060", "INVITE", "call-1@127.0.0.4"},
		{"in", "tls", "192.0.2.1:5061", "203.0.113.5:40000", "INVITE", "call-1@127.0.0.4"},
		{"in", "tls", "192.0.2.1:5061", "203.0.113.5:40000", "100 Trying", "out-1"},
		{"out", "tls", "192.0.2.1:43210", "203.0.113.5:5061", "INVITE", "out-1"},
		{"in", "tls", "192.0.2.1:43210", "203.0.113.5:5061", "100 Trying", "out-1"},
		{"in", "tls", "192.0.2.1:43210", "203.0.113.5:5061", "180 Ringing", "out-1"},
	}
	if len(got) != len(want) {
		t.Fatalf("logged\n%v\nwant\n%v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if st := tr.stats(); st.Messages != 6 || st.Unframed != 1 || st.Dropped != 0 {
		t.Errorf("stats %+v, want 6 messages and 1 unframed read", st)
	}
	if len(w.streams) != 2 {
		t.Errorf("%d stream states kept, want 2 (the ended connection forgotten)", len(w.streams))
	}
	if tr.queued.Load() != 0 {
		t.Errorf("queued bytes %d after the drain", tr.queued.Load())
	}
}

// TestTraceNeverBlocks: with the worker stuck, the hook drops and counts
// instead of waiting, by count and by bytes.
func TestTraceNeverBlocks(t *testing.T) {
	tr, _ := testTracer(t, "{log: true}")
	msg := []byte(traceInvite)
	for range traceQueueLen + 10 {
		tr.enqueue(false, "UDP", "127.0.0.1:5072", "127.0.0.4:5060", msg)
	}
	if d := tr.dropped.Load(); d != 10 {
		t.Errorf("dropped %d, want 10", d)
	}
	for range traceQueueLen {
		<-tr.q
	}
	tr.queued.Store(0)
	big := make([]byte, 1<<20)
	copy(big, "INVITE sip:x SIP/2.0\r\n")
	for range 20 {
		tr.enqueue(true, "UDP", "127.0.0.1:5072", "127.0.0.4:5060", big)
	}
	if n := len(tr.q); n != traceQueueBytes>>20 {
		t.Errorf("%d messages of 1 MiB queued, want %d", n, traceQueueBytes>>20)
	}
	if d := tr.dropped.Load(); d != 10+20-traceQueueBytes>>20 {
		t.Errorf("dropped %d in all", d)
	}
}

// TestTraceHEP: each message becomes one HEP packet toward the collector:
// source and destination by direction, the listener's port, the protocol
// id of its transport, sip.host for a wildcard local address, the Call-ID
// as correlation id, node_id, agent id and password, and the payload with
// credentials redacted.
func TestTraceHEP(t *testing.T) {
	col, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer col.Close()
	tr, recs := testTracer(t, "{hep: {address: \""+col.LocalAddr().String()+"\", agent_id: 2001, password: {value: hep-pass}}}")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); tr.run(ctx, 5072, 5061) }()
	defer func() { cancel(); <-done }()

	tr.enqueue(false, "UDP", "0.0.0.0:5072", "127.0.0.4:5060", []byte(traceInvite))
	tr.enqueue(true, "TCP", "[::ffff:192.0.2.1]:5061", "[2001:db8::5]:40000", []byte("SIP/2.0 200 OK\r\nCall-ID: c2\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"))
	tr.enqueue(true, "TCP", "192.0.2.1:5072", "198.51.100.7:50000", []byte("BYE sip:x SIP/2.0\r\nCall-ID: c3\r\nCSeq: 2 BYE\r\n\r\n"))

	want := []hepPacket{
		{Src: netip.MustParseAddrPort("127.0.0.4:5060"), Dst: netip.MustParseAddrPort("192.0.2.1:5072"), Proto: hepProtoUDP, CorrelationID: "call-1@127.0.0.4"},
		{Src: netip.MustParseAddrPort("[::ffff:192.0.2.1]:5061"), Dst: netip.MustParseAddrPort("[2001:db8::5]:40000"), Proto: hepProtoTLS, CorrelationID: "c2"},
		{Src: netip.MustParseAddrPort("192.0.2.1:5072"), Dst: netip.MustParseAddrPort("198.51.100.7:50000"), Proto: hepProtoTCP, CorrelationID: "c3"},
	}
	buf := make([]byte, 70000)
	for i, w := range want {
		_ = col.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := col.ReadFrom(buf)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		p, err := decodeHEP(buf[:n])
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if p.Src != w.Src || p.Dst != w.Dst || p.Proto != w.Proto || p.CorrelationID != w.CorrelationID ||
			p.AgentID != 2001 || p.Node != "node-7" || p.AuthKey != "hep-pass" || time.Since(p.Time) > time.Minute {
			t.Errorf("packet %d: %+v, want %+v", i, p, w)
		}
		if i == 0 {
			if string(p.Payload) != string(redactCredentials([]byte(traceInvite))) {
				t.Errorf("payload:\n%s", p.Payload)
			}
			for _, s := range traceSecrets {
				if bytes.Contains(p.Payload, []byte(s)) {
					t.Errorf("HEP payload holds %q", s)
				}
			}
		}
	}
	if len(recs.messages()) != 0 {
		t.Error("sip.trace.log is off, but messages were logged")
	}
	// The sender counts a packet after its write returns, which may be
	// just after the collector read it.
	deadline := time.Now().Add(2 * time.Second)
	for tr.stats().HEPSent < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if st := tr.stats(); st.HEPSent != 3 || st.HEPErrors != 0 || st.Messages != 3 {
		t.Errorf("stats %+v", st)
	}
}

// TestTraceHEPUnreachable: a collector that cannot be resolved or reached
// costs a counted error and one log line per interval, not one per
// message, and the trace goes on.
func TestTraceHEPUnreachable(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close() // nothing listens: the kernel answers port unreachable
	tr, recs := testTracer(t, "{log: true, hep: {address: \""+addr+"\"}}")
	w := &traceWorker{t: tr, streams: map[string]*traceStream{}}
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w.hepConn = c
	for i := range 20 {
		tr.enqueue(false, "UDP", "127.0.0.1:5072", "127.0.0.4:5060", []byte("OPTIONS sip:x SIP/2.0\r\nCall-ID: "+strconv.Itoa(i)+"\r\n\r\n"))
		drain(tr, w)
		time.Sleep(time.Millisecond)
	}
	w.report()
	w.report()
	st := tr.stats()
	if st.HEPErrors == 0 || st.HEPSent+st.HEPErrors != 20 || st.Messages != 20 {
		t.Errorf("stats %+v: want every message traced and the refused sends counted", st)
	}
	var warnings int
	for _, r := range recs.recs {
		if r["msg"] == "sip trace: HEP packets not sent" {
			warnings++
		}
	}
	if warnings != 1 {
		t.Errorf("%d warnings about the collector, want 1", warnings)
	}
	if len(recs.messages()) != 20 {
		t.Errorf("%d log lines, want 20: the log does not depend on the collector", len(recs.messages()))
	}
}

// TestTraceStatus: the status document counts the trace.
func TestTraceStatus(t *testing.T) {
	s, err := New(parseConfig(t, "sip: {trace: {log: true}}\n"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	s.trace.enqueue(false, "UDP", "127.0.0.1:5072", "127.0.0.4:5060", []byte(traceInvite))
	w := &traceWorker{t: s.trace, streams: map[string]*traceStream{}}
	drain(s.trace, w)
	if st := s.Status().Trace; st == nil || st.Messages != 1 {
		t.Errorf("status trace %+v", st)
	}
}

func BenchmarkTraceHook(b *testing.B) {
	tr := &tracer{log: slog.New(slog.NewTextHandler(io.Discard, nil)), q: make(chan traceItem, traceQueueLen)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for it := range tr.q {
			tr.queued.Add(-int64(len(it.msg)))
		}
	}()
	// sipgo's path into the tracer, without turning sipgo's hook on.
	traceHook.cur.Store(tr)
	defer tr.uninstall()
	var hook sipgo.SIPTracer = traceDispatch{}
	msg := []byte(traceInvite)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		hook.SIPTraceRead("UDP", "127.0.0.1:5072", "127.0.0.4:5060", msg)
	}
	close(tr.q)
	<-done
	b.ReportMetric(float64(tr.dropped.Load()), "dropped")
}

// BenchmarkTraceWorker is the worker's cost per message: summary,
// redaction, a log line (at info, to io.Discard) and a HEP packet sent to
// a loopback collector.
func BenchmarkTraceWorker(b *testing.B) {
	col, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer col.Close()
	go func() {
		buf := make([]byte, 70000)
		for {
			if _, _, err := col.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	cfg, err := configs.Parse([]byte("sip:\n  trace: {log: true, hep: {address: \""+col.LocalAddr().String()+"\"}}\n"), "bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	tr := newTracer(cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	w := &traceWorker{t: tr, streams: map[string]*traceStream{}}
	c, err := net.Dial("udp", col.LocalAddr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	w.hepConn = c
	ok200 := "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5072;branch=z9hG4bK-x;rport=5072\r\n" +
		"From: <sip:+447700900123@127.0.0.1>;tag=a1\r\nTo: <sip:1001@127.0.0.3>;tag=b2\r\nCall-ID: call-2@127.0.0.1\r\n" +
		"CSeq: 1 INVITE\r\nContact: <sip:1001@127.0.0.3:5060>\r\nContent-Type: application/sdp\r\nContent-Length: 130\r\n\r\n" +
		"v=0\r\no=- 1 1 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n" +
		"a=rtpmap:101 telephone-event/8000\r\n"
	for _, bc := range []struct{ name, msg string }{{"200 with SDP", ok200}, {"INVITE with credentials", traceInvite}} {
		b.Run(bc.name, func(b *testing.B) {
			it := traceItem{at: time.Now(), laddr: "127.0.0.1:5072", raddr: "127.0.0.4:5060", msg: []byte(bc.msg)}
			b.SetBytes(int64(len(it.msg)))
			b.ReportAllocs()
			for b.Loop() {
				w.handle(it)
			}
		})
	}
	if tr.hepErrors.Load() > 0 {
		b.Logf("%d HEP errors", tr.hepErrors.Load())
	}
}

// TestTraceReload: the trace is read at start-up; a reload that changes it
// says so instead of pretending to apply it.
func TestTraceReload(t *testing.T) {
	recs := &logRecords{}
	s, err := New(parseConfig(t, "sip: {trace: {log: true}}\n"), slog.New(recs))
	if err != nil {
		t.Fatal(err)
	}
	s.Reload(parseConfig(t, "sip: {trace: {log: true}}\n"))
	s.Reload(parseConfig(t, "sip: {trace: {log: true, hep: {address: \"192.0.2.10:9060\"}}}\n"))
	var warned int
	for _, r := range recs.recs {
		if strings.Contains(r["msg"], "sip.trace changes take a restart") {
			warned++
		}
	}
	if warned != 1 {
		t.Errorf("%d warnings, want 1 (for the reload that changed sip.trace)", warned)
	}
	if s.trace.hep != nil {
		t.Error("a reload turned HEP on in the running trace")
	}
}
