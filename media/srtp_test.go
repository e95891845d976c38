package media

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/srtp/v3"
)

// srtpPeer is a fake SDES endpoint built on pion/srtp directly (not on our
// contexts): it encrypts with its own key and decrypts with the one
// wagate's SDP gave it.
type srtpPeer struct {
	*peer
	suite  *srtpSuite
	keyB64 string // its key||salt
	enc    *srtp.Context
	dec    *srtp.Context
}

func newSRTPPeer(t testing.TB, suite *srtpSuite) *srtpPeer {
	t.Helper()
	raw := make([]byte, suite.keyLen+suite.saltLen)
	for i := range raw {
		raw[i] = byte(i*7 + 3)
	}
	enc, err := srtp.CreateContext(raw[:suite.keyLen], raw[suite.keyLen:], suite.profile)
	if err != nil {
		t.Fatal(err)
	}
	return &srtpPeer{peer: newPeer(t), suite: suite, keyB64: base64.StdEncoding.EncodeToString(raw), enc: enc}
}

// crypto is the peer's a=crypto value with tag.
func (p *srtpPeer) crypto(tag int) string {
	return fmt.Sprintf("%d %s inline:%s", tag, p.suite.name, p.keyB64)
}

// learn keys the peer's decryption from wagate's a=crypto line.
func (p *srtpPeer) learn(t testing.TB, attr string) {
	t.Helper()
	k, err := parseCrypto(attr)
	if err != nil {
		t.Fatal(err)
	}
	if k.suite != p.suite {
		t.Fatalf("wagate keyed %s, peer uses %s", k.suite.name, p.suite.name)
	}
	if p.dec, err = srtp.CreateContext(k.keys[0].key, k.keys[0].salt, p.suite.profile); err != nil {
		t.Fatal(err)
	}
}

func (p *srtpPeer) encrypt(t testing.TB, pkt []byte) []byte {
	t.Helper()
	out, err := p.enc.EncryptRTP(nil, pkt, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// recvSRTP returns the next packet decrypted, failing the test when it
// does not authenticate.
func (p *srtpPeer) recvSRTP(t testing.TB) []byte {
	t.Helper()
	pkt, _ := p.recvSRTPAt(t)
	return pkt
}

// recvSRTPAt is recvSRTP that also returns when the packet arrived (see
// peer.recvAt).
func (p *srtpPeer) recvSRTPAt(t testing.TB) ([]byte, time.Time) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		pkt, at := p.recvAt(time.Until(deadline))
		if pkt == nil {
			break
		}
		if isRTCP(pkt) {
			continue
		}
		out, err := p.dec.DecryptRTP(nil, pkt, nil)
		if err != nil {
			t.Fatalf("packet from wagate does not decrypt: %v", err)
		}
		return out, at
	}
	t.Fatal("no packet")
	return nil, time.Time{}
}

// cryptoAttr returns the first a=crypto value of the first stream whose
// tag is tag (0: any).
func cryptoAttr(t testing.TB, d *Description, tag int) string {
	t.Helper()
	for _, a := range d.Media[0].Attributes {
		if a.Key == "crypto" && (tag == 0 || strings.HasPrefix(a.Value, fmt.Sprint(tag)+" ")) {
			return a.Value
		}
	}
	t.Fatalf("no a=crypto with tag %d", tag)
	return ""
}

// sdesCall is a bridge between two SDES peers using suite, relaying Opus.
type sdesCall struct {
	b        *Bridge
	a, bp    *srtpPeer
	toA, toB netip.AddrPort
}

func newSDESCall(t *testing.T, suite *srtpSuite, cfgA, cfgB LegConfig) *sdesCall {
	t.Helper()
	t.Cleanup(func() { checkNoRelayGoroutines(t) })
	m := newTestManager(t, 2, 0, 0)
	// Suites wagate accepts but does not offer are tested on A, with B on
	// the first offered one.
	bSuite := suite
	if slices.Index(srtpSuites, suite) >= offeredSuites {
		bSuite = srtpSuites[0]
	}
	c := &sdesCall{a: newSRTPPeer(t, suite), bp: newSRTPPeer(t, bSuite)}
	var err error
	if c.b, err = m.NewCallBridge("srtp", testLogger(t), cfgA, cfgB); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.b.Close)
	offer := sdpOffer(c.a.port(), "RTP/SAVP", "111 126", "rtpmap:111 opus/48000/2", "rtpmap:126 telephone-event/8000",
		"ptime:20", "rtcp-mux", "crypto:"+c.a.crypto(5))
	offerB, err := c.b.Offer(offer)
	if err != nil {
		t.Fatal(err)
	}
	dB := mustParse(t, offerB)
	if dB.Media[0].Proto != "RTP/SAVP" || !dB.Media[0].RTCPMux {
		t.Fatalf("offer to B:\n%s", offerB)
	}
	// B picks the line of our offer with its suite.
	var tag int
	for _, a := range dB.Media[0].Attributes {
		if k, err := parseCrypto(a.Value); a.Key == "crypto" && err == nil && k.suite == bSuite {
			tag = k.tag
			c.bp.learn(t, a.Value)
		}
	}
	if tag == 0 {
		t.Fatalf("%s not offered:\n%s", bSuite.name, offerB)
	}
	answerA, err := c.b.AnswerB(sdpOffer(c.bp.port(), "RTP/SAVP", "111 126", "rtpmap:111 opus/48000/2", "rtpmap:126 telephone-event/8000", "rtcp-mux", "crypto:"+c.bp.crypto(tag)))
	if err != nil {
		t.Fatal(err)
	}
	dA := mustParse(t, answerA)
	attr := cryptoAttr(t, dA, 0)
	if !strings.HasPrefix(attr, "5 "+suite.name+" inline:") {
		t.Fatalf("answer to A does not echo tag 5 and %s: %q", suite.name, attr)
	}
	c.a.learn(t, attr)
	c.toA, c.toB = dA.Media[0].Addr(), dB.Media[0].Addr()
	c.b.Start(nil)
	return c
}

var sdesBoth = LegConfig{Encryption: EncryptionSDES, Codecs: []string{"opus"}}

// TestSRTPRoundTrip: each supported suite carries media both ways through
// a bridge whose two legs are SDES (A offers the suite, B answers ours).
func TestSRTPRoundTrip(t *testing.T) {
	for _, suite := range srtpSuites {
		t.Run(suite.name, func(t *testing.T) {
			c := newSDESCall(t, suite, sdesBoth, sdesBoth)
			for i := range 3 {
				payload := []byte(fmt.Sprintf("opus %d from A", i))
				c.a.send(c.toA, c.a.encrypt(t, rtpPacket(t, 111, uint16(100+i), uint32(960*i), 0xA, payload)))
				got := c.bp.recvSRTP(t)
				if !bytes.Equal(got[12:], payload) || readHdr(got).pt != 111 {
					t.Fatalf("B got %q, want %q", got[12:], payload)
				}
				payload = []byte(fmt.Sprintf("opus %d from B", i))
				c.bp.send(c.toB, c.bp.encrypt(t, rtpPacket(t, 111, uint16(7000+i), uint32(960*i), 0xB, payload)))
				if got := c.a.recvSRTP(t); !bytes.Equal(got[12:], payload) {
					t.Fatalf("A got %q, want %q", got[12:], payload)
				}
			}
			waitStats(t, c.b, "relayed", func(s BridgeStats) bool { return s.AtoB == 3 && s.BtoA == 3 && s.DroppedAuth == 0 })
		})
	}
}

// TestSRTPDrops: tampered, replayed and plain packets on an SDES leg are
// dropped and counted, and the stream goes on.
func TestSRTPDrops(t *testing.T) {
	c := newSDESCall(t, srtpSuites[0], sdesBoth, sdesBoth)
	good := func(seq uint16) []byte {
		return c.a.encrypt(t, rtpPacket(t, 111, seq, uint32(seq)*960, 0xA, []byte(fmt.Sprintf("frame %d", seq))))
	}
	first := good(1)
	c.a.send(c.toA, first)
	if got := c.bp.recvSRTP(t); string(got[12:]) != "frame 1" {
		t.Fatalf("got %q", got[12:])
	}
	tampered := good(2)
	tampered[14] ^= 0x40
	c.a.send(c.toA, tampered)                                                      // auth fails
	c.a.send(c.toA, first)                                                         // replay
	c.a.send(c.toA, rtpPacket(t, 111, 3, 3*960, 0xA, []byte("plain RTP on SDES"))) // no valid tag
	c.a.send(c.toA, rtpPacket(t, 111, 4, 4*960, 0xBAD, []byte("forged SSRC")))     // probe path
	c.a.send(c.toA, []byte{0x80, 111, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0xA, 1})          // too short for a tag
	waitStats(t, c.b, "drops", func(s BridgeStats) bool {
		return s.DroppedAuth == 3 && s.DroppedReplay == 1 && s.DroppedInvalid == 1
	})
	// The stream goes on, including the packet whose tampered copy failed.
	for _, seq := range []uint16{2, 6} {
		c.a.send(c.toA, good(seq))
		if got := c.bp.recvSRTP(t); string(got[12:]) != fmt.Sprintf("frame %d", seq) {
			t.Fatalf("got %q", got[12:])
		}
	}
	// SRTCP: a forged report is dropped like RTP.
	rr, _ := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 0xA}})
	c.a.send(c.toA, append(rr, make([]byte, 14)...))
	waitStats(t, c.b, "SRTCP drop", func(s BridgeStats) bool { return s.DroppedAuth == 4 && s.AtoB == 3 })
}

// TestSRTPStateBounded: a flood of forged SSRCs does not grow the main
// context, and the probe is recycled.
func TestSRTPStateBounded(t *testing.T) {
	k, err := newLocalKey(1, srtpSuites[0], "")
	if err != nil {
		t.Fatal(err)
	}
	in, err := newSRTPIn(k)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 * probeResetAfter {
		pkt := rtpPacket(t, 111, uint16(i), uint32(i), uint32(i), make([]byte, 40))
		if _, r := in.rtp(pkt); r != dropAuth {
			t.Fatalf("forged packet %d: %v", i, r)
		}
	}
	if in.knownRTP.n != 0 || in.probeFails > probeResetAfter {
		t.Fatalf("known %d, probe failures %d", in.knownRTP.n, in.probeFails)
	}
	if _, ok := in.main.ROC(5); ok {
		t.Fatal("the main context has state for a forged SSRC")
	}
}

// TestSDESTransportMismatch: an SDES leg refuses plain RTP and a plain leg
// refuses SRTP, naming the mismatch (the SIP layer answers 488).
func TestSDESTransportMismatch(t *testing.T) {
	k30 := keyB64(30, true)
	for _, tt := range []struct {
		name   string
		a, b   LegConfig
		offer  string
		answer string // "" to stop after the offer
		want   string
	}{
		{name: "sdes A offers RTP/AVP", a: sdesBoth, offer: metaPlainOffer, want: `"RTP/AVP", but side A is configured for sdes`},
		{name: "none A offers RTP/SAVP", offer: metaOffer, want: `"RTP/SAVP", but side A is configured for none`},
		{name: "sdes A without usable crypto", a: sdesBoth, offer: strings.Replace(metaOffer, "AES_CM_128_HMAC_SHA1_80", "F8_128_HMAC_SHA1_80", 1), want: "no usable a=crypto"},
		{name: "sdes B answers RTP/AVP", b: sdesBoth, offer: metaPlainOffer, answer: string(sdpOffer(6000, "RTP/AVP", "111", "rtpmap:111 opus/48000/2")), want: `"RTP/AVP", but side B is configured for sdes`},
		{name: "none B answers RTP/SAVP", offer: metaPlainOffer, answer: string(sdpOffer(6000, "RTP/SAVP", "111", "rtpmap:111 opus/48000/2", "crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"+k30)), want: `"RTP/SAVP", but side B is configured for none`},
		{name: "sdes B answers a tag we did not offer", b: sdesBoth, offer: metaPlainOffer, answer: string(sdpOffer(6000, "RTP/SAVP", "111", "rtpmap:111 opus/48000/2", "crypto:9 AES_CM_128_HMAC_SHA1_80 inline:"+k30)), want: "tag 9"},
		{name: "sdes B answers another suite under our tag", b: sdesBoth, offer: metaPlainOffer, answer: string(sdpOffer(6000, "RTP/SAVP", "111", "rtpmap:111 opus/48000/2", "crypto:1 AES_CM_128_HMAC_SHA1_32 inline:"+k30)), want: "was not offered"},
		{name: "sdes B answers without crypto", b: sdesBoth, offer: metaPlainOffer, answer: string(sdpOffer(6000, "RTP/SAVP", "111", "rtpmap:111 opus/48000/2")), want: "no a=crypto"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := socketlessBridge(tt.a, tt.b)
			_, err := b.Offer([]byte(tt.offer))
			if tt.answer != "" {
				if err != nil {
					t.Fatal(err)
				}
				_, err = b.AnswerB([]byte(tt.answer))
			}
			if !errors.Is(err, ErrBadSDP) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want ErrBadSDP mentioning %q", err, tt.want)
			}
		})
	}
}

// TestMetaOfferAnswer: Meta's SDES offer toward a G.711 PBX: the PBX gets
// plain G.711, Meta's answer echoes its tag and suite with our own key,
// keeps Opus, ptime 20 and rtcp-mux.
func TestMetaOfferAnswer(t *testing.T) {
	b := socketlessBridge(LegConfig{Encryption: EncryptionSDES, WhatsApp: true, Codecs: []string{"opus"}}, LegConfig{Codecs: []string{"PCMA", "PCMU"}})
	offerB, err := b.Offer([]byte(metaOffer))
	if err != nil {
		t.Fatal(err)
	}
	dB := mustParse(t, offerB)
	if mb := dB.Media[0]; mb.Proto != "RTP/AVP" || codecNames(mb.Codecs) != "PCMA/8000(8),PCMU/8000(0),telephone-event/8000(126)" || len(mb.Attributes) != 0 || mb.Ptime != 20 {
		t.Fatalf("offer to PBX:\n%s", offerB)
	}
	answerA, err := b.AnswerB([]byte(asteriskAnswer))
	if err != nil {
		t.Fatal(err)
	}
	dA := mustParse(t, answerA)
	ma := dA.Media[0]
	if ma.Proto != "RTP/SAVP" || !ma.RTCPMux || ma.Ptime != 20 || codecNames(ma.Codecs) != "opus/48000(111),telephone-event/8000(126)" {
		t.Fatalf("answer to Meta:\n%s", answerA)
	}
	ours, err := parseCrypto(cryptoAttr(t, dA, 1))
	if err != nil || ours.suite.name != "AES_CM_128_HMAC_SHA1_80" || ours.keys[0].mki != nil {
		t.Fatalf("our key %+v, %v", ours, err)
	}
	theirs, _ := parseCrypto(cryptoAttr(t, mustParse(t, []byte(metaOffer)), 1))
	if ours.equal(theirs) {
		t.Fatal("answer reuses Meta's key")
	}
	ab := b.routeAB.Load()
	if ab.mode != modeTranscode || ab.in.name != "opus" || ab.out.name != "PCMU" || ab.outPT != 0 || ab.eventOut != 101 || ab.from.recvKey == nil || ab.to.sendKey != nil {
		t.Fatalf("route A→B %+v", ab)
	}
	if ab.from.recvKey.keys[0].mki[0] != 1 {
		t.Fatal("Meta's MKI 1:1 lost")
	}
}

// TestBehindNATLatch: an SDES leg behind NAT signals an address it does
// not send from; the bridge latches once onto the first source that
// authenticates, never onto forged or plain packets, and sends there.
func TestBehindNATLatch(t *testing.T) {
	t.Cleanup(func() { checkNoRelayGoroutines(t) })
	m := newTestManager(t, 2, 0, 0)
	suite := srtpSuites[0]
	meta, pbx, intruder := newSRTPPeer(t, suite), newPeer(t), newPeer(t)
	b, err := m.NewCallBridge("nat", testLogger(t),
		LegConfig{Encryption: EncryptionSDES, BehindNAT: true, Codecs: []string{"opus"}},
		LegConfig{Codecs: []string{"opus"}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// The SDP names a private address the peer is not reachable at.
	offer := sdpOffer(9, "RTP/SAVP", "111", "rtpmap:111 opus/48000/2", "rtcp-mux", "crypto:"+meta.crypto(1))
	offerB, err := b.Offer(offer)
	if err != nil {
		t.Fatal(err)
	}
	answerA, err := b.AnswerB(sdpOffer(pbx.port(), "RTP/AVP", "111", "rtpmap:111 opus/48000/2"))
	if err != nil {
		t.Fatal(err)
	}
	dA := mustParse(t, answerA)
	meta.learn(t, cryptoAttr(t, dA, 1))
	toA, toB := dA.Media[0].Addr(), mustParse(t, offerB).Media[0].Addr()
	b.Start(nil)

	// Neither plain nor forged SRTP from elsewhere latches.
	intruder.send(toA, rtpPacket(t, 111, 1, 0, 0xA, []byte("plain RTP payload")))
	intruder.send(toA, append(rtpPacket(t, 111, 2, 960, 0xA, []byte("forged")), make([]byte, 10)...))
	waitStats(t, b, "intruder", func(s BridgeStats) bool { return s.DroppedAuth == 2 })
	if rt := b.routeAB.Load(); rt.from.latched.Load() != nil {
		t.Fatal("latched onto an unauthenticated source")
	}
	// The real peer's first authenticated packet latches.
	meta.send(toA, meta.encrypt(t, rtpPacket(t, 111, 10, 9600, 0xA, []byte("real"))))
	if got := expect(t, pbx); string(got[12:]) != "real" {
		t.Fatalf("PBX got %q", got[12:])
	}
	if got := b.routeAB.Load().from.latched.Load(); got == nil || *got != meta.addr() {
		t.Fatalf("latched %v, want %v", got, meta.addr())
	}
	// Media toward A goes to the latched address, and the intruder is now
	// a wrong source even with a valid-looking packet.
	pbx.send(toB, rtpPacket(t, 111, 1, 0, 0xB, []byte("to meta")))
	if got := meta.recvSRTP(t); string(got[12:]) != "to meta" {
		t.Fatalf("Meta got %q", got[12:])
	}
	before := b.Stats().DroppedSource
	intruder.send(toA, meta.encrypt(t, rtpPacket(t, 111, 11, 10560, 0xA, []byte("stolen"))))
	waitStats(t, b, "after latch", func(s BridgeStats) bool { return s.DroppedSource == before+1 })
}
