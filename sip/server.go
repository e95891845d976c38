// Package sip is wagate's SIP edge: the listeners and the checks every
// message passes before anything acts on it, endpoint identification and
// digest authentication both ways, the X-WABA header contract and the
// routing policy of UICs and BICs, the SIP trace. What happens to a call
// once it is admitted is the b2bua package's (Calls).
package sip

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
)

// Server is wagate's SIP side: one sipgo UserAgent shared by the listeners
// and the client, so requests leave from the listening port.
type Server struct {
	cfg    atomic.Pointer[configs.Config]
	log    *slog.Logger
	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	client *sipgo.Client
	// calls is the B2BUA requests are handed to (SetCalls).
	calls Calls
	auth  *digestServer
	// edge checks every message before sipgo reads it.
	edge *edge
	// trace logs and exports every message (nil: sip.trace is off).
	trace *tracer
	// msgs counts SIP messages in and out (sipgo's tracer).
	msgs *msgStats
	// tlsPeers is the outbound TLS trust of the running configuration.
	tlsPeers *atomic.Pointer[tlsPeers]
	// tlsInFailed and tlsOutFailed count failed TLS handshakes, inbound
	// (a client that never finishes, or a protocol error) and outbound (a
	// peer whose certificate does not verify).
	tlsInFailed  atomic.Uint64
	tlsOutFailed *atomic.Uint64
	// certs are the TLS listeners' certificates, re-read on reload.
	certsMu sync.Mutex
	certs   []*listenerCert

	draining atomic.Bool
	// probe keeps the health of the endpoints with an OPTIONS probe.
	probe *prober
	// now is the clock routing reads business hours with (SetNow).
	now func() time.Time

	udpLaddr sip.Addr
	ports    map[string]int // listen port per transport, for Contact
	ready    chan struct{}
}

// udpSocketBuffer is the receive and send buffer asked for on SIP UDP
// listeners.
const udpSocketBuffer = 4 << 20

// allowedMethods is wagate's Allow header value.
const allowedMethods = "INVITE, ACK, BYE, CANCEL, OPTIONS, REFER"

// udpMaxMessage is the largest SIP message wagate sends over UDP. sipgo
// refuses anything over UDPMTUSize-200 (1,300 bytes by default) instead of
// switching to TCP as RFC 3261 §18.1.1 asks for large requests; refusing
// meant a large INVITE could not even be answered, and every retransmission
// of it started a call. Larger datagrams are fragmented by IP instead; the
// edge bounds what is read (sip.limits.max_message_size).
const udpMaxMessage = 65000

// edgeSummaryInterval is how often the edge logs what it refused.
const edgeSummaryInterval = 10 * time.Second

// Status is a snapshot of the edge for the status endpoint and tests.
type Status struct {
	Edge EdgeStats `json:"sip_edge"`
	// Draining is set from SIGTERM on: new calls get 503.
	Draining bool `json:"draining"`
	// TLSHandshakeFailures counts failed inbound and outbound handshakes.
	TLSHandshakeFailures struct {
		Inbound  uint64 `json:"inbound"`
		Outbound uint64 `json:"outbound"`
	} `json:"tls_handshake_failures"`
	// Trace is there when sip.trace is on.
	Trace *TraceStats `json:"sip_trace,omitempty"`
	// Endpoints is the health of the endpoints with an OPTIONS probe.
	Endpoints []EndpointHealth `json:"endpoints,omitempty"`
	// Certificates are what the TLS listeners present.
	Certificates []ListenerCert `json:"tls_certificates,omitempty"`
}

// New builds a Server for cfg. SetCalls must give it its B2BUA before Run.
func New(cfg *configs.Config, log *slog.Logger) (*Server, error) {
	sl := sipgoLogger(log)
	msgs := &msgStats{}
	if useSipgoGlobals(log, msgs, cfg.SIP.TransactionLinger.D()) {
		log.Warn("sip: transaction_linger differs from the first server's in this process; the first one's stays in force",
			"linger", cfg.SIP.TransactionLinger.D(), "in_force", sipgoGlobals.linger)
	}
	// The transaction layer is built with the UA, before s exists.
	var self atomic.Pointer[Server]
	peers, err := buildTLSPeers(cfg)
	if err != nil {
		return nil, err
	}
	tlsTrust := new(atomic.Pointer[tlsPeers])
	tlsTrust.Store(peers)
	tlsOutFailed := new(atomic.Uint64)
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent(cfg.SIP.UserAgent),
		sipgo.WithUserAgentHostname(cfg.SIP.Host),
		sipgo.WithUserAgenTLSConfig(clientTLSConfig(tlsTrust, tlsOutFailed)),
		sipgo.WithUserAgentTransactionLayerOptions(
			// A TCP/TLS connection that closes (Meta's end of the TLS
			// connection an INVITE went out on, a load balancer's reset)
			// ends the transactions waiting on it with a transport
			// error: the dialer hears 503 at once instead of 408 after
			// Timer B's 32 s, or of 480 after the ring timeout when the
			// connection broke while the user's phone rang.
			sip.WithTransactionLayerTerminateOnConnClose(),
			sip.WithTransactionLayerUnhandledResponseHandler(func(res *sip.Response) {
				if s := self.Load(); s != nil && s.calls != nil {
					s.calls.StrayResponse(res)
				}
			}),
		),
	)
	if err != nil {
		return nil, fmt.Errorf("sip: new user agent: %w", err)
	}
	s := &Server{
		log:          log,
		ua:           ua,
		auth:         newDigestServer(),
		tlsPeers:     tlsTrust,
		tlsOutFailed: tlsOutFailed,
		msgs:         msgs,
		ports:        make(map[string]int),
		ready:        make(chan struct{}),
		now:          time.Now,
	}
	s.cfg.Store(cfg)
	s.calls = noCalls{s}
	self.Store(s)
	s.edge = newEdge(&s.cfg, log)
	s.edge.busy = func(src string) bool { return s.calls != nil && s.calls.Busy(src) }
	s.edge.dialogPeer = func(ip netip.Addr) *configs.Endpoint {
		if s.calls == nil {
			return nil
		}
		return s.calls.DialogPeer(ip)
	}
	s.trace = newTracer(cfg, log)
	s.probe = newProber(s)

	s.srv, err = sipgo.NewServer(ua, sipgo.WithServerLogger(sl))
	if err != nil {
		return nil, fmt.Errorf("sip: new server: %w", err)
	}
	s.client, err = sipgo.NewClient(ua, sipgo.WithClientHostname(cfg.SIP.Host), sipgo.WithClientLogger(sl))
	if err != nil {
		return nil, fmt.Errorf("sip: new client: %w", err)
	}
	s.srv.OnInvite(s.guard(s.onInvite))
	s.srv.OnAck(s.guard(s.onAck))
	s.srv.OnBye(s.guard(s.onBye))
	s.srv.OnCancel(s.guard(s.onCancel))
	s.srv.OnOptions(s.guard(s.onOptions))
	s.srv.OnNoRoute(s.guard(s.onOther))
	return s, nil
}

// Reload swaps in a new configuration for calls that start from now on.
// Listeners and media settings are not changed by a reload, except that a
// TLS listener whose address is unchanged re-reads its certificate and
// key, and outbound TLS trust (ca_file, tls_server_name) follows the new
// endpoints. A TLS file that cannot be read keeps the old one in use.
func (s *Server) Reload(cfg *configs.Config) {
	if peers, err := buildTLSPeers(cfg); err != nil {
		s.log.Error("reload: outbound TLS trust unchanged", "error", err)
	} else {
		s.tlsPeers.Store(peers)
	}
	s.certsMu.Lock()
	for _, lc := range s.certs {
		for _, l := range cfg.TLSListeners() {
			if l.Address != lc.address {
				continue
			}
			cert, err := loadListenerCert(l)
			if err != nil {
				s.log.Error("reload: TLS certificate unchanged", "address", l.Address, "error", err)
				continue
			}
			old := lc.cert.Load()
			lc.cert.Store(cert)
			if old == nil || len(old.Certificate) == 0 || len(cert.Certificate) == 0 || !bytes.Equal(old.Certificate[0], cert.Certificate[0]) {
				// A renewal keeps the file names: the reload's list of
				// changed keys cannot say it, this line does.
				li := lc.info()
				s.log.Info("TLS certificate reloaded", "address", li.Address, "subject", li.Subject, "not_after", li.NotAfter)
			}
		}
	}
	s.certsMu.Unlock()
	if !reflect.DeepEqual(cfg.SIP.Trace, s.cfg.Load().SIP.Trace) {
		s.log.Warn("reload: sip.trace changes take a restart; the trace is unchanged")
	}
	s.cfg.Store(cfg)
}

// Status reports the edge's counters.
func (s *Server) Status() Status {
	st := Status{Edge: s.edge.snapshot(), Draining: s.draining.Load()}
	st.TLSHandshakeFailures.Inbound = s.tlsInFailed.Load()
	st.TLSHandshakeFailures.Outbound = s.tlsOutFailed.Load()
	if s.trace != nil {
		ts := s.trace.stats()
		st.Trace = &ts
	}
	if h := s.probe.health(); len(h) > 0 {
		st.Endpoints = h
	}
	if c := s.ListenerCerts(); len(c) > 0 {
		st.Certificates = c
	}
	return st
}

// Health is the probe state of each probed endpoint, by name.
func (s *Server) Health() []EndpointHealth { return s.probe.health() }

// Up reports whether endpoint may be rung: true unless its OPTIONS probes
// marked it down.
func (s *Server) Up(endpoint string) bool { return s.probe.up(endpoint) }

// Now is the time routing decisions (business hours) are made at.
func (s *Server) Now() time.Time { return s.now() }

// SetNow replaces the clock of routing decisions; call it before Run.
// wagate sets it only for tests (WAGATE_FAKE_NOW); timers, logs and
// records keep the real time.
func (s *Server) SetNow(now func() time.Time) { s.now = now }

// SetCalls gives the edge the B2BUA it hands requests to. Call it before Run.
func (s *Server) SetCalls(c Calls) { s.calls = c }

// Config is the configuration in force.
func (s *Server) Config() *configs.Config { return s.cfg.Load() }

// Client is the SIP client whose requests leave from the listeners.
func (s *Server) Client() *sipgo.Client { return s.client }

// Draining reports whether wagate is draining: no new calls.
func (s *Server) Draining() bool { return s.draining.Load() }

// StopAdmitting refuses every new call from now on (503 to INVITEs and
// to Kamailio's OPTIONS probes); Shutdown does it too. wagate calls it
// before it logs "draining", so no call is logged as started after that
// line.
func (s *Server) StopAdmitting() { s.draining.Store(true) }

// Ready is closed once every listener is bound.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Run binds every listener in the configuration and serves until ctx ends.
// All sockets are bound before any is served, so handlers see a complete
// set of listen ports.
func (s *Server) Run(ctx context.Context) error {
	cfg := s.cfg.Load()
	var serves []func() error
	var closers []io.Closer
	closeAll := func() {
		for _, c := range closers {
			c.Close()
		}
	}
	for _, l := range cfg.SIP.Listen {
		switch tr := strings.ToLower(l.Transport); tr {
		case "udp":
			pc, err := net.ListenPacket("udp", l.Address)
			if err != nil {
				closeAll()
				return fmt.Errorf("sip: listen udp %s: %w", l.Address, err)
			}
			// One socket carries every call's signalling; the kernel's
			// default buffer (~208 KiB) overflows in bursts at a few
			// hundred calls/s and the drops become retransmissions and
			// failed calls. The kernel caps this at net.core.rmem_max.
			if uc, ok := pc.(*net.UDPConn); ok {
				_ = uc.SetReadBuffer(udpSocketBuffer)
				_ = uc.SetWriteBuffer(udpSocketBuffer)
			}
			ap := netip.MustParseAddrPort(pc.LocalAddr().String())
			s.ports["udp"] = int(ap.Port())
			if s.udpLaddr.IP == nil {
				s.udpLaddr = sip.Addr{IP: net.IP(ap.Addr().AsSlice()), Port: int(ap.Port())}
			}
			closers = append(closers, pc)
			epc := newEdgePacketConn(pc, s.edge)
			serves = append(serves, func() error { return s.srv.ServeUDP(epc) })
		case "tcp":
			ln, err := net.Listen("tcp", l.Address)
			if err != nil {
				closeAll()
				return fmt.Errorf("sip: listen tcp %s: %w", l.Address, err)
			}
			s.ports["tcp"] = ln.Addr().(*net.TCPAddr).Port
			closers = append(closers, ln)
			eln := framingListener{Listener: &edgeListener{Listener: ln, edge: s.edge}, edge: s.edge, transport: "TCP"}
			serves = append(serves, func() error { return s.srv.ServeTCP(eln) })
		case "tls":
			cert, err := loadListenerCert(l)
			if err != nil {
				closeAll()
				return err
			}
			lc := &listenerCert{address: l.Address}
			lc.cert.Store(cert)
			li := lc.info()
			s.log.Info("TLS certificate", "address", li.Address, "subject", li.Subject, "not_after", li.NotAfter)
			ln, err := net.Listen("tcp", l.Address)
			if err != nil {
				closeAll()
				return fmt.Errorf("sip: listen tls %s: %w", l.Address, err)
			}
			s.ports["tls"] = ln.Addr().(*net.TCPAddr).Port
			s.certsMu.Lock()
			s.certs = append(s.certs, lc)
			s.certsMu.Unlock()
			// Connections are admitted before the handshake (a stranger
			// costs no crypto) and framed after it.
			tln := handshakeListener{
				Listener: tls.NewListener(&edgeListener{Listener: ln, edge: s.edge}, serverTLSConfig(lc)),
				timeout:  cfg.SIP.TCP.TLSHandshakeTimeout.D(),
				failed:   &s.tlsInFailed,
			}
			closers = append(closers, ln)
			eln := framingListener{Listener: tln, edge: s.edge, transport: "TLS"}
			serves = append(serves, func() error { return s.srv.ServeTLS(eln) })
		default:
			closeAll()
			return fmt.Errorf("sip: listen: unsupported transport %q", l.Transport)
		}
		s.log.Info("sip listening", "transport", strings.ToLower(l.Transport), "address", l.Address)
	}
	if s.trace != nil {
		s.trace.install(s.msgs)
	}
	errc := make(chan error, len(serves))
	var lwg sync.WaitGroup
	for _, serve := range serves {
		lwg.Add(1)
		go func() {
			defer lwg.Done()
			errc <- serve()
		}()
	}
	ectx, stopSummary := context.WithCancel(ctx)
	lwg.Add(1)
	go func() {
		defer lwg.Done()
		s.edge.run(ectx, edgeSummaryInterval)
	}()
	if s.trace != nil {
		lwg.Add(1)
		go func() {
			defer lwg.Done()
			s.trace.run(ectx, s.ports["tcp"], s.ports["tls"])
		}()
	}
	lwg.Go(func() { s.probe.run(ectx) })
	close(s.ready)
	// The B2BUA's own background work runs until Run ends.
	lwg.Add(1)
	go func() {
		defer lwg.Done()
		s.calls.Started(ectx)
	}()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		if ctx.Err() == nil {
			err = fmt.Errorf("sip: serve: %w", err)
		} else {
			err = nil
		}
	}
	closeAll()
	stopSummary()
	lwg.Wait()
	return err
}

// Shutdown stops taking new calls, waits for live calls to end until ctx
// is done, then hangs up the rest and waits for the BYEs to finish.
func (s *Server) Shutdown(ctx context.Context) {
	s.StopAdmitting()
	s.calls.Drain(ctx)
	s.ua.Close()
}

// identify returns the endpoint a request came from, by source address.
func (s *Server) identify(req *sip.Request) *configs.Endpoint {
	host, _, err := net.SplitHostPort(req.Source())
	if err != nil {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return nil
	}
	if ep := s.cfg.Load().EndpointForSource(ip.Unmap()); ep != nil {
		return ep
	}
	// A peer a reload removed or moved: the edge passed only requests
	// within its live calls' dialogs.
	if tag, _ := req.To().Params.Get("tag"); tag != "" || req.Method == sip.CANCEL {
		return s.edge.dialogPeer(ip.Unmap())
	}
	return nil
}

// Contact is our Contact for a leg on the given transport.
func (s *Server) Contact(transport string) *sip.ContactHeader {
	tr := strings.ToLower(transport)
	u := sip.Uri{Scheme: "sip", User: "wagate", Host: s.cfg.Load().SIP.Host, Port: s.ports[tr]}
	if tr != "udp" {
		u.UriParams = sip.NewParams()
		u.UriParams.Add("transport", tr)
	}
	return &sip.ContactHeader{Address: u}
}

// Prepare pins requests sent over UDP to the listening socket, so peers see
// them come from the port they send to.
func (s *Server) Prepare(req *sip.Request) {
	if strings.EqualFold(req.Transport(), "udp") && s.udpLaddr.IP != nil {
		req.Laddr = s.udpLaddr
	}
}

// WriteResponse sends res outside any transaction, to its destination
// over UDP from the listening socket: the final response a restart sends
// to an INVITE the previous run had not answered. (sipgo's own
// WriteResponse finds no connection for an address nothing came from in
// this run.)
func (s *Server) WriteResponse(res *sip.Response) error {
	if !strings.EqualFold(res.Transport(), "udp") || s.udpLaddr.IP == nil {
		return fmt.Errorf("sip: response outside a transaction over %s: no UDP listener", res.Transport())
	}
	c, err := s.ua.TransportLayer().GetConnection("udp", s.udpLaddr.String())
	if err != nil {
		return fmt.Errorf("sip: response outside a transaction: %w", err)
	}
	defer c.TryClose() // GetConnection took a reference
	return c.WriteMsg(res)
}

// Respond sends a final or provisional response, logging a failure once.
func (s *Server) Respond(tx sip.ServerTransaction, req *sip.Request, code int, reason string, mut func(*sip.Response)) {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	res.AppendHeader(sip.NewHeader("Server", s.cfg.Load().SIP.UserAgent))
	if mut != nil {
		mut(res)
	}
	if err := tx.Respond(res); err != nil {
		s.log.Debug("respond failed", "code", code, "call_id", callIDOf(req), "error", err)
	}
}

// Reject answers A with a final error. wagate's own rejections carry a
// Reason header (RFC 3326), Meta's error code in X-WABA-Error when there is
// one (DESIGN.md §4) and Retry-After when the refusal lifts at a known time
// (5 s for other 503s).
func (s *Server) Reject(tx sip.ServerTransaction, req *sip.Request, r *Rejection, log *slog.Logger) {
	attrs := []any{"code", r.Code, "reason", r.Reason, "why", r.Log}
	if r.MetaError != 0 {
		attrs = append(attrs, "meta_error", r.MetaError)
	}
	log.Info("call rejected", attrs...)
	s.Respond(tx, req, r.Code, r.Reason, func(res *sip.Response) {
		if r.Warning != "" {
			res.AppendHeader(sip.NewHeader("Warning", `399 wagate "`+strings.ReplaceAll(r.Warning, `"`, "'")+`"`))
		}
		if !r.Relayed {
			res.AppendHeader(ReasonHeader(r.Code, r.Reason))
		}
		if r.MetaError != 0 {
			res.AppendHeader(sip.NewHeader(hdrWABAError, itoa(r.MetaError)))
		}
		if r.NodeUnavailable != "" {
			res.AppendHeader(sip.NewHeader(hdrNodeUnavailable, r.NodeUnavailable))
		}
		if r.Accept != "" {
			res.AppendHeader(sip.NewHeader("Accept", r.Accept))
		}
		switch {
		case r.RetryAfter > 0:
			res.AppendHeader(sip.NewHeader("Retry-After", itoa(retryAfterSeconds(r.RetryAfter))))
		case r.Code == 503:
			res.AppendHeader(sip.NewHeader("Retry-After", "5"))
		}
	})
}

func callIDOf(m interface{ CallID() *sip.CallIDHeader }) string {
	if h := m.CallID(); h != nil {
		return h.Value()
	}
	return ""
}

func itoa(n int) string { return strconv.Itoa(n) }

// WaitUDPServing waits (up to 2 s) until sipgo serves the UDP listener
// requests are pinned to (prepare): until then sipgo would try to bind a
// second socket to that address for them, and fail.
func (s *Server) WaitUDPServing(ctx context.Context) {
	if s.udpLaddr.IP == nil {
		return
	}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if c, err := s.ua.TransportLayer().GetConnection("udp", s.udpLaddr.String()); err == nil && c != nil {
			c.TryClose() // GetConnection took a reference
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
