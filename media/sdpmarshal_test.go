package media

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// TestMarshalExact pins every line Marshal writes, each branch of it: the
// text was fmt's before Marshal appended by hand, and must stay the same.
func TestMarshalExact(t *testing.T) {
	d := &Description{
		Origin:      Origin{Username: "wagate", SessionID: "42", SessionVersion: "7", Address: "2001:db8::1"},
		Connection:  netip.MustParseAddr("192.0.2.10"),
		Direction:   "sendrecv",
		Attributes:  []Attribute{{Key: "group", Value: "BUNDLE 0"}, {Key: "ice-lite"}},
		SessionName: "",
		Media: []Media{
			{Type: "audio", Port: 40000, Proto: "RTP/SAVP", Connection: netip.MustParseAddr("192.0.2.10"),
				Codecs: []Codec{{PT: 111, Name: "opus", ClockRate: 48000, Channels: 2, Fmtp: "minptime=10;useinbandfec=1"},
					{PT: 0, Name: "PCMU", ClockRate: 8000}, {PT: 101, Name: "telephone-event", ClockRate: 8000, Fmtp: "0-15"}, {PT: 13}},
				Ptime: 20, MaxPtime: 120, RTCPMux: true, Direction: "sendonly",
				Attributes: []Attribute{{Key: "crypto", Value: "1 AES_CM_128_HMAC_SHA1_80 inline:abc"}, {Key: "end-of-candidates"}}},
			{Type: "video", Port: 0, Proto: "RTP/AVP", Formats: []string{"96", "97"}, Connection: netip.MustParseAddr("2001:db8::2")},
		},
	}
	want := "v=0\r\n" +
		"o=wagate 42 7 IN IP6 2001:db8::1\r\n" +
		"s=-\r\n" +
		"c=IN IP4 192.0.2.10\r\n" +
		"t=0 0\r\n" +
		"a=sendrecv\r\n" +
		"a=group:BUNDLE 0\r\n" +
		"a=ice-lite\r\n" +
		"m=audio 40000 RTP/SAVP 111 0 101 13\r\n" +
		"a=rtpmap:111 opus/48000/2\r\n" +
		"a=fmtp:111 minptime=10;useinbandfec=1\r\n" +
		"a=rtpmap:0 PCMU/8000\r\n" +
		"a=rtpmap:101 telephone-event/8000\r\n" +
		"a=fmtp:101 0-15\r\n" +
		"a=ptime:20\r\n" +
		"a=maxptime:120\r\n" +
		"a=rtcp-mux\r\n" +
		"a=sendonly\r\n" +
		"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abc\r\n" +
		"a=end-of-candidates\r\n" +
		"m=video 0 RTP/AVP 96 97\r\n" +
		"c=IN IP6 2001:db8::2\r\n"
	if got := string(d.Marshal()); got != want {
		t.Errorf("Marshal wrote\n%s\nwant\n%s", got, want)
	}
	empty := &Description{}
	if got, want := string(empty.Marshal()), "v=0\r\no=- 0 0 IN IP4 0\r\ns=-\r\nt=0 0\r\n"; got != want {
		t.Errorf("empty description: %q, want %q", got, want)
	}
}

// BenchmarkMarshalSDP writes the answer to Meta's offer back out.
//
//	go test -run '^$' -bench MarshalSDP -benchmem ./media/
func BenchmarkMarshalSDP(b *testing.B) {
	d, err := ParseSDP([]byte(metaOffer))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = d.Marshal()
	}
}

// TestFieldsInto: the parser's field splitter is strings.Fields.
func TestFieldsInto(t *testing.T) {
	for _, s := range []string{"", " ", "IN IP4 192.0.2.1", "  IN\tIP4  192.0.2.1 \r", "a\vb\fc", "x\u00a0y z", "\u0085a b", "one"} {
		var buf [3]string
		if got, want := fieldsInto(buf[:0], s), strings.Fields(s); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Errorf("fieldsInto(%q) = %q, want %q", s, got, want)
		}
	}
}
