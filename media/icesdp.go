package media

import (
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"hash"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/pion/ice/v4"
)

// The SDP of a dtls leg (RFC 8839 ICE, RFC 8842 and 5763 DTLS-SRTP):
//
//	m=audio 9 UDP/TLS/RTP/SAVPF 111 126
//	a=ice-ufrag:… a=ice-pwd:… [a=ice-lite at session level]
//	a=fingerprint:sha-256 AB:CD:… a=setup:actpass|active|passive
//	a=candidate:… a=rtcp-mux
//
// What a peer sends here is read by wagate's own code: a malformed value
// refuses the offer or answer with 488 (ErrBadSDP, its text the Warning).

// The transports of a dtls leg. Offers toward a dtls peer use the WebRTC
// one (SAVPF, Meta's media stack is WebRTC's); both are accepted.
const (
	dtlsProtoF = "UDP/TLS/RTP/SAVPF"
	dtlsProto  = "UDP/TLS/RTP/SAVP"
)

// Bounds on what a peer's SDP may carry.
const (
	maxCandidates = 32
	// RFC 8839 §5.4: ufrag 4–256, pwd 22–256 ice-chars.
	minUfrag, minPwd, maxCred = 4, 22, 256
)

// Setup roles (RFC 4145 a=setup) as DTLS uses them.
const (
	setupActPass = "actpass"
	setupActive  = "active"
	setupPassive = "passive"
)

// fingerprint is one a=fingerprint: a hash function and the certificate's
// digest under it.
type fingerprint struct {
	hash string // lower case, e.g. "sha-256"
	sum  []byte
}

// fingerprintHashes are the hash functions RFC 8122 lists that wagate
// checks, with their digest sizes. md5 and md2 are refused as too weak.
var fingerprintHashes = map[string]struct {
	size int
	new  func() hash.Hash
}{
	"sha-1":   {20, sha1.New},
	"sha-224": {28, sha256.New224},
	"sha-256": {32, sha256.New},
	"sha-384": {48, sha512.New384},
	"sha-512": {64, sha512.New},
}

// matches reports whether der, a certificate, has this fingerprint.
func (f fingerprint) matches(der []byte) bool {
	h, ok := fingerprintHashes[f.hash]
	if !ok {
		return false
	}
	d := h.new()
	d.Write(der)
	return subtle.ConstantTimeCompare(d.Sum(nil), f.sum) == 1
}

// secureParams is what a peer's SDP says about its ICE agent and DTLS
// endpoint.
type secureParams struct {
	ufrag, pwd   string
	lite         bool // a=ice-lite: the peer does no checks; we control
	fingerprints []fingerprint
	setup        string // actpass (offers only), active or passive
	candidates   []ice.Candidate
}

// parseSecure reads the ICE and DTLS attributes of stream m of d, an
// offer or an answer. Session-level values apply where the stream has
// none. Errors wrap ErrBadSDP and say what was wrong.
func parseSecure(d *Description, m *Media, offer bool) (*secureParams, error) {
	p := &secureParams{}
	// RFC 8839 puts a=ice-lite at session level; it is taken on the
	// stream too, as some agents write it there. Missed, wagate would be
	// the controlled agent waiting for a nomination a lite peer never
	// sends, and the call would end at the handshake timeout.
	for _, attrs := range [][]Attribute{d.Attributes, m.Attributes} {
		for _, a := range attrs {
			if a.Key == "ice-lite" {
				p.lite = true
			}
		}
	}
	var err error
	if p.ufrag, err = oneAttr(d, m, "ice-ufrag"); err != nil {
		return nil, err
	}
	if p.pwd, err = oneAttr(d, m, "ice-pwd"); err != nil {
		return nil, err
	}
	if err := checkCred("ice-ufrag", p.ufrag, minUfrag); err != nil {
		return nil, err
	}
	if err := checkCred("ice-pwd", p.pwd, minPwd); err != nil {
		return nil, err
	}
	if p.setup, err = oneAttr(d, m, "setup"); err != nil {
		return nil, err
	}
	switch p.setup = strings.ToLower(strings.TrimSpace(p.setup)); {
	case p.setup == "" && offer:
		p.setup = setupActPass // RFC 5763 §5: the offerer's is actpass
	case p.setup == "":
		p.setup = setupActive // RFC 4145 §4: the default
	case p.setup == setupActPass && !offer:
		return nil, badSDP(0, "a=setup:actpass in an answer (RFC 5763: active or passive)")
	case p.setup != setupActPass && p.setup != setupActive && p.setup != setupPassive:
		return nil, badSDP(0, "a=setup:%s: want actpass, active or passive", clip(p.setup))
	}
	if p.fingerprints, err = parseFingerprints(d, m); err != nil {
		return nil, err
	}
	if p.candidates, err = parseCandidates(m); err != nil {
		return nil, err
	}
	return p, nil
}

// oneAttr returns the value of attribute key on stream m, else at session
// level; written twice at one level it is malformed.
func oneAttr(d *Description, m *Media, key string) (string, error) {
	for _, attrs := range [][]Attribute{m.Attributes, d.Attributes} {
		val, n := "", 0
		for _, a := range attrs {
			if a.Key == key {
				val, n = a.Value, n+1
			}
		}
		if n > 1 {
			return "", badSDP(0, "a=%s written %d times", key, n)
		}
		if n == 1 {
			return val, nil
		}
	}
	return "", nil
}

// checkCred checks an ICE username fragment or password: min..256
// ice-chars (ALPHA / DIGIT / "+" / "/").
func checkCred(key, v string, minLen int) error {
	if v == "" {
		return badSDP(0, "no a=%s (a dtls leg needs ICE credentials)", key)
	}
	if len(v) < minLen || len(v) > maxCred {
		return badSDP(0, "a=%s is %d characters, want %d–%d", key, len(v), minLen, maxCred)
	}
	for i := 0; i < len(v); i++ {
		if !isICEChar(v[i]) {
			return badSDP(0, "a=%s has a character outside A-Z a-z 0-9 + /", key)
		}
	}
	return nil
}

func isICEChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '/'
}

// parseFingerprints reads the stream's a=fingerprint lines, else the
// session's. At least one must use a hash wagate checks; lines with
// other hash functions are skipped, malformed ones refuse the SDP.
func parseFingerprints(d *Description, m *Media) ([]fingerprint, error) {
	var out []fingerprint
	var skipped []string
	for _, attrs := range [][]Attribute{m.Attributes, d.Attributes} {
		for _, a := range attrs {
			if a.Key != "fingerprint" {
				continue
			}
			fp, err := parseFingerprint(a.Value)
			if err != nil {
				return nil, err
			}
			if _, ok := fingerprintHashes[fp.hash]; !ok {
				skipped = append(skipped, fp.hash)
				continue
			}
			if len(out) == 8 {
				return nil, badSDP(0, "more than 8 a=fingerprint lines")
			}
			out = append(out, fp)
		}
		if out != nil || skipped != nil {
			break // the stream's lines hide the session's
		}
	}
	switch {
	case out != nil:
		return strongest(out), nil
	case skipped != nil:
		return nil, badSDP(0, "a=fingerprint only with hash %s (want sha-1, sha-224, sha-256, sha-384 or sha-512)", clip(strings.Join(skipped, ",")))
	}
	return nil, badSDP(0, "no a=fingerprint (a dtls leg needs the peer's certificate fingerprint)")
}

// strongest keeps the fingerprints of the strongest hash function among
// fps (RFC 8122 §5: the certificate must match one of those; a match under
// a weaker hash the SDP also lists does not do). Digest size orders the
// functions wagate checks.
func strongest(fps []fingerprint) []fingerprint {
	best := 0
	for _, f := range fps {
		best = max(best, fingerprintHashes[f.hash].size)
	}
	return slices.DeleteFunc(fps, func(f fingerprint) bool { return fingerprintHashes[f.hash].size != best })
}

// parseFingerprint parses "<hash> <hex pairs joined by colons>".
func parseFingerprint(v string) (fingerprint, error) {
	f := strings.Fields(v)
	if len(f) != 2 {
		return fingerprint{}, badSDP(0, "a=fingerprint %q: want <hash function> <hex>", clip(v))
	}
	fp := fingerprint{hash: strings.ToLower(f[0])}
	if !isToken(fp.hash) {
		return fingerprint{}, badSDP(0, "a=fingerprint hash function %q is malformed", clip(f[0]))
	}
	hexs := f[1]
	if len(hexs) > 3*64 || len(hexs)%3 != 2 {
		return fingerprint{}, badSDP(0, "a=fingerprint %s value is not hex pairs joined by colons", fp.hash)
	}
	fp.sum = make([]byte, 0, (len(hexs)+1)/3)
	for i := 0; i < len(hexs); i += 3 {
		if i+2 < len(hexs) && hexs[i+2] != ':' {
			return fingerprint{}, badSDP(0, "a=fingerprint %s value is not hex pairs joined by colons", fp.hash)
		}
		b, err := hex.DecodeString(hexs[i : i+2])
		if err != nil {
			return fingerprint{}, badSDP(0, "a=fingerprint %s value is not hex pairs joined by colons", fp.hash)
		}
		fp.sum = append(fp.sum, b[0])
	}
	if h, ok := fingerprintHashes[fp.hash]; ok && len(fp.sum) != h.size {
		return fingerprint{}, badSDP(0, "a=fingerprint %s is %d bytes, want %d", fp.hash, len(fp.sum), h.size)
	}
	return fp, nil
}

// parseCandidates reads the stream's a=candidate lines. A malformed line
// refuses the SDP; well-formed candidates wagate cannot use (TCP, RTCP's
// component 2, mDNS names, another address family than the leg's) are
// skipped. With none left, the stream's c= and m= address is the one
// candidate (RFC 8839 §4.2.1.1: the default destination).
func parseCandidates(m *Media) ([]ice.Candidate, error) {
	var out []ice.Candidate
	n := 0
	for _, a := range m.Attributes {
		if a.Key != "candidate" {
			continue
		}
		if n++; n > maxCandidates {
			return nil, badSDP(0, "more than %d a=candidate lines", maxCandidates)
		}
		c, err := ice.UnmarshalCandidate(a.Value)
		if err != nil {
			return nil, badSDP(0, "a=candidate %q: %v", clip(a.Value), err)
		}
		if c.Component() != ice.ComponentRTP || !strings.EqualFold(c.NetworkType().NetworkShort(), "udp") {
			continue
		}
		ip, err := netip.ParseAddr(c.Address())
		if err != nil || ip.IsUnspecified() || ip.IsMulticast() || c.Port() == 0 {
			continue // a name (mDNS) or an address no packet can reach
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		if addr := mediaAddr(m); addr.IsValid() {
			c, err := ice.NewCandidateHost(&ice.CandidateHostConfig{Network: "udp", Address: addr.Addr().String(), Port: int(addr.Port()), Component: ice.ComponentRTP})
			if err == nil {
				out = append(out, c)
			}
		}
	}
	if len(out) == 0 {
		return nil, badSDP(0, "no usable ICE candidate (UDP, component 1, an IP address)")
	}
	return out, nil
}

// clip shortens a peer's value for an error message (which becomes a
// Warning header and a log line).
func clip(s string) string {
	if len(s) > 48 {
		s = s[:48] + "…"
	}
	return strconv.Quote(s)[1 : len(strconv.Quote(s))-1]
}

// iceCredentials makes our ufrag and password for a dtls leg: random
// ice-chars, 8 and 24 long (64 and 144 bits; RFC 8445 asks 24 and 128).
func iceCredentials() (ufrag, pwd string) {
	const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("media: crypto/rand: %v", err)) // never fails on Linux
	}
	for i := range b {
		b[i] = chars[b[i]&63]
	}
	return string(b[:8]), string(b[8:])
}

// secureAttributes are the attributes of our side of a dtls leg: ICE
// credentials, certificate fingerprint, setup role, candidates.
func secureAttributes(ufrag, pwd, fp, setup string, cands []string) []Attribute {
	attrs := []Attribute{
		{Key: "ice-ufrag", Value: ufrag},
		{Key: "ice-pwd", Value: pwd},
		{Key: "fingerprint", Value: fp},
		{Key: "setup", Value: setup},
	}
	for _, c := range cands {
		attrs = append(attrs, Attribute{Key: "candidate", Value: c})
	}
	return append(attrs, Attribute{Key: "end-of-candidates"})
}

// sameAssociation checks that a peer's re-offer on a keyed (or keying)
// leg keeps its ICE credentials, its certificate and the DTLS roles
// (RFC 8842 §5.5: actpass, or the peer's current role). Anything else
// is an ICE restart or a new DTLS association, which wagate does not
// run mid-call; the error wraps ErrBadSDP.
func (s *secureLeg) sameAssociation(d *Description, m *Media) error {
	p, err := parseSecure(d, m, true)
	if err != nil {
		return err
	}
	if s.peer == nil {
		return badSDP(0, "the dtls leg has no agreed ICE and DTLS parameters yet")
	}
	if p.ufrag != s.peer.ufrag || p.pwd != s.peer.pwd {
		return badSDP(0, "new a=ice-ufrag/a=ice-pwd (an ICE restart) is not supported mid-call")
	}
	same := false
	for _, f := range p.fingerprints {
		for _, g := range s.peer.fingerprints {
			if f.hash == g.hash && subtle.ConstantTimeCompare(f.sum, g.sum) == 1 {
				same = true
			}
		}
	}
	if !same {
		return badSDP(0, "new a=fingerprint (a new DTLS association) is not supported mid-call")
	}
	if p.setup == setupActive && s.client || p.setup == setupPassive && !s.client {
		return badSDP(0, "a=setup:%s swaps the DTLS roles (a new DTLS association) mid-call", p.setup)
	}
	return nil
}
