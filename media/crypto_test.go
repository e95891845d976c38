package media

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

// keyB64 returns n bytes 0, 1, 2, … as base64, padded or raw.
func keyB64(n int, padded bool) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	if padded {
		return base64.StdEncoding.EncodeToString(b)
	}
	return base64.RawStdEncoding.EncodeToString(b)
}

func TestParseCrypto(t *testing.T) {
	k30, k46, k28, k44 := keyB64(30, true), keyB64(46, true), keyB64(28, true), keyB64(44, true)
	for _, tt := range []struct {
		name   string
		value  string
		suite  string // want, "" for an error
		tag    int
		mki    []byte
		keys   int
		window int
		err    string // substring of the error
		unsupp bool   // the error wraps errUnsupportedCrypto
	}{
		{name: "Meta", value: "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^31|1:1", suite: "AES_CM_128_HMAC_SHA1_80", tag: 1, mki: []byte{1}, keys: 1},
		{name: "plain key", value: "7 AES_CM_128_HMAC_SHA1_32 inline:" + k30, suite: "AES_CM_128_HMAC_SHA1_32", tag: 7, keys: 1},
		{name: "decimal lifetime", value: "1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + "|1048576", suite: "AES_CM_128_HMAC_SHA1_80", tag: 1, keys: 1},
		{name: "MKI without lifetime", value: "2 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + "|258:2", suite: "AES_CM_128_HMAC_SHA1_80", tag: 2, mki: []byte{1, 2}, keys: 1},
		{name: "MKI of 4 bytes", value: "2 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + "|2^20|1:4", suite: "AES_CM_128_HMAC_SHA1_80", tag: 2, mki: []byte{0, 0, 0, 1}, keys: 1},
		{name: "AES-256 padded", value: "3 AES_256_CM_HMAC_SHA1_80 inline:" + k46, suite: "AES_256_CM_HMAC_SHA1_80", tag: 3, keys: 1},
		{name: "AES-256 raw base64", value: "3 AES_256_CM_HMAC_SHA1_32 inline:" + keyB64(46, false), suite: "AES_256_CM_HMAC_SHA1_32", tag: 3, keys: 1},
		{name: "FreeSWITCH spelling", value: "3 AES_CM_256_HMAC_SHA1_80 inline:" + k46, suite: "AES_256_CM_HMAC_SHA1_80", tag: 3, keys: 1},
		{name: "GCM-128 padded", value: "4 AEAD_AES_128_GCM inline:" + k28, suite: "AEAD_AES_128_GCM", tag: 4, keys: 1},
		{name: "GCM-128 raw", value: "4 AEAD_AES_128_GCM inline:" + keyB64(28, false), suite: "AEAD_AES_128_GCM", tag: 4, keys: 1},
		{name: "GCM-256", value: "5 AEAD_AES_256_GCM inline:" + k44, suite: "AEAD_AES_256_GCM", tag: 5, keys: 1},
		{name: "two keys with MKI", value: "1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + "|2^31|1:1;inline:" + keyB64(30, false) + "|2^31|2:1", suite: "AES_CM_128_HMAC_SHA1_80", tag: 1, mki: []byte{1}, keys: 2},
		{name: "session params", value: "1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + " KDR=0 WSH=1024 FEC_ORDER=FEC_SRTP -X-VENDOR=1", suite: "AES_CM_128_HMAC_SHA1_80", tag: 1, keys: 1, window: 1024},
		{name: "tabs and extra spaces", value: "1\tAES_CM_128_HMAC_SHA1_80   inline:" + k30 + "  ", suite: "AES_CM_128_HMAC_SHA1_80", tag: 1, keys: 1},

		{name: "empty", value: "", err: "want <tag>"},
		{name: "no key", value: "1 AES_CM_128_HMAC_SHA1_80", err: "want <tag>"},
		{name: "tag not a number", value: "x AES_CM_128_HMAC_SHA1_80 inline:" + k30, err: "tag"},
		{name: "negative tag", value: "-1 AES_CM_128_HMAC_SHA1_80 inline:" + k30, err: "tag"},
		{name: "tag of 10 digits", value: "1234567890 AES_CM_128_HMAC_SHA1_80 inline:" + k30, err: "9 digits"},
		{name: "unknown suite", value: "1 F8_128_HMAC_SHA1_80 inline:" + k30, err: "F8_128", unsupp: true},
		{name: "AES-192 not in pion", value: "1 AES_192_CM_HMAC_SHA1_80 inline:" + keyB64(38, true), err: "AES_192", unsupp: true},
		{name: "garbage suite", value: "1 AES/CM inline:" + k30, err: "malformed"},
		{name: "method not inline", value: "1 AES_CM_128_HMAC_SHA1_80 uri:http://x", err: "only inline"},
		{name: "not base64", value: "1 AES_CM_128_HMAC_SHA1_80 inline:!!!!" + k30[4:], err: "base64"},
		{name: "key too short", value: "1 AES_CM_128_HMAC_SHA1_80 inline:" + keyB64(29, true), err: "29 bytes, want 30"},
		{name: "AES-256 key for AES-128", value: "1 AES_CM_128_HMAC_SHA1_80 inline:" + k46, err: "46 bytes, want 30"},
		{name: "GCM salt of CM length", value: "1 AEAD_AES_128_GCM inline:" + k30, err: "want 28"},
		{name: "empty key", value: "1 AES_CM_128_HMAC_SHA1_80 inline:", err: "empty key"},
		{name: "lifetime 0", value: "1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + "|0", err: "lifetime"},
		{name: "lifetime 2^49", value: "1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + "|2^49", err: "lifetime"},
		{name: "lifetime 2^x", value: "1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + "|2^x", err: "lifetime"},
		{name: "MKI length 0", value: "1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + "|1:0", err: "MKI"},
		{name: "MKI length 129", value: "1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + "|1:129", err: "MKI"},
		{name: "MKI value too big for length", value: "1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + "|256:1", err: "does not fit"},
		{name: "MKI value beyond 64 bits", value: "1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + "|99999999999999999999999:16", err: "2^64", unsupp: true},
		{name: "MKI value empty", value: "1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + "|:1", err: "MKI"},
		{name: "four |-fields", value: "1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + "|2^31|1:1|x", err: "too many"},
		{name: "MKI then lifetime", value: "1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + "|1:1|2^31", err: "unexpected field"},
		{name: "two keys without MKI", value: "1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + ";inline:" + k30, err: "need MKIs"},
		{name: "two keys, same MKI", value: "1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + "|1:1;inline:" + k30 + "|1:1", err: "repeated"},
		{name: "two keys, MKI lengths differ", value: "1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + "|1:1;inline:" + k30 + "|2:2", err: "need MKIs"},
		{name: "KDR", value: "1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + " KDR=1", err: "KDR", unsupp: true},
		{name: "unencrypted SRTP", value: "1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + " UNENCRYPTED_SRTP", err: "UNENCRYPTED_SRTP", unsupp: true},
		{name: "unauthenticated", value: "1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + " UNAUTHENTICATED_SRTP", err: "UNAUTHENTICATED", unsupp: true},
		{name: "unknown mandatory param", value: "1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + " FOO=1", err: "FOO", unsupp: true},
		{name: "tiny window", value: "1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + " WSH=8", err: "WSH"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k, err := parseCrypto(tt.value)
			if tt.suite == "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %v, want an error mentioning %q", err, tt.err)
				}
				if errors.Is(err, errUnsupportedCrypto) != tt.unsupp {
					t.Fatalf("%v: unsupported %v, want %v", err, errors.Is(err, errUnsupportedCrypto), tt.unsupp)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.suite.name != tt.suite || k.tag != tt.tag || len(k.keys) != tt.keys || !bytes.Equal(k.keys[0].mki, tt.mki) {
				t.Fatalf("got %s tag %d, %d keys, MKI %x", k.suite.name, k.tag, len(k.keys), k.keys[0].mki)
			}
			if want := max(tt.window, defaultReplayWindow); k.window != want {
				t.Fatalf("window %d, want %d", k.window, want)
			}
			for _, km := range k.keys {
				if len(km.key) != k.suite.keyLen || len(km.salt) != k.suite.saltLen {
					t.Fatalf("key %d + salt %d bytes", len(km.key), len(km.salt))
				}
			}
			if _, err := k.newContext(new(bool)); err != nil {
				t.Fatalf("pion refuses the key: %v", err)
			}
		})
	}
}

// TestCryptoAttributeRoundTrip: our own lines parse back to the same key
// for every suite, with and without MKI.
func TestCryptoAttributeRoundTrip(t *testing.T) {
	for _, s := range srtpSuites {
		k, err := newLocalKey(9, s, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, mki := range [][]byte{nil, {0, 5}} {
			k.keys[0].mki = mki
			back, err := parseCrypto(k.attribute())
			if err != nil {
				t.Fatalf("%s: %v in %q", s.name, err, k.attribute())
			}
			if !back.equal(k) || back.tag != 9 || back.name != s.name {
				t.Fatalf("%s: %q parsed to a different key", s.name, k.attribute())
			}
		}
	}
}

func TestPickCrypto(t *testing.T) {
	k30 := keyB64(30, true)
	attrs := []Attribute{
		{Key: "rtcp-fb", Value: "x"},
		{Key: "crypto", Value: "1 F8_128_HMAC_SHA1_80 inline:" + k30},
		{Key: "crypto", Value: "2 AES_CM_128_HMAC_SHA1_80 inline:short"},
		{Key: "crypto", Value: "3 AES_CM_128_HMAC_SHA1_32 inline:" + k30},
		{Key: "crypto", Value: "4 AES_CM_128_HMAC_SHA1_80 inline:" + k30},
	}
	k, err := pickCrypto(attrs)
	if err != nil || k.tag != 3 {
		t.Fatalf("picked %+v, %v; want tag 3 (the offerer's first usable)", k, err)
	}
	if _, err := pickCrypto(attrs[:3]); err == nil || !strings.Contains(err.Error(), "F8_128") || !strings.Contains(err.Error(), "base64") {
		t.Fatalf("error %v should give every line's reason", err)
	}
	if _, err := pickCrypto(nil); err == nil || !strings.Contains(err.Error(), "no a=crypto") {
		t.Fatalf("error %v", err)
	}
}

// FuzzCryptoAttribute: the a=crypto parser never panics, and what it
// accepts keys pion and survives our own formatting.
func FuzzCryptoAttribute(f *testing.F) {
	k30 := keyB64(30, true)
	for _, s := range []string{
		"1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^31|1:1",
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + "|2^31|1:1;inline:" + k30 + "|2^31|2:1 KDR=0 WSH=128",
		"2 AEAD_AES_256_GCM inline:" + keyB64(44, false),
		"3 AES_256_CM_HMAC_SHA1_32 inline:" + keyB64(46, true) + "|1099511627776|18446744073709551615:8",
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + "|1:129",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		k, err := parseCrypto(value)
		if err != nil {
			return
		}
		if len(k.keys) == 0 || k.suite == nil {
			t.Fatalf("accepted without a key: %q", value)
		}
		if _, err := k.newContext(new(bool)); err != nil {
			t.Fatalf("accepted %q, pion refuses: %v", value, err)
		}
		k.keys = k.keys[:1]
		k.name = k.suite.name
		back, err := parseCrypto(k.attribute())
		if err != nil || !back.equal(k) {
			t.Fatalf("%q formats to %q which parses to %v", value, k.attribute(), err)
		}
	})
}
