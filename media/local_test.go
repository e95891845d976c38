package media

import (
	"bytes"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/codec"
	"gopkg.in/hraban/opus.v2"
)

// metaLocalOffer is Meta's offer (Opus 111, telephone-event 126, SDES) for
// the srtpPeer meta.
func metaLocalOffer(meta *srtpPeer) []byte {
	return sdpOffer(meta.port(), "RTP/SAVP", "111 126", "rtpmap:111 opus/48000/2",
		"fmtp:111 maxaveragebitrate=20000;maxplaybackrate=16000;minptime=20;sprop-maxcapturerate=16000;useinbandfec=1",
		"rtpmap:126 telephone-event/8000", "ptime:20", "rtcp-mux", "crypto:1 "+meta.crypto(1)[2:]+"|2^31|1:1")
}

// keyRecorder collects OnDTMF keys and tapped PCM of side A.
type keyRecorder struct {
	mu   sync.Mutex
	keys []rune
	pcm  []int16
}

func (k *keyRecorder) key(side Side, r rune) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if side == SideA {
		k.keys = append(k.keys, r)
	}
}

func (k *keyRecorder) PCM(side Side, pcm []int16) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if side == SideA {
		k.pcm = append(k.pcm, pcm...)
	}
}

func (k *keyRecorder) snapshot() (string, []int16) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return string(k.keys), append([]int16(nil), k.pcm...)
}

// TestLocalAnswerThenConnect: Meta's call answered by wagate itself. The
// answer is Opus with Meta's payload types and a key of our own; silence
// flows to Meta at once; with no B, Meta's keys reach OnDTMF once each and
// its audio reaches the tap; side B never times out while it has no peer
// (start timeout 1 s, 2 s without B). Then a PCMU PBX is offered and
// answers: A's answer stays what A has, and audio goes both ways,
// transcoded, and Meta's digits reach the PBX on its payload type.
func TestLocalAnswerThenConnect(t *testing.T) {
	t.Cleanup(func() { checkNoRelayGoroutines(t) })
	// The start timeout is B's test: it must pass while B is absent. A
	// 400 ms one failed on a loaded machine (-race, busy cores): A's,
	// when Meta's first packet came later than that after Start, and
	// B's, counted from the last look at its absence (fixed in
	// switchRoute, TestLocalBStartTimeoutFromConnect), when the PBX's
	// first packet came later than 50 ms after its answer.
	m := newTestManager(t, 2, time.Second, 0)
	meta, pbx := newSRTPPeer(t, srtpSuites[0]), newPeer(t)
	b, err := m.NewCallBridge("ivr", testLogger(t),
		LegConfig{Encryption: EncryptionSDES, WhatsApp: true, Codecs: []string{"opus"}},
		LegConfig{Encryption: EncryptionNone, Codecs: []string{"PCMU"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	if _, err := b.OfferToB(); err == nil {
		t.Fatal("OfferToB before AnswerLocal: no error")
	}
	answer, err := b.AnswerLocal(metaLocalOffer(meta))
	if err != nil {
		t.Fatal(err)
	}
	dA := mustParse(t, answer)
	ma := dA.Media[0]
	if ma.Proto != "RTP/SAVP" || len(ma.Codecs) != 2 || ma.Codecs[0].PT != 111 || ma.Codecs[0].Name != "opus" || ma.Codecs[1].PT != 126 || !ma.RTCPMux {
		t.Fatalf("local answer:\n%s", answer)
	}
	meta.learn(t, cryptoAttr(t, dA, 1))
	if meta.enc, err = mustCryptoKey(t, "1 "+meta.crypto(1)[2:]+"|2^31|1:1").newContext(nil); err != nil {
		t.Fatal(err)
	}
	toA := ma.Addr()

	// A re-INVITE from Meta before any B (its ICE stack's, a refresh)
	// gets the answer A has and changes nothing.
	if re, st, err := b.AcceptOffer(SideA, metaLocalOffer(meta)); err != nil || !bytes.Equal(re, answer) || st.Hold {
		t.Fatalf("re-offer from A before B: %v %+v\n%s", err, st, re)
	}

	rec := &keyRecorder{}
	b.OnDTMF(rec.key)
	b.SetTap(rec)
	// Meta speaks (1 kHz) and presses 4, 2, # (each event: 3 packets, its
	// end sent 3 times) for 2 s: well past side B's start timeout. Its
	// first packet is sent before Start, so it waits for the relay in the
	// socket: A's start timeout cannot fire however late a loaded machine
	// runs this goroutine.
	enc, err := opus.NewEncoder(48000, 1, opus.AppVoIP)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	seq, ts := uint16(1), uint32(0)
	send := func(pt uint8, payload []byte, adv uint32) {
		meta.send(toA, meta.encrypt(t, rtpPacket(t, pt, seq, ts, 0x5eed, payload)))
		seq++
		ts += adv
	}
	speak := func(i int) {
		switch i {
		case 20, 30, 40:
			code := map[int]byte{20: 4, 30: 2, 40: 11}[i]
			for k := range 6 {
				send(126, event(code, k >= 3, uint16(160*(k+1))), 0)
			}
			ts += 960
		default:
			n, err := enc.Encode(tone(1000, 48000, 960, 960*i), buf)
			if err != nil {
				t.Fatal(err)
			}
			send(111, buf[:n], 960)
		}
	}
	speak(0)

	var timedOut sync.Mutex
	var timeoutErr error
	b.Start(func(err error) {
		timedOut.Lock()
		timeoutErr = err
		timedOut.Unlock()
	})
	first := readHdr(meta.recvSRTP(t))
	if first.pt != 111 || !bytes.Equal(meta.recvSRTP(t)[12:], m.opusSilence) {
		t.Fatalf("first packet toward Meta %+v: want silence on PT 111", first)
	}
	for i := 1; i < 100; i++ {
		time.Sleep(20 * time.Millisecond)
		speak(i)
	}
	// The relay may lag the sender on a loaded machine: wait for the
	// third key and half the audio before judging them.
	var keys string
	var pcm []int16
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if keys, pcm = rec.snapshot(); len(keys) >= 3 && len(pcm) >= 8000/2 || time.Now().After(deadline) {
			break
		}
	}
	if keys != "42#" {
		t.Errorf("OnDTMF heard %q, want \"42#\" (each key once)", keys)
	}
	if len(pcm) < 8000/2 {
		t.Fatalf("the tap got %d samples of Meta's audio, want about 1 s", len(pcm))
	}
	if f := zeroCrossFreq(loud(pcm[800:], 160), 8000); math.Abs(f-1000) > 20 {
		t.Errorf("tapped audio is %.1f Hz, want 1000", f)
	}
	timedOut.Lock()
	if timeoutErr != nil {
		t.Fatalf("timed out while B was absent: %v", timeoutErr)
	}
	timedOut.Unlock()

	// Connect the PBX.
	offerB, err := b.OfferToB()
	if err != nil {
		t.Fatal(err)
	}
	mb := mustParse(t, offerB).Media[0]
	if mb.Codecs[0].Name != "PCMU" || mb.Codecs[len(mb.Codecs)-1].Name != "telephone-event" {
		t.Fatalf("offer to B:\n%s", offerB)
	}
	again, err := b.AnswerB(pcmuAnswer(pbx.port()))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, answer) || !bytes.Equal(b.LocalAnswerA(), answer) || !bytes.Equal(b.LocalSDP(SideA), answer) {
		t.Fatalf("A's answer changed when B answered:\n%s\nwas\n%s", again, answer)
	}
	if !bytes.Equal(b.LocalSDP(SideB), offerB) {
		t.Fatalf("LocalSDP(B) is not the offer B answered:\n%s", b.LocalSDP(SideB))
	}
	toB := mb.Addr()

	// Both ways at once for 600 ms: PBX 440 Hz, Meta 1 kHz and a digit.
	dec, err := opus.NewDecoder(48000, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Each side listens until 1 s after the last packet was sent (10 s at
	// most): the window follows the sender, however late a loaded machine
	// makes it (a fixed 1.5 s from the start did not).
	sent := make(chan struct{})
	listening := func() func() bool {
		end, s := time.Now().Add(10*time.Second), sent
		return func() bool {
			select {
			case <-s:
				if after := time.Now().Add(time.Second); after.Before(end) {
					end = after
				}
				s = nil
			default:
			}
			return time.Now().Before(end)
		}
	}
	var heardA []int16
	done := make(chan struct{})
	go func() {
		defer close(done)
		out := make([]int16, 5760)
		for on := listening(); on(); {
			pkt := meta.recv(100 * time.Millisecond)
			if pkt == nil || isRTCP(pkt) {
				continue
			}
			p, err := meta.dec.DecryptRTP(nil, pkt, nil)
			if err != nil || bytes.Equal(p[12:], m.opusSilence) {
				continue
			}
			if n, err := dec.Decode(p[12:], out); err == nil {
				heardA = append(heardA, out[:n]...)
			}
		}
	}()
	var heardB []int16
	var eventsB []byte
	pbxDone := make(chan struct{})
	go func() {
		defer close(pbxDone)
		for on := listening(); on(); {
			p := pbx.recv(100 * time.Millisecond)
			if p == nil {
				continue
			}
			switch h := readHdr(p); h.pt {
			case 0:
				heardB = append(heardB, codec.DecodeG711("PCMU", p[12:], nil)...)
			case 101:
				if h.marker {
					eventsB = append(eventsB, p[12])
				}
			}
		}
	}()
	start := time.Now()
	for i := range 40 {
		time.Sleep(time.Until(start.Add(time.Duration(i) * 20 * time.Millisecond)))
		pbx.send(toB, rtpPacket(t, 0, uint16(i), uint32(160*i), 0xb0b, codec.EncodeG711("PCMU", tone(440, 8000, 160, 160*i), nil)))
		if i == 10 {
			for k := range 4 {
				send(126, event(7, k >= 2, uint16(160*(k+1))), 0)
			}
			ts += 960
		} else {
			n, _ := enc.Encode(tone(1000, 48000, 960, 960*i), buf)
			send(111, buf[:n], 960)
		}
	}
	close(sent)
	<-pbxDone
	<-done
	// The middle of what Meta heard: the start and end of a transcoded
	// stream carry the codecs' ramps.
	loudA := loud(heardA, 960)
	if len(loudA) > 4*9600 {
		loudA = loudA[9600 : len(loudA)-9600]
	}
	if f := zeroCrossFreq(loudA, 48000); math.Abs(f-440) > 10 {
		t.Errorf("Meta hears %.1f Hz from the PBX, want 440 (%d samples)", f, len(heardA))
	}
	if f := zeroCrossFreq(loud(heardB, 160), 8000); math.Abs(f-1000) > 20 {
		t.Errorf("the PBX hears %.1f Hz from Meta, want 1000 (%d samples)", f, len(heardB))
	}
	if !bytes.Equal(eventsB, []byte{7}) {
		t.Errorf("the PBX got events %v on PT 101, want [7]", eventsB)
	}
	if keys, _ := rec.snapshot(); keys != "42#7" {
		t.Errorf("OnDTMF heard %q after connecting, want \"42#7\"", keys)
	}

	// The connected PBX holds, as on any call: answered recvonly from the
	// same port, and it is held.
	hold := sdpOffer(pbx.port(), "RTP/AVP", "0 101", "rtpmap:0 PCMU/8000", "rtpmap:101 telephone-event/8000", "ptime:20", "sendonly")
	re, st, err := b.AcceptOffer(SideB, hold)
	if err != nil || !st.Hold || !bytes.Contains(re, []byte("a=recvonly\r\n")) || !b.Held(SideB) {
		t.Fatalf("hold by the PBX after a local answer: %v %+v\n%s", err, st, re)
	}
	if got := mustParse(t, re).Media[0].Addr(); got != toB {
		t.Fatalf("hold answer names %v, want the same port %v", got, toB)
	}
	timedOut.Lock()
	defer timedOut.Unlock()
	if timeoutErr != nil {
		t.Fatalf("timed out: %v", timeoutErr)
	}
}

// TestEventKey: every RFC 4733 key code maps to its key; other events are
// not keys.
func TestEventKey(t *testing.T) {
	want := "0123456789*#ABCD"
	for code := range byte(16) {
		if got := eventKey(code); got != rune(want[code]) {
			t.Errorf("code %d: %q, want %q", code, got, want[code])
		}
	}
	for _, code := range []byte{16, 32, 255} {
		if got := eventKey(code); got != 0 {
			t.Errorf("code %d is not a key, got %q", code, got)
		}
	}
}

// TestSetLegB: B's settings may change before an offer, and bad settings
// are refused.
func TestSetLegB(t *testing.T) {
	b := socketlessBridge(LegConfig{Codecs: []string{"opus"}, WhatsApp: true}, LegConfig{Codecs: []string{"PCMU"}})
	if err := b.SetLegB(LegConfig{Codecs: []string{"g729"}}); err == nil {
		t.Fatal("unknown codec accepted")
	}
	if err := b.SetLegB(LegConfig{Codecs: []string{"pcma"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.AnswerLocal(sdpOffer(5000, "RTP/AVP", "111 101", "rtpmap:111 opus/48000/2", "rtpmap:101 telephone-event/8000")); err != nil {
		t.Fatal(err)
	}
	offer, err := b.OfferToB()
	if err != nil {
		t.Fatal(err)
	}
	if c := mustParse(t, offer).Media[0].Codecs; c[0].Name != "PCMA" {
		t.Fatalf("offer after SetLegB(PCMA): %v", c)
	}
}

// TestLocalBStartTimeoutFromConnect: on a call answered locally, a B
// connected 0.9 s after the RTP timeout job last looked at its absence
// has the whole start timeout (400 ms here) for its first packet, counted
// from when it was connected, and is timed out once that has passed with
// nothing from it. Before, the start timeout counted from that last look:
// B had only the 50 ms grace, and a PBX whose first packet came later
// than that after its 200 lost the call (TestLocalAnswerThenConnect on a
// busy machine).
func TestLocalBStartTimeoutFromConnect(t *testing.T) {
	br := socketlessBridge(LegConfig{WhatsApp: true, Codecs: []string{"opus"}}, LegConfig{Codecs: []string{"PCMU"}})
	if _, err := br.AnswerLocal([]byte(metaPlainOffer)); err != nil {
		t.Fatal(err)
	}
	d := newTestDirection(br, SideB)
	t.Cleanup(d.closeStages)
	d.startTO = 400 * time.Millisecond
	// As Start does, without the shared pacer: the test runs the job.
	d.timeoutJob = br.m.pacer.Schedule(time.Time{}, d.timeoutTick)
	d.timeoutJob.Cancel()
	if next := d.timeoutTick(time.Now()); next.IsZero() {
		t.Fatal("the timeout job stopped looking at an absent B")
	}
	time.Sleep(900 * time.Millisecond)
	if _, err := br.OfferToB(); err != nil {
		t.Fatal(err)
	}
	if _, err := br.AnswerB(pcmuAnswer(6000)); err != nil {
		t.Fatal(err)
	}
	// Woken by the connection, then as a job that looks again after the
	// grace would be.
	now := time.Now()
	for _, at := range []time.Duration{0, 60 * time.Millisecond, 120 * time.Millisecond} {
		d.timeoutTick(now.Add(at))
	}
	if br.fired.Load() {
		t.Fatal("B timed out within 120 ms of being connected, want 400 ms for its first packet")
	}
	// B sends nothing: timed out once its start timeout has passed.
	d.mu.Lock()
	connected := d.started
	d.mu.Unlock()
	end := d.epoch.Add(connected + d.startTO + 10*time.Millisecond)
	d.timeoutTick(end)
	d.timeoutTick(end.Add(timeoutGrace + 10*time.Millisecond))
	if !br.fired.Load() {
		t.Fatal("B sent nothing for its start timeout after being connected and was not timed out")
	}
}
