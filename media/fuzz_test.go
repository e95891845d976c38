package media

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
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

// fuzzBridge is a bridge without sockets: negotiation only.
func fuzzBridge() *Bridge {
	m := &Manager{advertise: netip.MustParseAddr("192.0.2.1"), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	return newBridge(m, m.log, &portPair{port: 30000}, &portPair{port: 30002})
}

// FuzzBridgeOfferAnswer: offer from A, then answer from B, from fuzz bytes.
func FuzzBridgeOfferAnswer(f *testing.F) {
	for _, offer := range []string{metaPlainOffer, sippOffer, faxOffer, metaOffer} {
		for _, answer := range []string{asteriskAnswer, sippOffer, metaPlainOffer} {
			f.Add([]byte(offer), []byte(answer), "opus,PCMU,PCMA")
		}
	}
	f.Add([]byte(sippOffer), []byte(asteriskAnswer), "pcma")
	f.Fuzz(func(t *testing.T, offer, answer []byte, codecs string) {
		b := fuzzBridge()
		offerB, err := b.OfferB(offer, strings.Split(codecs, ","))
		if err != nil {
			if !errors.Is(err, ErrBadSDP) && !errors.Is(err, ErrNoCommonCodec) {
				t.Fatalf("OfferB: unexpected error class: %v", err)
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
		if len(dB.Media) != 1 || dB.Media[0].Port != 30002 || !hasAudioCodec(dB.Media[0].Codecs) {
			t.Fatalf("bad offer to B:\n%s", offerB)
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
			if m.Port != 30000 || m.Type != "audio" || i != b.neg.audio || len(m.Codecs) == 0 {
				t.Fatalf("bad active stream %d:\n%s", i, answerA)
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
		if ab := b.routeAB.Load(); ab.pt[dA.Media[b.neg.audio].Codecs[0].PT] == ptDrop {
			t.Fatal("A's codec not mapped toward B")
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

// FuzzRelayPacket: the header check and in-place rewrite on arbitrary
// bytes. Valid packets keep their length and payload and leave as ours.
func FuzzRelayPacket(f *testing.F) {
	f.Add([]byte{0x80, 0x00, 0, 1, 0, 0, 0, 160, 0, 0, 0, 42, 0xff, 0xfe}, byte(0))
	f.Add([]byte{0x80, 0xe0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 42}, byte(96))
	f.Add([]byte{0x90, 0x6f, 0, 1, 0, 0, 0, 160, 0, 0, 0, 42, 0xbe, 0xde, 0, 1, 0x10, 0xaa, 0, 0, 1}, byte(111))
	f.Add([]byte{0xa2, 0x00, 0, 1, 0, 0, 0, 160, 0, 0, 0, 42, 0, 0, 0, 1, 0, 0, 0, 2, 9, 9, 2}, byte(0))
	f.Add([]byte{0x80, 0xc9, 0, 1, 0, 0, 0, 1}, byte(0)) // RTCP RR
	f.Add([]byte{0x8f, 0x00}, byte(0))
	f.Fuzz(func(t *testing.T, pkt []byte, inPT byte) {
		n, ok := rtpHeaderLen(pkt)
		rtcp := isRTCP(pkt)
		if !ok || rtcp {
			return
		}
		if n < rtpHeaderMin || n > len(pkt) {
			t.Fatalf("header length %d of %d", n, len(pkt))
		}
		rt := &route{pt: newPTMap(), frame: 160}
		rt.pt[inPT&0x7f] = 8
		s := &relayStage{ro: newReoriginator()}
		orig := bytes.Clone(pkt)
		var out captureSender
		sent := s.push(pkt, rt, &out)
		if sent != (orig[1]&0x7f == inPT&0x7f) {
			t.Fatalf("sent %v for PT %d mapped %d", sent, orig[1]&0x7f, inPT&0x7f)
		}
		if !sent {
			if !bytes.Equal(pkt, orig) {
				t.Fatal("dropped packet modified")
			}
			return
		}
		got := out.pkts[0]
		if len(got) != len(orig) || !bytes.Equal(got[12:], orig[12:]) || got[0] != orig[0] {
			t.Fatal("rewrite changed more than the fixed header")
		}
		if h := readHdr(got); h.pt != 8 || h.ssrc != s.ro.ssrc || h.marker != (orig[1]&0x80 != 0) {
			t.Fatalf("rewritten header %+v", h)
		}
		if _, ok := rtpHeaderLen(got); !ok {
			t.Fatal("rewritten packet invalid")
		}
	})
}
