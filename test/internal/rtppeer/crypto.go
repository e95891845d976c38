package rtppeer

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/pion/srtp/v3"
)

// SuiteAES128SHA1_80 is the SDES crypto suite WhatsApp uses.
const SuiteAES128SHA1_80 = "AES_CM_128_HMAC_SHA1_80"

// SuiteAES128GCM is the AEAD suite a DTLS-SRTP handshake may agree on.
const SuiteAES128GCM = "AEAD_AES_128_GCM"

// Crypto is one SDES a=crypto line (or a DTLS-SRTP direction's keys):
// tag, suite and master key || salt.
type Crypto struct {
	Tag   int
	Suite string
	Key   []byte // 16-byte master key followed by the master salt (14 bytes, 12 for GCM)
}

// NewCrypto returns a fresh random AES_CM_128_HMAC_SHA1_80 key with tag 1.
func NewCrypto() *Crypto {
	k := make([]byte, 30)
	if _, err := rand.Read(k); err != nil {
		panic(err)
	}
	return &Crypto{Tag: 1, Suite: SuiteAES128SHA1_80, Key: k}
}

// Line is the SDP attribute value: "1 AES_CM_128_HMAC_SHA1_80 inline:…".
func (c *Crypto) Line() string {
	return fmt.Sprintf("%d %s inline:%s", c.Tag, c.Suite, base64.StdEncoding.EncodeToString(c.Key))
}

// ParseCrypto parses an a=crypto value ("a=crypto:" prefix optional):
// tag, suite, inline key (raw or padded base64, optional |lifetime|MKI).
func ParseCrypto(v string) (*Crypto, error) {
	v = strings.TrimPrefix(strings.TrimSpace(v), "a=")
	v = strings.TrimPrefix(v, "crypto:")
	f := strings.Fields(v)
	if len(f) < 3 {
		return nil, fmt.Errorf("crypto %q: want tag, suite and key params", v)
	}
	tag, err := strconv.Atoi(f[0])
	if err != nil {
		return nil, fmt.Errorf("crypto %q: bad tag", v)
	}
	key, ok := strings.CutPrefix(f[2], "inline:")
	if !ok {
		return nil, fmt.Errorf("crypto %q: key params are not inline:", v)
	}
	key, _, _ = strings.Cut(key, "|")
	raw, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		raw, err = base64.RawStdEncoding.DecodeString(key)
	}
	if err != nil {
		return nil, fmt.Errorf("crypto %q: key is not base64: %v", v, err)
	}
	if f[1] != SuiteAES128SHA1_80 && f[1] != "AES_CM_128_HMAC_SHA1_32" {
		return nil, fmt.Errorf("crypto %q: suite %s not supported by the test peer", v, f[1])
	}
	if len(raw) != 30 {
		return nil, fmt.Errorf("crypto %q: key+salt is %d bytes, want 30", v, len(raw))
	}
	return &Crypto{Tag: tag, Suite: f[1], Key: raw}, nil
}

func (c *Crypto) profile() srtp.ProtectionProfile {
	switch c.Suite {
	case "AES_CM_128_HMAC_SHA1_32":
		return srtp.ProtectionProfileAes128CmHmacSha1_32
	case SuiteAES128GCM:
		return srtp.ProtectionProfileAeadAes128Gcm
	}
	return srtp.ProtectionProfileAes128CmHmacSha1_80
}

// context makes an SRTP context for this key; inbound contexts get replay
// protection.
func (c *Crypto) context(inbound bool) (*srtp.Context, error) {
	var opts []srtp.ContextOption
	if inbound {
		opts = append(opts, srtp.SRTPReplayProtection(256), srtp.SRTCPReplayProtection(256))
	}
	return srtp.CreateContext(c.Key[:16], c.Key[16:], c.profile(), opts...)
}
