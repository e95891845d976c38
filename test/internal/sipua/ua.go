package sipua

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Timers (RFC 3261 §17) for UDP.
const (
	T1     = 500 * time.Millisecond
	T2     = 4 * time.Second
	TimerB = 64 * T1
)

// TraceEntry is one message the UA sent or received.
type TraceEntry struct {
	At   time.Time
	Sent bool
	Peer *net.UDPAddr
	Msg  *Msg
}

// UA is a SIP user agent on one UDP socket. It places calls (Invite),
// answers them (Accept) and serves in-dialog requests. Safe for concurrent
// use.
type UA struct {
	conn *net.UDPConn
	IP   string
	Port int
	user string
	logf func(string, ...any)
	// noTrying: Config.NoTrying.
	noTrying bool

	mu        sync.Mutex
	clientTx  map[string]chan *Msg // top-Via branch → responses
	dialogs   map[string]*Dialog   // Call-ID → dialog
	serverInv map[string]*Incoming // INVITE branch → transaction
	trace     []TraceEntry

	incoming chan *Incoming
	closed   chan struct{}
	done     chan struct{}
}

// Config configures a UA.
type Config struct {
	// Addr is the local ip:port to listen on (port 0 picks one).
	Addr string
	// User is the user part of our Contact.
	User string
	// Logf, when set, gets one line per message sent and received.
	Logf func(format string, args ...any)
	// NoTrying sends no 100 Trying to a new INVITE: the caller has no
	// provisional response until the test rings or answers (Meta or a
	// phone slow to take the call; RFC 3261 §9.1 keeps the caller from
	// cancelling it until one comes).
	NoTrying bool
}

// Listen starts a UA.
func Listen(cfg Config) (*UA, error) {
	la, err := net.ResolveUDPAddr("udp4", cfg.Addr)
	if err != nil {
		return nil, err
	}
	c, err := net.ListenUDP("udp4", la)
	if err != nil {
		return nil, err
	}
	a := c.LocalAddr().(*net.UDPAddr)
	ua := &UA{
		conn: c, IP: a.IP.String(), Port: a.Port, user: cfg.User, logf: cfg.Logf, noTrying: cfg.NoTrying,
		clientTx:  map[string]chan *Msg{},
		dialogs:   map[string]*Dialog{},
		serverInv: map[string]*Incoming{},
		incoming:  make(chan *Incoming, 16),
		closed:    make(chan struct{}),
		done:      make(chan struct{}),
	}
	if ua.user == "" {
		ua.user = "peer"
	}
	go ua.readLoop()
	return ua, nil
}

// Addr is the UA's host:port.
func (ua *UA) Addr() string { return net.JoinHostPort(ua.IP, strconv.Itoa(ua.Port)) }

// Contact is the UA's contact URI.
func (ua *UA) Contact() string {
	return fmt.Sprintf("sip:%s@%s;transport=udp", ua.user, ua.Addr())
}

// Close stops the UA (calls are not ended: BYE them first).
func (ua *UA) Close() error {
	select {
	case <-ua.closed:
		return nil
	default:
	}
	close(ua.closed)
	err := ua.conn.Close()
	<-ua.done
	return err
}

// Trace returns a copy of the messages sent and received so far.
func (ua *UA) Trace() []TraceEntry {
	ua.mu.Lock()
	defer ua.mu.Unlock()
	return append([]TraceEntry(nil), ua.trace...)
}

func (ua *UA) send(m *Msg, to *net.UDPAddr) error {
	b := m.Bytes()
	ua.mu.Lock()
	ua.trace = append(ua.trace, TraceEntry{At: time.Now(), Sent: true, Peer: to, Msg: m})
	ua.mu.Unlock()
	if ua.logf != nil {
		ua.logf("sip %s → %s: %s", ua.Addr(), to, firstLine(m))
	}
	_, err := ua.conn.WriteToUDP(b, to)
	return err
}

func firstLine(m *Msg) string {
	if m.Request {
		return m.Method + " " + m.RURI
	}
	_, meth := m.CSeq()
	return fmt.Sprintf("%d %s (%s)", m.Status, m.Reason, meth)
}

func (ua *UA) readLoop() {
	defer close(ua.done)
	buf := make([]byte, 65536)
	for {
		n, from, err := ua.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if n <= 4 { // keep-alive CRLF
			continue
		}
		m, err := Parse(buf[:n])
		if err != nil {
			if ua.logf != nil {
				ua.logf("sip %s: unparsable datagram from %s: %v", ua.Addr(), from, err)
			}
			continue
		}
		m.Src = from
		ua.mu.Lock()
		ua.trace = append(ua.trace, TraceEntry{At: time.Now(), Peer: from, Msg: m})
		ua.mu.Unlock()
		if ua.logf != nil {
			ua.logf("sip %s ← %s: %s", ua.Addr(), from, firstLine(m))
		}
		if m.Request {
			ua.handleRequest(m)
		} else {
			ua.handleResponse(m)
		}
	}
}

func (ua *UA) handleResponse(m *Msg) {
	ua.mu.Lock()
	ch := ua.clientTx[m.Branch()]
	d := ua.dialogs[m.Get("Call-ID")]
	ua.mu.Unlock()
	if ch != nil {
		select {
		case ch <- m:
		default:
		}
		return
	}
	// A retransmitted 2xx to an INVITE whose transaction is over: ACK again.
	if _, meth := m.CSeq(); meth == "INVITE" && m.Status/100 == 2 && d != nil {
		d.resendAck()
	}
}

func (ua *UA) handleRequest(m *Msg) {
	callID := m.Get("Call-ID")
	ua.mu.Lock()
	d := ua.dialogs[callID]
	ua.mu.Unlock()
	switch m.Method {
	case "ACK":
		if d != nil {
			d.gotAck()
		}
	case "INVITE":
		if m.ToTag() != "" {
			if d == nil {
				ua.respond(m, 481, "Call/Transaction Does Not Exist", "", nil)
				return
			}
			// A re-INVITE: accept it with the SDP we already have.
			d.mu.Lock()
			sdp := d.LocalSDP
			d.mu.Unlock()
			ua.respond(m, 200, "OK", "", sdp)
			return
		}
		ua.mu.Lock()
		inc := ua.serverInv[m.Branch()]
		if inc == nil {
			inc = &Incoming{ua: ua, Req: m, localTag: newTag(), cancelled: make(chan struct{})}
			ua.serverInv[m.Branch()] = inc
		}
		ua.mu.Unlock()
		if inc.Req != m { // retransmission
			inc.resendLast()
			return
		}
		if !ua.noTrying {
			inc.reply(100, "Trying", nil, false)
		}
		select {
		case ua.incoming <- inc:
		default:
			inc.reply(486, "Busy Here", nil, false)
		}
	case "CANCEL":
		ua.mu.Lock()
		inc := ua.serverInv[m.Branch()]
		ua.mu.Unlock()
		if inc == nil {
			ua.respond(m, 481, "Call/Transaction Does Not Exist", "", nil)
			return
		}
		ua.respond(m, 200, "OK", "", nil)
		inc.cancel()
	case "BYE":
		if d == nil {
			ua.respond(m, 481, "Call/Transaction Does Not Exist", "", nil)
			return
		}
		ua.respond(m, 200, "OK", "", nil)
		d.gotBye(m)
	default: // OPTIONS, INFO, NOTIFY, …
		ua.respond(m, 200, "OK", "", nil)
	}
}

// respond sends a response to req with the given To tag (added when req's
// To has none) and body.
func (ua *UA) respond(req *Msg, code int, reason, toTag string, sdp []byte) {
	ua.send(ua.response(req, code, reason, toTag, sdp), responseAddr(req))
}

func (ua *UA) response(req *Msg, code int, reason, toTag string, sdp []byte) *Msg {
	r := &Msg{Status: code, Reason: reason}
	for _, v := range req.Headers {
		if strings.EqualFold(v.Name, "Via") {
			r.Add("Via", v.Value)
		}
	}
	if req.Method == "INVITE" && code > 100 && code < 300 {
		for _, v := range req.Headers {
			if strings.EqualFold(v.Name, "Record-Route") {
				r.Add("Record-Route", v.Value)
			}
		}
	}
	r.Add("From", req.Get("From"))
	to := req.Get("To")
	if req.ToTag() == "" && toTag != "" && code > 100 {
		to += ";tag=" + toTag
	}
	r.Add("To", to)
	r.Add("Call-ID", req.Get("Call-ID"))
	r.Add("CSeq", req.Get("CSeq"))
	if req.Method == "INVITE" && code > 100 && code < 300 {
		r.Add("Contact", "<"+ua.Contact()+">")
		r.Add("Allow", "INVITE, ACK, BYE, CANCEL, NOTIFY, OPTIONS")
	}
	if sdp != nil {
		r.Add("Content-Type", "application/sdp")
		r.Body = sdp
	}
	return r
}

// responseAddr is where a response to req goes: the top Via's received/
// rport, else its sent-by, else the packet's source.
func responseAddr(req *Msg) *net.UDPAddr {
	via := req.Get("Via")
	src := req.Src
	f := strings.Fields(via)
	if len(f) >= 2 {
		sentBy, _, _ := strings.Cut(f[1], ";")
		host, port := sentBy, "5060"
		if h, p, err := net.SplitHostPort(sentBy); err == nil {
			host, port = h, p
		}
		if r := param(via, "received"); r != "" {
			host = r
		}
		if rp := param(via, "rport"); rp != "" {
			port = rp
		}
		if a, err := net.ResolveUDPAddr("udp4", net.JoinHostPort(host, port)); err == nil {
			return a
		}
	}
	return src
}

func (ua *UA) register(branch string) chan *Msg {
	ch := make(chan *Msg, 16)
	ua.mu.Lock()
	ua.clientTx[branch] = ch
	ua.mu.Unlock()
	return ch
}

func (ua *UA) unregister(branch string) {
	ua.mu.Lock()
	delete(ua.clientTx, branch)
	ua.mu.Unlock()
}

// transaction runs a non-INVITE client transaction to dst and returns the
// final response.
func (ua *UA) transaction(ctx context.Context, req *Msg, dst *net.UDPAddr) (*Msg, error) {
	ch := ua.register(req.Branch())
	defer ua.unregister(req.Branch())
	if err := ua.send(req, dst); err != nil {
		return nil, err
	}
	interval := T1
	retrans := time.NewTimer(interval)
	defer retrans.Stop()
	timeout := time.NewTimer(TimerB)
	defer timeout.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ua.closed:
			return nil, errors.New("sip: UA closed")
		case <-timeout.C:
			return nil, fmt.Errorf("sip: %s timed out", req.Method)
		case <-retrans.C:
			ua.send(req, dst)
			interval = min(2*interval, T2)
			retrans.Reset(interval)
		case res := <-ch:
			if res.Status >= 200 {
				return res, nil
			}
			interval = T2
		}
	}
}

func newTag() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func newBranch() string { return "z9hG4bK" + newTag() + newTag() }
