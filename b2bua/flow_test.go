package b2bua

import (
	"context"
	"fmt"
	sipedge "github.com/wagate/wagate/sip"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/media"
)

// In-process call flows: a real Server on loopback UDP, with hand-driven
// peers (raw UDP sockets at the endpoints' addresses) and a fake media
// bridge, to test the policy wiring (gate, digest, headers) without the
// binary. The end-to-end tests in test/ cover the same against SIPp.

const testSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"

type fakeBridge struct{}

func (fakeBridge) SetTap(media.PCMTap)            {}
func (fakeBridge) Offer([]byte) ([]byte, error)   { return []byte(testSDP), nil }
func (fakeBridge) AnswerB([]byte) ([]byte, error) { return []byte(testSDP), nil }
func (fakeBridge) LocalAnswerA() []byte           { return []byte(testSDP) }
func (fakeBridge) LocalOfferB() []byte            { return []byte(testSDP) }
func (fakeBridge) Start(func(error))              {}
func (fakeBridge) Close()                         {}
func (fakeBridge) AcceptOffer(media.Side, []byte) ([]byte, media.StreamState, error) {
	return []byte(testSDP), media.StreamState{}, nil
}
func (fakeBridge) LocalSDP(media.Side) []byte { return []byte(testSDP) }
func (fakeBridge) ReOffer(media.Side) []byte  { return []byte(testSDP) }
func (fakeBridge) AcceptAnswer(media.Side, []byte) (media.StreamState, error) {
	return media.StreamState{}, nil
}
func (fakeBridge) Held(media.Side) bool                                  { return false }
func (fakeBridge) OfferSide(media.Side, media.LegConfig) ([]byte, error) { return []byte(testSDP), nil }
func (fakeBridge) AnswerSide(media.Side, []byte) error                   { return nil }
func (fakeBridge) CancelOffer(media.Side)                                {}
func (fakeBridge) Play(media.Side, media.FrameSource, time.Time) (*media.Playback, error) {
	return nil, nil
}

// fakeGate records what the server asks and answers as told.
type fakeGate struct {
	mu      sync.Mutex
	answer  Admission
	admits  []string // "pnid user"
	grants  []string
	tickets []*fakeTicket
	// during runs inside AdmitBIC, as a store's round trip would.
	during func()
}

type fakeTicket struct {
	mu        sync.Mutex
	connected int
	finished  []Outcome
	done      chan struct{}
}

func (g *fakeGate) AdmitBIC(pnid, user string) (Admission, CallTicket) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.admits = append(g.admits, pnid+" "+user)
	if g.during != nil {
		g.during()
	}
	if g.answer.Code != 0 {
		return g.answer, nil
	}
	tk := &fakeTicket{done: make(chan struct{})}
	g.tickets = append(g.tickets, tk)
	return Admission{}, tk
}

func (g *fakeGate) setAnswer(a Admission) {
	g.mu.Lock()
	g.answer = a
	g.mu.Unlock()
}

func (g *fakeGate) asked() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.admits...)
}

func (g *fakeGate) GrantFromUIC(pnid, user string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.grants = append(g.grants, pnid+" "+user)
}

func (g *fakeGate) ticket(t *testing.T) *fakeTicket {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.tickets) != 1 {
		t.Fatalf("%d tickets issued, want 1", len(g.tickets))
	}
	return g.tickets[0]
}

func (tk *fakeTicket) Connected() {
	tk.mu.Lock()
	tk.connected++
	tk.mu.Unlock()
}

func (tk *fakeTicket) Finish(o Outcome) {
	tk.mu.Lock()
	tk.finished = append(tk.finished, o)
	n := len(tk.finished)
	tk.mu.Unlock()
	if n == 1 {
		close(tk.done)
	}
}

// wait waits for Finish and checks it came once with want, and whether
// Connected came first.
func (tk *fakeTicket) wait(t *testing.T, want Outcome, wantConnected bool) {
	t.Helper()
	select {
	case <-tk.done:
	case <-time.After(5 * time.Second):
		t.Fatal("ticket never finished")
	}
	time.Sleep(50 * time.Millisecond) // a second Finish would show now
	tk.mu.Lock()
	defer tk.mu.Unlock()
	if len(tk.finished) != 1 || tk.finished[0] != want {
		t.Errorf("Finish called with %v, want once with %v", tk.finished, want)
	}
	if (tk.connected > 0) != wantConnected || tk.connected > 1 {
		t.Errorf("Connected called %d times, want connected=%v", tk.connected, wantConnected)
	}
}

// peer is a raw SIP UDP socket at an endpoint's address.
type peer struct {
	t    *testing.T
	conn *net.UDPConn
	in   chan sip.Message
	seen map[string]bool
}

func newPeer(t *testing.T, ip string) *peer {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatalf("peer %s: %v", ip, err)
	}
	p := &peer{t: t, conn: conn, in: make(chan sip.Message, 64)}
	go func() {
		buf := make([]byte, 65535)
		for {
			n, _, err := conn.ReadFromUDP(buf)
			if err != nil {
				close(p.in)
				return
			}
			msg, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
			if err != nil {
				continue
			}
			p.in <- msg
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return p
}

func (p *peer) port() int    { return p.conn.LocalAddr().(*net.UDPAddr).Port }
func (p *peer) addr() string { return p.conn.LocalAddr().String() }
func (p *peer) ip() string   { return p.conn.LocalAddr().(*net.UDPAddr).IP.String() }
func (p *peer) send(to string, m sip.Message) {
	p.t.Helper()
	ua, err := net.ResolveUDPAddr("udp4", to)
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.conn.WriteToUDP([]byte(m.String()), ua); err != nil {
		p.t.Fatal(err)
	}
}

// next returns the next message that is not a 100 Trying or a
// retransmission (UDP timers fire when the machine is slow), or fails.
func (p *peer) next(what string) sip.Message {
	p.t.Helper()
	if p.seen == nil {
		p.seen = map[string]bool{}
	}
	for {
		m := p.nextAgain(what)
		key := m.String()
		if p.seen[key] {
			continue
		}
		p.seen[key] = true
		return m
	}
}

func startLine(m sip.Message) string {
	line, _, _ := strings.Cut(m.String(), "\r\n")
	return line
}

func (p *peer) request(method sip.RequestMethod) *sip.Request {
	p.t.Helper()
	m := p.next(string(method))
	req, ok := m.(*sip.Request)
	if !ok || req.Method != method {
		p.t.Fatalf("got %s, want a %s", startLine(m), method)
	}
	return req
}

func (p *peer) response(code int) *sip.Response {
	p.t.Helper()
	m := p.next("a " + strconv.Itoa(code))
	res, ok := m.(*sip.Response)
	if !ok || res.StatusCode != code {
		p.t.Fatalf("got %q, want a %d\n%s", startLine(m), code, m)
	}
	return res
}

// silent fails if anything but a 100 or a retransmission arrives within
// d. A retransmission (a message next already returned, byte for byte) is
// no new message: UDP transactions resend when an answer is late, as it
// can be on a loaded machine.
func (p *peer) silent(d time.Duration) {
	p.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m := <-p.in:
			if r, ok := m.(*sip.Response); ok && r.StatusCode == 100 {
				continue
			}
			if p.seen[m.String()] {
				continue
			}
			p.t.Fatalf("unexpected message:\n%s", m)
		case <-deadline:
			return
		}
	}
}

// reply answers req (from wagate) with code.
func (p *peer) reply(req *sip.Request, code int, reason, toTag string, mut func(*sip.Response)) {
	p.t.Helper()
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	if toTag != "" {
		res.To().Params.Add("tag", toTag)
	}
	if mut != nil {
		mut(res)
	}
	p.send(req.Source(), res)
}

// flow is a running server with its three peers.
type flow struct {
	t                 *testing.T
	srv               *Engine
	edge              *sipedge.Server
	addr              string
	meta, pbx, dialer *peer
	gate              *fakeGate
	cancel            context.CancelFunc
	done              chan struct{}
}

// startFlow starts an edge and its B2BUA whose endpoints are the three peers; extra
// YAML goes into the meta and dialer endpoint entries and the number;
// setup runs on the engine before it serves (AddObserver).
func startFlow(t *testing.T, metaExtra, dialerExtra, numberExtra string, setup ...func(*Engine)) *flow {
	t.Helper()
	f := &flow{t: t, meta: newPeer(t, "127.0.0.2"), pbx: newPeer(t, "127.0.0.3"), dialer: newPeer(t, "127.0.0.4"), gate: &fakeGate{}}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	f.addr = "127.0.0.1:" + strconv.Itoa(port)
	cfg := parseConfig(t, fmt.Sprintf(`
sip:
  listen: [{transport: udp, address: "%s"}]
  host: 127.0.0.1
  ring_timeout: 3s
endpoints:
  - {name: meta, kind: whatsapp, host: 127.0.0.2, port: %d, transport: udp, media_encryption: none, source_cidrs: [127.0.0.2/32]%s}
  - {name: pbx, kind: pbx, host: 127.0.0.3, port: %d, transport: udp, source_cidrs: [127.0.0.3/32]}
  - {name: dialer, kind: dialer, host: 127.0.0.4, port: %d, transport: udp, source_cidrs: [127.0.0.4/32]%s}
numbers:
  - {number: "+15550100001", phone_number_id: "100000000000001", route: {endpoint: pbx, user: "1001"}, dialers: [dialer], callback_permission: true, digest: {value: metapass}%s}
`, f.addr, f.meta.port(), metaExtra, f.pbx.port(), f.dialer.port(), dialerExtra, numberExtra))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	f.edge, err = sipedge.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = New(f.edge, func(string, *slog.Logger, media.LegConfig, media.LegConfig) (Bridge, error) { return fakeBridge{}, nil }, log)
	f.edge.SetCalls(f.srv)
	f.srv.SetPermissionGate(f.gate)
	for _, fn := range setup {
		fn(f.srv)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan struct{})
	go func() {
		defer close(f.done)
		if err := f.edge.Run(ctx); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	select {
	case <-f.edge.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("server not ready")
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), time.Second)
		defer scancel()
		f.edge.Shutdown(sctx)
		cancel()
		<-f.done
	})
	return f
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var callSeq int

// dialerInvite is the dialer's INVITE for user with extra headers.
func (f *flow) dialerInvite(user string, hdrs ...string) *sip.Request {
	callSeq++
	raw := fmt.Sprintf("INVITE sip:%s@%s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s;branch=z9hG4bK-d%d\r\n"+
		"From: <sip:agent@%s>;tag=dtag\r\n"+
		"To: <sip:%s@%s>\r\n"+
		"Call-ID: dialer-%d\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"+
		"Contact: <sip:agent@%s>\r\nContent-Type: application/sdp\r\n",
		user, f.addr, f.dialer.addr(), callSeq, f.dialer.ip(), user, f.addr, callSeq, f.dialer.addr())
	for _, h := range hdrs {
		raw += h + "\r\n"
	}
	raw += "Content-Length: " + strconv.Itoa(len(testSDP)) + "\r\n\r\n" + testSDP
	return parseReq(f.t, raw)
}

// ackFor builds the ACK (2xx: new branch, to the Contact; else the same
// branch) for a response to inv, sent by the caller.
func ackFor(inv *sip.Request, res *sip.Response) *sip.Request {
	ruri := inv.Recipient
	if res.IsSuccess() {
		if c := res.Contact(); c != nil {
			ruri = c.Address
		}
	}
	ack := sip.NewRequest(sip.ACK, ruri)
	via := inv.Via().Clone()
	if res.IsSuccess() {
		via.Params.Add("branch", sip.GenerateBranch())
	}
	ack.AppendHeader(via)
	ack.AppendHeader(sip.HeaderClone(inv.From()))
	ack.AppendHeader(sip.HeaderClone(res.To()))
	ack.AppendHeader(sip.HeaderClone(inv.CallID()))
	ack.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.ACK})
	mf := sip.MaxForwardsHeader(70)
	ack.AppendHeader(&mf)
	ack.SetBody(nil)
	return ack
}

func byeFor(inv *sip.Request, res *sip.Response, cseq uint32) *sip.Request {
	bye := sip.NewRequest(sip.BYE, res.Contact().Address)
	via := inv.Via().Clone()
	via.Params.Add("branch", sip.GenerateBranch())
	bye.AppendHeader(via)
	bye.AppendHeader(sip.HeaderClone(inv.From()))
	bye.AppendHeader(sip.HeaderClone(res.To()))
	bye.AppendHeader(sip.HeaderClone(inv.CallID()))
	bye.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: sip.BYE})
	mf := sip.MaxForwardsHeader(70)
	bye.AppendHeader(&mf)
	bye.SetBody(nil)
	return bye
}

func answerWithSDP(contact string) func(*sip.Response) {
	return func(r *sip.Response) {
		r.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", Host: strings.Split(contact, ":")[0], Port: atoi(strings.Split(contact, ":")[1])}})
		ct := sip.ContentTypeHeader("application/sdp")
		r.AppendHeader(&ct)
		r.SetBody([]byte(testSDP))
	}
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

func header(m interface{ GetHeader(string) sip.Header }, name string) string {
	if h := m.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}

const (
	hdrPNID = "X-WABA-Phone-Number-ID: 100000000000001"
	waUser  = "+447700900123"
)

// TestFlowBICRefusedByGate: the gate's refusal reaches the dialer with
// its code, reason, X-WABA-Error, Reason and Retry-After, and nothing is
// sent toward Meta.
func TestFlowBICRefusedByGate(t *testing.T) {
	tests := []struct {
		name       string
		adm        Admission
		wantRetry  string
		wantReason string
	}{
		{"no permission", Admission{Code: 403, Reason: "No Approved Call Permission Found", MetaError: 138006}, "", "No Approved Call Permission Found"},
		{"daily cap", Admission{Code: 403, Reason: "Business Initiated Connected Call Per Day Limit Hit", MetaError: 138012, RetryAfter: 90*time.Minute + 500*time.Millisecond}, "5401", "Business Initiated Connected Call Per Day Limit Hit"},
		{"busy", Admission{Code: 486, Reason: "Busy Here", MetaError: 138003}, "", "Busy Here"},
		{"concurrency", Admission{Code: 503, Reason: "Service Unavailable", MetaError: 138002, RetryAfter: 5 * time.Second}, "5", "Service Unavailable"},
		{"reason with a line break", Admission{Code: 403, Reason: "evil\r\nX-Injected: 1", MetaError: 138006}, "", "Forbidden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFlow(t, "", "", "")
			f.gate.setAnswer(tt.adm)
			inv := f.dialerInvite(waUser, hdrPNID)
			f.dialer.send(f.addr, inv)
			res := f.dialer.response(tt.adm.Code)
			if res.Reason != tt.wantReason {
				t.Errorf("reason %q, want %q", res.Reason, tt.wantReason)
			}
			if got := header(res, "X-WABA-Error"); got != strconv.Itoa(tt.adm.MetaError) {
				t.Errorf("X-WABA-Error %q, want %d", got, tt.adm.MetaError)
			}
			wantReasonHdr := fmt.Sprintf(`SIP;cause=%d;text="%s"`, tt.adm.Code, tt.wantReason)
			if got := header(res, "Reason"); got != wantReasonHdr {
				t.Errorf("Reason %q, want %q", got, wantReasonHdr)
			}
			if got := header(res, "Retry-After"); got != tt.wantRetry {
				t.Errorf("Retry-After %q, want %q", got, tt.wantRetry)
			}
			if res.GetHeader("X-Injected") != nil {
				t.Error("header injected through the gate's reason")
			}
			f.dialer.send(f.addr, ackFor(inv, res))
			f.meta.silent(300 * time.Millisecond)
			if a := f.gate.asked(); len(a) != 1 || a[0] != "100000000000001 +447700900123" {
				t.Errorf("gate asked %v", a)
			}
			if st := f.srv.Status(); st.CallsStarted != 0 || st.Calls != 0 {
				t.Errorf("status %+v: a refused call was counted", st)
			}
		})
	}
}

// TestFlowBICDrainingDuringGate: a stop signal that comes while the
// permission gate is consulted (a Redis round trip in a cluster) refuses
// the INVITE with 503, as every INVITE after it, so that the proxy retries
// another node: nothing is sent toward Meta, the reservation is released
// as not sent (it does not use one of the number's calls of the day), and
// the call counts neither as started nor as live.
func TestFlowBICDrainingDuringGate(t *testing.T) {
	f := startFlow(t, "", "", "")
	f.gate.mu.Lock()
	f.gate.during = f.edge.StopAdmitting
	f.gate.mu.Unlock()
	inv := f.dialerInvite(waUser, hdrPNID)
	f.dialer.send(f.addr, inv)
	res := f.dialer.response(503)
	f.dialer.send(f.addr, ackFor(inv, res))
	f.meta.silent(300 * time.Millisecond)
	f.gate.ticket(t).wait(t, OutcomeNotSent, false)
	if st := f.srv.Status(); st.CallsStarted != 0 || st.CallsEnded != 0 || st.Calls != 0 || st.Overload["draining"] != 1 {
		t.Errorf("status %+v: want no call counted and one draining refusal", st)
	}
}

// TestFlowBICNotSentWithoutPorts: a BIC the gate admitted but wagate
// cannot place (no free RTP ports) gets 503 and nothing reaches Meta; its
// reservation ends as not sent, so the number's 24-hour count gives the
// call back. A call whose INVITE left and failed at Meta stays counted.
func TestFlowBICNotSentWithoutPorts(t *testing.T) {
	var full atomic.Bool
	full.Store(true)
	f := startFlow(t, "", "", "", func(s *Engine) {
		s.newBridge = func(string, *slog.Logger, media.LegConfig, media.LegConfig) (Bridge, error) {
			if full.Load() {
				return nil, fmt.Errorf("allocate: %w", media.ErrNoPorts)
			}
			return fakeBridge{}, nil
		}
	})
	inv := f.dialerInvite(waUser, hdrPNID)
	f.dialer.send(f.addr, inv)
	res := f.dialer.response(503)
	f.dialer.send(f.addr, ackFor(inv, res))
	f.meta.silent(300 * time.Millisecond)
	f.gate.ticket(t).wait(t, OutcomeNotSent, false)

	full.Store(false)
	f.gate.mu.Lock()
	f.gate.tickets = nil
	f.gate.mu.Unlock()
	inv = f.dialerInvite(waUser, hdrPNID)
	f.dialer.send(f.addr, inv)
	b := f.meta.request(sip.INVITE)
	f.meta.reply(b, 500, "Server Internal Error", "m1", nil)
	f.meta.request(sip.ACK)
	res = f.dialer.response(500)
	f.dialer.send(f.addr, ackFor(inv, res))
	f.gate.ticket(t).wait(t, OutcomeFailed, false)
}

// TestFlowBICPolicyRejections: header and authorization failures are
// answered before the gate is asked.
func TestFlowBICPolicyRejections(t *testing.T) {
	f := startFlow(t, "", "", "")
	tests := []struct {
		name    string
		user    string
		hdrs    []string
		code    int
		warning string
	}{
		{"not E.164", "12345", []string{hdrPNID}, 484, ""},
		{"unknown number", waUser, []string{"X-WABA-Phone-Number-ID: 999"}, 403, ""},
		{"disagreeing headers", waUser, []string{hdrPNID, "X-WABA-Business-Number: +15550100009"}, 400, "X-WABA-Business-Number"},
		{"bad callback data", waUser, []string{hdrPNID, "X-WABA-Callback-Data: a\x01b"}, 400, "X-WABA-Callback-Data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv := f.dialerInvite(tt.user, tt.hdrs...)
			f.dialer.send(f.addr, inv)
			res := f.dialer.response(tt.code)
			if tt.warning != "" && !strings.Contains(header(res, "Warning"), tt.warning) {
				t.Errorf("Warning %q does not name %s", header(res, "Warning"), tt.warning)
			}
			if !strings.HasPrefix(header(res, "Reason"), "SIP;cause="+strconv.Itoa(tt.code)) {
				t.Errorf("Reason %q", header(res, "Reason"))
			}
			if res.GetHeader("X-WABA-Error") != nil {
				t.Errorf("X-WABA-Error on a %d: DESIGN assigns none", tt.code)
			}
			f.dialer.send(f.addr, ackFor(inv, res))
		})
	}
	f.meta.silent(200 * time.Millisecond)
	if a := f.gate.asked(); len(a) != 0 {
		t.Errorf("gate asked about invalid calls: %v", a)
	}
}

// TestFlowBICDigestAnswered: Meta's 407 is answered once with the number's
// credentials; the call connects; the ticket sees Connected and Answered;
// nothing X-WABA reaches Meta.
func TestFlowBICDigestAnswered(t *testing.T) {
	for _, alg := range []string{"MD5", "SHA-256"} {
		t.Run(alg, func(t *testing.T) {
			f := startFlow(t, "", "", "")
			inv := f.dialerInvite(waUser, hdrPNID, "X-WABA-Campaign-ID: c1", "X-WABA-Callback-Data: secret-ish")
			f.dialer.send(f.addr, inv)

			first := f.meta.request(sip.INVITE)
			if first.CSeq().SeqNo != 1 {
				t.Errorf("first INVITE CSeq %d", first.CSeq().SeqNo)
			}
			for _, h := range first.Headers() {
				if strings.HasPrefix(strings.ToLower(h.Name()), "x-waba") {
					t.Errorf("INVITE toward Meta carries %s", h.Name())
				}
			}
			f.meta.reply(first, 407, "Proxy Authentication Required", "mtag1", func(r *sip.Response) {
				r.AppendHeader(sip.NewHeader("Proxy-Authenticate", `Digest realm="wa.meta.vc", nonce="bWV0YW5vbmNl", qop="auth", algorithm=`+alg))
			})
			if ack := f.meta.request(sip.ACK); ack.CSeq().SeqNo != 1 {
				t.Errorf("ACK of the 407 has CSeq %d", ack.CSeq().SeqNo)
			}
			second := f.meta.request(sip.INVITE)
			if second.CSeq().SeqNo != 2 || callIDOf(second) != callIDOf(first) {
				t.Errorf("retry CSeq %d Call-ID %s (first %s)", second.CSeq().SeqNo, callIDOf(second), callIDOf(first))
			}
			t1, _ := first.From().Params.Get("tag")
			t2, _ := second.From().Params.Get("tag")
			b1, _ := first.Via().Params.Get("branch")
			b2, _ := second.Via().Params.Get("branch")
			if t1 != t2 || b1 == b2 {
				t.Errorf("From tags %s/%s, branches %s/%s: want the same tag and a new branch", t1, t2, b1, b2)
			}
			p := verifyCredentials(t, header(second, "Proxy-Authorization"), "15550100001", "metapass", "INVITE")
			if p["algorithm"] != alg || p["realm"] != "wa.meta.vc" || p["uri"] != second.Recipient.String() {
				t.Errorf("credentials %v", p)
			}
			// sipgo handles each datagram in its own goroutine: wait for
			// the 180 to be relayed before answering, as a phone would.
			f.meta.reply(second, 180, "Ringing", "mtag2", nil)
			f.dialer.response(180)
			f.meta.reply(second, 200, "OK", "mtag2", answerWithSDP(f.meta.addr()))
			f.meta.request(sip.ACK)
			ok200 := f.dialer.response(200)
			f.dialer.send(f.addr, ackFor(inv, ok200))
			f.dialer.send(f.addr, byeFor(inv, ok200, 2))
			f.dialer.response(200)
			bye := f.meta.request(sip.BYE)
			if bye.CSeq().SeqNo <= 2 {
				t.Errorf("BYE toward Meta has CSeq %d, not above the INVITE's 2", bye.CSeq().SeqNo)
			}
			f.meta.reply(bye, 200, "OK", "", nil)
			f.gate.ticket(t).wait(t, OutcomeAnswered, true)
		})
	}
}

// TestFlowBICChallengeRefused: a second challenge, a challenge for another
// realm, or one from a PBX is never answered (again): A gets 503.
func TestFlowBICChallengeRefused(t *testing.T) {
	chal := func(realm string) func(*sip.Response) {
		return func(r *sip.Response) {
			r.AppendHeader(sip.NewHeader("Proxy-Authenticate", `Digest realm="`+realm+`", nonce="n", qop="auth"`))
		}
	}
	t.Run("second challenge", func(t *testing.T) {
		f := startFlow(t, "", "", "")
		inv := f.dialerInvite(waUser, hdrPNID)
		f.dialer.send(f.addr, inv)
		first := f.meta.request(sip.INVITE)
		f.meta.reply(first, 407, "Proxy Authentication Required", "m1", chal("wa.meta.vc"))
		f.meta.request(sip.ACK)
		second := f.meta.request(sip.INVITE)
		f.meta.reply(second, 407, "Proxy Authentication Required", "m2", chal("wa.meta.vc"))
		f.meta.request(sip.ACK)
		res := f.dialer.response(503)
		f.dialer.send(f.addr, ackFor(inv, res))
		f.meta.silent(300 * time.Millisecond)
		f.gate.ticket(t).wait(t, OutcomeFailed, false)
	})
	t.Run("other realm", func(t *testing.T) {
		f := startFlow(t, "", "", "")
		inv := f.dialerInvite(waUser, hdrPNID)
		f.dialer.send(f.addr, inv)
		first := f.meta.request(sip.INVITE)
		f.meta.reply(first, 407, "Proxy Authentication Required", "m1", chal("evil.example"))
		f.meta.request(sip.ACK)
		res := f.dialer.response(503)
		f.dialer.send(f.addr, ackFor(inv, res))
		f.meta.silent(300 * time.Millisecond)
		f.gate.ticket(t).wait(t, OutcomeFailed, false)
	})
	t.Run("challenge from the PBX on a UIC", func(t *testing.T) {
		f := startFlow(t, "", "", "")
		inv := metaUICInvite(f)
		f.meta.send(f.addr, inv)
		b := f.pbx.request(sip.INVITE)
		f.pbx.reply(b, 407, "Proxy Authentication Required", "p1", chal("wa.meta.vc"))
		f.pbx.request(sip.ACK)
		res := f.meta.response(503)
		f.meta.send(f.addr, ackFor(inv, res))
		f.pbx.silent(300 * time.Millisecond)
	})
}

// TestFlowBICOutcomes: Meta's final answers become the ticket's outcome.
func TestFlowBICOutcomes(t *testing.T) {
	for _, tt := range []struct {
		code   int
		reason string
		want   Outcome
	}{
		{480, "Final", OutcomeUnanswered}, {408, "Final", OutcomeFailed}, {486, "Final", OutcomeRejected}, {603, "Final", OutcomeFailed},
		{500, "Final", OutcomeFailed}, {404, "Final", OutcomeFailed}, {403, "Final", OutcomeFailed},
		{403, "No Approved Call Permission Found", OutcomeNoPermission},
		{403, "Business Initiated Connected Call Per Day Limit Hit", OutcomeDailyCap},
		{403, "SIP server foo.com from INVITE does not match any SIP server configured for phone number id 1", OutcomeFailed},
	} {
		t.Run(strconv.Itoa(tt.code)+" "+tt.reason, func(t *testing.T) {
			f := startFlow(t, "", "", "")
			inv := f.dialerInvite(waUser, hdrPNID)
			f.dialer.send(f.addr, inv)
			b := f.meta.request(sip.INVITE)
			f.meta.reply(b, tt.code, tt.reason, "m1", nil)
			f.meta.request(sip.ACK)
			res := f.dialer.response(tt.code)
			f.dialer.send(f.addr, ackFor(inv, res))
			f.gate.ticket(t).wait(t, tt.want, false)
		})
	}
}

// TestFlowBICCancelled: the dialer's CANCEL is our side giving up; Meta's
// 487 does not turn it into a failure. The CANCEL targets the INVITE that
// carried the credentials.
func TestFlowBICCancelled(t *testing.T) {
	f := startFlow(t, "", "", "")
	inv := f.dialerInvite(waUser, hdrPNID)
	f.dialer.send(f.addr, inv)
	first := f.meta.request(sip.INVITE)
	f.meta.reply(first, 407, "Proxy Authentication Required", "m1", func(r *sip.Response) {
		r.AppendHeader(sip.NewHeader("Proxy-Authenticate", `Digest realm="wa.meta.vc", nonce="n", qop="auth"`))
	})
	f.meta.request(sip.ACK)
	second := f.meta.request(sip.INVITE)
	f.meta.reply(second, 180, "Ringing", "m2", nil)
	f.dialer.response(180)

	cancel := sip.NewRequest(sip.CANCEL, inv.Recipient)
	cancel.AppendHeader(inv.Via().Clone())
	cancel.AppendHeader(sip.HeaderClone(inv.From()))
	cancel.AppendHeader(sip.HeaderClone(inv.To()))
	cancel.AppendHeader(sip.HeaderClone(inv.CallID()))
	cancel.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.CANCEL})
	mf := sip.MaxForwardsHeader(70)
	cancel.AppendHeader(&mf)
	cancel.SetBody(nil)
	f.dialer.send(f.addr, cancel)

	bc := f.meta.request(sip.CANCEL)
	if bc.CSeq().SeqNo != 2 || header(bc, "Via") != header(second, "Via") {
		t.Errorf("CANCEL CSeq %d Via %q; want the retried INVITE's (2, %q)", bc.CSeq().SeqNo, header(bc, "Via"), header(second, "Via"))
	}
	f.meta.reply(bc, 200, "OK", "m2", nil)
	f.meta.reply(second, 487, "Request Terminated", "m2", nil)
	f.meta.request(sip.ACK)
	for _, code := range []int{200, 487} {
		m := f.dialer.next("CANCEL answers")
		if r, ok := m.(*sip.Response); !ok || (r.StatusCode != 200 && r.StatusCode != 487) {
			t.Fatalf("dialer got %s, want %d", startLine(m), code)
		}
	}
	f.gate.ticket(t).wait(t, OutcomeCancelled, false)
}

func metaUICInvite(f *flow, hdrs ...string) *sip.Request {
	callSeq++
	raw := fmt.Sprintf("INVITE sip:+15550100001@%s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s;branch=z9hG4bK-m%d\r\n"+
		"From: <sip:+447700900123@wa.meta.vc>;tag=mtag\r\n"+
		"To: <sip:+15550100001@%s>\r\n"+
		"Call-ID: outgoing:wacid.HBgLTEST%d\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"+
		"Contact: <sip:%s>\r\nContent-Type: application/sdp\r\n",
		f.addr, f.meta.addr(), callSeq, f.addr, callSeq, f.meta.addr())
	for _, h := range hdrs {
		raw += h + "\r\n"
	}
	raw += "Content-Length: " + strconv.Itoa(len(testSDP)) + "\r\n\r\n" + testSDP
	return parseReq(f.t, raw)
}

// TestFlowUICHeadersAndGrant: the PBX gets the X-WABA headers and no raw
// x-wa-meta header; the gate is told about the caller.
func TestFlowUICHeadersAndGrant(t *testing.T) {
	f := startFlow(t, "", "", "")
	inv := metaUICInvite(f, "x-wa-meta-user-id: US.13491208655302741918", "X-WA-Meta-CTA-Payload: hello world", "x-wa-meta-user-name: Alice")
	f.meta.send(f.addr, inv)
	b := f.pbx.request(sip.INVITE)
	want := map[string]string{
		"X-WABA-Call-ID":         fmt.Sprintf("wacid.HBgLTEST%d", callSeq),
		"X-WABA-Direction":       "UIC",
		"X-WABA-Phone-Number-ID": "100000000000001",
		"X-WABA-Business-Number": "+15550100001",
		"X-WABA-User":            "+447700900123",
		"X-WABA-User-ID":         "US.13491208655302741918",
		"X-WABA-Payload":         "hello%20world",
		"X-WABA-Payload-Source":  "cta",
	}
	for k, v := range want {
		if got := header(b, k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if s := header(b, "X-WABA-Session"); len(s) != 24 {
		t.Errorf("X-WABA-Session %q", s)
	}
	for _, h := range b.Headers() {
		if strings.HasPrefix(strings.ToLower(h.Name()), "x-wa-meta") {
			t.Errorf("raw %s reached the PBX", h.Name())
		}
	}
	f.pbx.reply(b, 486, "Busy Here", "p1", nil)
	f.pbx.request(sip.ACK)
	res := f.meta.response(486)
	if res.GetHeader("X-WABA-Error") != nil || res.GetHeader("Reason") != nil {
		t.Errorf("a relayed 486 toward Meta carries X-WABA-Error or Reason:\n%s", res)
	}
	f.meta.send(f.addr, ackFor(inv, res))
	time.Sleep(50 * time.Millisecond)
	f.gate.mu.Lock()
	defer f.gate.mu.Unlock()
	if len(f.gate.grants) != 1 || f.gate.grants[0] != "100000000000001 +447700900123" {
		t.Errorf("grants %v", f.gate.grants)
	}
}

// TestFlowServerAuth: a dialer with `auth` is challenged; with the right
// credentials its call goes on; in-dialog requests are not challenged.
func TestFlowServerAuth(t *testing.T) {
	f := startFlow(t, "", `, auth: {realm: wagate.test, users: [{username: d1, password: pw}], max_failures: 2, failure_window: 1m}`, "")
	inv := f.dialerInvite(waUser, hdrPNID)
	f.dialer.send(f.addr, inv)
	chalRes := f.dialer.response(407)
	chal := header(chalRes, "Proxy-Authenticate")
	f.dialer.send(f.addr, ackFor(inv, chalRes))
	f.meta.silent(100 * time.Millisecond)

	inv2 := inv.Clone()
	inv2.CSeq().SeqNo = 2
	inv2.Via().Params.Add("branch", sip.GenerateBranch())
	inv2.AppendHeader(sip.NewHeader("Proxy-Authorization", credentials(t, chal, "d1", "pw", "INVITE", inv.Recipient.String(), algMD5, "abcdef01", nil)))
	f.dialer.send(f.addr, inv2)
	b := f.meta.request(sip.INVITE)
	if b.GetHeader("Proxy-Authorization") != nil {
		t.Error("the dialer's credentials reached Meta")
	}
	f.meta.reply(b, 200, "OK", "m1", answerWithSDP(f.meta.addr()))
	f.meta.request(sip.ACK)
	ok := f.dialer.response(200)
	f.dialer.send(f.addr, ackFor(inv2, ok))
	f.dialer.send(f.addr, byeFor(inv2, ok, 3)) // not challenged
	f.dialer.response(200)
	bye := f.meta.request(sip.BYE)
	f.meta.reply(bye, 200, "OK", "", nil)

	// Wrong passwords: the second failure locks the source out.
	for i, want := range []int{407, 403, 403} {
		bad := f.dialerInvite(waUser, hdrPNID, "Proxy-Authorization: "+credentials(t, chal, "d1", "wrong", "INVITE", "sip:"+waUser+"@"+f.addr, algMD5, "bad"+strconv.Itoa(i), nil))
		f.dialer.send(f.addr, bad)
		res := f.dialer.response(want)
		f.dialer.send(f.addr, ackFor(bad, res))
	}
	// OPTIONS from the locked-out source is refused too.
	opt := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: atoi(strings.Split(f.addr, ":")[1])})
	opt.AppendHeader(sip.NewHeader("Via", "SIP/2.0/UDP "+f.dialer.addr()+";branch=z9hG4bK-o1"))
	opt.AppendHeader(sip.NewHeader("From", "<sip:d@127.0.0.4>;tag=o"))
	opt.AppendHeader(sip.NewHeader("To", "<sip:wagate@127.0.0.1>"))
	opt.AppendHeader(sip.NewHeader("Call-ID", "opt-1"))
	opt.AppendHeader(sip.NewHeader("CSeq", "1 OPTIONS"))
	opt.AppendHeader(sip.NewHeader("Max-Forwards", "70"))
	opt.SetBody(nil)
	f.dialer.send(f.addr, opt)
	f.dialer.response(403)
}

// endingBridge is a fakeBridge whose Offer toward B runs onOffer first.
type endingBridge struct {
	fakeBridge
	onOffer func()
}

func (b endingBridge) Offer(sdp []byte) ([]byte, error) {
	b.onOffer()
	return fakeBridge{}.Offer(sdp)
}

// TestFlowBICEndedBeforeInviteNotSent: a BIC that ends (a drain, a
// shutdown) between its admission and its INVITE to Meta is given back
// to the gate as never sent, so that INVITE must not go out: before, it
// still reached Meta, and the number's 24 h count missed a call Meta saw.
func TestFlowBICEndedBeforeInviteNotSent(t *testing.T) {
	var s *Engine
	f := startFlow(t, "", "", "", func(e *Engine) {
		s = e
		e.newBridge = func(string, *slog.Logger, media.LegConfig, media.LegConfig) (Bridge, error) {
			return endingBridge{onOffer: func() {
				for _, c := range s.reg.snapshot() {
					c.terminate(nil, "shutdown")
				}
			}}, nil
		}
	})
	inv := f.dialerInvite(waUser, hdrPNID)
	f.dialer.send(f.addr, inv)
	res, ok := f.dialer.next("a final response").(*sip.Response)
	if !ok || res.StatusCode < 300 {
		t.Fatalf("the dialer got %v, want a final refusal", res)
	}
	f.dialer.send(f.addr, ackFor(inv, res))
	f.gate.ticket(t).wait(t, OutcomeNotSent, false)
	f.meta.silent(300 * time.Millisecond)
}
