package media

import (
	"testing"
	"time"

	"github.com/wagate/wagate/codec"
)

// TestLocalInbandDTMF: a G.711 caller answered locally (no B) sends keys
// as tones in its audio: OnDTMF hears each once. A key sent both ways (an
// RFC 4733 event and its tone) is heard once; after that event the side
// is taken to use events, so a later tone is not a key, and its events
// still are.
func TestLocalInbandDTMF(t *testing.T) {
	t.Cleanup(func() { checkNoRelayGoroutines(t) })
	m := newTestManager(t, 2, 0, 0)
	caller := newPeer(t)
	b, err := m.NewCallBridge("ivr-g711", testLogger(t),
		LegConfig{Encryption: EncryptionNone, Codecs: []string{"PCMU", "PCMA"}},
		LegConfig{Encryption: EncryptionNone, Codecs: []string{"PCMU"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	answer, err := b.AnswerLocal(sdpOffer(caller.port(), "RTP/AVP", "0 101", "rtpmap:0 PCMU/8000",
		"rtpmap:101 telephone-event/8000", "ptime:20"))
	if err != nil {
		t.Fatal(err)
	}
	toA := mustParse(t, answer).Media[0].Addr()
	rec := &keyRecorder{}
	b.OnDTMF(rec.key)
	b.Start(nil)

	seq, ts := uint16(100), uint32(0)
	frame := func(pcm []int16) {
		caller.send(toA, rtpPacket(t, 0, seq, ts, 0xcafe, codec.EncodeG711("PCMU", pcm, nil)))
		seq++
		ts += 160
		time.Sleep(2 * time.Millisecond)
	}
	audio := func(s *sig) {
		pcm := make([]int16, len(s.pcm))
		for i, v := range s.pcm {
			pcm[i] = int16(v)
		}
		for len(pcm) >= 160 {
			frame(pcm[:160])
			pcm = pcm[160:]
		}
	}
	evt := func(code byte) {
		for k := range 4 {
			caller.send(toA, rtpPacket(t, 101, seq, ts, 0xcafe, event(code, k == 3, uint16(160*(k+1)))))
			seq++
		}
	}
	waitKeys := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second) // generous: a loaded machine
		for {
			keys, _ := rec.snapshot()
			if keys == want || time.Now().After(deadline) {
				if keys != want {
					t.Fatalf("OnDTMF heard %q, want %q", keys, want)
				}
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	audio(new(sig).silence(100).key('1', -15, 100).silence(100).key('#', -25, 80).silence(100))
	waitKeys("1#")
	// '7' both ways: the tone, then its event while the tone goes on.
	audio(new(sig).key('7', -15, 60))
	evt(7)
	audio(new(sig).key('7', -15, 60).silence(100))
	time.Sleep(100 * time.Millisecond)
	waitKeys("1#7")
	// Events from now on: a tone alone is not a key, an event is.
	audio(new(sig).key('9', -15, 100).silence(100))
	evt(5)
	audio(new(sig).silence(100))
	waitKeys("1#75")
	if st := b.Stats(); st.InbandDTMF != 3 {
		t.Errorf("InbandDTMF = %d, want 3", st.InbandDTMF)
	}
}
