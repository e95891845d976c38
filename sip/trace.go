package sip

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/wagate/wagate/configs"
)

// The SIP trace sees every message sipgo reads or writes, on every
// transport: a log line per message (sip.trace.log) and a HEP v3 copy to a
// Homer/heplify collector (sip.trace.hep), so that calls over TLS toward
// Meta can be diagnosed without a key log.
//
// It hooks sipgo's debug tracer, which sipgo calls from its reader and
// writer goroutines. The hook only copies the bytes into a bounded queue
// (dropping and counting when it is full: it never blocks a SIP
// goroutine); one goroutine owned by the Server frames, summarises,
// redacts, logs and exports them. Messages the edge refuses never reach
// sipgo, so they are not traced: the edge counts and summarises them.

// Bounds of the trace queue: a message is dropped (and counted) rather
// than queued past either.
const (
	traceQueueLen   = 4096
	traceQueueBytes = 16 << 20
	// traceMaxMessage bounds a message framed from a stream; HEP cannot
	// carry a larger one either.
	traceMaxMessage = hepMaxLen
	// traceStreamIdle forgets a stream connection's state after this long
	// without a message.
	traceStreamIdle = 10 * time.Minute
	// traceReportInterval is how often drops and HEP failures are logged.
	traceReportInterval = 10 * time.Second
	// traceLogValue bounds summary values (Call-ID, CSeq, reason) in the
	// log line.
	traceLogValue = 256
)

// TraceStats counts what the SIP trace did since start.
type TraceStats struct {
	// Messages counts messages traced (logged, exported, or both).
	Messages uint64 `json:"messages"`
	// Dropped counts messages not traced because the queue was full.
	Dropped uint64 `json:"dropped"`
	// Unframed counts stream reads that could not be split into messages
	// (not traced: a fragment could hold part of a credential).
	Unframed uint64 `json:"unframed"`
	// HEPSent counts packets sent to the collector.
	HEPSent uint64 `json:"hep_sent"`
	// HEPErrors counts packets that could not be built or sent.
	HEPErrors uint64 `json:"hep_errors"`
}

// tracer is the SIP trace of one Server.
type tracer struct {
	log   *slog.Logger
	logOn bool
	hep   *configs.HEP // nil: no export
	node  string
	// host stands in for a wildcard local address in HEP packets.
	host netip.Addr

	q      chan traceItem
	queued atomic.Int64 // bytes in q

	messages, dropped, unframed, hepSent, hepErrors atomic.Uint64
}

// traceItem is one read or write as sipgo reported it.
type traceItem struct {
	at     time.Time
	out    bool // written by wagate
	stream bool // TCP or TLS: sipgo says "TCP" for both
	laddr  string
	raddr  string
	msg    []byte // a copy; empty for a stream read that ended
	// drops is the tracer's drop count when the item was queued: when it
	// changes, a read may be missing from a stream.
	drops uint64
}

// newTracer returns the trace cfg asks for, or nil when it asks for none.
func newTracer(cfg *configs.Config, log *slog.Logger) *tracer {
	tc := cfg.SIP.Trace
	if !tc.Log && tc.HEP == nil {
		return nil
	}
	t := &tracer{
		log:   log.With("component", "sip-trace"),
		logOn: tc.Log,
		hep:   tc.HEP,
		node:  cfg.NodeID,
		q:     make(chan traceItem, traceQueueLen),
	}
	if ip, err := netip.ParseAddr(cfg.SIP.Host); err == nil {
		t.host = ip.Unmap()
	}
	return t
}

// traceHook forwards what sipgo's tracer hook sees (through the Server's
// message counter, msgStats) to the tracer of the running Server, if any.
var traceHook struct {
	cur atomic.Pointer[tracer]
}

type traceDispatch struct{}

func (traceDispatch) SIPTraceRead(transport, laddr, raddr string, msg []byte) {
	if t := traceHook.cur.Load(); t != nil {
		t.enqueue(false, transport, laddr, raddr, msg)
	}
}

func (traceDispatch) SIPTraceWrite(transport, laddr, raddr string, msg []byte) {
	if t := traceHook.cur.Load(); t != nil {
		t.enqueue(true, transport, laddr, raddr, msg)
	}
}

// install makes t receive every message from now on. sipgo's tracer hook
// is always on (New sets it, before sipgo's goroutines exist, for the
// message counts); it passes each message to t once installed.
func (t *tracer) install(m *msgStats) {
	traceHook.cur.Store(t)
	m.next.Store(&tracerBox{t: traceDispatch{}})
}

func (t *tracer) uninstall() { traceHook.cur.CompareAndSwap(t, nil) }

// enqueue copies one read or write into the queue, or drops it. It runs on
// sipgo's goroutines and never blocks.
func (t *tracer) enqueue(out bool, transport, laddr, raddr string, msg []byte) {
	stream := transport != "UDP"
	// A keep-alive is not a message; but a stream read of CRLFs may end a
	// message's header, so reads on streams are framed by the worker.
	if (out || !stream) && isKeepalive(msg) {
		return
	}
	n := int64(len(msg))
	if t.queued.Add(n) > traceQueueBytes {
		t.queued.Add(-n)
		t.dropped.Add(1)
		return
	}
	it := traceItem{at: time.Now(), out: out, stream: stream, laddr: laddr, raddr: raddr, msg: bytes.Clone(msg),
		drops: t.dropped.Load()}
	select {
	case t.q <- it:
	default:
		t.queued.Add(-n)
		t.dropped.Add(1)
	}
}

func (t *tracer) stats() TraceStats {
	return TraceStats{
		Messages:  t.messages.Load(),
		Dropped:   t.dropped.Load(),
		Unframed:  t.unframed.Load(),
		HEPSent:   t.hepSent.Load(),
		HEPErrors: t.hepErrors.Load(),
	}
}

// run handles queued messages until ctx ends, then uninstalls t and
// handles what is left. tcpPort and tlsPort are the stream listeners'
// ports (0: none), which tell TLS from TCP.
func (t *tracer) run(ctx context.Context, tcpPort, tlsPort int) {
	w := &traceWorker{t: t, tcpPort: tcpPort, tlsPort: tlsPort, streams: map[string]*traceStream{}}
	if t.hep != nil {
		c, err := net.Dial("udp", t.hep.Address)
		if err != nil {
			t.log.Error("sip trace: HEP collector unusable, nothing is exported", "address", t.hep.Address, "error", err)
		} else {
			w.hepConn = c
			w.hepKey = t.hep.Password.Resolve()
			defer c.Close()
		}
	}
	tick := time.NewTicker(traceReportInterval)
	defer tick.Stop()
	for {
		select {
		case it := <-t.q:
			w.handle(it)
		case now := <-tick.C:
			w.report()
			w.sweep(now)
		case <-ctx.Done():
			t.uninstall()
			for {
				select {
				case it := <-t.q:
					w.handle(it)
				default:
					w.report()
					return
				}
			}
		}
	}
}

// traceWorker is the state of the goroutine that handles queued messages.
type traceWorker struct {
	t                *tracer
	tcpPort, tlsPort int
	// streams holds, per stream connection ("laddr raddr"), what is
	// needed to split its reads into messages.
	streams map[string]*traceStream
	hepConn net.Conn
	hepKey  string
	buf     []byte // one HEP packet

	drops         uint64 // of the last item handled
	reportedDrops uint64
	hepErr        error // first HEP error since the last report
	hepErrs       uint64
}

// traceStream is what the worker knows of one stream connection.
type traceStream struct {
	// partial is a message read in part.
	partial []byte
	// transport is "tls" or "tcp" for a connection wagate dialled, as its
	// own first message on it said; "" until then.
	transport string
	seen      time.Time
}

func (w *traceWorker) handle(it traceItem) {
	w.t.queued.Add(-int64(len(it.msg)))
	if it.drops != w.drops {
		// Reads were dropped since the last item: a message read in part
		// may have lost its middle, and glued to the next read it could
		// show part of a credential. Start every stream afresh; a read
		// that does not begin a message is then skipped.
		w.drops = it.drops
		for _, st := range w.streams {
			st.partial = nil
		}
	}
	if !it.stream {
		w.emit(it, "udp", it.msg)
		return
	}
	key := it.laddr + " " + it.raddr
	st := w.streams[key]
	if len(it.msg) == 0 {
		delete(w.streams, key) // sipgo's reader of this connection ended
		return
	}
	listener := w.listenerTransport(it.laddr)
	if st == nil && (listener == "" || !it.out) {
		st = &traceStream{}
		w.streams[key] = st
	}
	if st != nil {
		st.seen = it.at
	}
	if it.out {
		// sipgo writes whole messages.
		tr := listener
		if tr == "" {
			if st.transport == "" {
				st.transport = viaTransport(it.msg)
			}
			tr = st.transport
		}
		w.emit(it, tr, it.msg)
		return
	}
	buf := it.msg
	if len(st.partial) > 0 {
		buf = append(st.partial, it.msg...)
	}
	st.partial = nil
	for {
		buf = bytes.TrimLeft(buf, "\r\n")
		if len(buf) == 0 {
			return
		}
		switch startsMessage(buf) {
		case frameNeedMore:
			st.partial = buf
			return
		case frameBad:
			// Not at a message boundary (a read was dropped, or the peer
			// sent garbage): skip the read rather than guess.
			w.t.unframed.Add(1)
			return
		}
		msg, n, fs := frameMessage(buf, traceMaxMessage)
		switch fs {
		case frameOK:
			tr := listener
			if tr == "" {
				tr = st.transport
			}
			if tr == "" {
				tr = viaTransport(msg)
			}
			w.emit(it, tr, msg)
			buf = buf[n:]
		case frameNeedMore:
			st.partial = buf
			return
		default:
			w.t.unframed.Add(1)
			return
		}
	}
}

// listenerTransport is "tcp" or "tls" when laddr is on a stream listener's
// port (a connection a peer opened), else "".
func (w *traceWorker) listenerTransport(laddr string) string {
	_, p, err := net.SplitHostPort(laddr)
	if err != nil {
		return ""
	}
	port, _ := strconv.Atoi(p)
	switch {
	case port == 0:
	case port == w.tlsPort:
		return "tls"
	case port == w.tcpPort:
		return "tcp"
	}
	return ""
}

// startsMessage reports whether b starts with a SIP request or status line
// (frameOK), cannot tell yet (frameNeedMore) or does not (frameBad).
func startsMessage(b []byte) frameStatus {
	end := bytes.IndexByte(b, '\n')
	if end < 0 {
		if len(b) > 1024 {
			return frameBad
		}
		return frameNeedMore
	}
	line := string(bytes.TrimRight(b[:end], "\r"))
	if len(line) >= 8 && (strings.EqualFold(line[:8], "SIP/2.0 ") || strings.EqualFold(line[len(line)-8:], " SIP/2.0")) {
		return frameOK
	}
	return frameBad
}

// viaTransport is "tls" when the top Via of m says TLS, else "tcp". It is
// asked only about connections wagate dialled, where the top Via of its own
// requests and of the responses to them is wagate's.
func viaTransport(m []byte) string {
	v := rawHeaderValue(m, "via", "v")
	if len(v) > 8 && strings.EqualFold(v[:8], "SIP/2.0/") && strings.HasPrefix(strings.ToUpper(v[8:]), "TLS") {
		return "tls"
	}
	return "tcp"
}

// emit logs and exports one message.
func (w *traceWorker) emit(it traceItem, transport string, msg []byte) {
	t := w.t
	t.messages.Add(1)
	red := redactCredentials(msg)
	sum := summarize(msg)
	if t.logOn {
		dir := "in"
		if it.out {
			dir = "out"
		}
		attrs := make([]slog.Attr, 0, 9)
		attrs = append(attrs, slog.String("dir", dir), slog.String("transport", transport),
			slog.String("local", it.laddr), slog.String("remote", it.raddr))
		if sum.status != 0 {
			attrs = append(attrs, slog.Int("status", sum.status), slog.String("reason", truncate(sum.reason, traceLogValue)))
		} else {
			attrs = append(attrs, slog.String("method", truncate(sum.method, traceLogValue)))
		}
		attrs = append(attrs, slog.String("cseq", truncate(sum.cseq, traceLogValue)),
			slog.String("call_id", truncate(sum.callID, traceLogValue)), slog.Int("bytes", len(msg)))
		ctx := context.Background()
		if t.log.Enabled(ctx, slog.LevelDebug) {
			attrs = append(attrs, slog.String("message", string(red)))
		}
		t.log.LogAttrs(ctx, slog.LevelInfo, "sip message", attrs...)
	}
	if w.hepConn != nil {
		w.sendHEP(it, transport, sum.callID, red)
	}
}

// sendHEP exports one message to the collector.
func (w *traceWorker) sendHEP(it traceItem, transport, callID string, payload []byte) {
	local, ok1 := parseAddrPort(it.laddr)
	remote, ok2 := parseAddrPort(it.raddr)
	if !ok1 || !ok2 {
		w.hepFailed(errHEPFamily)
		return
	}
	if local.Addr().IsUnspecified() && w.t.host.IsValid() {
		local = netip.AddrPortFrom(w.t.host, local.Port())
	}
	local, remote = sameFamily(local, remote)
	p := hepPacket{Src: remote, Dst: local, Time: it.at, AgentID: uint32(w.t.hep.AgentID), Node: w.t.node,
		AuthKey: w.hepKey, CorrelationID: callID, Payload: payload}
	if it.out {
		p.Src, p.Dst = local, remote
	}
	switch transport {
	case "udp":
		p.Proto = hepProtoUDP
	case "tls":
		p.Proto = hepProtoTLS
	default:
		p.Proto = hepProtoTCP
	}
	var err error
	w.buf, err = appendHEP(w.buf[:0], &p)
	if err == nil {
		_, err = w.hepConn.Write(w.buf)
	}
	if err != nil {
		w.hepFailed(err)
		return
	}
	w.t.hepSent.Add(1)
}

func (w *traceWorker) hepFailed(err error) {
	w.t.hepErrors.Add(1)
	w.hepErrs++
	if w.hepErr == nil {
		w.hepErr = err
	}
}

// report logs drops and HEP failures since the last report, if any: one
// line per interval, never one per message.
func (w *traceWorker) report() {
	if d := w.t.dropped.Load(); d > w.reportedDrops {
		w.t.log.Warn("sip trace: messages not traced, the queue was full", "count", d-w.reportedDrops)
		w.reportedDrops = d
	}
	if w.hepErrs > 0 {
		w.t.log.Warn("sip trace: HEP packets not sent", "count", w.hepErrs, "address", w.t.hep.Address, "error", w.hepErr)
		w.hepErrs, w.hepErr = 0, nil
	}
}

// sweep forgets stream connections idle for traceStreamIdle (a reader
// that ended without telling, or one whose reads were dropped).
func (w *traceWorker) sweep(now time.Time) {
	for k, st := range w.streams {
		if now.Sub(st.seen) > traceStreamIdle {
			delete(w.streams, k)
		}
	}
}

func parseAddrPort(s string) (netip.AddrPort, bool) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port()), true
}

// sameFamily writes an IPv4 address as IPv4-mapped IPv6 when the other
// address is IPv6: a HEP packet has one family.
func sameFamily(a, b netip.AddrPort) (netip.AddrPort, netip.AddrPort) {
	if a.Addr().Is4() == b.Addr().Is4() {
		return a, b
	}
	to6 := func(x netip.AddrPort) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom16(x.Addr().As16()), x.Port())
	}
	if a.Addr().Is4() {
		return to6(a), b
	}
	return a, to6(b)
}
