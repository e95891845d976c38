package media

import (
	"errors"
	"strings"
	"testing"

	"github.com/pion/stun/v3"
)

// metaDTLSOffer is an offer shaped as Meta's in DTLS mode: ICE-lite,
// actpass, one host candidate, rtcp-mux.
const metaDTLSOffer = "v=0\r\no=- 1 1 IN IP4 157.240.1.1\r\ns=-\r\nc=IN IP4 157.240.1.1\r\nt=0 0\r\na=ice-lite\r\n" +
	"m=audio 3480 UDP/TLS/RTP/SAVPF 111 126\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:126 telephone-event/8000\r\n" +
	"a=ice-ufrag:Ab3d\r\na=ice-pwd:0123456789abcdefghijKL\r\n" +
	"a=fingerprint:sha-256 AA:96:75:97:C7:A7:39:D9:8E:48:56:03:30:32:99:9B:A3:83:36:77:96:69:38:D2:54:4D:38:92:19:42:22:15\r\n" +
	"a=setup:actpass\r\na=candidate:1 1 udp 2130706431 157.240.1.1 3480 typ host\r\na=rtcp-mux\r\n"

func TestParseSecure(t *testing.T) {
	swap := func(old, new string) string { return strings.Replace(metaDTLSOffer, old, new, 1) }
	for _, tc := range []struct {
		name, sdp string
		offer     bool
		want      string // error text; "" parses
	}{
		{"Meta's offer", metaDTLSOffer, true, ""},
		{"ice-lite on the stream", swap("a=ice-lite\r\n", "") + "a=ice-lite\r\n", true, ""},
		{"no setup in an offer is actpass", swap("a=setup:actpass\r\n", ""), true, ""},
		{"session-level fingerprint", swap("t=0 0\r\n", "t=0 0\r\na=fingerprint:sha-1 "+strings.Repeat("AB:", 19)+"AB\r\n"), true, ""},
		{"candidates fall back to m= address", swap("a=candidate:1 1 udp 2130706431 157.240.1.1 3480 typ host\r\n", ""), true, ""},
		{"tcp and rtcp candidates skipped", swap("a=rtcp-mux", "a=candidate:2 1 tcp 1 10.0.0.1 9 typ host tcptype passive\r\na=candidate:3 2 udp 1 157.240.1.1 3481 typ host\r\na=rtcp-mux"), true, ""},
		{"no ufrag", swap("a=ice-ufrag:Ab3d\r\n", ""), true, "no a=ice-ufrag"},
		{"short ufrag", swap("ice-ufrag:Ab3d", "ice-ufrag:Ab3"), true, "a=ice-ufrag is 3 characters"},
		{"ufrag with a bad character", swap("ice-ufrag:Ab3d", "ice-ufrag:Ab3d;"), true, "outside A-Z"},
		{"short pwd", swap("ice-pwd:0123456789abcdefghijKL", "ice-pwd:0123456789"), true, "a=ice-pwd is 10 characters"},
		{"two ufrags", swap("a=ice-ufrag:Ab3d\r\n", "a=ice-ufrag:Ab3d\r\na=ice-ufrag:Zz99\r\n"), true, "written 2 times"},
		{"setup holdconn", swap("setup:actpass", "setup:holdconn"), true, "want actpass, active or passive"},
		{"actpass in an answer", metaDTLSOffer, false, "actpass in an answer"},
		{"no fingerprint", swap("a=fingerprint:sha-256 AA:96:75:97:C7:A7:39:D9:8E:48:56:03:30:32:99:9B:A3:83:36:77:96:69:38:D2:54:4D:38:92:19:42:22:15\r\n", ""), true, "no a=fingerprint"},
		{"fingerprint too short", swap("AA:96:75:97:", "AA:96:75:"), true, "is 31 bytes, want 32"},
		{"fingerprint not colon-joined", swap("AA:96:75:97:", "AA-96:75:97:"), true, "not hex pairs"},
		{"fingerprint not hex", swap("AA:96:75:97:", "ZZ:96:75:97:"), true, "not hex pairs"},
		{"fingerprint of a weak hash only", swap("sha-256 AA", "md5 AA"), true, "only with hash"},
		{"fingerprint without value", swap("sha-256 AA:96", "sha-256AA:96"), true, "want <hash function> <hex>"},
		{"malformed candidate", swap("typ host", "typ"), true, "a=candidate"},
		{"candidate with a bad port", swap("157.240.1.1 3480 typ", "157.240.1.1 99999 typ"), true, "a=candidate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ParseSDP([]byte(tc.sdp))
			if err != nil {
				t.Fatal(err)
			}
			p, err := parseSecure(d, &d.Media[0], tc.offer)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrBadSDP)):
				t.Fatalf("got %v, want an ErrBadSDP saying %q", err, tc.want)
			case tc.want == "" && (len(p.candidates) == 0 || len(p.fingerprints) == 0 || !p.lite):
				t.Fatalf("parsed %+v", p)
			}
		})
	}
}

// TestParseSecureFullAgent: without a=ice-lite, at either level, the
// peer is a full agent (wagate is then controlled, RFC 8445 §6.1.1).
func TestParseSecureFullAgent(t *testing.T) {
	d, err := ParseSDP([]byte(strings.Replace(metaDTLSOffer, "a=ice-lite\r\n", "", 1)))
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseSecure(d, &d.Media[0], true)
	if err != nil || p.lite {
		t.Fatalf("got %+v, %v; want a full agent", p, err)
	}
}

// TestDTLSOfferRefused: a DTLS leg's malformed offer is refused by Offer
// with ErrBadSDP and a Warning saying what is wrong; so is one without
// rtcp-mux.
func TestDTLSOfferRefused(t *testing.T) {
	for _, tc := range []struct{ old, new, warn string }{
		{"a=rtcp-mux\r\n", "", "malformed SDP: a dtls stream without a=rtcp-mux"},
		{"setup:actpass", "setup:sideways", "malformed SDP: a=setup:sideways: want actpass, active or passive"},
		{"UDP/TLS/RTP/SAVPF", "RTP/SAVP", `malformed SDP: audio transport 'RTP/SAVP', but side A is configured for dtls`},
	} {
		b := socketlessBridge(LegConfig{Encryption: EncryptionDTLS, WhatsApp: true}, pcmu)
		b.cert, _ = NewCertificate()
		_, err := b.Offer([]byte(strings.Replace(metaDTLSOffer, tc.old, tc.new, 1)))
		if !errors.Is(err, ErrBadSDP) || !strings.HasPrefix(SDPWarning(err), tc.warn) {
			t.Errorf("%s→%s: got %v (warning %q), want warning %q", tc.old, tc.new, err, SDPWarning(err), tc.warn)
		}
	}
}

// TestPreferOnWhatsAppLeg: Meta's G.711 is taken (passthrough) or left
// for its Opus (transcode); toward Meta, transcode offers Opus first.
func TestPreferOnWhatsAppLeg(t *testing.T) {
	offer := strings.Replace(metaDTLSOffer, "111 126", "111 0 8 126", 1)
	for _, tc := range []struct{ prefer, want string }{
		{PreferPassthrough, "RTP/AVP 0 8 "},
		{PreferTranscode, "RTP/AVP 0 8 "},
	} {
		b := socketlessBridge(LegConfig{Encryption: EncryptionDTLS, WhatsApp: true, Prefer: tc.prefer}, LegConfig{Codecs: []string{"PCMU", "PCMA"}})
		b.cert, _ = NewCertificate()
		out, err := b.Offer([]byte(offer))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("prefer %s: offer to the PBX\n%s", tc.prefer, out)
		}
		relay := b.neg.common[0]
		if relay != (tc.prefer == PreferPassthrough) {
			t.Errorf("prefer %s: PCMU toward the PBX relayed=%v", tc.prefer, relay)
		}
	}
	dialer := sdpOffer(4000, "RTP/AVP", "0", "rtpmap:0 PCMU/8000")
	for _, tc := range []struct{ prefer, want string }{
		{PreferPassthrough, "UDP/TLS/RTP/SAVPF 0 111 "},
		{PreferTranscode, "UDP/TLS/RTP/SAVPF 111 0 "},
	} {
		b := socketlessBridge(pcmu, LegConfig{Encryption: EncryptionDTLS, WhatsApp: true, Prefer: tc.prefer})
		b.cert, _ = NewCertificate()
		out, err := b.Offer(dialer)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("prefer %s: offer to Meta, want %q:\n%s", tc.prefer, tc.want, out)
		}
	}
}

// TestCheckSTUN: only Binding messages for this leg pass: requests with
// our ufrag and password, responses from a peer address with the peer's.
func TestCheckSTUN(t *testing.T) {
	const ufrag, pwd, peerPwd = "ourU", "our-password-0123456789", "peer-password-0123456789"
	build := func(class stun.MessageClass, user, key string) []byte {
		setters := []stun.Setter{stun.TransactionID, stun.NewType(stun.MethodBinding, class)}
		if user != "" {
			setters = append(setters, stun.NewUsername(user))
		}
		if key != "" {
			setters = append(setters, stun.NewShortTermIntegrity(key))
		}
		setters = append(setters, stun.Fingerprint)
		m, err := stun.Build(setters...)
		if err != nil {
			t.Fatal(err)
		}
		return m.Raw
	}
	var m stun.Message
	for _, tc := range []struct {
		name  string
		pkt   []byte
		known bool
		want  stunCheck
	}{
		{"our check", build(stun.ClassRequest, ufrag+":peer", pwd), false, stunRequest},
		{"check for another ufrag", build(stun.ClassRequest, "else:peer", pwd), true, stunDrop},
		{"check with a wrong password", build(stun.ClassRequest, ufrag+":peer", "wrong-password-00000000"), true, stunDrop},
		{"check without integrity", build(stun.ClassRequest, ufrag+":peer", ""), true, stunDrop},
		{"response from the peer", build(stun.ClassSuccessResponse, "", peerPwd), true, stunPass},
		{"response from a stranger", build(stun.ClassSuccessResponse, "", peerPwd), false, stunDrop},
		{"forged response", build(stun.ClassSuccessResponse, "", pwd), true, stunDrop},
		{"keepalive indication", build(stun.ClassIndication, "", ""), true, stunIgnore},
		{"garbage", []byte{0, 1, 0, 0, 1, 2, 3, 4}, true, stunDrop},
	} {
		if got := checkSTUN(&m, tc.pkt, ufrag, pwd, peerPwd, tc.known); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestValidDTLSRecords(t *testing.T) {
	rec := func(ct byte, n int) []byte {
		b := []byte{ct, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, byte(n >> 8), byte(n)}
		return append(b, make([]byte, n)...)
	}
	two := append(rec(22, 40), rec(20, 1)...)
	for _, tc := range []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"handshake", rec(22, 100), true},
		{"two records", two, true},
		{"truncated", rec(22, 100)[:50], false},
		{"trailing bytes", append(rec(23, 10), 1, 2), false},
		{"TLS version", append([]byte{22, 3, 3}, rec(22, 10)[3:]...), false},
		{"content type 63", rec(63, 10), false},
		{"empty record", rec(21, 0), false},
	} {
		if got := validDTLSRecords(tc.pkt); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestClientHelloSCSV: OpenSSL's way of asking for secure renegotiation
// is found in a ClientHello record, and only there.
func TestClientHelloSCSV(t *testing.T) {
	hello := func(suites ...byte) []byte {
		body := append([]byte{0xfe, 0xfd}, make([]byte, 32)...) // version, random
		body = append(body, 0, 0)                               // session id, cookie
		body = append(body, 0, byte(len(suites)))
		body = append(body, suites...)
		body = append(body, 1, 0) // compression methods
		n := len(body)
		hs := append([]byte{1, 0, byte(n >> 8), byte(n), 0, 0, 0, 0, 0, 0, byte(n >> 8), byte(n)}, body...)
		rec := []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, byte(len(hs) >> 8), byte(len(hs))}
		return append(rec, hs...)
	}
	if !clientHelloSCSV(hello(0xc0, 0x2b, 0x00, 0xff)) {
		t.Error("SCSV not found")
	}
	if clientHelloSCSV(hello(0xc0, 0x2b, 0xc0, 0x2f)) {
		t.Error("SCSV found where there is none")
	}
	p := hello(0x00, 0xff)
	p[dtlsRecordHeader] = 2 // a ServerHello
	if clientHelloSCSV(p) {
		t.Error("SCSV found in a ServerHello")
	}
}

// FuzzSecureSDP: ICE and DTLS attributes of any SDP parse or fail with
// ErrBadSDP, never panic.
func FuzzSecureSDP(f *testing.F) {
	f.Add([]byte(metaDTLSOffer), true)
	f.Add([]byte(strings.Replace(metaDTLSOffer, "actpass", "passive", 1)), false)
	f.Fuzz(func(t *testing.T, body []byte, offer bool) {
		d, err := ParseSDP(body)
		if err != nil || len(d.Media) == 0 {
			return
		}
		p, err := parseSecure(d, &d.Media[0], offer)
		if err != nil {
			if !errors.Is(err, ErrBadSDP) {
				t.Fatalf("error does not wrap ErrBadSDP: %v", err)
			}
			if w := SDPWarning(err); strings.ContainsAny(w, "\r\n\"\\") || len(w) > 160 {
				t.Fatalf("warning not fit for a header: %q", w)
			}
			return
		}
		if len(p.candidates) == 0 || len(p.fingerprints) == 0 || len(p.candidates) > maxCandidates {
			t.Fatalf("accepted %+v", p)
		}
		for _, f := range p.fingerprints {
			if f.hash != p.fingerprints[0].hash {
				t.Fatalf("fingerprints of %s and %s kept: only the strongest hash's count", f.hash, p.fingerprints[0].hash)
			}
		}
		// The same body as a re-offer on a leg keyed with it: it keeps
		// the association unless its setup swaps the roles.
		leg := &secureLeg{peer: p, client: p.setup != setupActive}
		if err := leg.sameAssociation(d, &d.Media[0]); err != nil && (offer || !errors.Is(err, ErrBadSDP)) {
			t.Fatalf("re-offer of the same parameters refused: %v", err)
		}
	})
}

// FuzzDemux: whatever arrives on a dtls leg's port is classified without
// a panic, and nothing but well-formed STUN passes checkSTUN.
func FuzzDemux(f *testing.F) {
	f.Add([]byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, true)
	f.Add([]byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0}, false)
	var m stun.Message
	f.Fuzz(func(t *testing.T, pkt []byte, known bool) {
		if len(pkt) == 0 {
			return
		}
		switch demuxKind(pkt[0]) {
		case kindSTUN:
			if c := checkSTUN(&m, pkt, "ourU", "our-password-0123456789", "peer-password-0123456789", known); c == stunRequest || c == stunPass {
				if !stun.IsMessage(pkt) {
					t.Fatalf("passed a non-STUN datagram %x", pkt)
				}
			}
		case kindDTLS:
			if validDTLSRecords(pkt) {
				clientHelloSCSV(pkt)
			}
		}
	})
}
