// Package dtlspeer is the DTLS-SRTP half of the Go test peers: one UDP
// port that carries ICE, DTLS and SRTP the way Meta's media edge does in
// its default keying — an ICE-lite agent (pion/ice) that only answers
// checks, the DTLS server side (pion/dtls) with an ECDSA certificate
// whose SHA-256 fingerprint is in its SDP, and SRTP keys exported from the
// handshake (RFC 5764) — and hands the RTP to an rtppeer.Session through
// RTPConn. It shares no code with wagate's media package.
//
// For failure tests it can lie about its fingerprint, answer ICE but never
// DTLS, or stop answering ICE (consent) mid-call.
package dtlspeer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/ice/v4"

	"github.com/wagate/wagate/test/internal/rtppeer"
)

// Config configures an endpoint.
type Config struct {
	// IP is the address its socket binds (loopback in tests).
	IP string
	// Full makes it a full ICE agent instead of Meta's ICE-lite one.
	Full bool
	// WrongFingerprint advertises the fingerprint of another certificate
	// than the one it uses.
	WrongFingerprint bool
	// WeakFingerprintOnly advertises the fingerprint of another
	// certificate under sha-256 and its own certificate's under sha-1
	// only (RFC 8122 §5: the strongest hash's lines must match).
	WeakFingerprintOnly bool
	// NoDTLS answers ICE but drops every DTLS record: a handshake that
	// never completes.
	NoDTLS bool
	// NoICE drops every STUN message: no connectivity check is answered
	// (a firewall dropping the media path).
	NoICE bool
	// Client makes it the DTLS client when its answer or offer lets it
	// choose (Meta is the server).
	Client bool
	// Logf gets diagnostics (optional).
	Logf func(string, ...any)
}

// Endpoint is one media port.
type Endpoint struct {
	cfg  Config
	conn *net.UDPConn
	cert tls.Certificate
	fp   string // advertised, "sha-256 AB:…"
	// weakFP: a sha-1 fingerprint advertised too (WeakFingerprintOnly).
	weakFP string
	ufrag  string
	pwd    string

	stunQ, dtlsQ, rtpQ *queue
	stopICE            atomic.Bool
	selected           atomic.Pointer[net.UDPAddr]

	mu     sync.Mutex
	agent  *ice.Agent
	dconn  *dtls.Conn
	closed bool
	wg     sync.WaitGroup
}

// Listen binds the endpoint's socket on cfg.IP and starts reading it.
func Listen(cfg Config) (*Endpoint, error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(cfg.IP)})
	if err != nil {
		return nil, err
	}
	cert, err := newCert()
	if err != nil {
		conn.Close()
		return nil, err
	}
	fpCert := cert
	if cfg.WrongFingerprint || cfg.WeakFingerprintOnly {
		if fpCert, err = newCert(); err != nil {
			conn.Close()
			return nil, err
		}
	}
	e := &Endpoint{cfg: cfg, conn: conn, cert: cert, fp: fingerprint(fpCert.Certificate[0])}
	if cfg.WeakFingerprintOnly {
		sum := sha1.Sum(cert.Certificate[0])
		e.weakFP = "sha-1 " + colonHex(sum[:])
	}
	e.ufrag, e.pwd = randICE(8), randICE(24)
	local := conn.LocalAddr()
	e.stunQ, e.dtlsQ, e.rtpQ = newQueue(conn, local, nil), newQueue(conn, local, e.peer), newQueue(conn, local, e.peer)
	e.wg.Add(1)
	go e.readLoop()
	return e, nil
}

func (e *Endpoint) peer() *net.UDPAddr { return e.selected.Load() }

// Port is the endpoint's UDP port.
func (e *Endpoint) Port() int { return e.conn.LocalAddr().(*net.UDPAddr).Port }

// RTPConn is the RTP/RTCP side of the port, for rtppeer.Config.Conn:
// packets from the ICE peer once it is chosen, sent to it.
func (e *Endpoint) RTPConn() rtppeer.PacketConn { return rtpConn{e.rtpQ} }

// StopICE makes the endpoint stop answering ICE checks (consent lost)
// while its media goes on.
func (e *Endpoint) StopICE() { e.stopICE.Store(true) }

// SessionAttrs are its session-level SDP attributes (a=ice-lite unless
// Full).
func (e *Endpoint) SessionAttrs() []string {
	if e.cfg.Full {
		return nil
	}
	return []string{"ice-lite"}
}

// MediaAttrs are its audio stream's SDP attributes (without "a="):
// credentials, fingerprint, setup, its host candidate.
func (e *Endpoint) MediaAttrs(setup string) []string {
	a := e.conn.LocalAddr().(*net.UDPAddr)
	cand := fmt.Sprintf("1 1 udp 2130706431 %s %d typ host", a.IP, a.Port)
	out := []string{"ice-ufrag:" + e.ufrag, "ice-pwd:" + e.pwd, "fingerprint:" + e.fp}
	if e.weakFP != "" {
		out = append(out, "fingerprint:"+e.weakFP)
	}
	return append(out, "setup:"+setup, "candidate:"+cand, "end-of-candidates")
}

// AnswerSetup is the a=setup it answers an offer's with.
func (e *Endpoint) AnswerSetup(offer string) string {
	switch {
	case offer == "active":
		return "passive"
	case offer == "passive" || e.cfg.Client:
		return "active"
	}
	return "passive" // Meta: the business side is the client
}

// Remote is what the other side's SDP says about its ICE and DTLS.
type Remote struct {
	Ufrag, Pwd, Setup string
	Lite              bool
	Fingerprint       string // "sha-256 AB:…"
	Candidates        []ice.Candidate
}

// ParseRemote reads the ICE and DTLS attributes of an SDP body (first
// audio stream, or session level).
func ParseRemote(body []byte) (*Remote, error) {
	r := &Remote{}
	for _, l := range strings.Split(strings.ReplaceAll(string(body), "\r\n", "\n"), "\n") {
		k, v, _ := strings.Cut(strings.TrimPrefix(strings.TrimSpace(l), "a="), ":")
		switch k {
		case "ice-ufrag":
			r.Ufrag = v
		case "ice-pwd":
			r.Pwd = v
		case "ice-lite":
			r.Lite = true
		case "setup":
			r.Setup = v
		case "fingerprint":
			r.Fingerprint = v
		case "candidate":
			c, err := ice.UnmarshalCandidate(v)
			if err != nil {
				return nil, fmt.Errorf("dtlspeer: candidate %q: %w", v, err)
			}
			if c.Component() == 1 && strings.HasPrefix(c.NetworkType().String(), "udp") {
				r.Candidates = append(r.Candidates, c)
			}
		}
	}
	if r.Ufrag == "" || r.Pwd == "" || r.Fingerprint == "" || len(r.Candidates) == 0 {
		return nil, fmt.Errorf("dtlspeer: SDP lacks ICE credentials, fingerprint or candidates:\n%s", body)
	}
	return r, nil
}

// Connect runs ICE and DTLS with r, whose SDP answered ours (offerer) or
// offered (we answered with AnswerSetup), and returns the SRTP keys of
// both directions and the peer's address.
func (e *Endpoint) Connect(ctx context.Context, r *Remote, offerer bool) (local, remote *rtppeer.Crypto, peer *net.UDPAddr, err error) {
	lite := !e.cfg.Full
	controlling := !lite && (offerer || r.Lite)
	agent, err := ice.NewAgent(&ice.AgentConfig{
		Lite:             lite,
		NetworkTypes:     []ice.NetworkType{ice.NetworkTypeUDP4},
		CandidateTypes:   []ice.CandidateType{ice.CandidateTypeHost},
		UDPMux:           &mux{q: e.stunQ, addr: e.conn.LocalAddr()},
		LocalUfrag:       e.ufrag,
		LocalPwd:         e.pwd,
		MulticastDNSMode: ice.MulticastDNSModeDisabled,
		IncludeLoopback:  true,
	})
	if err != nil {
		return nil, nil, nil, err
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		agent.Close()
		return nil, nil, nil, net.ErrClosed
	}
	e.agent = agent
	e.mu.Unlock()
	for _, c := range r.Candidates {
		if err := agent.AddRemoteCandidate(c); err != nil {
			return nil, nil, nil, err
		}
	}
	if err := agent.OnCandidate(func(ice.Candidate) {}); err != nil {
		return nil, nil, nil, err
	}
	if err := agent.GatherCandidates(); err != nil {
		return nil, nil, nil, err
	}
	if controlling {
		_, err = agent.Dial(ctx, r.Ufrag, r.Pwd)
	} else {
		_, err = agent.Accept(ctx, r.Ufrag, r.Pwd)
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("dtlspeer: ICE: %w", err)
	}
	pair, err := agent.GetSelectedCandidatePair()
	if err != nil || pair == nil {
		return nil, nil, nil, fmt.Errorf("dtlspeer: ICE connected without a pair: %v", err)
	}
	peer = &net.UDPAddr{IP: net.ParseIP(pair.Remote.Address()), Port: pair.Remote.Port()}
	e.selected.Store(peer)
	e.logf("dtlspeer: ICE connected to %s", peer)

	client := r.Setup == "passive" || (!offerer && e.AnswerSetup(r.Setup) == "active")
	cfg := &dtls.Config{
		Certificates:           []tls.Certificate{e.cert},
		SRTPProtectionProfiles: []dtls.SRTPProtectionProfile{dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80},
		ExtendedMasterSecret:   dtls.RequireExtendedMasterSecret,
		ClientAuth:             dtls.RequireAnyClientCert,
		InsecureSkipVerify:     true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || !strings.EqualFold(fingerprint(raw[0]), r.Fingerprint) {
				return errors.New("dtlspeer: certificate does not match the SDP fingerprint")
			}
			return nil
		},
	}
	var dc *dtls.Conn
	if client {
		dc, err = dtls.Client(e.dtlsQ, peer, cfg)
	} else {
		dc, err = dtls.Server(e.dtlsQ, peer, cfg)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	e.mu.Lock()
	e.dconn = dc
	e.mu.Unlock()
	if err := dc.HandshakeContext(ctx); err != nil {
		return nil, nil, nil, fmt.Errorf("dtlspeer: DTLS: %w", err)
	}
	prof, _ := dc.SelectedSRTPProtectionProfile()
	suite, kl, sl := rtppeer.SuiteAES128SHA1_80, 16, 14
	if prof == dtls.SRTP_AEAD_AES_128_GCM {
		suite, sl = rtppeer.SuiteAES128GCM, 12
	}
	st, _ := dc.ConnectionState()
	km, err := st.ExportKeyingMaterial("EXTRACTOR-dtls_srtp", nil, 2*(kl+sl))
	if err != nil {
		return nil, nil, nil, err
	}
	ck := &rtppeer.Crypto{Suite: suite, Key: append(append([]byte{}, km[:kl]...), km[2*kl:2*kl+sl]...)}
	sk := &rtppeer.Crypto{Suite: suite, Key: append(append([]byte{}, km[kl:2*kl]...), km[2*kl+sl:]...)}
	e.logf("dtlspeer: DTLS done (client %v), SRTP %s", client, suite)
	if client {
		return ck, sk, peer, nil
	}
	return sk, ck, peer, nil
}

// Close ends the endpoint: agent, DTLS, socket and reader.
func (e *Endpoint) Close() {
	e.mu.Lock()
	e.closed = true
	agent, dc := e.agent, e.dconn
	e.mu.Unlock()
	if dc != nil {
		_ = dc.Close()
	}
	if agent != nil {
		_ = agent.GracefulClose()
	}
	for _, q := range []*queue{e.stunQ, e.dtlsQ, e.rtpQ} {
		q.close()
	}
	e.conn.Close()
	e.wg.Wait()
}

// readLoop demultiplexes the socket (RFC 7983): STUN to the agent, DTLS
// to the handshake, RTP and RTCP to the media session.
func (e *Endpoint) readLoop() {
	defer e.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, from, err := e.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if n == 0 {
			continue
		}
		switch b := buf[0]; {
		case b <= 3:
			if !e.stopICE.Load() && !e.cfg.NoICE {
				e.stunQ.put(buf[:n], from)
			}
		case b >= 20 && b <= 63:
			if !e.cfg.NoDTLS {
				e.dtlsQ.put(buf[:n], from)
			}
		case b >= 128 && b <= 191:
			if p := e.peer(); p != nil && p.IP.Equal(from.IP) && p.Port == from.Port {
				e.rtpQ.put(buf[:n], from)
			}
		}
	}
}

func (e *Endpoint) logf(format string, args ...any) {
	if e.cfg.Logf != nil {
		e.cfg.Logf(format, args...)
	}
}

// queue is a net.PacketConn fed by readLoop; writes go out of the
// socket, to fixed() when set.
type queue struct {
	sock   *net.UDPConn
	local  net.Addr
	fixed  func() *net.UDPAddr
	ch     chan packet
	done   chan struct{}
	once   sync.Once
	dlMu   sync.Mutex
	dl     time.Time
	dlWake chan struct{}
}

type packet struct {
	b    []byte
	from *net.UDPAddr
}

func newQueue(sock *net.UDPConn, local net.Addr, fixed func() *net.UDPAddr) *queue {
	return &queue{sock: sock, local: local, fixed: fixed, ch: make(chan packet, 256), done: make(chan struct{}), dlWake: make(chan struct{}, 1)}
}

func (q *queue) put(b []byte, from *net.UDPAddr) {
	select {
	case q.ch <- packet{append([]byte(nil), b...), from}:
	default:
	}
}

func (q *queue) close() { q.once.Do(func() { close(q.done) }) }

func (q *queue) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		q.dlMu.Lock()
		dl := q.dl
		q.dlMu.Unlock()
		var timer *time.Timer
		var fire <-chan time.Time
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, nil, timeoutErr{}
			}
			timer = time.NewTimer(d)
			fire = timer.C
		}
		select {
		case pk := <-q.ch:
			stopTimer(timer)
			return copy(p, pk.b), pk.from, nil
		case <-q.done:
			stopTimer(timer)
			return 0, nil, net.ErrClosed
		case <-fire:
			return 0, nil, timeoutErr{}
		case <-q.dlWake:
			stopTimer(timer)
		}
	}
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

func (q *queue) WriteTo(p []byte, addr net.Addr) (int, error) {
	select {
	case <-q.done:
		return 0, net.ErrClosed
	default:
	}
	dst, _ := addr.(*net.UDPAddr)
	if q.fixed != nil {
		if f := q.fixed(); f != nil {
			dst = f
		}
	}
	if dst == nil {
		return 0, errors.New("dtlspeer: no destination")
	}
	return q.sock.WriteToUDP(p, dst)
}

func (q *queue) Close() error                  { q.close(); return nil }
func (q *queue) LocalAddr() net.Addr           { return q.local }
func (q *queue) SetDeadline(t time.Time) error { return q.SetReadDeadline(t) }
func (q *queue) SetReadDeadline(t time.Time) error {
	q.dlMu.Lock()
	q.dl = t
	q.dlMu.Unlock()
	select {
	case q.dlWake <- struct{}{}:
	default:
	}
	return nil
}
func (q *queue) SetWriteDeadline(time.Time) error { return nil }

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "dtlspeer: read deadline" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// rtpConn adapts the RTP queue to rtppeer.PacketConn.
type rtpConn struct{ q *queue }

func (c rtpConn) ReadFromUDP(b []byte) (int, *net.UDPAddr, error) {
	for {
		n, a, err := c.q.ReadFrom(b)
		if err != nil {
			var te timeoutErr
			if errors.As(err, &te) {
				continue
			}
			return 0, nil, err
		}
		return n, a.(*net.UDPAddr), nil
	}
}
func (c rtpConn) WriteToUDP(b []byte, a *net.UDPAddr) (int, error) { return c.q.WriteTo(b, a) }
func (c rtpConn) LocalAddr() net.Addr                              { return c.q.local }
func (c rtpConn) Close() error                                     { return c.q.Close() }

// mux gives pion's agent the STUN queue as its host candidate's socket.
type mux struct {
	q    *queue
	addr net.Addr
}

func (m *mux) GetConn(string, net.Addr) (net.PacketConn, error) { return m.q, nil }
func (m *mux) RemoveConnByUfrag(string)                         {}
func (m *mux) GetListenAddresses() []net.Addr                   { return []net.Addr{m.addr} }
func (m *mux) Close() error                                     { return nil }

func newCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "meta-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return "sha-256 " + colonHex(sum[:])
}

func colonHex(sum []byte) string {
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

func randICE(n int) string {
	const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = chars[b[i]&63]
	}
	return string(b)
}
