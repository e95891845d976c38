package sip

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wagate/wagate/configs"
)

// SIP over TLS.
//
// Listeners: TLS 1.2 or later, the configured certificate chain, no client
// certificate requested (Meta sends none) and no ALPN: Meta's TLS rejects
// the value "sip", so NextProtos stays empty. SIGHUP re-reads the
// certificate and key of a listener whose address did not change, so a
// renewed certificate needs no restart.
//
// Outbound connections: sipgo v1.7.2 dials every TLS connection with one
// tls.Config (WithUserAgenTLSConfig) and, when its ServerName is empty,
// sets ServerName to the host of the request's destination — an IP
// address when the endpoint is configured by address. To check each peer
// against its own ca_file and tls_server_name, wagate gives sipgo a config
// whose VerifyConnection does the verification itself (with
// InsecureSkipVerify set only so that crypto/tls does not run its own,
// name-only check first; VerifyConnection still runs and its error fails
// the handshake):
//
//   - the destination host (ConnectionState.ServerName) names an endpoint
//     with transport tls when it is that endpoint's host or
//     tls_server_name: the chain must verify against the endpoint's
//     ca_file (or the system roots) for its tls_server_name;
//   - any other destination (a Record-Route or Contact of a peer pointing
//     at another of its servers): the chain must verify for that host
//     against the system roots, or for some tls endpoint's
//     tls_server_name against that endpoint's roots.
//
// So a connection to 127.0.0.2 configured with tls_server_name wa.meta.vc
// and a test CA accepts only a certificate for wa.meta.vc from that CA.
// The SNI sent is the destination host when it is a name (none for an IP
// address, as crypto/tls sends no IP in SNI).

// tlsPeer is the trust wagate places in one tls endpoint.
type tlsPeer struct {
	endpoint   string
	serverName string
	roots      *x509.CertPool // nil: the system roots
}

// tlsPeers is the outbound TLS trust of one configuration.
type tlsPeers struct {
	byName map[string][]*tlsPeer // lower-case host or tls_server_name
	all    []*tlsPeer
}

// buildTLSPeers reads every tls endpoint's ca_file.
func buildTLSPeers(cfg *configs.Config) (*tlsPeers, error) {
	p := &tlsPeers{byName: make(map[string][]*tlsPeer)}
	for i := range cfg.Endpoints {
		e := &cfg.Endpoints[i]
		if !strings.EqualFold(e.Transport, "tls") {
			continue
		}
		peer := &tlsPeer{endpoint: e.Name, serverName: e.TLSServerName}
		if peer.serverName == "" {
			peer.serverName = e.Host
		}
		if e.CAFile != "" {
			pem, err := os.ReadFile(e.CAFile)
			if err != nil {
				return nil, fmt.Errorf("sip: endpoint %s: ca_file: %w", e.Name, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("sip: endpoint %s: ca_file %s holds no PEM certificate", e.Name, e.CAFile)
			}
			peer.roots = pool
		}
		p.all = append(p.all, peer)
		for _, name := range []string{e.Host, peer.serverName} {
			if name == "" {
				continue
			}
			k := tlsNameKey(name)
			if !containsPeer(p.byName[k], peer) {
				p.byName[k] = append(p.byName[k], peer)
			}
		}
	}
	return p, nil
}

func containsPeer(list []*tlsPeer, p *tlsPeer) bool {
	for _, q := range list {
		if q == p {
			return true
		}
	}
	return false
}

func tlsNameKey(name string) string {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if ip, err := netip.ParseAddr(name); err == nil {
		return ip.Unmap().String()
	}
	return name
}

// verify checks the chain a server presented on a connection whose
// destination host was cs.ServerName.
func (p *tlsPeers) verify(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("sip tls: the server presented no certificate")
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	check := func(roots *x509.CertPool, name string) error {
		_, err := leaf.Verify(x509.VerifyOptions{
			DNSName:       name,
			Roots:         roots,
			Intermediates: inter,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})
		return err
	}
	dest := tlsNameKey(cs.ServerName)
	if peers := p.byName[dest]; len(peers) > 0 {
		var first error
		for _, peer := range peers {
			err := check(peer.roots, peer.serverName)
			if err == nil {
				return nil
			}
			if first == nil {
				first = fmt.Errorf("sip tls: certificate of %s (endpoint %s) not valid for %s: %w", cs.ServerName, peer.endpoint, peer.serverName, err)
			}
		}
		return first
	}
	if dest != "" && check(nil, dest) == nil {
		return nil
	}
	for _, peer := range p.all {
		if check(peer.roots, peer.serverName) == nil {
			return nil
		}
	}
	return fmt.Errorf("sip tls: certificate of %s is valid neither for that name nor for any tls endpoint", cs.ServerName)
}

// clientTLSConfig is the one tls.Config sipgo dials every TLS connection
// with; see the comment at the top of this file.
//
// failed counts handshakes whose verification failed.
func clientTLSConfig(peers *atomic.Pointer[tlsPeers], failed *atomic.Uint64) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verification is VerifyConnection's, per endpoint; crypto/tls
		// still calls it, and fails the handshake on its error.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			p := peers.Load()
			if p == nil {
				failed.Add(1)
				return errors.New("sip tls: no trust configured")
			}
			err := p.verify(cs)
			if err != nil {
				failed.Add(1)
			}
			return err
		},
	}
}

// listenerCert holds a TLS listener's certificate, replaced on reload.
type listenerCert struct {
	address string
	cert    atomic.Pointer[tls.Certificate]
}

// ListenerCert is the certificate a TLS listener presents.
type ListenerCert struct {
	Address string `json:"address"`
	// Subject is the certificate's subject; NotAfter when it expires
	// (Meta refuses a listener whose certificate has).
	Subject  string    `json:"subject"`
	NotAfter time.Time `json:"not_after"`
}

// info describes the certificate lc presents.
func (lc *listenerCert) info() ListenerCert {
	li := ListenerCert{Address: lc.address}
	if c := lc.cert.Load(); c != nil && c.Leaf != nil {
		li.Subject, li.NotAfter = c.Leaf.Subject.String(), c.Leaf.NotAfter.UTC()
	}
	return li
}

// ListenerCerts lists the certificates the TLS listeners present, in the
// order of sip.listen.
func (s *Server) ListenerCerts() []ListenerCert {
	s.certsMu.Lock()
	defer s.certsMu.Unlock()
	out := make([]ListenerCert, 0, len(s.certs))
	for _, lc := range s.certs {
		out = append(out, lc.info())
	}
	return out
}

func loadListenerCert(l configs.Listener) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(l.CertFile, l.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("sip: tls listener %s: %w", l.Address, err)
	}
	return &c, nil
}

// serverTLSConfig is a TLS listener's config: TLS 1.2+, no client
// certificate, no ALPN (Meta rejects "sip").
func serverTLSConfig(lc *listenerCert) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: tls.NoClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return lc.cert.Load(), nil
		},
	}
}

// handshakeListener wraps a TLS listener: each accepted connection
// completes its handshake within timeout (sip.tcp.tls_handshake_timeout,
// so that a client that connects and never finishes the handshake does
// not hold a goroutine and a socket for ever) on its first read (in the
// connection's own reader goroutine, so a slow client never blocks
// Accept).
type handshakeListener struct {
	net.Listener
	timeout time.Duration
	// failed counts handshakes that failed or timed out (nil: none).
	failed *atomic.Uint64
}

func (l handshakeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*tls.Conn)
	if !ok {
		return c, nil
	}
	return &handshakeConn{Conn: tc, timeout: l.timeout, failed: l.failed}, nil
}

type handshakeConn struct {
	*tls.Conn
	timeout time.Duration
	failed  *atomic.Uint64
	once    sync.Once
	err     error
}

func (c *handshakeConn) Read(b []byte) (int, error) {
	c.once.Do(func() {
		_ = c.Conn.SetDeadline(time.Now().Add(c.timeout))
		c.err = c.Conn.Handshake()
		_ = c.Conn.SetDeadline(time.Time{})
		if c.err != nil && c.failed != nil {
			c.failed.Add(1)
		}
	})
	if c.err != nil {
		return 0, c.err
	}
	return c.Conn.Read(b)
}
