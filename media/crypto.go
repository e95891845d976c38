package media

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pion/srtp/v3"
)

// SDES keying (RFC 4568): the a=crypto attribute of RTP/SAVP streams.
//
//	a=crypto:<tag> <suite> inline:<base64 key||salt>[|<lifetime>][|<mki>:<length>][;inline:…] [<session params>]
//
// Only the suites pion/srtp implements are accepted. Lifetimes are parsed
// and checked but not enforced: a call never sends 2^31 packets, and Meta's
// 2^31 is the only value seen in the field.

// srtpSuite is one crypto-suite wagate can key pion/srtp with.
type srtpSuite struct {
	name    string // as RFC 4568/6188/7714 spell it
	profile srtp.ProtectionProfile
	keyLen  int // master key bytes
	saltLen int // master salt bytes
}

// srtpSuites in the order wagate offers them. AES_CM_128_HMAC_SHA1_80 comes
// first because it is the suite Meta is known to take; the others follow
// strongest first, and the 32-bit tag variants last (they trade integrity
// for 6 bytes a packet).
var srtpSuites = []*srtpSuite{
	{"AES_CM_128_HMAC_SHA1_80", srtp.ProtectionProfileAes128CmHmacSha1_80, 16, 14},
	{"AES_256_CM_HMAC_SHA1_80", srtp.ProtectionProfileAes256CmHmacSha1_80, 32, 14},
	{"AEAD_AES_256_GCM", srtp.ProtectionProfileAeadAes256Gcm, 32, 12},
	{"AEAD_AES_128_GCM", srtp.ProtectionProfileAeadAes128Gcm, 16, 12},
	{"AES_CM_128_HMAC_SHA1_32", srtp.ProtectionProfileAes128CmHmacSha1_32, 16, 14},
	{"AES_256_CM_HMAC_SHA1_32", srtp.ProtectionProfileAes256CmHmacSha1_32, 32, 14},
}

// offeredSuites is how many of srtpSuites an offer carries; answers accept
// them all. Each a=crypto line is about 100 bytes, and sipgo refuses UDP
// messages over 1,300 bytes instead of switching to TCP: with all six
// suites, an offer of opus, PCMU and PCMA toward an SDES peer over UDP no
// longer fits.
const offeredSuites = 3

// suiteAliases are spellings some stacks use for the RFC 6188 suites
// (FreeSWITCH wrote AES_CM_256_… before the RFC settled the name). The
// answer echoes the offer's spelling.
var suiteAliases = map[string]string{
	"AES_CM_256_HMAC_SHA1_80": "AES_256_CM_HMAC_SHA1_80",
	"AES_CM_256_HMAC_SHA1_32": "AES_256_CM_HMAC_SHA1_32",
}

func lookupSuite(name string) *srtpSuite {
	if canon, ok := suiteAliases[name]; ok {
		name = canon
	}
	for _, s := range srtpSuites {
		if s.name == name {
			return s
		}
	}
	return nil
}

const (
	// maxMKILen is RFC 4568's limit on the MKI length in bytes.
	maxMKILen = 128
	// maxCryptoKeys bounds the key-params of one attribute: several keys
	// are only meaningful with MKIs, and nobody sends more than a few.
	maxCryptoKeys = 8
	// maxLifetimeExp is 2^48, SRTP's own limit (RFC 3711 §9.2).
	maxLifetimeExp = 48
	// defaultReplayWindow is the SRTP/SRTCP replay window in packets; a
	// peer's WSH session parameter may widen it up to maxReplayWindow.
	defaultReplayWindow = 256
	maxReplayWindow     = 4096
)

// errUnsupportedCrypto marks an a=crypto line that is well formed but asks
// for something wagate does not do (a suite pion lacks, a session
// parameter such as UNENCRYPTED_SRTP): the line is skipped, not the SDP
// rejected, unless no line is usable.
var errUnsupportedCrypto = errors.New("unsupported")

// keyMaterial is one master key and salt, with its MKI as sent on the wire
// (big-endian, mkiLen bytes; nil without MKI).
type keyMaterial struct {
	key, salt []byte
	mki       []byte
}

// sdesKey is the keying of one direction of one leg: the peer's (to
// decrypt what it sends) or ours (to encrypt what we send).
type sdesKey struct {
	tag   int    // the a=crypto tag
	name  string // the suite as written in the SDP
	suite *srtpSuite
	keys  []keyMaterial // at least one; all with MKI when more than one
	// window is the replay window (WSH, defaultReplayWindow if absent).
	window int
}

// equal reports whether k and o key the same SRTP session: a repeated
// answer (183 then 200) must not reset SRTP state.
func (k *sdesKey) equal(o *sdesKey) bool {
	if k == nil || o == nil {
		return k == o
	}
	if k.suite != o.suite || len(k.keys) != len(o.keys) {
		return false
	}
	for i := range k.keys {
		a, b := k.keys[i], o.keys[i]
		if !bytes.Equal(a.key, b.key) || !bytes.Equal(a.salt, b.salt) || !bytes.Equal(a.mki, b.mki) {
			return false
		}
	}
	return true
}

// parseCrypto parses the value of an a=crypto attribute (everything after
// "a=crypto:"). Errors wrap errUnsupportedCrypto for a valid line wagate
// cannot use.
func parseCrypto(value string) (*sdesKey, error) {
	f := strings.Fields(value)
	if len(f) < 3 {
		return nil, fmt.Errorf("a=crypto %q: want <tag> <suite> inline:<key>", value)
	}
	if len(f[0]) > 9 {
		return nil, fmt.Errorf("a=crypto tag %q: more than 9 digits", f[0])
	}
	tag, err := strconv.Atoi(f[0])
	if err != nil || tag < 0 || f[0][0] == '+' || f[0][0] == '-' {
		return nil, fmt.Errorf("a=crypto tag %q is not a number", f[0])
	}
	k := &sdesKey{tag: tag, name: f[1], window: defaultReplayWindow}
	if k.suite = lookupSuite(f[1]); k.suite == nil {
		if !isToken(f[1]) {
			return nil, fmt.Errorf("a=crypto suite %q is malformed", f[1])
		}
		return nil, fmt.Errorf("a=crypto suite %s: %w", f[1], errUnsupportedCrypto)
	}
	params := strings.Split(f[2], ";")
	if len(params) > maxCryptoKeys {
		return nil, fmt.Errorf("a=crypto: %d keys, at most %d", len(params), maxCryptoKeys)
	}
	for _, p := range params {
		km, err := parseKeyParam(p, k.suite)
		if err != nil {
			return nil, err
		}
		k.keys = append(k.keys, km)
	}
	if len(k.keys) > 1 {
		// Several master keys are told apart by their MKI alone.
		seen := map[string]bool{}
		for _, km := range k.keys {
			if km.mki == nil || len(km.mki) != len(k.keys[0].mki) {
				return nil, fmt.Errorf("a=crypto: %d keys need MKIs of one length", len(k.keys))
			}
			if seen[string(km.mki)] {
				return nil, fmt.Errorf("a=crypto: MKI repeated")
			}
			seen[string(km.mki)] = true
		}
	}
	for _, sp := range f[3:] {
		if err := k.sessionParam(sp); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// parseKeyParam parses "inline:<key||salt>[|lifetime][|mki:len]".
func parseKeyParam(p string, suite *srtpSuite) (keyMaterial, error) {
	method, info, ok := strings.Cut(p, ":")
	if !ok || !strings.EqualFold(method, "inline") {
		return keyMaterial{}, fmt.Errorf("a=crypto key method %q: only inline is defined", method)
	}
	parts := strings.Split(info, "|")
	if len(parts) > 3 {
		return keyMaterial{}, fmt.Errorf("a=crypto key %q: too many |-fields", info)
	}
	raw, err := decodeKeySalt(parts[0])
	if err != nil {
		return keyMaterial{}, err
	}
	if want := suite.keyLen + suite.saltLen; len(raw) != want {
		return keyMaterial{}, fmt.Errorf("a=crypto %s key||salt is %d bytes, want %d", suite.name, len(raw), want)
	}
	km := keyMaterial{key: raw[:suite.keyLen:suite.keyLen], salt: raw[suite.keyLen:]}
	rest := parts[1:]
	// The lifetime comes first when present; only the MKI has a colon.
	if len(rest) > 0 && !strings.Contains(rest[0], ":") {
		if err := checkLifetime(rest[0]); err != nil {
			return keyMaterial{}, err
		}
		rest = rest[1:]
	}
	if len(rest) > 0 {
		if km.mki, err = parseMKI(rest[0]); err != nil {
			return keyMaterial{}, err
		}
		rest = rest[1:]
	}
	if len(rest) > 0 {
		return keyMaterial{}, fmt.Errorf("a=crypto key %q: unexpected field %q", info, rest[0])
	}
	return km, nil
}

// decodeKeySalt decodes the base64 key||salt, padded or not (both are seen:
// RFC 4568 says padded, several stacks omit the padding).
func decodeKeySalt(s string) ([]byte, error) {
	if s == "" {
		return nil, fmt.Errorf("a=crypto: empty key")
	}
	enc := base64.StdEncoding
	if !strings.HasSuffix(s, "=") && len(s)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	b, err := enc.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("a=crypto key is not base64: %v", err)
	}
	return b, nil
}

// checkLifetime accepts "2^N" (1 <= N <= 48) or a decimal packet count.
func checkLifetime(s string) error {
	if exp, ok := strings.CutPrefix(s, "2^"); ok {
		n, err := strconv.Atoi(exp)
		if err != nil || n < 1 || n > maxLifetimeExp || exp[0] == '+' {
			return fmt.Errorf("a=crypto lifetime %q: want 2^1..2^%d", s, maxLifetimeExp)
		}
		return nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 || n > 1<<maxLifetimeExp {
		return fmt.Errorf("a=crypto lifetime %q: want a packet count or 2^N", s)
	}
	return nil
}

// parseMKI parses "<value>:<length>" into the MKI as it appears in packets:
// value big-endian in length bytes.
func parseMKI(s string) ([]byte, error) {
	vs, ls, _ := strings.Cut(s, ":")
	length, err := strconv.Atoi(ls)
	if err != nil || length < 1 || length > maxMKILen || ls[0] == '+' {
		return nil, fmt.Errorf("a=crypto MKI %q: length must be 1..%d bytes", s, maxMKILen)
	}
	if vs == "" || vs[0] == '+' {
		return nil, fmt.Errorf("a=crypto MKI %q: value is not a number", s)
	}
	v, err := strconv.ParseUint(vs, 10, 64)
	if err != nil {
		// RFC 4568 allows values up to 2^(8*128); wagate handles 64 bits,
		// which is every MKI seen in practice (Meta sends 1:1).
		return nil, fmt.Errorf("a=crypto MKI value %q: %w (only values below 2^64)", vs, errUnsupportedCrypto)
	}
	if length < 8 && v >= 1<<(8*length) {
		return nil, fmt.Errorf("a=crypto MKI %q: value does not fit in %d bytes", s, length)
	}
	mki := make([]byte, length)
	for i := length - 1; i >= 0 && v > 0; i-- {
		mki[i] = byte(v)
		v >>= 8
	}
	return mki, nil
}

// sessionParam applies one RFC 4568 §6.3 session parameter.
func (k *sdesKey) sessionParam(sp string) error {
	name, val, _ := strings.Cut(sp, "=")
	switch name {
	case "KDR":
		// A key derivation rate other than 0 re-derives session keys
		// mid-stream; pion/srtp does not.
		if val != "0" {
			return fmt.Errorf("a=crypto KDR=%s: %w (only 0)", val, errUnsupportedCrypto)
		}
	case "WSH":
		n, err := strconv.Atoi(val)
		if err != nil || n < 64 {
			return fmt.Errorf("a=crypto WSH=%q: want a window of at least 64", val)
		}
		k.window = max(k.window, min(n, maxReplayWindow))
	case "FEC_ORDER":
		if val != "FEC_SRTP" && val != "SRTP_FEC" {
			return fmt.Errorf("a=crypto FEC_ORDER=%q", val)
		}
	case "UNENCRYPTED_SRTP", "UNENCRYPTED_SRTCP", "UNAUTHENTICATED_SRTP", "FEC_KEY":
		// Downgrades (and keys for an FEC stream we never use): refusing
		// them keeps every SDES leg encrypted and authenticated.
		return fmt.Errorf("a=crypto %s: %w", name, errUnsupportedCrypto)
	default:
		// RFC 4568 §6.3: unknown parameters starting with "-" may be
		// ignored; any other must make the line unusable.
		if !strings.HasPrefix(sp, "-") {
			return fmt.Errorf("a=crypto session parameter %q: %w", sp, errUnsupportedCrypto)
		}
	}
	return nil
}

// newLocalKey returns a fresh key of suite for our side of a leg, without
// MKI or lifetime (the defaults: no MKI, 2^48 packets).
func newLocalKey(tag int, suite *srtpSuite, name string) (*sdesKey, error) {
	raw := make([]byte, suite.keyLen+suite.saltLen)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("media: SRTP key: %w", err)
	}
	if name == "" {
		name = suite.name
	}
	return &sdesKey{
		tag: tag, name: name, suite: suite, window: defaultReplayWindow,
		keys: []keyMaterial{{key: raw[:suite.keyLen:suite.keyLen], salt: raw[suite.keyLen:]}},
	}, nil
}

// attribute returns k as the value of an a=crypto line (our own keys only:
// first key, no lifetime, MKI if it has one).
func (k *sdesKey) attribute() string {
	km := k.keys[0]
	raw := make([]byte, 0, len(km.key)+len(km.salt))
	raw = append(append(raw, km.key...), km.salt...)
	s := fmt.Sprintf("%d %s inline:%s", k.tag, k.name, base64.StdEncoding.EncodeToString(raw))
	if km.mki != nil {
		var v uint64
		for _, b := range km.mki {
			v = v<<8 | uint64(b)
		}
		s += fmt.Sprintf("|%d:%d", v, len(km.mki))
	}
	return s
}

// pickCrypto returns the first usable a=crypto line of an offer, in the
// offer's order (the offerer's preference). The error says why no line
// was usable.
func pickCrypto(attrs []Attribute) (*sdesKey, error) {
	var reasons []string
	for _, a := range attrs {
		if a.Key != "crypto" {
			continue
		}
		k, err := parseCrypto(a.Value)
		if err == nil {
			return k, nil
		}
		reasons = append(reasons, err.Error())
	}
	if reasons == nil {
		return nil, errors.New("no a=crypto line")
	}
	return nil, fmt.Errorf("no usable a=crypto line (%s)", strings.Join(reasons, "; "))
}
