package sip

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wagate/wagate/configs"
)

// testCA is a throwaway certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var serial atomic.Int64

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: "wagate test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue makes a server certificate for names (DNS names or IPs).
func (ca *testCA) issue(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (ca *testCA) write(t testing.TB, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(p, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// writePair writes cert's chain and key as PEM files into dir.
func writePair(t testing.TB, dir string, cert tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	var chain []byte
	for _, der := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "listener.pem"), filepath.Join(dir, "listener.key")
	if err := os.WriteFile(certFile, chain, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func tlsConfigFor(t testing.TB, caFile string) *configs.Config {
	t.Helper()
	// A tls endpoint needs a tls listener of ours.
	certFile, keyFile := writePair(t, filepath.Dir(caFile), newTestCA(t).issue(t, "127.0.0.1"))
	return parseConfig(t, `
sip:
  listen:
    - {transport: udp, address: "127.0.0.1:5072"}
    - {transport: tls, address: "127.0.0.1:5061", cert_file: `+certFile+`, key_file: `+keyFile+`}
  host: 127.0.0.1
endpoints:
  - {name: meta, kind: whatsapp, host: 127.0.0.2, port: 5061, transport: tls, ca_file: `+caFile+`, media_encryption: none, source_cidrs: [127.0.0.2/32]}
  - {name: pbx, kind: pbx, host: 127.0.0.3, port: 5060, transport: udp, source_cidrs: [127.0.0.3/32]}
numbers:
  - {number: "+15550100001", phone_number_id: "100000000000001", route: {endpoint: pbx, user: "1001"}}
`)
}

// handshake dials a TLS server presenting cert the way sipgo does: the
// client config wagate gives sipgo, cloned with ServerName set to the
// destination host.
func handshake(t *testing.T, peers *tlsPeers, cert tls.Certificate, destHost string) error {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	var p atomic.Pointer[tlsPeers]
	p.Store(peers)
	var failed atomic.Uint64
	conf := clientTLSConfig(&p, &failed).Clone()
	conf.ServerName = destHost
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	c := tls.Client(raw, conf)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	err = c.Handshake()
	// A refused certificate is counted (tls_handshake_failures.outbound).
	if n := failed.Load(); (err != nil) != (n == 1) {
		t.Errorf("handshake error %v, but %d failures counted", err, n)
	}
	return err
}

func TestOutboundTLSVerification(t *testing.T) {
	dir := t.TempDir()
	ca, otherCA := newTestCA(t), newTestCA(t)
	cfg := tlsConfigFor(t, ca.write(t, dir))
	if got := cfg.Endpoint("meta").TLSServerName; got != "wa.meta.vc" {
		t.Fatalf("tls_server_name default %q, want wa.meta.vc", got)
	}
	peers, err := buildTLSPeers(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cert tls.Certificate
		dest string
		ok   bool
	}{
		{"meta by address, cert for wa.meta.vc", ca.issue(t, "wa.meta.vc"), "127.0.0.2", true},
		{"meta by name", ca.issue(t, "wa.meta.vc"), "wa.meta.vc", true},
		{"cert for the IP only is not enough", ca.issue(t, "127.0.0.2"), "127.0.0.2", false},
		{"cert for another name", ca.issue(t, "evil.example"), "127.0.0.2", false},
		{"cert from another CA", otherCA.issue(t, "wa.meta.vc"), "127.0.0.2", false},
		{"record-route to another meta server", ca.issue(t, "wa.meta.vc"), "127.0.0.77", true},
		{"record-route to a stranger", otherCA.issue(t, "127.0.0.77"), "127.0.0.77", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := handshake(t, peers, tt.cert, tt.dest)
			if (err == nil) != tt.ok {
				t.Errorf("handshake: %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestBuildTLSPeersErrors(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	cfg := tlsConfigFor(t, ca.write(t, dir))
	cfg.Endpoints[0].CAFile = filepath.Join(dir, "missing.pem")
	if _, err := buildTLSPeers(cfg); err == nil {
		t.Error("missing ca_file accepted")
	}
	empty := filepath.Join(dir, "empty.pem")
	_ = os.WriteFile(empty, []byte("nothing"), 0o600)
	cfg.Endpoints[0].CAFile = empty
	if _, err := buildTLSPeers(cfg); err == nil {
		t.Error("ca_file without certificates accepted")
	}
}

func TestServerTLSConfig(t *testing.T) {
	ca := newTestCA(t)
	cert := ca.issue(t, "wagate.test")
	lc := &listenerCert{address: "x"}
	lc.cert.Store(&cert)
	conf := serverTLSConfig(lc)
	if len(conf.NextProtos) != 0 {
		t.Errorf("NextProtos %v: Meta rejects ALPN sip", conf.NextProtos)
	}
	if conf.MinVersion < tls.VersionTLS12 || conf.ClientAuth != tls.NoClientCert {
		t.Errorf("MinVersion %x ClientAuth %v", conf.MinVersion, conf.ClientAuth)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	dial := func(conf *tls.Config) (*tls.Conn, error) {
		return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), conf)
	}
	// A client offering ALPN "sip" (as some stacks do) still connects, and
	// nothing is negotiated.
	c, err := dial(&tls.Config{RootCAs: roots, ServerName: "wagate.test", NextProtos: []string{"sip"}})
	if err != nil {
		t.Fatalf("TLS 1.2+ client: %v", err)
	}
	if p := c.ConnectionState().NegotiatedProtocol; p != "" {
		t.Errorf("negotiated ALPN %q", p)
	}
	c.Close()
	if c, err := dial(&tls.Config{RootCAs: roots, ServerName: "wagate.test", MaxVersion: tls.VersionTLS11}); err == nil {
		c.Close()
		t.Error("TLS 1.1 accepted")
	}
	// A new certificate (reload) is served to new connections.
	cert2 := ca.issue(t, "renewed.test")
	lc.cert.Store(&cert2)
	c, err = dial(&tls.Config{RootCAs: roots, ServerName: "renewed.test"})
	if err != nil {
		t.Fatalf("after the certificate changed: %v", err)
	}
	c.Close()
}

// TestTLSHandshakeTimeout: a client that connects and never sends a
// ClientHello is cut off; a normal client still gets through.
func TestTLSHandshakeTimeout(t *testing.T) {
	ca := newTestCA(t)
	cert := ca.issue(t, "wagate.test")
	lc := &listenerCert{address: "x"}
	lc.cert.Store(&cert)
	inner, err := tls.Listen("tcp", "127.0.0.1:0", serverTLSConfig(lc))
	if err != nil {
		t.Fatal(err)
	}
	ln := handshakeListener{Listener: inner, timeout: 200 * time.Millisecond}
	defer ln.Close()
	errs := make(chan error, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 16)
				_, err := c.Read(buf)
				errs <- err
			}()
		}
	}()
	idle, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	select {
	case err := <-errs:
		if err == nil {
			t.Fatal("a connection without a handshake was read from")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a connection without a handshake is still open")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: "wagate.test"})
	if err != nil {
		t.Fatalf("normal client: %v", err)
	}
	if _, err := c.Write([]byte("OPTIONS")); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; err != nil {
		t.Errorf("normal client's read: %v", err)
	}
	c.Close()
}
