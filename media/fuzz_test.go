package media

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/pion/rtcp"
	"gopkg.in/hraban/opus.v2"
)

var sdpSeeds = []string{metaOffer, metaPlainOffer, sippOffer, asteriskAnswer, faxOffer,
	// SIPp's default uac offer and a FreeSWITCH-like answer.
	"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.1.1\r\ns=-\r\nc=IN IP4 127.0.1.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
	"v=0\r\no=FreeSWITCH 1700000000 1700000001 IN IP4 192.0.2.10\r\ns=FreeSWITCH\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 24580 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=rtcp:24581 IN IP4 192.0.2.10\r\n",
	"v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 5000 RTP/AVP 0\r\na=inactive\r\n",
	"v=0\nm=audio 1 RTP/AVP 96\na=rtpmap:96 opus/48000/2\na=fmtp:96",
}

// FuzzParseSDP: no panic, errors wrap ErrBadSDP, and what parses marshals
// to something that parses to a fixed point.
func FuzzParseSDP(f *testing.F) {
	for _, s := range sdpSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := ParseSDP(body)
		if err != nil {
			if !errors.Is(err, ErrBadSDP) {
				t.Fatalf("error does not wrap ErrBadSDP: %v", err)
			}
			return
		}
		out := d.Marshal()
		if len(out) > maxSDPSize {
			return // static codecs gain rtpmap lines; may outgrow the limit
		}
		d2, err := ParseSDP(out)
		if err != nil {
			t.Fatalf("our own SDP does not parse: %v\n%q", err, out)
		}
		if out2 := d2.Marshal(); !bytes.Equal(out, out2) {
			t.Fatalf("marshal not stable:\n%q\n%q", out, out2)
		}
	})
}

// fuzzBridge is a bridge without sockets between two plain legs that
// allow every codec, as NewBridge makes: negotiation only.
func fuzzBridge() *Bridge {
	return socketlessBridge(LegConfig{}, LegConfig{})
}

// fuzzLegs picks the legs' configuration from a fuzz byte: bit 0 A is
// SDES, bit 1 B is SDES, bit 2 A is WhatsApp, bit 3 B is WhatsApp, bit 4
// A behind NAT.
func fuzzLegs(mode byte, codecsB []string) (a, b LegConfig) {
	enc := func(bit byte) string {
		if mode&bit != 0 {
			return EncryptionSDES
		}
		return EncryptionNone
	}
	a = LegConfig{Encryption: enc(1), WhatsApp: mode&4 != 0, BehindNAT: mode&16 != 0}
	b = LegConfig{Encryption: enc(2), WhatsApp: mode&8 != 0, Codecs: filterCodecs(codecsB)}
	return a, b
}

// sdesAnswer is a PBX-like SDES answer to our offer (tag 1 is always
// AES_CM_128_HMAC_SHA1_80).
var sdesAnswer = strings.Replace(strings.Replace(asteriskAnswer, "RTP/AVP", "RTP/SAVP", 1),
	"a=sendrecv\r\n", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"+keyB64(30, true)+"\r\na=sendrecv\r\n", 1)

// FuzzBridgeOfferAnswer: offer from A, then answer from B, from fuzz
// bytes, on plain and SDES legs: errors are of the two classes the SIP
// layer maps, and what succeeds is SDP we can parse, names only payload
// types A offered, keys SDES legs and relays or transcodes A's codec.
func FuzzBridgeOfferAnswer(f *testing.F) {
	for _, offer := range []string{metaPlainOffer, sippOffer, faxOffer, metaOffer} {
		for _, answer := range []string{asteriskAnswer, sippOffer, metaPlainOffer, sdesAnswer} {
			for _, mode := range []byte{0, 1, 2, 3, 5, 10, 17} {
				f.Add([]byte(offer), []byte(answer), "opus,PCMU,PCMA", mode)
			}
		}
	}
	f.Add([]byte(sippOffer), []byte(asteriskAnswer), "pcma", byte(0))
	f.Add([]byte(metaOffer), []byte(sdesAnswer), "PCMU", byte(1|2|4))
	f.Fuzz(func(t *testing.T, offer, answer []byte, codecs string, mode byte) {
		cfgA, cfgB := fuzzLegs(mode, strings.Split(codecs, ","))
		if len(cfgB.Codecs) == 0 {
			return // NewCallBridge would take every codec; covered by other inputs
		}
		b := socketlessBridge(cfgA, cfgB)
		offerB, err := b.Offer(offer)
		if err != nil {
			if !errors.Is(err, ErrBadSDP) && !errors.Is(err, ErrNoCommonCodec) {
				t.Fatalf("Offer: unexpected error class: %v", err)
			}
			if _, err := b.AnswerB(answer); err == nil {
				t.Fatal("AnswerB succeeded without an offer")
			}
			return
		}
		dB, err := ParseSDP(offerB)
		if err != nil {
			t.Fatalf("our offer does not parse: %v\n%s", err, offerB)
		}
		mb := dB.Media[0]
		if len(dB.Media) != 1 || mb.Port != 30002 || !hasAudioCodec(mb.Codecs) || mb.Proto != cfgB.proto() {
			t.Fatalf("bad offer to B:\n%s", offerB)
		}
		if hasCrypto := len(mb.Attributes) > 0; hasCrypto != (cfgB.Encryption == EncryptionSDES) {
			t.Fatalf("a=crypto in the offer to a %s leg:\n%s", cfgB.Encryption, offerB)
		}
		answerA, err := b.AnswerB(answer)
		if err != nil {
			if !errors.Is(err, ErrBadSDP) && !errors.Is(err, ErrNoCommonCodec) {
				t.Fatalf("AnswerB: unexpected error class: %v", err)
			}
			return
		}
		dA, err := ParseSDP(answerA)
		if err != nil {
			t.Fatalf("our answer does not parse: %v\n%s", err, answerA)
		}
		dOffer, _ := ParseSDP(offer)
		if len(dA.Media) != len(dOffer.Media) {
			t.Fatalf("answer has %d m= lines, offer %d", len(dA.Media), len(dOffer.Media))
		}
		active := 0
		for i, m := range dA.Media {
			if m.Port == 0 {
				continue
			}
			active++
			if m.Port != 30000 || m.Type != "audio" || i != b.neg.audio || len(m.Codecs) == 0 || m.Proto != cfgA.proto() {
				t.Fatalf("bad active stream %d:\n%s", i, answerA)
			}
			if hasCrypto := len(m.Attributes) == 1 && m.Attributes[0].Key == "crypto"; hasCrypto != (cfgA.Encryption == EncryptionSDES) {
				t.Fatalf("a=crypto in the answer to a %s leg:\n%s", cfgA.Encryption, answerA)
			}
			// Every payload type A is told to use must be in A's offer.
			for _, c := range m.Codecs {
				if !inCodecs(dOffer.Media[i].Codecs, c.PT) {
					t.Fatalf("answer PT %d not offered by A", c.PT)
				}
			}
		}
		if active != 1 {
			t.Fatalf("%d active streams in answer", active)
		}
		ab, ba := b.routeAB.Load(), b.routeBA.Load()
		if ab.pt[dA.Media[b.neg.audio].Codecs[0].PT] == ptDrop || ab.mode == modeNone || ab.mode != ba.mode {
			t.Fatal("A's codec not relayed or transcoded toward B")
		}
		if (ab.from.recvKey != nil) != (cfgA.Encryption == EncryptionSDES) || (ab.to.sendKey != nil) != (cfgB.Encryption == EncryptionSDES) {
			t.Fatal("keys do not follow the legs' encryption")
		}
		if ab.mode == modeTranscode {
			if _, err := newTranscodeStage(&direction{b: b}, ab, b.m.opus); err != nil {
				t.Fatalf("route A→B cannot be transcoded: %v", err)
			}
		}
	})
}

func inCodecs(cs []Codec, pt uint8) bool {
	for _, c := range cs {
		if c.PT == pt {
			return true
		}
	}
	return false
}

// FuzzRelayPacket: arbitrary bytes from A's address into a relayed
// direction (PCMA and telephone-event): whatever leaves is valid RTP of
// ours, with a negotiated payload type and the input's length.
func FuzzRelayPacket(f *testing.F) {
	f.Add([]byte{0x80, 0x08, 0, 1, 0, 0, 0, 160, 0, 0, 0, 42, 0xff, 0xfe})
	f.Add([]byte{0x80, 0xe5, 0, 1, 0, 0, 0, 160, 0, 0, 0, 42, 1, 0x8a, 0, 160})
	f.Add([]byte{0x90, 0x08, 0, 1, 0, 0, 0, 160, 0, 0, 0, 42, 0xbe, 0xde, 0, 1, 0x10, 0xaa, 0, 0, 1})
	f.Add([]byte{0xa2, 0x08, 0, 1, 0, 0, 0, 160, 0, 0, 0, 42, 0, 0, 0, 1, 0, 0, 0, 2, 9, 9, 2})
	f.Add([]byte{0x80, 0xc9, 0, 1, 0, 0, 0, 1}) // RTCP RR
	f.Add([]byte{0x8f, 0x00})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		br := socketlessBridge(LegConfig{}, LegConfig{})
		if _, err := br.OfferB([]byte(sippOffer), []string{"PCMA"}); err != nil {
			t.Fatal(err)
		}
		if _, err := br.AnswerB(sdpOffer(6000, "RTP/AVP", "8 101", "rtpmap:101 telephone-event/8000")); err != nil {
			t.Fatal(err)
		}
		d := newTestDirection(br, SideA)
		d.feed(pkt, netip.MustParseAddrPort("127.0.0.1:6000"))
		for _, got := range d.dst.pkts {
			h := readHdr(got)
			if _, ok := rtpHeaderLen(got); !ok || len(got) != len(pkt) || h.ssrc != br.legs[SideB].ssrc || (h.pt != 8 && h.pt != 101) {
				t.Fatalf("sent %x for %x", got, pkt)
			}
		}
	})
}

// metaKey is the key||salt of metaOffer's a=crypto line (MKI 1:1).
const metaKey = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"

// FuzzSRTPInput: arbitrary bytes from Meta's address into an SDES leg's
// input path (SRTP and SRTCP, transcoding Opus to a PCMU PBX). Nothing may
// panic, and anything that reaches the PBX must be our PCMU or
// telephone-event RTP: what fails authentication never gets through.
func FuzzSRTPInput(f *testing.F) {
	k := mustCryptoKey(f, "1 AES_CM_128_HMAC_SHA1_80 inline:"+metaKey+"|2^31|1:1")
	ctx, err := k.newContext(nil)
	if err != nil {
		f.Fatal(err)
	}
	enc, _ := opus.NewEncoder(48000, 1, opus.AppVoIP)
	buf := make([]byte, 1500)
	n, _ := enc.Encode(tone(1000, 48000, 960, 0), buf)
	for i, pkt := range [][]byte{
		rtpPacket(f, 111, 1, 0, 7, buf[:n]),
		rtpPacket(f, 126, 2, 960, 7, event(1, true, 960)),
		rtpPacket(f, 0, 3, 1920, 7, make([]byte, 160)),
	} {
		e, err := ctx.EncryptRTP(nil, pkt, nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(e)
		f.Add(pkt) // plain RTP on an SDES leg
		tampered := bytes.Clone(e)
		tampered[len(tampered)-1-i] ^= 1
		f.Add(tampered)
	}
	rr, _ := rtcp.Marshal([]rtcp.Packet{&rtcp.SenderReport{SSRC: 7, Reports: []rtcp.ReceptionReport{{SSRC: 1, FractionLost: 9}}}})
	srtcp, err := ctx.EncryptRTCP(nil, rr, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(srtcp)
	f.Add(rr)
	f.Add([]byte{0x80})
	meta := netip.MustParseAddrPort("157.240.19.130:3480")
	f.Fuzz(func(t *testing.T, pkt []byte) {
		br := socketlessBridge(LegConfig{Encryption: EncryptionSDES, WhatsApp: true, Codecs: []string{"opus"}}, LegConfig{Codecs: []string{"PCMU"}})
		if _, err := br.Offer([]byte(metaOffer)); err != nil {
			t.Fatal(err)
		}
		if _, err := br.AnswerB([]byte(asteriskAnswer)); err != nil {
			t.Fatal(err)
		}
		d := newTestDirection(br, SideA)
		defer d.closeStages()
		d.feed(pkt, meta)
		d.feed(pkt, meta) // the second copy is a replay
		for _, out := range d.dst.pkts {
			h := readHdr(out)
			if _, ok := rtpHeaderLen(out); !ok || h.ssrc != br.legs[SideB].ssrc || (h.pt != 0 && h.pt != 101) {
				t.Fatalf("sent %x for %x", out, pkt)
			}
		}
		s := br.Stats()
		if len(d.dst.pkts) > 0 && s.DroppedAuth+s.DroppedReplay == 0 && s.RTCPReceived == 0 {
			// Authenticated once, so the copy must have been a replay.
			t.Fatalf("no replay counted: %+v", s)
		}
	})
}
