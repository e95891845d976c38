package media

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/codec"
)

// TestOriginateRingbackThenBridge: a call wagate originates offers the
// agent (side A) our port with its G.711 codecs; the agent's answer
// becomes the offer to Meta (side B, Opus over SRTP); while Meta rings the
// agent gets the ringback tone in PCMU in our stream; once Meta answers,
// Meta's audio reaches the agent and the agent's reaches Meta.
func TestOriginateRingbackThenBridge(t *testing.T) {
	t.Cleanup(func() { checkNoRelayGoroutines(t) })
	m := newTestManager(t, 2, 0, 0)
	agent, meta := newPeer(t), newSRTPPeer(t, srtpSuites[0])
	b, err := m.NewCallBridge("c2c", testLogger(t),
		LegConfig{Encryption: EncryptionNone, Codecs: []string{"PCMU", "PCMA"}},
		LegConfig{Encryption: EncryptionSDES, WhatsApp: true, Codecs: []string{"opus"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	if _, err := b.AnswerA(pcmuAnswer(agent.port())); err == nil {
		t.Fatal("AnswerA before OfferA: no error")
	}
	offerA, err := b.OfferA()
	if err != nil {
		t.Fatal(err)
	}
	dA := mustParse(t, offerA)
	if got := dA.Media[0]; got.Proto != "RTP/AVP" || len(got.Codecs) != 3 || got.Codecs[0].PT != 0 || got.Codecs[1].PT != 8 || got.Codecs[2].Name != telephoneEvent {
		t.Fatalf("offer to A: %s", offerA)
	}
	offerB, err := b.AnswerA(pcmuAnswer(agent.port()))
	if err != nil {
		t.Fatal(err)
	}
	dB := mustParse(t, offerB)
	if dB.Media[0].Proto != "RTP/SAVP" || dB.Media[0].Codecs[0].Name != "opus" {
		t.Fatalf("offer to B: %s", offerB)
	}
	b.Start(nil)
	pb, err := b.Ringback(&RingbackTone{})
	if err != nil {
		t.Fatal(err)
	}
	// Ringback: PCMU toward the agent, tone in the first two seconds.
	var loud int
	for range 10 {
		pkt := agent.recv(time.Second)
		if pkt == nil {
			t.Fatal("no ringback packet")
		}
		h := readHdr(pkt)
		if h.pt != 0 {
			t.Fatalf("ringback PT %d, want 0", h.pt)
		}
		if rms(codec.DecodeG711("PCMU", pkt[12:], nil)) > 1000 {
			loud++
		}
	}
	if loud < 8 {
		t.Errorf("ringback: %d of 10 packets carried the tone", loud)
	}
	answerB := sdpOffer(meta.port(), "RTP/SAVP", "111 126", "rtpmap:111 opus/48000/2", "rtpmap:126 telephone-event/8000",
		"ptime:20", "rtcp-mux", "crypto:1 "+meta.crypto(1)[2:])
	meta.learn(t, cryptoAttr(t, dB, 1))
	if err := b.AnswerBAfterRingback(answerB); err != nil {
		t.Fatal(err)
	}
	select {
	case <-pb.Done():
	case <-time.After(5 * time.Second): // a wait for what must come
		t.Fatal("ringback still playing after B's answer")
	}
	// The agent talks: Meta gets Opus over SRTP (silence first, then ours).
	for i := range 5 {
		agent.send(dA.Media[0].Addr(), rtpPacket(t, 0, uint16(i), uint32(160*i), 0x77, codec.EncodeG711("PCMU", tone(440, 8000, 160, 160*i), nil)))
		time.Sleep(20 * time.Millisecond)
	}
	if pkt := meta.recvSRTP(t); readHdr(pkt).pt != 111 {
		t.Fatalf("toward Meta: PT %d", readHdr(pkt).pt)
	}
	if s := b.Stats(); s.Played == 0 {
		t.Errorf("stats: %+v, want played ringback packets", s)
	}
}

// TestOriginateReofferWhileRinging: while B rings, side A's re-INVITE is
// answered from A's own stream: an offer without the codec the ringback
// is played in is refused and changes nothing; one that moves A's media
// gets our same port and the ringback follows it; a hold is answered
// recvonly, and holds A once B answers; ReOffer offers A's codec again.
func TestOriginateReofferWhileRinging(t *testing.T) {
	t.Cleanup(func() { checkNoRelayGoroutines(t) })
	m := newTestManager(t, 2, 0, 0)
	agent, moved, meta := newPeer(t), newPeer(t), newSRTPPeer(t, srtpSuites[0])
	b, err := m.NewCallBridge("c2c", testLogger(t),
		LegConfig{Encryption: EncryptionNone, Codecs: []string{"PCMU", "PCMA"}},
		LegConfig{Encryption: EncryptionSDES, WhatsApp: true, Codecs: []string{"opus"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	offerA, err := b.OfferA()
	if err != nil {
		t.Fatal(err)
	}
	port := mustParse(t, offerA).Media[0].Port
	offerB, err := b.AnswerA(pcmuAnswer(agent.port()))
	if err != nil {
		t.Fatal(err)
	}
	b.Start(nil)
	if _, err := b.Ringback(&RingbackTone{}); err != nil {
		t.Fatal(err)
	}
	pcma := sdpOffer(moved.port(), "RTP/AVP", "8", "rtpmap:8 PCMA/8000")
	if _, _, err := b.AcceptOffer(SideA, pcma); !errors.Is(err, ErrNoCommonCodec) {
		t.Fatalf("re-offer without PCMU: %v, want ErrNoCommonCodec", err)
	}
	ans, st, err := b.AcceptOffer(SideA, pcmuAnswer(moved.port()))
	if err != nil {
		t.Fatal(err)
	}
	if d := mustParse(t, ans).Media[0]; d.Port != port || d.Codecs[0].PT != 0 || d.Direction != SendRecv || !st.Moved {
		t.Fatalf("answer to the move (moved %v): %s", st.Moved, ans)
	}
	if pkt := moved.recv(time.Second); pkt == nil || readHdr(pkt).pt != 0 {
		t.Fatal("no PCMU ringback at A's new address")
	}
	hold := sdpOffer(moved.port(), "RTP/AVP", "0 101", "rtpmap:0 PCMU/8000", "rtpmap:101 telephone-event/8000", "sendonly")
	ans, st, err = b.AcceptOffer(SideA, hold)
	if err != nil || !st.Hold || mustParse(t, ans).Media[0].Direction != RecvOnly {
		t.Fatalf("answer to the hold (hold %v, %v): %s", st.Hold, err, ans)
	}
	if d := mustParse(t, b.ReOffer(SideA)).Media[0]; d.Port != port || d.Codecs[0].Name != "PCMU" || d.Direction != SendRecv {
		t.Fatalf("ReOffer while ringing: %+v", d)
	}
	dB := mustParse(t, offerB)
	meta.learn(t, cryptoAttr(t, dB, 1))
	answerB := sdpOffer(meta.port(), "RTP/SAVP", "111 126", "rtpmap:111 opus/48000/2", "rtpmap:126 telephone-event/8000",
		"ptime:20", "rtcp-mux", "crypto:1 "+meta.crypto(1)[2:])
	if err := b.AnswerBAfterRingback(answerB); err != nil {
		t.Fatal(err)
	}
	if !b.Held(SideA) {
		t.Error("A held while B rang is not held once B answered")
	}
}

// TestReleaseSideNotTimed: the agent of an originated call sends, then
// hangs up once ReleaseSide says it leaves (a semi-attended transfer
// handed the ringing user to another call's caller): its silence ends
// nothing while B rings nor after B answers. Without ReleaseSide the same
// silence ends the call (the control), so the test can fail.
func TestReleaseSideNotTimed(t *testing.T) {
	t.Cleanup(func() { checkNoRelayGoroutines(t) })
	const timeout = 300 * time.Millisecond
	for _, release := range []bool{false, true} {
		m := newTestManager(t, 2, 0, timeout)
		agent, meta := newPeer(t), newPeer(t)
		b, err := m.NewCallBridge("c2c", testLogger(t),
			LegConfig{Encryption: EncryptionNone, Codecs: []string{"PCMU"}},
			LegConfig{Encryption: EncryptionNone, Codecs: []string{"PCMU"}})
		if err != nil {
			t.Fatal(err)
		}
		offerA, err := b.OfferA()
		if err != nil {
			t.Fatal(err)
		}
		offerB, err := b.AnswerA(pcmuAnswer(agent.port()))
		if err != nil {
			t.Fatal(err)
		}
		timeouts := make(chan error, 2)
		b.Start(func(err error) { timeouts <- err })
		toWagateA := mustParse(t, offerA).Media[0].Addr()
		for i := range 5 {
			agent.send(toWagateA, rtpPacket(t, 0, uint16(i), uint32(160*i), 0x77, make([]byte, 160)))
			time.Sleep(20 * time.Millisecond)
		}
		if release {
			b.ReleaseSide(SideA)
		}
		// The agent is gone; B rings for longer than the timeout.
		select {
		case err := <-timeouts:
			if release {
				t.Fatalf("released: the call ended while B rang: %v", err)
			}
			b.Close()
			continue // the control: silence ends an unreleased call
		case <-time.After(4 * timeout):
			if !release {
				t.Fatal("control: the agent's silence did not end the call: the test tests nothing")
			}
		}
		if err := b.AnswerBAfterRingback(pcmuAnswer(meta.port())); err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		sendPayloadEvery(t, &wg, stop, meta, mustParse(t, offerB).Media[0].Addr(), 0, 0x99, 160, make([]byte, 160))
		select {
		case err := <-timeouts:
			t.Errorf("released: the call ended after B answered: %v", err)
		case <-time.After(4 * timeout):
		}
		close(stop)
		wg.Wait()
		b.Close()
	}
}
