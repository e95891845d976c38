package configs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCert writes a throwaway self-signed certificate and its key as PEM
// files named name.crt and name.key in dir.
func writeCert(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestTLSConfigAccepted(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir, "wagate.test")
	ca, _ := writeCert(t, dir, "ca.test")
	c := mustParse(t, fmt.Sprintf(`
sip:
  listen:
    - {transport: udp, address: "127.0.0.1:5072"}
    - {transport: tcp, address: "127.0.0.1:5072"}
    - {transport: TLS, address: "127.0.0.1:5061", cert_file: %q, key_file: %q}
endpoints:
  - name: meta
    kind: whatsapp
    host: 127.0.0.2
    transport: tls
    ca_file: %q
    source_cidrs: [127.0.0.2]
`, cert, key, ca))
	ls := c.TLSListeners()
	if len(ls) != 1 || ls[0] != (Listener{Transport: "tls", Address: "127.0.0.1:5061", CertFile: cert, KeyFile: key}) {
		t.Errorf("TLSListeners() = %+v", ls)
	}
	if e := c.Endpoint("meta"); e.CAFile != ca || e.Port != 5061 || e.TLSServerName != "wa.meta.vc" {
		t.Errorf("meta = %+v", *e)
	}
}

// TestFileProblems covers the checks that look at files named in the
// config; the files are made in a temporary directory.
func TestFileProblems(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir, "wagate.test")
	_, otherKey := writeCert(t, dir, "other.test")
	missing := filepath.Join(dir, "missing.pem")
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	listener := func(certFile, keyFile, marked string) string {
		src := "\nsip:\n  listen:\n    - transport: tls\n      address: \"127.0.0.1:5061\"\n"
		for _, kv := range [][2]string{{"cert_file", certFile}, {"key_file", keyFile}} {
			if kv[1] == "" {
				continue
			}
			src += fmt.Sprintf("      %s: %q", kv[0], kv[1])
			if kv[0] == marked {
				src += " " + marker
			}
			src += "\n"
		}
		return src
	}
	caEndpoint := func(caFile string) string {
		return fmt.Sprintf(`
sip:
  listen:
    - {transport: tls, address: "127.0.0.1:5061", cert_file: %q, key_file: %q}
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    transport: tls
    ca_file: %q %s
    source_cidrs: [10.0.0.1]
`, cert, key, caFile, marker)
	}

	tests := []struct {
		name string
		yaml string
		want string
	}{
		{"tls listener without cert_file", fmt.Sprintf(`
sip:
  listen:
    - transport: tls %s
      address: "127.0.0.1:5061"
      key_file: %q
`, marker, key), "sip.listen[0].cert_file: a tls listener needs cert_file"},
		{"tls listener without key_file", fmt.Sprintf(`
sip:
  listen:
    - transport: tls %s
      address: "127.0.0.1:5061"
      cert_file: %q
`, marker, cert), "sip.listen[0].key_file: a tls listener needs key_file"},
		{"cert_file missing", listener(missing, key, "cert_file"),
			fmt.Sprintf("sip.listen[0].cert_file: %s does not exist", missing)},
		{"key_file missing", listener(cert, missing, "key_file"),
			fmt.Sprintf("sip.listen[0].key_file: %s does not exist", missing)},
		{"cert_file is a directory", listener(dir, key, "cert_file"),
			fmt.Sprintf("sip.listen[0].cert_file: %s is a directory, not a file", dir)},
		{"cert_file relative", listener("no-such-dir/cert.pem", key, "cert_file"),
			"no-such-dir/cert.pem does not exist (relative to the working directory "},
		{"key does not match cert", listener(cert, otherKey, "cert_file"),
			fmt.Sprintf("sip.listen[0].cert_file: %s and %s are not a usable certificate and key: ", cert, otherKey)},
		{"cert_file not PEM", listener(notPEM, key, "cert_file"), "are not a usable certificate and key"},
		{"ca_file missing", caEndpoint(missing), fmt.Sprintf("endpoints[0].ca_file: %s does not exist", missing)},
		{"ca_file not PEM", caEndpoint(notPEM), fmt.Sprintf("endpoints[0].ca_file: %s holds no PEM certificate", notPEM)},
		{"tls and tcp on one port", fmt.Sprintf(`
sip:
  listen:
    - {transport: tcp, address: "127.0.0.1:5072"}
    - {transport: udp, address: "127.0.0.1:5072"}
    - {transport: tls, address: "127.0.0.1:5072", cert_file: %q, key_file: %q} %s
`, cert, key, marker), "sip.listen[2]: tls 127.0.0.1:5072 takes the port of the tcp listener at sip.listen[0]; tcp and tls need different ports"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantOneProblem(t, tt.yaml, tt.want) })
	}

	t.Run("unreadable key_file", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root reads any file")
		}
		locked := filepath.Join(t.TempDir(), "locked.key")
		if err := os.WriteFile(locked, []byte("x"), 0o000); err != nil {
			t.Fatal(err)
		}
		wantOneProblem(t, listener(cert, locked, "key_file"),
			fmt.Sprintf("sip.listen[0].key_file: %s cannot be read: permission denied", locked))
	})

	t.Run("skipFiles", func(t *testing.T) {
		src := strings.NewReplacer(cert, missing, key, missing).Replace(caEndpoint(missing))
		if _, err := parse([]byte(src), "wagate.yaml", parseOptions{skipFiles: true}); err != nil {
			t.Errorf("parse with skipFiles:\n%v", err)
		}
	})
}
