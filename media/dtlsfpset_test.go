package media

import (
	"crypto/sha1"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// sha1Fingerprint is the a=fingerprint value of der under sha-1.
func sha1Fingerprint(der []byte) string {
	sum := sha1.Sum(der)
	hexs := make([]string, len(sum))
	for i, b := range sum {
		hexs[i] = fmt.Sprintf("%02X", b)
	}
	return "sha-1 " + strings.Join(hexs, ":")
}

// TestDTLSFingerprintStrongestHash: the peer's SDP carries a sha-256
// fingerprint that is not its certificate's, and a sha-1 one that is.
// RFC 8122 §5: the certificate is checked against the fingerprints of
// the strongest hash function offered (here sha-256), so the call ends
// with ErrDTLSFingerprint instead of keying on the weaker hash alone.
func TestDTLSFingerprintStrongestHash(t *testing.T) {
	other, err := NewCertificate()
	if err != nil {
		t.Fatal(err)
	}
	fp := regexp.MustCompile(`a=fingerprint:sha-256 [0-9A-F:]+\r\n`)
	m := newDTLSManager(t, 8, 5*time.Second, 30*time.Second)
	cert, err := m.dtlsCert() // both bridges' certificate
	if err != nil {
		t.Fatal(err)
	}
	mixed := func(b []byte) []byte {
		return fp.ReplaceAll(b, []byte("a=fingerprint:"+other.Fingerprint+"\r\na=fingerprint:"+sha1Fingerprint(cert.tls.Certificate[0])+"\r\n"))
	}
	s := newB2B(t, m, nil, mixed) // X, the server, checks Y's answer
	select {
	case err := <-s.failX:
		if !errors.Is(err, ErrDTLSFingerprint) {
			t.Fatalf("ended with %v, want a fingerprint mismatch", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("keyed on the sha-1 fingerprint while the sha-256 one did not match; DTLS %+v", m.Stats().DTLS)
	}
	if flow(t, s.p1, s.xA, s.p2, 300*time.Millisecond) {
		t.Fatal("media passed a leg whose strongest fingerprint did not match")
	}
	s.x.Close()
	s.y.Close()
	checkNoPionGoroutines(t)
}

// TestStrongestFingerprints: of sha-1, sha-256 and sha-384 lines (in any
// order), only the sha-384 ones are kept for the check.
func TestStrongestFingerprints(t *testing.T) {
	line := func(h string, n int) string {
		return "a=fingerprint:" + h + " " + strings.Repeat("AB:", n-1) + "AB\r\n"
	}
	body := strings.Replace(metaDTLSOffer, "a=fingerprint:", line("sha-1", 20)+line("sha-384", 48)+line("sha-256", 32)+line("sha-384", 48)+"a=fingerprint:", 1)
	d, err := ParseSDP([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseSecure(d, &d.Media[0], true)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.fingerprints) != 2 || p.fingerprints[0].hash != "sha-384" || p.fingerprints[1].hash != "sha-384" {
		t.Fatalf("kept %+v, want the two sha-384 fingerprints", p.fingerprints)
	}
}
