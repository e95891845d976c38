package media

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/protocol/extension"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"
	"github.com/pion/ice/v4"
	"github.com/pion/stun/v3"
)

// A dtls leg (media_encryption: dtls, Meta's default keying): ICE, then a
// DTLS handshake on the ICE pair, then SRTP with keys exported from it
// (RFC 5764). Until the keys are in, the leg's peer has no address in the
// relay's routes: nothing is sent to it and nothing from it is accepted
// as media. When they are, the routes get the peer's address and keys at
// once, and the pacer's next tick toward the leg sends silence.

// Errors that end a call on a dtls leg (Bridge.Start's onTimeout gets
// them wrapped; HangupCause names them for the call's record).
var (
	// ErrDTLSTimeout: ICE found a pair but the DTLS handshake did not
	// finish within media.dtls.handshake_timeout.
	ErrDTLSTimeout = errors.New("media: DTLS handshake timed out")
	// ErrDTLSFingerprint: the peer's certificate does not match the
	// a=fingerprint of its SDP.
	ErrDTLSFingerprint = errors.New("media: DTLS peer certificate does not match the SDP fingerprint")
	// ErrDTLSFailed: the handshake failed otherwise (an alert, no common
	// SRTP profile).
	ErrDTLSFailed = errors.New("media: DTLS handshake failed")
	// ErrICEFailed: no candidate pair answered our connectivity checks,
	// before ICE gave up or before media.dtls.handshake_timeout.
	ErrICEFailed = errors.New("media: ICE connectivity checks failed")
	// ErrICEConsent: the peer stopped answering consent checks mid-call
	// (RFC 7675) for media.ice.consent_timeout.
	ErrICEConsent = errors.New("media: ICE consent lost")
)

// HangupCause names why a bridge ended a call, from the error its
// onTimeout got: "dtls handshake timeout", "dtls fingerprint mismatch",
// "dtls handshake failed", "ice failed", "ice consent lost", else "rtp
// timeout".
func HangupCause(err error) string {
	switch {
	case errors.Is(err, ErrDTLSTimeout):
		return "dtls handshake timeout"
	case errors.Is(err, ErrDTLSFingerprint):
		return "dtls fingerprint mismatch"
	case errors.Is(err, ErrDTLSFailed):
		return "dtls handshake failed"
	case errors.Is(err, ErrICEFailed):
		return "ice failed"
	case errors.Is(err, ErrICEConsent):
		return "ice consent lost"
	}
	return "rtp timeout"
}

// srtpProfiles are the DTLS-SRTP profiles wagate offers, in order of
// preference (the server picks): the one Meta is known to key SDES with,
// then AES-GCM (cheaper, no per-packet HMAC).
var srtpProfiles = []dtls.SRTPProtectionProfile{dtls.SRTP_AES128_CM_HMAC_SHA1_80, dtls.SRTP_AEAD_AES_128_GCM}

// secureLeg is the ICE agent and DTLS endpoint of one dtls leg. Its SDP
// half (credentials, roles, the peer's parameters) is set under the
// bridge's lock before Start and read-only afterwards; Start starts its
// goroutine and Close ends it, with the agent and the DTLS connection.
type secureLeg struct {
	b    *Bridge
	side Side
	log  *slog.Logger

	ufrag, pwd string // ours
	// offered is true when our SDP on this leg was the offer (actpass):
	// the peer's answer then picks the DTLS roles.
	offered bool
	peer    *secureParams // nil until its SDP is read
	// client: we are the DTLS client (setup active); controlling: the ICE
	// controlling agent.
	client, controlling bool

	stunQ, dtlsQ *packetQueue
	// selected is the ICE peer once a pair is chosen: DTLS and media go
	// there and come only from there.
	selected atomic.Pointer[netip.AddrPort]
	// known are the peer's addresses that may send STUN responses and,
	// before a pair is chosen, DTLS: its candidates and any address that
	// sent an authenticated check. Reader goroutine only.
	known []netip.AddrPort
	// msg is where the reader checks a STUN message before queueing it.
	msg        stun.Message
	loggedDrop bool

	droppedSTUN, droppedDTLS atomic.Uint64
	// scsv: the peer's ClientHello asked for secure renegotiation the
	// OpenSSL way (demux.go); our ServerHello must then say we support it.
	scsv atomic.Bool

	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex // guards agent and conn against close
	agent  *ice.Agent
	conn   *dtls.Conn
	closed bool
	// keyedAt is when the keys were installed (0: not yet), since Start.
	keyedAt atomic.Int64
}

func newSecureLeg(b *Bridge, side Side) *secureLeg {
	s := &secureLeg{b: b, side: side, log: b.log.With("side", side.String())}
	s.ufrag, s.pwd = iceCredentials()
	return s
}

// attributes are our SDP attributes on this leg: setup is actpass in an
// offer, else our DTLS role.
func (s *secureLeg) attributes(port int) []Attribute {
	setup := setupActPass
	if !s.offered {
		setup = setupPassive
		if s.client {
			setup = setupActive
		}
	}
	return secureAttributes(s.ufrag, s.pwd, s.b.cert.Fingerprint, setup, s.b.m.localCandidates(port))
}

// setPeerOffer takes the peer's offer: roles follow RFC 8445 §6.1.1 (a
// lite peer makes us controlling; of two full agents the offerer
// controls) and RFC 5763 (we are the client unless the peer insists on
// being it).
func (s *secureLeg) setPeerOffer(p *secureParams) {
	s.peer, s.offered = p, false
	s.controlling = p.lite
	s.client = p.setup != setupActive
}

// setPeerAnswer takes the peer's answer to our offer: we offered, so we
// control ICE; the answer's setup picks the DTLS roles.
func (s *secureLeg) setPeerAnswer(p *secureParams) {
	s.peer = p
	s.controlling = true
	s.client = p.setup == setupPassive
}

// start runs ICE and the handshake on a goroutine of the leg's own,
// which Close ends. The caller holds the bridge's lock, after Start.
func (s *secureLeg) start() {
	if s.peer == nil || s.done != nil {
		return
	}
	pair := s.b.legs[s.side].pair
	host, _ := s.b.m.candidateAddrs(pair.port)
	local := net.UDPAddrFromAddrPort(host)
	s.stunQ = newPacketQueue(pair.rtp, local)
	s.dtlsQ = newPacketQueue(pair.rtp, local)
	s.dtlsQ.fixed = func() netip.AddrPort {
		if a := s.selected.Load(); a != nil {
			return *a
		}
		return netip.AddrPort{}
	}
	for _, c := range s.peer.candidates {
		if a, err := netip.ParseAddr(c.Address()); err == nil {
			s.known = append(s.known, netip.AddrPortFrom(a.Unmap(), uint16(c.Port())))
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go s.run(ctx, host)
}

// run is the leg's goroutine: connect, then install the keys.
func (s *secureLeg) run(ctx context.Context, host netip.AddrPort) {
	defer close(s.done)
	began := time.Now()
	hctx, cancel := context.WithTimeoutCause(ctx, s.b.m.handshakeTimeout, ErrDTLSTimeout)
	defer cancel()
	recv, send, err := s.connect(hctx, host)
	if err != nil {
		if ctx.Err() != nil {
			return // the bridge is closing
		}
		if errors.Is(context.Cause(hctx), ErrDTLSTimeout) && !errors.Is(err, ErrDTLSFingerprint) && !errors.Is(err, ErrICEFailed) {
			err = fmt.Errorf("%w after %s (%v)", ErrDTLSTimeout, s.b.m.handshakeTimeout, err)
		}
		s.b.m.dtlsOutcome(err, 0)
		s.b.fail(fmt.Errorf("media: side %s: %w", s.side, err))
		return
	}
	took := time.Since(began)
	s.keyedAt.Store(int64(took))
	s.b.m.dtlsOutcome(nil, took)
	s.b.keyed(s.side, *s.selected.Load(), recv, send)
	s.log.Info("media: DTLS-SRTP keyed", "peer", *s.selected.Load(), "profile", recv.suite.name,
		"dtls_client", s.client, "ice_controlling", s.controlling, "handshake_ms", took.Milliseconds())
}

// connect runs ICE to a selected pair, then the DTLS handshake, and
// returns the SRTP keys: the peer's (recv) and ours (send).
func (s *secureLeg) connect(ctx context.Context, host netip.AddrPort) (recv, send *sdesKey, err error) {
	agent, err := s.b.m.newAgent(s.stunQ, host, s.ufrag, s.pwd, s.peer.candidates, s.log)
	if err != nil {
		return nil, nil, err
	}
	if !s.setAgent(agent) {
		return nil, nil, net.ErrClosed
	}
	iceFailed := make(chan struct{})
	var failOnce sync.Once
	if err := agent.OnConnectionStateChange(func(st ice.ConnectionState) {
		if st == ice.ConnectionStateFailed {
			failOnce.Do(func() { close(iceFailed) })
			if s.keyedAt.Load() > 0 {
				s.b.m.countConsentLost()
				s.b.fail(fmt.Errorf("media: side %s: %w (no answer to consent checks for %s)", s.side, ErrICEConsent, s.b.m.consentTimeout))
			}
		}
	}); err != nil {
		return nil, nil, err
	}
	if err := agent.OnSelectedCandidatePairChange(func(_, remote ice.Candidate) {
		a, err := netip.ParseAddr(remote.Address())
		if err != nil {
			return
		}
		to := netip.AddrPortFrom(a.Unmap(), uint16(remote.Port()))
		if old := s.selected.Swap(&to); old != nil && *old != to && s.keyedAt.Load() > 0 {
			s.b.moved(s.side, to) // a controlling peer nominated another pair
		}
	}); err != nil {
		return nil, nil, err
	}
	if err := gather(ctx, agent); err != nil {
		return nil, nil, err
	}
	ictx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-iceFailed:
			cancel()
		case <-ictx.Done():
		}
	}()
	if s.controlling {
		_, err = agent.Dial(ictx, s.peer.ufrag, s.peer.pwd)
	} else {
		_, err = agent.Accept(ictx, s.peer.ufrag, s.peer.pwd)
	}
	select {
	case <-iceFailed:
		return nil, nil, ErrICEFailed
	default:
	}
	if err != nil {
		if errors.Is(context.Cause(ctx), ErrDTLSTimeout) {
			// No pair within the handshake's time: the path, not DTLS,
			// failed (a firewall, a wrong address), and the cause says
			// so, so that the operator looks there.
			return nil, nil, fmt.Errorf("%w: no candidate pair answered within %s", ErrICEFailed, s.b.m.handshakeTimeout)
		}
		return nil, nil, fmt.Errorf("media: ICE: %w", err)
	}
	// The pair-change callback runs on a goroutine of pion's and may not
	// have run yet.
	pair, err := agent.GetSelectedCandidatePair()
	if err != nil || pair == nil {
		return nil, nil, ErrICEFailed
	}
	a, err := netip.ParseAddr(pair.Remote.Address())
	if err != nil {
		return nil, nil, ErrICEFailed
	}
	to := netip.AddrPortFrom(a.Unmap(), uint16(pair.Remote.Port()))
	s.selected.CompareAndSwap(nil, &to)
	return s.handshake(ctx)
}

func (s *secureLeg) setAgent(a *ice.Agent) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = a.GracefulClose()
		return false
	}
	s.agent = a
	return true
}

// handshake runs DTLS with the ICE peer over the leg's DTLS queue and
// exports the SRTP keys.
func (s *secureLeg) handshake(ctx context.Context) (recv, send *sdesKey, err error) {
	var mismatch atomic.Bool
	// pion's server side sends the alert but keeps waiting after its
	// verification fails: stop it at once.
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	cfg := &dtls.Config{
		Certificates:           []tls.Certificate{s.b.cert.tls},
		SRTPProtectionProfiles: srtpProfiles,
		ExtendedMasterSecret:   dtls.RequireExtendedMasterSecret,
		ClientAuth:             dtls.RequireAnyClientCert,
		// The peer's certificate is self-signed: it is trusted because
		// its fingerprint is the one in the peer's SDP (RFC 8122).
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) > 0 {
				for _, fp := range s.peer.fingerprints {
					if fp.matches(raw[0]) {
						return nil
					}
				}
			}
			mismatch.Store(true)
			stop(ErrDTLSFingerprint)
			return ErrDTLSFingerprint
		},
		LoggerFactory: pionLogs{s.log},
		ServerHelloMessageHook: func(h handshake.MessageServerHello) handshake.Message {
			if s.scsv.Load() && !slices.ContainsFunc(h.Extensions, func(e extension.Extension) bool {
				return e.TypeValue() == extension.RenegotiationInfoTypeValue
			}) {
				h.Extensions = append(h.Extensions, &extension.RenegotiationInfo{})
			}
			return &h
		},
	}
	peer := net.UDPAddrFromAddrPort(*s.selected.Load())
	var conn *dtls.Conn
	if s.client {
		conn, err = dtls.Client(s.dtlsQ, peer, cfg)
	} else {
		conn, err = dtls.Server(s.dtlsQ, peer, cfg)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrDTLSFailed, err)
	}
	if !s.setConn(conn) {
		return nil, nil, net.ErrClosed
	}
	if err := conn.HandshakeContext(ctx); err != nil {
		if mismatch.Load() {
			return nil, nil, ErrDTLSFingerprint
		}
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("%w (%v)", context.Cause(ctx), err)
		}
		return nil, nil, fmt.Errorf("%w: %v", ErrDTLSFailed, err)
	}
	return s.exportKeys(conn)
}

func (s *secureLeg) setConn(c *dtls.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = c.Close()
		return false
	}
	s.conn = c
	return true
}

// exportKeys derives both directions' SRTP master keys from the
// handshake (RFC 5764 §4.2: client key, server key, client salt, server
// salt).
func (s *secureLeg) exportKeys(conn *dtls.Conn) (recv, send *sdesKey, err error) {
	prof, ok := conn.SelectedSRTPProtectionProfile()
	if !ok {
		return nil, nil, fmt.Errorf("%w: no SRTP profile agreed", ErrDTLSFailed)
	}
	var suite *srtpSuite
	switch prof {
	case dtls.SRTP_AES128_CM_HMAC_SHA1_80:
		suite = lookupSuite("AES_CM_128_HMAC_SHA1_80")
	case dtls.SRTP_AEAD_AES_128_GCM:
		suite = lookupSuite("AEAD_AES_128_GCM")
	default:
		return nil, nil, fmt.Errorf("%w: SRTP profile %#04x was not offered", ErrDTLSFailed, uint16(prof))
	}
	state, ok := conn.ConnectionState()
	if !ok {
		return nil, nil, fmt.Errorf("%w: no connection state", ErrDTLSFailed)
	}
	kl, sl := suite.keyLen, suite.saltLen
	km, err := state.ExportKeyingMaterial("EXTRACTOR-dtls_srtp", nil, 2*(kl+sl))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: export keys: %v", ErrDTLSFailed, err)
	}
	key := func(k, salt []byte) *sdesKey {
		return &sdesKey{name: suite.name, suite: suite, window: defaultReplayWindow,
			keys: []keyMaterial{{key: k[:kl:kl], salt: salt[:sl:sl]}}}
	}
	client := key(km[0:kl], km[2*kl:2*kl+sl])
	server := key(km[kl:2*kl], km[2*kl+sl:])
	if s.client {
		return server, client, nil
	}
	return client, server, nil
}

// close ends the leg's goroutine and pion's: the agent, the DTLS
// connection and their queues. It waits for them; the caller must not
// hold the bridge's lock.
func (s *secureLeg) close() {
	s.mu.Lock()
	s.closed = true
	agent, conn := s.agent, s.conn
	s.mu.Unlock()
	if s.cancel != nil {
		s.cancel()
	}
	if conn != nil {
		_ = conn.Close()
	}
	if agent != nil {
		_ = agent.GracefulClose()
	}
	for _, q := range []*packetQueue{s.stunQ, s.dtlsQ} {
		if q != nil {
			_ = q.Close()
		}
	}
	if s.done != nil {
		<-s.done
	}
}
