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
		conn: c, IP: a.IP.String(), Port: a.Port, user: cfg.User, logf: cfg.Logf,
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
		inc.reply(100, "Trying", nil, false)
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

// StatusError is a final non-2xx response to an INVITE.
type StatusError struct {
	Code   int
	Reason string
	Msg    *Msg
}

func (e *StatusError) Error() string { return fmt.Sprintf("sip: %d %s", e.Code, e.Reason) }

// InviteRequest is a call to place.
type InviteRequest struct {
	Target  *net.UDPAddr // where the INVITE goes
	RURI    string       // Request-URI
	From    string       // From URI (our tag is added)
	To      string       // To URI
	CallID  string       // default: random
	Headers []Header     // extra headers (Record-Route, x-wa-meta-*, …)
	SDP     []byte
	// OnProvisional is called for each 1xx (except 100).
	OnProvisional func(*Msg)
}

// Invite places a call and returns its dialog once a 2xx arrived and was
// ACKed. A final error response returns a *StatusError.
func (ua *UA) Invite(ctx context.Context, r InviteRequest) (*Dialog, error) {
	callID := r.CallID
	if callID == "" {
		callID = newTag() + newTag() + "@" + ua.IP
	}
	d := &Dialog{
		ua: ua, UAC: true, CallID: callID, LocalTag: newTag(),
		LocalURI: r.From, RemoteURI: r.To, localCSeq: 1, LocalSDP: r.SDP,
		acked: make(chan struct{}), bye: make(chan struct{}),
	}
	branch := newBranch()
	inv := &Msg{Request: true, Method: "INVITE", RURI: r.RURI}
	inv.Add("Via", fmt.Sprintf("SIP/2.0/UDP %s;branch=%s;rport", ua.Addr(), branch))
	inv.Add("Max-Forwards", "70")
	inv.Add("From", fmt.Sprintf("<%s>;tag=%s", r.From, d.LocalTag))
	inv.Add("To", "<"+r.To+">")
	inv.Add("Call-ID", callID)
	inv.Add("CSeq", "1 INVITE")
	inv.Add("Contact", "<"+ua.Contact()+">")
	inv.Add("Allow", "INVITE, ACK, BYE, CANCEL, NOTIFY, OPTIONS")
	for _, h := range r.Headers {
		inv.Add(h.Name, h.Value)
	}
	if r.SDP != nil {
		inv.Add("Content-Type", "application/sdp")
		inv.Body = r.SDP
	}
	d.Invite = inv

	ch := ua.register(branch)
	defer ua.unregister(branch)
	// The dialog must be findable for BYEs and 2xx retransmissions as soon
	// as the 2xx can arrive.
	ua.mu.Lock()
	ua.dialogs[callID] = d
	ua.mu.Unlock()
	fail := func(err error) (*Dialog, error) {
		ua.mu.Lock()
		delete(ua.dialogs, callID)
		ua.mu.Unlock()
		return nil, err
	}

	if err := ua.send(inv, r.Target); err != nil {
		return fail(err)
	}
	interval := T1
	retrans := time.NewTimer(interval)
	defer retrans.Stop()
	timeout := time.NewTimer(TimerB)
	defer timeout.Stop()
	provisional := false
	for {
		select {
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-ua.closed:
			return fail(errors.New("sip: UA closed"))
		case <-timeout.C:
			if !provisional {
				return fail(errors.New("sip: INVITE timed out (no response)"))
			}
			timeout.Reset(3 * time.Minute)
		case <-retrans.C:
			if !provisional {
				ua.send(inv, r.Target)
				interval *= 2
				retrans.Reset(interval)
			}
		case res := <-ch:
			switch {
			case res.Status < 200:
				provisional = true
				if res.Status > 100 && r.OnProvisional != nil {
					r.OnProvisional(res)
				}
			case res.Status < 300:
				d.mu.Lock()
				d.AnsweredAt = time.Now()
				d.Answer = res
				d.RemoteSDP = res.Body
				d.RemoteTag = res.ToTag()
				d.RemoteTarget = URIOf(res.Get("Contact"))
				rr := res.GetAll("Record-Route")
				for i := len(rr) - 1; i >= 0; i-- {
					d.RouteSet = append(d.RouteSet, rr[i])
				}
				d.RouteSet = ua.dropOwnRoutes(d.RouteSet)
				d.mu.Unlock()
				ack := d.newRequest("ACK", 1)
				dst, err := d.nextHop()
				if err != nil {
					return fail(err)
				}
				d.mu.Lock()
				d.ackMsg, d.ackDst = ack, dst
				d.mu.Unlock()
				ua.send(ack, dst)
				return d, nil
			default:
				ack := &Msg{Request: true, Method: "ACK", RURI: r.RURI}
				ack.Add("Via", fmt.Sprintf("SIP/2.0/UDP %s;branch=%s;rport", ua.Addr(), branch))
				ack.Add("Max-Forwards", "70")
				ack.Add("From", inv.Get("From"))
				ack.Add("To", res.Get("To"))
				ack.Add("Call-ID", callID)
				ack.Add("CSeq", "1 ACK")
				ua.send(ack, r.Target)
				return fail(&StatusError{Code: res.Status, Reason: res.Reason, Msg: res})
			}
		}
	}
}

// dropOwnRoutes removes leading route entries that point at this UA (the
// part a proxy in front of it would have consumed).
func (ua *UA) dropOwnRoutes(rs []string) []string {
	for len(rs) > 0 {
		a, err := URIAddr(rs[0])
		if err != nil || a.String() != ua.Addr() {
			break
		}
		rs = rs[1:]
	}
	return rs
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

// Accept waits for the next new INVITE.
func (ua *UA) Accept(ctx context.Context) (*Incoming, error) {
	select {
	case inc := <-ua.incoming:
		return inc, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-ua.closed:
		return nil, errors.New("sip: UA closed")
	}
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

// Incoming is a received INVITE waiting for our answer.
type Incoming struct {
	ua       *UA
	Req      *Msg
	localTag string

	mu        sync.Mutex
	last      *Msg // last response sent
	final     bool
	dialog    *Dialog
	cancelled chan struct{}
	cancelOne sync.Once
}

// Cancelled is closed when the caller CANCELs before our final answer.
func (in *Incoming) Cancelled() <-chan struct{} { return in.cancelled }

func (in *Incoming) cancel() {
	in.mu.Lock()
	final := in.final
	in.mu.Unlock()
	if final {
		return
	}
	in.cancelOne.Do(func() { close(in.cancelled) })
	in.reply(487, "Request Terminated", nil, true)
}

func (in *Incoming) reply(code int, reason string, sdp []byte, final bool) *Msg {
	r := in.ua.response(in.Req, code, reason, in.localTag, sdp)
	in.mu.Lock()
	if in.final {
		in.mu.Unlock()
		return nil
	}
	in.last = r
	in.final = final
	in.mu.Unlock()
	in.ua.send(r, responseAddr(in.Req))
	return r
}

func (in *Incoming) resendLast() {
	in.mu.Lock()
	last := in.last
	in.mu.Unlock()
	if last != nil {
		in.ua.send(last, responseAddr(in.Req))
	}
}

// Ring sends 180 Ringing.
func (in *Incoming) Ring() { in.reply(180, "Ringing", nil, false) }

// Reject sends a final error response.
func (in *Incoming) Reject(code int, reason string) { in.reply(code, reason, nil, true) }

// Answer sends 200 OK with sdp, retransmitted until the ACK arrives (in the
// background: Dialog.Acked tells), and returns the dialog.
func (in *Incoming) Answer(sdp []byte) (*Dialog, error) {
	req := in.Req
	d := &Dialog{
		ua: in.ua, CallID: req.Get("Call-ID"), LocalTag: in.localTag, RemoteTag: req.FromTag(),
		LocalURI: URIOf(req.Get("To")), RemoteURI: URIOf(req.Get("From")),
		RemoteTarget: URIOf(req.Get("Contact")), RouteSet: in.ua.dropOwnRoutes(req.GetAll("Record-Route")),
		Invite: req, LocalSDP: sdp, RemoteSDP: req.Body, localCSeq: 100,
		acked: make(chan struct{}), bye: make(chan struct{}),
	}
	in.ua.mu.Lock()
	in.ua.dialogs[d.CallID] = d
	in.ua.mu.Unlock()
	res := in.reply(200, "OK", sdp, true)
	if res == nil {
		return nil, errors.New("sip: INVITE already answered or cancelled")
	}
	d.mu.Lock()
	d.Answer = res
	d.AnsweredAt = time.Now()
	d.mu.Unlock()
	dst := responseAddr(req)
	go func() {
		interval := T1
		deadline := time.After(TimerB)
		for {
			select {
			case <-d.acked:
				return
			case <-in.ua.closed:
				return
			case <-deadline:
				return
			case <-time.After(interval):
				in.ua.send(res, dst)
				interval = min(2*interval, T2)
			}
		}
	}()
	return d, nil
}

// Dialog is an established call.
type Dialog struct {
	ua  *UA
	UAC bool

	CallID, LocalTag, RemoteTag string
	LocalURI, RemoteURI         string

	mu           sync.Mutex
	RemoteTarget string
	RouteSet     []string
	localCSeq    uint32
	Invite       *Msg // the INVITE that made the dialog
	Answer       *Msg // the 2xx
	LocalSDP     []byte
	RemoteSDP    []byte
	AnsweredAt   time.Time // 2xx received (UAC) or sent (UAS)
	ackMsg       *Msg
	ackDst       *net.UDPAddr
	ByeMsg       *Msg // the BYE the remote side sent

	ackOnce, byeOnce sync.Once
	acked, bye       chan struct{}
}

// Acked is closed when the ACK for our 2xx arrived (UAS dialogs).
func (d *Dialog) Acked() <-chan struct{} { return d.acked }

// Done is closed when the remote side sent BYE.
func (d *Dialog) Done() <-chan struct{} { return d.bye }

// RemoteBye returns the BYE the remote side sent, or nil.
func (d *Dialog) RemoteBye() *Msg {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ByeMsg
}

func (d *Dialog) gotAck() { d.ackOnce.Do(func() { close(d.acked) }) }

func (d *Dialog) gotBye(m *Msg) {
	d.mu.Lock()
	if d.ByeMsg == nil {
		d.ByeMsg = m
	}
	d.mu.Unlock()
	d.byeOnce.Do(func() { close(d.bye) })
}

func (d *Dialog) resendAck() {
	d.mu.Lock()
	ack, dst := d.ackMsg, d.ackDst
	d.mu.Unlock()
	if ack != nil {
		d.ua.send(ack, dst)
	}
}

func (d *Dialog) newRequest(method string, cseq uint32) *Msg {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := &Msg{Request: true, Method: method, RURI: d.RemoteTarget}
	r.Add("Via", fmt.Sprintf("SIP/2.0/UDP %s;branch=%s;rport", d.ua.Addr(), newBranch()))
	r.Add("Max-Forwards", "70")
	for _, rt := range d.RouteSet {
		r.Add("Route", rt)
	}
	r.Add("From", fmt.Sprintf("<%s>;tag=%s", d.LocalURI, d.LocalTag))
	to := "<" + d.RemoteURI + ">"
	if d.RemoteTag != "" {
		to += ";tag=" + d.RemoteTag
	}
	r.Add("To", to)
	r.Add("Call-ID", d.CallID)
	r.Add("CSeq", fmt.Sprintf("%d %s", cseq, method))
	r.Add("Contact", "<"+d.ua.Contact()+">")
	return r
}

// nextHop is where in-dialog requests go: the first route, else the
// remote target.
func (d *Dialog) nextHop() (*net.UDPAddr, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.RouteSet) > 0 {
		return URIAddr(d.RouteSet[0])
	}
	return URIAddr(d.RemoteTarget)
}

// Bye ends the call from our side and returns the final response code.
func (d *Dialog) Bye(ctx context.Context) (int, error) {
	d.mu.Lock()
	d.localCSeq++
	cseq := d.localCSeq
	d.mu.Unlock()
	req := d.newRequest("BYE", cseq)
	dst, err := d.nextHop()
	if err != nil {
		return 0, err
	}
	res, err := d.ua.transaction(ctx, req, dst)
	d.ua.mu.Lock()
	delete(d.ua.dialogs, d.CallID)
	d.ua.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return res.Status, nil
}

func newTag() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func newBranch() string { return "z9hG4bK" + newTag() + newTag() }
