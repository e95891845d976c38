package media

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// Real-world-shaped bodies, also the fuzz seeds.
var (
	// metaOffer is what Meta sends (SDES mode).
	metaOffer = "v=0\r\n" +
		"o=- 1728912938 1728912938 IN IP4 157.240.19.130\r\n" +
		"s=-\r\n" +
		"c=IN IP4 157.240.19.130\r\n" +
		"t=0 0\r\n" +
		"m=audio 3480 RTP/SAVP 111 126\r\n" +
		"a=rtpmap:111 opus/48000/2\r\n" +
		"a=fmtp:111 maxaveragebitrate=20000;maxplaybackrate=16000;minptime=20;sprop-maxcapturerate=16000;useinbandfec=1\r\n" +
		"a=rtpmap:126 telephone-event/8000\r\n" +
		"a=ptime:20\r\n" +
		"a=maxptime:20\r\n" +
		"a=rtcp-mux\r\n" +
		"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^31|1:1\r\n" +
		"a=sendrecv\r\n"
	// metaPlainOffer is Meta's offer as configured for SIPp tests: plain RTP.
	metaPlainOffer = strings.NewReplacer("RTP/SAVP", "RTP/AVP",
		"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^31|1:1\r\n", "").Replace(metaOffer)
	// sippOffer is SIPp's uac_pcap-style offer (LF line ends, no final one).
	sippOffer = "v=0\n" +
		"o=user1 53655765 2353687637 IN IP4 127.0.0.1\n" +
		"s=-\n" +
		"c=IN IP4 127.0.0.1\n" +
		"t=0 0\n" +
		"m=audio 6000 RTP/AVP 8 101\n" +
		"a=rtpmap:8 PCMA/8000\n" +
		"a=rtpmap:101 telephone-event/8000\n" +
		"a=fmtp:101 0-11,16"
	// asteriskAnswer is an Asterisk-like answer with a media-level c=.
	asteriskAnswer = "v=0\r\n" +
		"o=- 1180563587 1180563589 IN IP4 10.0.0.5\r\n" +
		"s=Asterisk\r\n" +
		"c=IN IP4 10.0.0.5\r\n" +
		"t=0 0\r\n" +
		"m=audio 17170 RTP/AVP 0 101\r\n" +
		"c=IN IP4 10.0.0.6\r\n" +
		"a=rtpmap:0 PCMU/8000\r\n" +
		"a=rtpmap:101 telephone-event/8000\r\n" +
		"a=fmtp:101 0-16\r\n" +
		"a=ptime:20\r\n" +
		"a=maxptime:150\r\n" +
		"a=sendrecv\r\n"
	// faxOffer is audio plus T.38, which pion/sdp would reject outright.
	faxOffer = "v=0\r\n" +
		"o=- 1 2 IN IP6 2001:db8::1\r\n" +
		"s=-\r\n" +
		"c=IN IP6 2001:db8::1\r\n" +
		"t=0 0\r\n" +
		"m=audio 4000 RTP/AVP 0 8 13\r\n" +
		"m=image 4002 udptl t38\r\n" +
		"a=T38FaxVersion:0\r\n" +
		"a=fmtp:t38 whatever\r\n"
)

func TestParseSDP(t *testing.T) {
	got, err := ParseSDP([]byte(metaOffer))
	if err != nil {
		t.Fatal(err)
	}
	want := &Description{
		Origin:      Origin{Username: "-", SessionID: "1728912938", SessionVersion: "1728912938", Address: "157.240.19.130"},
		SessionName: "-",
		Connection:  netip.MustParseAddr("157.240.19.130"),
		Media: []Media{{
			Type: "audio", Port: 3480, Proto: "RTP/SAVP", Formats: []string{"111", "126"},
			Connection: netip.MustParseAddr("157.240.19.130"),
			Codecs: []Codec{
				{PT: 111, Name: "opus", ClockRate: 48000, Channels: 2, Fmtp: "maxaveragebitrate=20000;maxplaybackrate=16000;minptime=20;sprop-maxcapturerate=16000;useinbandfec=1"},
				{PT: 126, Name: "telephone-event", ClockRate: 8000},
			},
			Ptime: 20, MaxPtime: 20, RTCPMux: true, Direction: SendRecv,
			Attributes: []Attribute{{Key: "crypto", Value: "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^31|1:1"}},
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got\n%+v\nwant\n%+v", got, want)
	}
}

func TestParseSDPLayouts(t *testing.T) {
	for _, tt := range []struct {
		name  string
		body  string
		check func(*Description) string
	}{
		{"sipp LF no final newline", sippOffer, func(d *Description) string {
			m := d.Media[0]
			if len(m.Codecs) != 2 || m.Codecs[0].Name != "PCMA" || m.Codecs[1].Fmtp != "0-11,16" {
				return "codecs"
			}
			return ""
		}},
		{"media-level c= wins", asteriskAnswer, func(d *Description) string {
			if d.Media[0].Connection != netip.MustParseAddr("10.0.0.6") || d.Connection != netip.MustParseAddr("10.0.0.5") {
				return "connection"
			}
			return ""
		}},
		{"static payload types without rtpmap, T.38 stream kept", faxOffer, func(d *Description) string {
			if len(d.Media) != 2 {
				return "media count"
			}
			a, img := d.Media[0], d.Media[1]
			if a.Codecs[0].Name != "PCMU" || a.Codecs[1].Name != "PCMA" || a.Codecs[2].Name != "CN" {
				return "static codecs"
			}
			if img.Codecs != nil || img.Proto != "udptl" || len(img.Attributes) != 2 || img.Connection != netip.MustParseAddr("2001:db8::1") {
				return "image stream"
			}
			return ""
		}},
		{"dynamic PT without rtpmap", "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 5 RTP/AVP 96\r\n", func(d *Description) string {
			if c := d.Media[0].Codecs[0]; c.Name != "" || c.PT != 96 {
				return "unnamed codec"
			}
			return ""
		}},
		{"session direction and blank lines", "v=0\r\n\r\na=inactive\r\nm=audio 5 RTP/AVP 0\r\n\r\n", func(d *Description) string {
			if d.Direction != Inactive || d.EffectiveDirection(&d.Media[0]) != Inactive {
				return "direction"
			}
			if d.Media[0].Connection.IsValid() {
				return "no c= should leave Connection invalid"
			}
			return ""
		}},
		{"trailing spaces", "v=0 \r\nc=IN IP4 1.2.3.4  \r\nm=audio 5 RTP/AVP 0 \r\na=ptime:30 \r\n", func(d *Description) string {
			if d.Media[0].Ptime != 30 {
				return "ptime"
			}
			return ""
		}},
		{"IPv4-mapped address unmapped", "v=0\r\nc=IN IP4 ::ffff:1.2.3.4\r\nm=audio 5 RTP/AVP 0\r\n", func(d *Description) string {
			if d.Connection != netip.MustParseAddr("1.2.3.4") {
				return "unmap"
			}
			return ""
		}},
		{"payload types with leading zeros", "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 5 RTP/AVP 096 0101\r\na=rtpmap:96 opus/48000/2\r\na=fmtp:0096 useinbandfec=1\r\na=rtpmap:0101 telephone-event/8000\r\na=fmtp:101 0-16\r\n", func(d *Description) string {
			// rtpmap and fmtp name a payload type by number, as the m= line does.
			cs := d.Media[0].Codecs
			if len(cs) != 2 || cs[0].PT != 96 || cs[0].Name != "opus" || cs[0].Fmtp != "useinbandfec=1" || cs[1].PT != 101 || cs[1].Fmtp != "0-16" {
				return "codecs"
			}
			return ""
		}},
		{"port count", "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 5000/2 RTP/AVP 0\r\n", func(d *Description) string {
			if d.Media[0].Port != 5000 {
				return "port"
			}
			return ""
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, err := ParseSDP([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if msg := tt.check(d); msg != "" {
				t.Fatalf("%s: %+v", msg, d)
			}
		})
	}
}

func TestParseSDPErrors(t *testing.T) {
	const head = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n"
	for _, tt := range []struct {
		name, body, want string
	}{
		{"empty", "", "no v= line"},
		{"not SDP", "hello world", "not a <type>=<value>"},
		{"no version first", "o=- 1 1 IN IP4 1.2.3.4\r\nv=0\r\n", "first line must be v=0"},
		{"version 1", "v=1\r\n", "first line must be v=0"},
		{"repeated version", "v=0\r\nv=0\r\n", "repeated v="},
		{"uppercase type", "v=0\r\nM=audio 1 RTP/AVP 0\r\n", "not a <type>=<value>"},
		{"NUL byte", head + "s=a\x00b\r\n", "control character"},
		{"bare CR inside", head + "a=fmtp:0 a\rb=c\r\n", "control character"},
		{"short origin", "v=0\r\no=- 1 1 IN\r\n", "o= wants 6 fields"},
		{"hostname in c=", head + "c=IN IP4 pbx.example.com\r\n", "not an IP literal"},
		{"IP6 with IPv4", head + "c=IN IP6 1.2.3.4\r\n", "IP6 with address"},
		{"IP4 with IPv6", head + "c=IN IP4 ::1\r\n", "IP4 with address"},
		{"multicast", head + "c=IN IP4 224.2.1.1/127\r\n", "not an IP literal"},
		{"multicast no ttl", head + "c=IN IP4 224.2.1.1\r\n", "multicast"},
		{"zone", head + "c=IN IP6 fe80::1%eth0\r\n", "zone"},
		{"bad nettype", head + "c=ATM NSAP 1\r\n", "network type"},
		{"short c=", head + "c=IN IP4\r\n", "want \"IN IP4|IP6"},
		{"short m=", head + "m=audio 1 RTP/AVP\r\n", "m= wants"},
		{"bad port", head + "m=audio x RTP/AVP 0\r\n", "m= port"},
		{"port too big", head + "m=audio 65536 RTP/AVP 0\r\n", "m= port"},
		{"negative port", head + "m=audio -1 RTP/AVP 0\r\n", "m= port"},
		{"PT too big", head + "m=audio 1 RTP/AVP 128\r\n", "payload type"},
		{"PT not a number", head + "m=audio 1 RTP/AVP pcmu\r\n", "payload type"},
		{"rtpmap bad PT", head + "m=audio 1 RTP/AVP 0\r\na=rtpmap:x PCMU/8000\r\n", "payload type"},
		{"rtpmap no rate", head + "m=audio 1 RTP/AVP 96\r\na=rtpmap:96 opus\r\n", "rtpmap"},
		{"rtpmap bad rate", head + "m=audio 1 RTP/AVP 96\r\na=rtpmap:96 opus/0\r\n", "rtpmap"},
		{"rtpmap bad channels", head + "m=audio 1 RTP/AVP 96\r\na=rtpmap:96 opus/48000/x\r\n", "rtpmap"},
		{"rtpmap bad name", head + "m=audio 1 RTP/AVP 96\r\na=rtpmap:96 op us/48000\r\n", "rtpmap"},
		{"fmtp bad PT", head + "m=audio 1 RTP/AVP 96\r\na=fmtp:300 x\r\n", "payload type"},
		{"PT listed twice", head + "m=audio 1 RTP/AVP 0 8 0\r\n", "payload type 0 listed twice"},
		{"PT written twice differently", head + "m=audio 1 RTP/AVP 101 0101\r\na=rtpmap:101 telephone-event/8000\r\n", "payload type 101 listed twice"},
		{"bad ptime", head + "m=audio 1 RTP/AVP 0\r\na=ptime:20.5\r\n", "ptime"},
		{"zero ptime", head + "m=audio 1 RTP/AVP 0\r\na=ptime:0\r\n", "ptime"},
		{"ptime without value", head + "m=audio 1 RTP/AVP 0\r\na=ptime\r\n", "ptime"},
		{"too large", "v=0\r\n" + strings.Repeat("a=x\r\n", maxSDPSize/5+1), "exceeds"},
		{"too many media", head + strings.Repeat("m=audio 0 RTP/AVP 0\r\n", maxSDPMedia+1), "more than"},
		{"too many formats", head + "m=audio 1 RTP/AVP" + strings.Repeat(" 0", maxSDPFormats+1) + "\r\n", "more than"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseSDP([]byte(tt.body))
			if !errors.Is(err, ErrBadSDP) {
				t.Fatalf("got %v, want ErrBadSDP", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

// TestParseSDPDuplicatePayloadTypeFuzzFinding: FuzzParseSDP found that a
// payload type written twice ("101 0101") marshalled to "101 101" with
// the rtpmap and fmtp repeated, which parsed back to something else, so
// the round trip did not settle. Such a body is now refused as malformed.
func TestParseSDPDuplicatePayloadTypeFuzzFinding(t *testing.T) {
	body := "v=0\nm=audio 1 RTP/AVP 101 0101\na=rtpmap:101 a/1\na=fmtp:0101 x"
	if _, err := ParseSDP([]byte(body)); !errors.Is(err, ErrBadSDP) || !strings.Contains(err.Error(), "listed twice") {
		t.Fatalf("got %v, want ErrBadSDP for the duplicate payload type", err)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	for _, body := range []string{metaOffer, metaPlainOffer, sippOffer, asteriskAnswer, faxOffer} {
		d, err := ParseSDP([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		out := d.Marshal()
		d2, err := ParseSDP(out)
		if err != nil {
			t.Fatalf("re-parse of\n%s: %v", out, err)
		}
		if !reflect.DeepEqual(d, d2) {
			t.Fatalf("round trip changed the description:\n%s\nbefore %+v\nafter  %+v", out, d, d2)
		}
	}
}
