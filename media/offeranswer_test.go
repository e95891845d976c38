package media

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func mustParse(t *testing.T, body []byte) *Description {
	t.Helper()
	d, err := ParseSDP(body)
	if err != nil {
		t.Fatalf("%v in\n%s", err, body)
	}
	return d
}

func newTestBridge(t *testing.T) (*Manager, *Bridge) {
	t.Helper()
	m := newTestManager(t, 2, 0, 0)
	b, err := m.NewBridge("test-call", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return m, b
}

func TestOfferB(t *testing.T) {
	for _, tt := range []struct {
		name     string
		offer    string
		codecsB  []string
		codecs   []Codec // want, in the offer to B
		ptime    int
		rtcpMux  bool
		dir      Direction
		errIs    error
		errMatch string
	}{
		{
			name: "meta plain opus to opus PBX, PCMU as a transcoded fallback", offer: metaPlainOffer, codecsB: []string{"OPUS", "PCMU"},
			codecs: []Codec{
				{PT: 111, Name: "opus", ClockRate: 48000, Channels: 2, Fmtp: "maxaveragebitrate=20000;maxplaybackrate=16000;minptime=20;sprop-maxcapturerate=16000;useinbandfec=1"},
				{PT: 0, Name: "PCMU", ClockRate: 8000},
				{PT: 126, Name: "telephone-event", ClockRate: 8000},
			},
			ptime: 20, rtcpMux: true, dir: SendRecv,
		},
		{
			name:    "A's order and payload types kept, unknown codecs dropped",
			offer:   string(sdpOffer(4000, "RTP/AVP", "9 8 0 18 101 13", "rtpmap:101 telephone-event/8000", "fmtp:101 0-16", "ptime:30", "sendonly")),
			codecsB: []string{"pcmu", "PCMA"},
			codecs: []Codec{
				{PT: 8, Name: "PCMA", ClockRate: 8000},
				{PT: 0, Name: "PCMU", ClockRate: 8000},
				{PT: 101, Name: "telephone-event", ClockRate: 8000, Fmtp: "0-16"},
			},
			ptime: 30, dir: SendOnly,
		},
		{
			name:    "telephone-event/48000 not offered, /8000 is",
			offer:   string(sdpOffer(4000, "RTP/AVP", "0 110 101", "rtpmap:110 telephone-event/48000", "rtpmap:101 telephone-event/8000")),
			codecsB: []string{"PCMU"},
			codecs:  []Codec{{PT: 0, Name: "PCMU", ClockRate: 8000}, {PT: 101, Name: "telephone-event", ClockRate: 8000}},
			dir:     SendRecv,
		},
		{
			name:    "second audio stream used when the first is disabled; T.38 ignored",
			offer:   "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 0 RTP/AVP 0\r\nm=image 4002 udptl t38\r\nm=audio 4004 RTP/AVP 8\r\n",
			codecsB: []string{"PCMA"},
			codecs:  []Codec{{PT: 8, Name: "PCMA", ClockRate: 8000}, {PT: 101, Name: "telephone-event", ClockRate: 8000, Fmtp: "0-16"}},
			dir:     SendRecv,
		},
		{
			name: "opus to G.711 PBX: transcoded, B's order", offer: metaPlainOffer, codecsB: []string{"PCMA", "PCMU"},
			codecs: []Codec{{PT: 8, Name: "PCMA", ClockRate: 8000}, {PT: 0, Name: "PCMU", ClockRate: 8000}, {PT: 126, Name: "telephone-event", ClockRate: 8000}},
			ptime:  20, rtcpMux: true, dir: SendRecv,
		},
		{
			name: "G.711 to opus: our own payload type and fmtp", offer: string(sdpOffer(4000, "RTP/AVP", "8 111", "rtpmap:111 telephone-event/8000")), codecsB: []string{"opus"},
			codecs: []Codec{{PT: 96, Name: "opus", ClockRate: 48000, Channels: 2, Fmtp: "minptime=20;useinbandfec=1"}, {PT: 111, Name: "telephone-event", ClockRate: 8000}},
			ptime:  20, dir: SendRecv,
		},
		{
			name: "A-law to μ-law", offer: string(sdpOffer(4000, "RTP/AVP", "8 101", "rtpmap:101 telephone-event/8000")), codecsB: []string{"PCMU"},
			codecs: []Codec{{PT: 0, Name: "PCMU", ClockRate: 8000}, {PT: 101, Name: "telephone-event", ClockRate: 8000}},
			ptime:  20, dir: SendRecv,
		},
		{name: "nothing wagate can take from A", offer: string(sdpOffer(4000, "RTP/AVP", "18 9 101", "rtpmap:101 telephone-event/8000")), codecsB: []string{"PCMU"}, errIs: ErrNoCommonCodec},
		{name: "no codecs for B", offer: sippOffer, errIs: ErrNoCommonCodec},
		{name: "unparseable", offer: "INVITE sip:x SIP/2.0", codecsB: []string{"PCMU"}, errIs: ErrBadSDP, errMatch: "not a <type>=<value>"},
		{name: "no audio", offer: "v=0\r\nc=IN IP4 1.2.3.4\r\nm=video 5000 RTP/AVP 96\r\n", codecsB: []string{"PCMU"}, errIs: ErrBadSDP, errMatch: "no audio m= line"},
		{name: "audio port 0", offer: string(sdpOffer(0, "RTP/AVP", "0")), codecsB: []string{"PCMU"}, errIs: ErrBadSDP, errMatch: "port 0"},
		{name: "SRTP offer on a plain leg", offer: metaOffer, codecsB: []string{"opus"}, errIs: ErrBadSDP, errMatch: "RTP/SAVP"},
		{name: "no c=", offer: "v=0\r\nm=audio 5000 RTP/AVP 0\r\n", codecsB: []string{"PCMU"}, errIs: ErrBadSDP, errMatch: "no c="},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, b := newTestBridge(t)
			out, err := b.OfferB([]byte(tt.offer), tt.codecsB)
			if tt.errIs != nil {
				if !errors.Is(err, tt.errIs) || !strings.Contains(err.Error(), tt.errMatch) {
					t.Fatalf("got %v, want %v mentioning %q", err, tt.errIs, tt.errMatch)
				}
				if b.LocalOfferB() != nil {
					t.Fatal("failed OfferB left an offer")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, b.LocalOfferB()) {
				t.Fatal("LocalOfferB differs from the returned offer")
			}
			d := mustParse(t, out)
			if d.Connection != m.advertise || len(d.Media) != 1 {
				t.Fatalf("offer to B:\n%s", out)
			}
			mb := d.Media[0]
			if mb.Port != b.legs[SideB].pair.port || mb.Proto != "RTP/AVP" || mb.Type != "audio" {
				t.Fatalf("m= line wrong:\n%s", out)
			}
			if !reflect.DeepEqual(mb.Codecs, tt.codecs) {
				t.Fatalf("codecs %+v, want %+v", mb.Codecs, tt.codecs)
			}
			if mb.Ptime != tt.ptime || mb.RTCPMux != tt.rtcpMux || mb.Direction != tt.dir {
				t.Fatalf("ptime/rtcp-mux/direction wrong:\n%s", out)
			}
			if strings.Contains(string(out), "crypto") {
				t.Fatal("crypto leaked to B")
			}
		})
	}
}

func TestAnswerB(t *testing.T) {
	const offerA = "v=0\r\no=meta 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio 4000 RTP/AVP 111 0 126\r\n" +
		"a=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\n" +
		"a=rtpmap:126 telephone-event/8000\r\na=ptime:20\r\na=rtcp-mux\r\n" +
		"m=video 4002 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n"
	for _, tt := range []struct {
		name     string
		answer   string
		codecs   []Codec // want, in the answer to A
		ptime    int
		dir      Direction
		addr     netip.AddrPort
		ab, ba   map[uint8]uint8 // payload type maps of the routes
		errIs    error
		errMatch string
	}{
		{
			name:   "PCMU and telephone-event with B's own PT",
			answer: asteriskAnswer,
			codecs: []Codec{{PT: 0, Name: "PCMU", ClockRate: 8000}, {PT: 126, Name: "telephone-event", ClockRate: 8000, Fmtp: "0-16"}},
			ptime:  20, dir: SendRecv, addr: netip.MustParseAddrPort("10.0.0.6:17170"),
			ab: map[uint8]uint8{0: 0, 126: 101},
			ba: map[uint8]uint8{0: 0, 101: 126, 126: 126},
		},
		{
			name:   "opus renumbered by B, no telephone-event",
			answer: string(sdpOffer(6000, "RTP/AVP", "107", "rtpmap:107 OPUS/48000/2", "fmtp:107 stereo=0", "recvonly")),
			codecs: []Codec{{PT: 111, Name: "opus", ClockRate: 48000, Channels: 2, Fmtp: "stereo=0"}, {PT: 126, Name: "telephone-event", ClockRate: 8000}},
			dir:    RecvOnly, addr: netip.MustParseAddrPort("127.0.0.1:6000"),
			ab: map[uint8]uint8{111: 107},
			ba: map[uint8]uint8{107: 111, 111: 111},
		},
		{
			name:   "B's preference order wins, dynamic PT without rtpmap",
			answer: string(sdpOffer(6000, "RTP/AVP", "0 111")),
			codecs: []Codec{{PT: 0, Name: "PCMU", ClockRate: 8000}, {PT: 126, Name: "telephone-event", ClockRate: 8000}},
			dir:    SendRecv, addr: netip.MustParseAddrPort("127.0.0.1:6000"),
			ab: map[uint8]uint8{0: 0},
			ba: map[uint8]uint8{0: 0},
		},
		{
			name:   "unoffered codecs skipped",
			answer: string(sdpOffer(6000, "RTP/AVP", "8 96 111", "rtpmap:96 opus/16000", "rtpmap:111 opus/48000/2")),
			codecs: []Codec{{PT: 111, Name: "opus", ClockRate: 48000, Channels: 2}, {PT: 126, Name: "telephone-event", ClockRate: 8000}},
			dir:    SendRecv, addr: netip.MustParseAddrPort("127.0.0.1:6000"),
			ab: map[uint8]uint8{111: 111},
			ba: map[uint8]uint8{111: 111},
		},
		{name: "nothing offered", answer: string(sdpOffer(6000, "RTP/AVP", "8 18")), errIs: ErrNoCommonCodec},
		{name: "only telephone-event", answer: string(sdpOffer(6000, "RTP/AVP", "126", "rtpmap:126 telephone-event/8000")), errIs: ErrNoCommonCodec},
		{name: "rejected", answer: string(sdpOffer(0, "RTP/AVP", "0")), errIs: ErrNoCommonCodec, errMatch: "port 0"},
		{name: "garbage", answer: "SIP/2.0 200 OK", errIs: ErrBadSDP},
		{name: "no m=", answer: "v=0\r\nc=IN IP4 1.2.3.4\r\n", errIs: ErrBadSDP, errMatch: "no m= line"},
		{name: "video first", answer: "v=0\r\nc=IN IP4 1.2.3.4\r\nm=video 5 RTP/AVP 0\r\n", errIs: ErrBadSDP, errMatch: "video"},
		{name: "other transport", answer: string(sdpOffer(6000, "RTP/SAVP", "0")), errIs: ErrBadSDP, errMatch: "transport"},
		{name: "no address", answer: "v=0\r\nm=audio 5 RTP/AVP 0\r\n", errIs: ErrBadSDP, errMatch: "no c="},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, b := newTestBridge(t)
			if _, err := b.OfferB([]byte(offerA), []string{"opus", "PCMU"}); err != nil {
				t.Fatal(err)
			}
			out, err := b.AnswerB([]byte(tt.answer))
			if tt.errIs != nil {
				if !errors.Is(err, tt.errIs) || !strings.Contains(err.Error(), tt.errMatch) {
					t.Fatalf("got %v, want %v mentioning %q", err, tt.errIs, tt.errMatch)
				}
				if b.LocalAnswerA() != nil {
					t.Fatal("failed AnswerB left an answer")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, b.LocalAnswerA()) {
				t.Fatal("LocalAnswerA differs from the returned answer")
			}
			d := mustParse(t, out)
			if d.Connection != m.advertise || len(d.Media) != 2 {
				t.Fatalf("answer to A:\n%s", out)
			}
			ma, video := d.Media[0], d.Media[1]
			if ma.Port != b.legs[SideA].pair.port || ma.Proto != "RTP/AVP" || !ma.RTCPMux || ma.Ptime != tt.ptime || ma.Direction != tt.dir {
				t.Fatalf("audio m= wrong:\n%s", out)
			}
			if !reflect.DeepEqual(ma.Codecs, tt.codecs) {
				t.Fatalf("codecs %+v, want %+v", ma.Codecs, tt.codecs)
			}
			if video.Type != "video" || video.Port != 0 || !reflect.DeepEqual(video.Formats, []string{"96"}) {
				t.Fatalf("video not rejected with port 0:\n%s", out)
			}
			ab, ba := b.routeAB.Load(), b.routeBA.Load()
			if ab.to.rtp != tt.addr || ba.from != ab.to || ab.from.rtp != netip.MustParseAddrPort("127.0.0.1:4000") || ba.to != ab.from {
				t.Fatalf("routes A→B %v→%v, B→A %v→%v", ab.from.rtp, ab.to.rtp, ba.from.rtp, ba.to.rtp)
			}
			checkPTMap(t, "A→B", ab.pt, tt.ab)
			checkPTMap(t, "B→A", ba.pt, tt.ba)
		})
	}
}

func checkPTMap(t *testing.T, name string, got ptMap, want map[uint8]uint8) {
	t.Helper()
	for in := range 128 {
		w, ok := want[uint8(in)]
		if !ok {
			w = ptDrop
		}
		if got[in] != w {
			t.Errorf("%s: PT %d → %d, want %d", name, in, got[in], w)
		}
	}
}

func TestAnswerBAgainAndVersions(t *testing.T) {
	_, b := newTestBridge(t)
	if _, err := b.AnswerB([]byte(asteriskAnswer)); err == nil {
		t.Fatal("AnswerB before OfferB succeeded")
	}
	if _, err := b.OfferB(sdpOffer(4000, "RTP/AVP", "0 8 101", "rtpmap:101 telephone-event/8000"), []string{"PCMU", "PCMA"}); err != nil {
		t.Fatal(err)
	}
	early, err := b.AnswerB(sdpOffer(6000, "RTP/AVP", "0 101", "rtpmap:101 telephone-event/8000"))
	if err != nil {
		t.Fatal(err)
	}
	// The 200 repeats the 183's SDP: our answer must be byte-identical.
	again, err := b.AnswerB(sdpOffer(6000, "RTP/AVP", "0 101", "rtpmap:101 telephone-event/8000"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(early, again) {
		t.Fatalf("same answer, different SDP:\n%s\n%s", early, again)
	}
	// The 200 changes address and codec: the relay follows, o= version moves.
	final, err := b.AnswerB(sdpOffer(6002, "RTP/AVP", "8"))
	if err != nil {
		t.Fatal(err)
	}
	d1, d2 := mustParse(t, early), mustParse(t, final)
	if d1.Origin.SessionID != d2.Origin.SessionID || d1.Origin.SessionVersion == d2.Origin.SessionVersion {
		t.Fatalf("o= %+v then %+v: want same id, new version", d1.Origin, d2.Origin)
	}
	if c := d2.Media[0].Codecs; len(c) != 2 || c[0].Name != "PCMA" || c[1].Name != "telephone-event" {
		t.Fatalf("final codecs %+v", c)
	}
	if rt := b.routeAB.Load(); rt.to.rtp.Port() != 6002 || rt.pt[8] != 8 || rt.pt[0] != ptDrop {
		t.Fatalf("route not updated: %+v", rt)
	}
	// A new offer (next hunt target) forgets B.
	if _, err := b.OfferB(sdpOffer(4000, "RTP/AVP", "0"), []string{"PCMU"}); err != nil {
		t.Fatal(err)
	}
	if b.LocalAnswerA() != nil || b.routeBA.Load().from != nil || b.routeAB.Load().to != nil {
		t.Fatal("new OfferB kept the old B")
	}
	b.Close()
	if _, err := b.OfferB(sdpOffer(4000, "RTP/AVP", "0"), []string{"PCMU"}); err == nil {
		t.Fatal("OfferB after Close succeeded")
	}
	if _, err := b.AnswerB([]byte(asteriskAnswer)); err == nil {
		t.Fatal("AnswerB after Close succeeded")
	}
}

func TestNewCallBridgeConfig(t *testing.T) {
	m := newTestManager(t, 2, 0, 0)
	for _, tt := range []struct {
		name string
		a, b LegConfig
		want string
	}{
		{name: "bad encryption", a: LegConfig{Encryption: "zrtp"}, want: `side A encryption "zrtp"`},
		{name: "bad prefer", a: LegConfig{Prefer: "opus"}, want: `side A prefer "opus"`},
		{name: "bad codec", b: LegConfig{Codecs: []string{"PCMU", "G729"}}, want: `side B codec "G729"`},
		{name: "fine", a: LegConfig{Encryption: "sdes", Codecs: []string{"OPUS"}, WhatsApp: true}, b: LegConfig{Codecs: []string{"pcma"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, err := m.NewCallBridge("cfg", nil, tt.a, tt.b)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("got %v, want an error mentioning %q", err, tt.want)
				}
				if s := m.Stats(); s.PortsInUse != 0 {
					t.Fatalf("failed NewCallBridge holds ports: %+v", s)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if a := b.legs[SideA].cfg; a.Codecs[0] != "opus" || a.Encryption != EncryptionSDES || !a.WhatsApp {
				t.Fatalf("side A %+v", a)
			}
			if bc := b.legs[SideB].cfg; bc.Codecs[0] != "PCMA" || bc.Encryption != EncryptionNone {
				t.Fatalf("side B %+v", bc)
			}
		})
	}
}
