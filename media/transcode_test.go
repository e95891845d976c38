package media

import (
	"bytes"
	"math"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/codec"
	"gopkg.in/hraban/opus.v2"
)

// tone returns n samples of a sine at freq Hz, half of full scale.
func tone(freq float64, rate, n, offset int) []int16 {
	out := make([]int16, n)
	for i := range out {
		out[i] = int16(math.Round(16000 * math.Sin(2*math.Pi*freq*float64(i+offset)/float64(rate))))
	}
	return out
}

// zeroCrossFreq estimates the frequency of a pure tone from its rising
// zero crossings.
func zeroCrossFreq(x []int16, rate int) float64 {
	var first, last float64
	count := 0
	for i := 1; i < len(x); i++ {
		a, b := float64(x[i-1]), float64(x[i])
		if a < 0 && b >= 0 {
			at := float64(i-1) + a/(a-b)
			if count == 0 {
				first = at
			}
			last, count = at, count+1
		}
	}
	if count < 2 {
		return 0
	}
	return float64(count-1) * float64(rate) / (last - first)
}

func rms(x []int16) float64 {
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s / float64(max(len(x), 1)))
}

// loud returns the samples of the frames (of n samples) whose RMS shows
// the tone, to skip silence before and after it.
func loud(pcm []int16, n int) []int16 {
	var out []int16
	for i := 0; i+n <= len(pcm); i += n {
		if rms(pcm[i:i+n]) > 3000 {
			out = append(out, pcm[i:i+n]...)
		}
	}
	return out
}

// whatsAppCall is Meta (A: Opus, SDES, WhatsApp) through a bridge to a
// PCMU PBX (B, plain RTP).
type whatsAppCall struct {
	b        *Bridge
	meta     *srtpPeer
	pbx      *peer
	toA, toB netip.AddrPort
}

func newWhatsAppCall(t *testing.T, m *Manager, pbxAnswer func(port int) []byte, codecsB ...string) *whatsAppCall {
	t.Helper()
	t.Cleanup(func() { checkNoRelayGoroutines(t) })
	c := &whatsAppCall{meta: newSRTPPeer(t, srtpSuites[0]), pbx: newPeer(t)}
	var err error
	c.b, err = m.NewCallBridge("wa", testLogger(t),
		LegConfig{Encryption: EncryptionSDES, WhatsApp: true, Codecs: []string{"opus"}},
		LegConfig{Encryption: EncryptionNone, Codecs: append(codecsB, "PCMU", "PCMA")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.b.Close)
	offer := sdpOffer(c.meta.port(), "RTP/SAVP", "111 126", "rtpmap:111 opus/48000/2",
		"fmtp:111 maxaveragebitrate=20000;maxplaybackrate=16000;minptime=20;sprop-maxcapturerate=16000;useinbandfec=1",
		"rtpmap:126 telephone-event/8000", "ptime:20", "rtcp-mux", "crypto:1 "+c.meta.crypto(1)[2:]+"|2^31|1:1")
	offerB, err := c.b.Offer(offer)
	if err != nil {
		t.Fatal(err)
	}
	answerA, err := c.b.AnswerB(pbxAnswer(c.pbx.port()))
	if err != nil {
		t.Fatal(err)
	}
	dA := mustParse(t, answerA)
	c.meta.learn(t, cryptoAttr(t, dA, 1))
	// Meta's key has MKI 1:1: its packets carry the MKI byte.
	mkiKey := mustCryptoKey(t, "1 "+c.meta.crypto(1)[2:]+"|2^31|1:1")
	if c.meta.enc, err = mkiKey.newContext(nil); err != nil {
		t.Fatal(err)
	}
	c.toA, c.toB = dA.Media[0].Addr(), mustParse(t, offerB).Media[0].Addr()
	return c
}

func mustCryptoKey(t testing.TB, v string) *sdesKey {
	t.Helper()
	k, err := parseCrypto(v)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pcmuAnswer(port int) []byte {
	return sdpOffer(port, "RTP/AVP", "0 101", "rtpmap:0 PCMU/8000", "rtpmap:101 telephone-event/8000", "fmtp:101 0-16", "ptime:20")
}

// TestTranscodeTone: a 1 kHz tone survives Opus → PCMU and PCMU (30 ms
// packets) → Opus through a real bridge, with Meta's leg on SRTP. Outgoing
// streams are re-originated with timestamps advanced by media time.
func TestTranscodeTone(t *testing.T) {
	c := newWhatsAppCall(t, newTestManager(t, 2, 0, 0), pcmuAnswer)
	c.b.Start(nil)

	// Meta → PBX: Opus frames from an encoder of our own.
	enc, err := opus.NewEncoder(48000, 1, opus.AppVoIP)
	if err != nil {
		t.Fatal(err)
	}
	const frames = 40
	buf := make([]byte, 1500)
	for i := range frames {
		n, err := enc.Encode(tone(1000, 48000, 960, 960*i), buf)
		if err != nil {
			t.Fatal(err)
		}
		c.meta.send(c.toA, c.meta.encrypt(t, rtpPacket(t, 111, uint16(500+i), uint32(960*i), 0x3e7a, buf[:n])))
		time.Sleep(20 * time.Millisecond) // in real time: the playout plays in real time
	}
	var pcm []int16
	var last hdr
	for i := range frames - 5 { // a few may be concealed, or dropped catching up
		pkt := expect(t, c.pbx)
		h := readHdr(pkt)
		if h.pt != 0 || len(pkt) != 12+160 {
			t.Fatalf("PBX got PT %d, %d bytes", h.pt, len(pkt))
		}
		// One stream, 20 ms a packet; a new talk spurt (the playout
		// timing a stream afresh, on a loaded machine) may move the
		// timestamp on, with the marker.
		if i > 0 && (h.seq != last.seq+1 || h.ssrc != last.ssrc || h.ts != last.ts+160 && !(h.marker && int32(h.ts-last.ts) > 160)) {
			t.Fatalf("PBX stream %+v after %+v", h, last)
		}
		last = h
		pcm = codec.DecodeG711("PCMU", pkt[12:], pcm)
	}
	if f := zeroCrossFreq(loud(pcm, 160), 8000); math.Abs(f-1000) > 20 {
		t.Fatalf("PBX hears %.1f Hz, want 1000", f)
	}

	// PBX → Meta: 30 ms μ-law packets, repacketized to 20 ms Opus.
	for i := range 30 {
		payload := codec.EncodeG711("PCMU", tone(1000, 8000, 240, 240*i), nil)
		c.pbx.send(c.toB, rtpPacket(t, 0, uint16(9000+i), uint32(240*i), 0x9b, payload))
		time.Sleep(30 * time.Millisecond)
	}
	dec, err := opus.NewDecoder(48000, 1)
	if err != nil {
		t.Fatal(err)
	}
	pcm48 := make([]int16, 5760)
	var heard []int16
	var prev hdr
	var prevSilent bool
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline) && len(loud(heard, 960)) < 40*960; {
		pkt := c.meta.recvSRTP(t)
		h := readHdr(pkt)
		if h.pt != 111 {
			t.Fatalf("Meta got PT %d", h.pt)
		}
		// One stream, every packet 20 ms on; where audio takes over from
		// silence the timestamp may move on by the time waited, with the
		// marker bit, and so may silence after a DTX gap.
		if prev.ssrc != 0 && (h.seq != prev.seq+1 || h.ssrc != prev.ssrc ||
			h.ts != prev.ts+960 && !((h.marker || prevSilent) && int32(h.ts-prev.ts) > 960)) {
			t.Fatalf("Meta stream %+v after %+v", h, prev)
		}
		prev, prevSilent = h, bytes.Equal(pkt[12:], c.b.m.opusSilence)
		n, err := dec.Decode(pkt[12:], pcm48)
		if err != nil {
			t.Fatal(err)
		}
		heard = append(heard, pcm48[:n]...)
	}
	if f := zeroCrossFreq(loud(heard, 960), 48000); math.Abs(f-1000) > 20 {
		t.Fatalf("Meta hears %.1f Hz, want 1000", f)
	}
	// Every input frame became an output frame, played or (on a loaded
	// machine, where this test's own sender is late) concealed, unless the
	// playout dropped it to shrink its delay once the jitter fell
	// (Compressed: under load average 300 a run had 39 of 45 frames out
	// and 25 compressed). The playout may still be catching up when the
	// reading above is done: wait for it, then judge each direction.
	waitStats(t, c.b, "every input frame out", func(s BridgeStats) bool {
		return s.AtoB+s.Compressed >= frames-5 && s.BtoA+s.Compressed >= 40
	})
	c.b.Close()
	r := c.b.Report()
	if s := c.b.Stats(); s.DroppedAuth+s.DroppedInvalid != 0 ||
		r.AtoB.Forwarded+r.AtoB.Compressed < frames-5 || r.BtoA.Forwarded+r.BtoA.Compressed < 40 {
		t.Fatalf("stats %+v\nA→B %+v\nB→A %+v", s, r.AtoB, r.BtoA)
	}
}

// TestWhatsAppSilence: with media.silence continuous, from Start, with
// nothing from the PBX, Meta gets a steady stream of Opus silence every
// 20 ms; it stops while real audio flows and resumes after.
func TestWhatsAppSilence(t *testing.T) {
	m := newTestManager(t, 2, 0, 0)
	m.dtx = false
	c := newWhatsAppCall(t, m, pcmuAnswer)
	if pkt := c.meta.recv(60 * time.Millisecond); pkt != nil {
		t.Fatal("media to WhatsApp before Start")
	}
	start := time.Now()
	c.b.Start(nil)
	dec, err := opus.NewDecoder(48000, 1)
	if err != nil {
		t.Fatal(err)
	}
	pcm := make([]int16, 5760)
	var first, prev hdr
	const n = 10
	for i := range n {
		pkt := c.meta.recvSRTP(t)
		h := readHdr(pkt)
		if i == 0 {
			first = h
			// 20 ms by design; generous for a loaded test machine.
			if el := time.Since(start); el > time.Second {
				t.Fatalf("first silence after %s", el)
			}
		} else if h.seq != prev.seq+1 || h.ts != prev.ts+960 || h.ssrc != first.ssrc || h.pt != 111 {
			t.Fatalf("silence %+v after %+v", h, prev)
		}
		prev = h
		k, err := dec.Decode(pkt[12:], pcm)
		if err != nil || k != 960 || rms(pcm[:k]) > 100 {
			t.Fatalf("silence decodes to %d samples, rms %.0f, %v", k, rms(pcm[:k]), err)
		}
	}
	// 20 ms apart, never in a burst: 10 packets take about 200 ms (an
	// upper bound only catches a stall, the machine may be loaded).
	if el := time.Since(start); el < 150*time.Millisecond || el > 3*time.Second {
		t.Fatalf("%d silence packets took %s", n, el)
	}
	waitStats(t, c.b, "silence counted", func(s BridgeStats) bool { return s.Silence >= n && s.BtoA == 0 })

	// Real audio from the PBX replaces the silence, in the same stream.
	for i := range 25 {
		c.pbx.send(c.toB, rtpPacket(t, 0, uint16(i), uint32(160*i), 0x9b, codec.EncodeG711("PCMU", tone(1000, 8000, 160, 160*i), nil)))
		time.Sleep(20 * time.Millisecond)
	}
	// The buffer plays what it holds, then calls the pause (its depth
	// plus 60 ms after the last packet) and silence resumes.
	silenceBefore := c.b.Stats().Silence
	waitStats(t, c.b, "audio played out and silence resumed", func(s BridgeStats) bool {
		return s.BtoA >= 20 && s.Silence > silenceBefore+2
	})
}

// TestWhatsAppSilenceRelay: relaying Opus (no transcoder), the silence is
// the precomputed Opus frame, continuing the relayed stream's numbering.
func TestWhatsAppSilenceRelay(t *testing.T) {
	c := newWhatsAppCall(t, newTestManager(t, 2, 0, 0), func(port int) []byte {
		return sdpOffer(port, "RTP/AVP", "111", "rtpmap:111 opus/48000/2", "ptime:20")
	}, "opus")
	if rt := c.b.routeBA.Load(); rt.mode != modeRelay {
		t.Fatalf("mode %d, want relay", rt.mode)
	}
	c.b.Start(nil)
	pkt := c.meta.recvSRTP(t)
	if !bytes.Equal(pkt[12:], opusSilence) || readHdr(pkt).pt != 111 {
		t.Fatalf("silence %x", pkt)
	}
	prev := readHdr(pkt)
	c.pbx.send(c.toB, rtpPacket(t, 111, 40000, 7, 0x55, []byte("opus from PBX")))
	for {
		pkt := c.meta.recvSRTP(t)
		h := readHdr(pkt)
		if h.seq != prev.seq+1 || h.ssrc != prev.ssrc || int32(h.ts-prev.ts) < 960 {
			t.Fatalf("%+v after %+v", h, prev)
		}
		if string(pkt[12:]) == "opus from PBX" {
			if !h.marker {
				t.Fatal("no marker when real audio takes over")
			}
			break
		}
		prev = h
	}
}

// TestTapBothSides: the PCM tap gets both sides' audio, transcoded (Opus
// from Meta) and relayed alike.
func TestTapBothSides(t *testing.T) {
	c := newWhatsAppCall(t, newTestManager(t, 2, 0, 0), pcmuAnswer)
	tap := &recordingTap{}
	c.b.SetTap(tap)
	c.b.Start(nil)
	enc, _ := opus.NewEncoder(48000, 1, opus.AppVoIP)
	buf := make([]byte, 1500)
	for i := range 10 {
		n, _ := enc.Encode(tone(1000, 48000, 960, 960*i), buf)
		c.meta.send(c.toA, c.meta.encrypt(t, rtpPacket(t, 111, uint16(i), uint32(960*i), 1, buf[:n])))
		c.pbx.send(c.toB, rtpPacket(t, 0, uint16(i), uint32(160*i), 2, codec.EncodeG711("PCMU", tone(1000, 8000, 160, 160*i), nil)))
		time.Sleep(2 * time.Millisecond)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		a, b := tap.samples()
		if a >= 1600 && b >= 1600 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tap got %d samples from A, %d from B", a, b)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type recordingTap struct {
	mu   sync.Mutex
	a, b int
}

func (r *recordingTap) PCM(side Side, pcm []int16) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if side == SideA {
		r.a += len(pcm)
	} else {
		r.b += len(pcm)
	}
}

func (r *recordingTap) samples() (int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.a, r.b
}

func TestOpusSamples(t *testing.T) {
	for _, tt := range []struct {
		p    []byte
		want int
	}{
		{opusSilence, 960},
		{[]byte{0x08}, 960},        // SILK NB 20 ms
		{[]byte{0x18}, 2880},       // SILK NB 60 ms
		{[]byte{0x78}, 960},        // Hybrid FB 20 ms
		{[]byte{0x09}, 1920},       // two 20 ms frames
		{[]byte{0x0b, 0x03}, 2880}, // code 3: three 20 ms frames
		{[]byte{0x0b}, 0},          // code 3 without a count
		{nil, 0},
	} {
		if got := opusSamples(tt.p); got != tt.want {
			t.Errorf("%x: %d, want %d", tt.p, got, tt.want)
		}
	}
}
