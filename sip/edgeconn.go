package sip

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wagate/wagate/configs"
)

// The edge sits between the sockets and sipgo: sipgo reads from these
// wrappers and only ever sees messages the edge passed.

// edgePacketConn is a UDP listener socket as sipgo sees it. Its ReadFrom
// returns only messages the edge passed; the edge's stateless answers are
// written straight back to the datagram's source.
type edgePacketConn struct {
	net.PacketConn
	edge *edge
	buf  []byte
}

func newEdgePacketConn(pc net.PacketConn, e *edge) *edgePacketConn {
	// Larger than any UDP payload, so a datagram is never cut.
	return &edgePacketConn{PacketConn: pc, edge: e, buf: make([]byte, 65536)}
}

func (c *edgePacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(c.buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return 0, addr, err
			}
			// sipgo stops serving on any read error; a transient one
			// (an ICMP error surfacing, a signal) must not end SIP.
			c.edge.log.Warn("sip edge: UDP read error", "error", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		ua, ok := addr.(*net.UDPAddr)
		if !ok {
			continue
		}
		// The canonical form is written straight into sipgo's buffer.
		v := c.edge.inboundTo(p[:0:len(p)], c.buf[:n], ua.AddrPort(), "UDP")
		switch v.act {
		case actPass:
			if len(v.msg) > len(p) {
				// The edge refuses a datagram whose canonical form would
				// not fit sipgo's read buffer (32 KiB in sipgo v1.7.2,
				// while max_message_size may be up to 64 KiB), so this is
				// a bug if it happens.
				c.edge.log.Error("sip edge: message larger than sipgo's read buffer", "bytes", len(v.msg))
				continue
			}
			return copy(p, v.msg), addr, nil
		case actReply:
			if _, err := c.PacketConn.WriteTo(v.reply, addr); err != nil {
				c.edge.log.Debug("sip edge: stateless answer not sent", "to", addr.String(), "error", err)
			}
		}
	}
}

// edgeListener admits stream connections before anything is read from
// them: a stranger's connection is closed at once (unless strangers get a
// 403), and the total and per-source caps are held. It never returns an
// error for one bad connection: sipgo stops serving a listener on the
// first Accept error.
type edgeListener struct {
	net.Listener
	edge *edge
}

func (l *edgeListener) Accept() (net.Conn, error) {
	delay := 5 * time.Millisecond
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			// Out of file descriptors and the like: wait, as
			// net/http does, instead of stopping the listener.
			l.edge.log.Warn("sip edge: accept failed", "error", err, "retry_in", delay.String())
			time.Sleep(delay)
			delay = min(2*delay, time.Second)
			continue
		}
		delay = 5 * time.Millisecond
		src := addrPortOf(c.RemoteAddr())
		ip := src.Addr().Unmap()
		cfg := l.edge.cfg.Load()
		ep := cfg.EndpointForSource(ip)
		if ep == nil {
			ep = l.edge.dialogPeer(ip) // its messages are checked one by one
		}
		if ep == nil && cfg.SIP.UnknownSources != configs.UnknownSourcesReject {
			c.Close()
			l.edge.refuse(reasonStranger, src, "connection", verdict{})
			continue
		}
		per := cfg.SIP.TCP.MaxConnectionsPerSource
		if ep == nil {
			per = 1 // a stranger gets its 403 on one connection at a time
		}
		if !l.edge.conns.acquire(ip, cfg.SIP.TCP.MaxConnections, per) {
			c.Close()
			l.edge.refuse(reasonConnRefused, src, "connection cap reached", verdict{})
			continue
		}
		return &countedConn{Conn: c, release: func() { l.edge.conns.release(ip) }}, nil
	}
}

// countedConn gives its connection slot back once, when closed.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// framingListener wraps each accepted connection (after TLS, when there
// is TLS) in an edgeConn.
type framingListener struct {
	net.Listener
	edge      *edge
	transport string
}

func (l framingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newEdgeConn(c, l.edge, l.transport), nil
}

func newEdgeConn(c net.Conn, e *edge, transport string) *edgeConn {
	return &edgeConn{
		Conn:      c,
		edge:      e,
		src:       addrPortOf(c.RemoteAddr()),
		transport: transport,
		buf:       make([]byte, 16<<10),
		written:   make(chan struct{}, 1),
		closed:    make(chan struct{}),
	}
}

// edgeConn is a stream connection as sipgo sees it: its Read returns the
// canonical bytes of whole messages the edge passed, one after another.
// It frames the stream itself (header end, then Content-Length), answers
// CRLF keep-alive pings, and closes a connection that stays silent for
// sip.tcp.idle_timeout while no call uses it, or that takes longer than
// that to deliver one message (a slow sender holding a goroutine). A peer
// that does not read what wagate writes is not read from either once
// maxPendingWrites writes wait on it, and is closed when a write has not
// gone out within the idle timeout: sipgo answers each request in a
// goroutine of its own, and without both a peer that sends requests and
// never reads held a goroutine and its request per message (one
// connection: 49,000 goroutines and 770 MB), for as long as it sent.
type edgeConn struct {
	net.Conn
	edge      *edge
	src       netip.AddrPort
	transport string

	in  []byte // read, not yet framed
	out []byte // passed, not yet read by sipgo
	// outBuf is out's memory, reused once sipgo has read all of out.
	outBuf []byte
	buf    []byte
	// partialSince is when the first byte of an unfinished message came.
	partialSince time.Time
	done         error
	// pending counts writes under way; written is signalled as each ends.
	pending  atomic.Int32
	written  chan struct{}
	timedOut atomic.Bool
	// paceWait is how long to wait before reading the next message: the
	// source is over sip.tcp.paced_request_rate (streamPacer). closed
	// ends the wait when the connection is closed.
	paceWait  time.Duration
	closed    chan struct{}
	closeOnce sync.Once
}

// Close closes the connection and ends a pacing wait.
func (c *edgeConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// maxPendingWrites is how many writes may wait on a connection's peer
// before the next message is read from it. A peer that reads what it is
// sent never has more than a few writes under way at once.
const maxPendingWrites = 32

func (c *edgeConn) Read(p []byte) (int, error) {
	for len(c.out) == 0 {
		if c.done != nil {
			return 0, c.done
		}
		// Each write ends within the idle timeout (Write), so this wait
		// does too.
		for c.pending.Load() >= maxPendingWrites {
			<-c.written
		}
		if d := c.paceWait; d > 0 {
			c.paceWait = 0
			c.edge.pace.sleep(d, c.closed)
		}
		c.done = c.next()
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	return n, nil
}

// next frames and checks messages until one is passed (nil) or the
// connection is over (an error to hand sipgo: io.EOF ends its reader).
func (c *edgeConn) next() error {
	for {
		cfg := c.edge.cfg.Load()
		if err := c.keepalives(); err != nil {
			return err
		}
		msg, n, st := frameMessage(c.in, cfg.SIP.Limits.MaxMessageSize)
		switch st {
		case frameOK:
			v := c.edge.inboundTo(c.outBuf, msg, c.src, c.transport)
			c.in = c.in[n:]
			c.partialSince = time.Time{}
			if v.act == actReply {
				if _, err := c.Write(v.reply); err != nil {
					return c.end(io.EOF)
				}
			}
			if v.close {
				return c.end(io.EOF)
			}
			if v.act == actPass {
				if !isResponseBytes(msg) {
					c.paceWait = c.edge.pace.take(c.src.Addr().Unmap(), cfg.SIP.TCP.PacedRequestRate)
					if c.paceWait > 0 {
						c.edge.stats.paced.Add(1)
						c.edge.summary.notePaced(c.src)
					}
				}
				c.out = v.msg
				c.outBuf = nil
				if cap(v.msg) <= maxKeptOut {
					c.outBuf = v.msg[:0]
				}
				if len(c.in) == 0 {
					c.in = nil // let a large buffer go
				}
				return nil
			}
			continue
		case frameTooLarge, frameBad:
			reason, code, phrase := reasonMalformed, 400, "Bad Request"
			detail := "stream framing: bad or repeated Content-Length"
			if st == frameTooLarge {
				reason, code, phrase = reasonTooLarge, 513, "Message Too Large"
				detail = "over " + strconv.Itoa(cfg.SIP.Limits.MaxMessageSize) + " bytes"
			}
			// Without a trustworthy length there is no next message to
			// find: answer if the header can be read, then close.
			m, _ := splitMessage(headerPart(c.in))
			if ip := c.src.Addr().Unmap(); c.edge.cfg.Load().EndpointForSource(ip) != nil || c.edge.dialogPeer(ip) != nil {
				if v := c.edge.answer(reason, c.src, detail, &m, code, phrase, true); v.act == actReply {
					_, _ = c.Write(v.reply)
				}
			} else {
				c.edge.refuse(reasonStranger, c.src, detail, verdict{})
			}
			return c.end(io.EOF)
		}
		if err := c.fill(cfg); err != nil {
			return err
		}
	}
}

// Write writes b to the peer within the idle timeout, or closes the
// connection: a write cut short leaves the stream unframed, and every other
// write waiting on it fails at once.
func (c *edgeConn) Write(b []byte) (int, error) {
	c.pending.Add(1)
	defer func() {
		c.pending.Add(-1)
		select {
		case c.written <- struct{}{}:
		default:
		}
	}()
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.edge.cfg.Load().SIP.TCP.IdleTimeout.D()))
	n, err := c.Conn.Write(b)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && c.timedOut.CompareAndSwap(false, true) {
			// Every write waiting times out with it: one refusal.
			c.edge.refuse(reasonWriteTimeout, c.src, "", verdict{})
		}
		c.Conn.Close()
	}
	return n, err
}

// keepalives consumes CRLFs between messages, answering each double-CRLF
// ping with a CRLF pong (RFC 5626 §3.5.1).
func (c *edgeConn) keepalives() error {
	for len(c.in) >= 2 && c.in[0] == '\r' && c.in[1] == '\n' {
		if len(c.in) == 2 || (len(c.in) == 3 && c.in[2] == '\r') {
			return nil // the rest of a ping may follow
		}
		if c.in[2] == '\r' && c.in[3] == '\n' {
			if _, err := c.Write([]byte("\r\n")); err != nil {
				return c.end(io.EOF)
			}
			c.in = c.in[4:]
			continue
		}
		c.in = c.in[2:]
	}
	return nil
}

// fill reads more of the stream, bounded by the idle timeout.
func (c *edgeConn) fill(cfg *configs.Config) error {
	idle := cfg.SIP.TCP.IdleTimeout.D()
	for {
		deadline := time.Now().Add(idle)
		pending := len(bytes.TrimLeft(c.in, "\r\n")) > 0
		if pending {
			if c.partialSince.IsZero() {
				c.partialSince = time.Now()
			}
			deadline = c.partialSince.Add(idle)
		}
		_ = c.Conn.SetReadDeadline(deadline)
		n, err := c.Conn.Read(c.buf)
		if n > 0 {
			c.in = append(c.in, c.buf[:n]...)
			return nil
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			if !pending && c.edge.busy(c.src.String()) {
				continue // a call's dialog lives on this connection
			}
			c.edge.refuse(reasonIdle, c.src, "", verdict{})
			return c.end(io.EOF)
		}
		if err == nil {
			continue
		}
		return c.end(err)
	}
}

// end closes the connection and returns err for sipgo's reader.
func (c *edgeConn) end(err error) error {
	c.Close()
	if errors.Is(err, net.ErrClosed) {
		return io.EOF
	}
	return err
}

// maxKeptOut bounds the passed-message buffer a connection keeps between
// messages: a rare large message does not pin its size to a connection.
const maxKeptOut = 8 << 10

type frameStatus uint8

const (
	frameNeedMore frameStatus = iota
	frameOK
	frameTooLarge
	frameBad
)

// frameMessage finds the first whole message in b: the header ends at the
// first empty line (CRLF or bare LF), the body is Content-Length bytes
// (none when absent). n is the bytes the message takes in b.
func frameMessage(b []byte, max int) (msg []byte, n int, st frameStatus) {
	end, sep := headerEnd(b)
	if end < 0 {
		if len(b) > max {
			return nil, 0, frameTooLarge
		}
		return nil, 0, frameNeedMore
	}
	m, err := getRawMessage(b[:end+sep])
	defer putRaw(m)
	if err != nil {
		return nil, 0, frameBad
	}
	cl, seen := 0, false
	for _, h := range m.headers {
		if h.key != hdrContentLength {
			continue
		}
		x, err := strconv.Atoi(strings.TrimSpace(h.value))
		if err != nil || x < 0 || (seen && x != cl) {
			return nil, 0, frameBad
		}
		cl, seen = x, true
	}
	total := end + sep + cl
	if total > max {
		return nil, 0, frameTooLarge
	}
	if len(b) < total {
		return nil, 0, frameNeedMore
	}
	return b[:total], total, frameOK
}

// headerEnd returns where the header section of b ends and the length of
// the empty line's separator, or -1.
func headerEnd(b []byte) (int, int) {
	crlf := bytes.Index(b, []byte("\r\n\r\n"))
	lf := bytes.Index(b, []byte("\n\n"))
	switch {
	case crlf >= 0 && (lf < 0 || crlf < lf):
		return crlf, 4
	case lf >= 0:
		return lf, 2
	}
	return -1, 0
}

// headerPart is b up to its empty line, or all of b.
func headerPart(b []byte) []byte {
	if end, sep := headerEnd(b); end >= 0 {
		return b[:end+sep]
	}
	return append(b[:len(b):len(b)], "\r\n\r\n"...)
}

func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case *net.UDPAddr:
		return a.AddrPort()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap
	}
	return netip.AddrPort{}
}
