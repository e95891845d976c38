package rtppeer

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
)

func TestParseCryptoForms(t *testing.T) {
	k := NewCrypto()
	raw := base64.RawStdEncoding.EncodeToString(k.Key)
	for _, line := range []string{
		k.Line(),
		"a=crypto:" + k.Line(),
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + raw,
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.StdEncoding.EncodeToString(k.Key) + "|2^31|1:1",
	} {
		c, err := ParseCrypto(line)
		if err != nil || c.Tag != 1 || !bytes.Equal(c.Key, k.Key) {
			t.Errorf("%q: %+v %v", line, c, err)
		}
	}
	for _, bad := range []string{"1 AES_CM_128_HMAC_SHA1_80", "x AES_CM_128_HMAC_SHA1_80 inline:" + raw, "1 F8_128_HMAC_SHA1_80 inline:" + raw, "1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ="} {
		if _, err := ParseCrypto(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestMetaOfferRoundTrip(t *testing.T) {
	key := NewCrypto()
	body := Desc{IP: "127.0.0.2", Port: 20000, Codecs: []Codec{Opus}, Fmtp: map[uint8]string{111: MetaOpusFmtp},
		EventPT: 126, NoEventFmtp: true, Crypto: key, RTCPMux: true, Ptime: 20}.Marshal()
	for _, want := range []string{"m=audio 20000 RTP/SAVP 111 126\r\n", "a=rtpmap:111 opus/48000/2\r\n", "a=fmtp:111 " + MetaOpusFmtp + "\r\n",
		"a=rtpmap:126 telephone-event/8000\r\n", "a=ptime:20\r\n", "a=rtcp-mux\r\n", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("offer lacks %q:\n%s", want, body)
		}
	}
	s, err := ParseSDP(body)
	if err != nil {
		t.Fatal(err)
	}
	if pt, ok := s.FindCodec("OPUS", 48000); !ok || pt != 111 {
		t.Errorf("opus pt %d %v", pt, ok)
	}
	if pt, ok := s.FindCodec("telephone-event", 8000); !ok || pt != 126 {
		t.Errorf("event pt %d %v", pt, ok)
	}
	c, err := s.Crypto()
	if err != nil || !bytes.Equal(c.Key, key.Key) || !s.RTCPMux || s.Addr().String() != "127.0.0.2:20000" {
		t.Errorf("parsed %+v %v", s, err)
	}
}

func TestG711RoundTrip(t *testing.T) {
	for _, c := range []Codec{PCMU, PCMA} {
		enc, _ := newEncoder(c, 0)
		dec, _ := newDecoder(c)
		in := []int16{0, 100, -100, 1000, -1000, 8000, -8000, 30000, -30000}
		p, _ := enc.encode(in)
		out, _ := dec.decode(p)
		for i := range in {
			d := int(out[i]) - int(in[i])
			if d < 0 {
				d = -d
			}
			if d > max(16, abs(int(in[i]))/16) {
				t.Errorf("%s: %d → %d", c.Name, in[i], out[i])
			}
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
