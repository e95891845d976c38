package media

import (
	"errors"
	"testing"
)

// FuzzReoffer: a re-INVITE's SDP from either side of an answered call
// (AcceptOffer), and the SDP in the ACK of a re-INVITE without one
// (AcceptAnswer to ReOffer's offer), from fuzz bytes, on plain and SDES
// legs. Nothing panics; a refusal is of the two classes the SIP layer
// answers 488 for and changes nothing (RFC 3261 §14.2: the routes both
// ways are the ones the call had); what is accepted is answered with SDP
// we parse, with as many m= lines as the offer, and one active audio
// stream on the side's own port. Run:
// go test -run '^$' -fuzz FuzzReoffer -parallel 1 ./media/
func FuzzReoffer(f *testing.F) {
	seeds := []string{asteriskAnswer, sippOffer, metaPlainOffer, metaOffer, sdesAnswer,
		string(sdpOffer(6000, "RTP/AVP", "0", "rtpmap:0 PCMU/8000", "sendonly")),
		string(sdpOffer(6002, "RTP/AVP", "8 101", "rtpmap:8 PCMA/8000", "rtpmap:101 telephone-event/8000", "ptime:40")),
		"v=0\r\no=- 1 2 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=inactive\r\n",
		"v=0\r\nc=IN IP4 10.0.0.6\r\nm=video 5000 RTP/AVP 96\r\nm=audio 5002 RTP/AVP 0 8\r\na=rtcp:5009\r\na=ptime:1000\r\n",
	}
	for _, s := range seeds {
		for _, mode := range []byte{0, 2, 1 | 4, 3 | 4, 0x20, 0x40, 0x60 | 2} {
			f.Add([]byte(s), mode)
		}
	}
	f.Fuzz(func(t *testing.T, sdp []byte, mode byte) {
		// bits 0-3, 4: fuzzLegs; bit 5: the re-offer comes from A; bit 6:
		// it is the answer in the ACK to wagate's ReOffer.
		cfgA, cfgB := fuzzLegs(mode&0x1f, []string{"opus", "PCMU", "PCMA"})
		b := socketlessBridge(cfgA, cfgB)
		offerA := metaPlainOffer
		if cfgA.Encryption == EncryptionSDES {
			offerA = metaOffer
		}
		answerB := asteriskAnswer
		if cfgB.Encryption == EncryptionSDES {
			answerB = sdesAnswer
		}
		if _, err := b.Offer([]byte(offerA)); err != nil {
			t.Skip("set-up offer refused:", err)
		}
		if _, err := b.AnswerB([]byte(answerB)); err != nil {
			t.Skip("set-up answer refused:", err)
		}
		s := SideB
		if mode&0x20 != 0 {
			s = SideA
		}
		ab, ba := b.routeAB.Load(), b.routeBA.Load()
		var (
			body []byte
			err  error
		)
		if mode&0x40 != 0 {
			if _, err := ParseSDP(b.ReOffer(s)); err != nil {
				t.Fatalf("ReOffer does not parse: %v", err)
			}
			_, err = b.AcceptAnswer(s, sdp)
		} else {
			body, _, err = b.AcceptOffer(s, sdp)
		}
		if err != nil {
			if !errors.Is(err, ErrBadSDP) && !errors.Is(err, ErrNoCommonCodec) {
				t.Fatalf("unexpected error class: %v", err)
			}
			if b.routeAB.Load() != ab || b.routeBA.Load() != ba {
				t.Fatalf("a refused re-offer changed the routes: %v", err)
			}
			return
		}
		if body == nil {
			return // an answer to ReOffer: nothing to send
		}
		d, err := ParseSDP(body)
		if err != nil {
			t.Fatalf("our answer does not parse: %v\n%s", err, body)
		}
		offer, _ := ParseSDP(sdp)
		if len(d.Media) != len(offer.Media) {
			t.Fatalf("answer has %d m= lines, the re-offer %d:\n%s", len(d.Media), len(offer.Media), body)
		}
		port := 30002
		if s == SideA {
			port = 30000
		}
		active := 0
		for _, m := range d.Media {
			if m.Port == 0 {
				continue
			}
			active++
			if m.Port != port || m.Type != "audio" || len(m.Codecs) == 0 {
				t.Fatalf("bad active stream in the answer:\n%s", body)
			}
		}
		if active != 1 {
			t.Fatalf("%d active streams in the answer:\n%s", active, body)
		}
	})
}
