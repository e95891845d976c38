package media

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// certFile is the DTLS certificate and key, PEM, in the directory given to
// LoadOrCreateCertificate.
const certFile = "dtls-cert.pem"

// certValidity is how long a generated certificate is valid. Peers check
// its fingerprint against the SDP, not its dates, but some stacks refuse
// an expired one, so it is made to outlive any deployment.
const certValidity = 20 * 365 * 24 * time.Hour

// Certificate is wagate's DTLS identity: an ECDSA P-256 key and a
// self-signed certificate, whose SHA-256 fingerprint goes in every SDP of
// a dtls leg (RFC 8122). It is kept across restarts so that the
// fingerprint an operator sees in captures stays the same.
type Certificate struct {
	tls tls.Certificate
	// Fingerprint is "sha-256 AB:CD:…", the value of a=fingerprint.
	Fingerprint string
	// Path is the file it was read from or written to.
	Path string
}

// LoadOrCreateCertificate reads the DTLS certificate from dir, or makes
// one (ECDSA P-256, self-signed) and writes it there (mode 0600) when the
// file does not exist. A file that exists but does not hold an ECDSA
// P-256 certificate with its key is an error, not replaced: a peer may
// have pinned its fingerprint.
func LoadOrCreateCertificate(dir string) (*Certificate, error) {
	path := filepath.Join(dir, certFile)
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		c, err := parseCertificate(data)
		if err != nil {
			return nil, fmt.Errorf("media: DTLS certificate %s: %w", path, err)
		}
		c.Path = path
		return c, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("media: DTLS certificate: %w", err)
	}
	data, err = newCertificatePEM()
	if err != nil {
		return nil, fmt.Errorf("media: DTLS certificate: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("media: DTLS certificate: %w", err)
	}
	// Written beside and renamed, so a crash never leaves half a file
	// that the next start would refuse.
	tmp, err := os.CreateTemp(dir, certFile+".*")
	if err != nil {
		return nil, fmt.Errorf("media: DTLS certificate: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("media: DTLS certificate: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("media: DTLS certificate: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("media: DTLS certificate: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, fmt.Errorf("media: DTLS certificate: %w", err)
	}
	c, err := parseCertificate(data)
	if err != nil {
		return nil, fmt.Errorf("media: DTLS certificate: %w", err)
	}
	c.Path = path
	return c, nil
}

// NewCertificate makes a fresh certificate in memory (tests, and
// embedders without a data directory).
func NewCertificate() (*Certificate, error) {
	data, err := newCertificatePEM()
	if err != nil {
		return nil, fmt.Errorf("media: DTLS certificate: %w", err)
	}
	return parseCertificate(data)
}

func newCertificatePEM() ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "wagate"},
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})...), nil
}

func parseCertificate(data []byte) (*Certificate, error) {
	tc, err := tls.X509KeyPair(data, data)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(tc.Certificate[0])
	if err != nil {
		return nil, err
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, errors.New("not an ECDSA P-256 certificate (Meta requires ECDSA)")
	}
	tc.Leaf = leaf
	sum := sha256.Sum256(tc.Certificate[0])
	return &Certificate{tls: tc, Fingerprint: "sha-256 " + hexColons(sum[:])}, nil
}

// hexColons writes b as upper-case hex pairs joined by colons (RFC 8122).
func hexColons(b []byte) string {
	const digits = "0123456789ABCDEF"
	var sb strings.Builder
	sb.Grow(3 * len(b))
	for i, c := range b {
		if i > 0 {
			sb.WriteByte(':')
		}
		sb.WriteByte(digits[c>>4])
		sb.WriteByte(digits[c&15])
	}
	return sb.String()
}
