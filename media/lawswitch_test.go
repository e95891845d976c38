package media

import (
	"bytes"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/wagate/wagate/codec"
	"gopkg.in/hraban/opus.v2"
)

// TestReofferLawSwitchHeldAudio: PCMU relayed toward WhatsApp, the PBX's
// packets arriving in bursts so the playout holds several; the PBX
// re-INVITEs to PCMA (its transfer moved the call to an A-law phone) and
// sends the rest of the tone in PCMA. Every frame WhatsApp gets is the
// tone at its level: the μ-law packets still held at the switch are not
// decoded as A-law (a quarter of the level, distorted: a crackle at every
// such switch).
func TestReofferLawSwitchHeldAudio(t *testing.T) {
	br := socketlessBridge(LegConfig{WhatsApp: true, Codecs: []string{"PCMU"}}, LegConfig{Codecs: []string{"PCMU", "PCMA"}})
	if _, err := br.Offer(sdpOffer(5000, "RTP/AVP", "0", "rtpmap:0 PCMU/8000")); err != nil {
		t.Fatal(err)
	}
	if _, err := br.AnswerB(pcmuAnswer(6000)); err != nil {
		t.Fatal(err)
	}
	d := newTestDirection(br, SideB)
	t.Cleanup(d.closeStages)
	d.silenceFrom, d.playAt = 0, 20*time.Millisecond
	d.playJob = br.m.pacer.Schedule(time.Time{}, d.playTick)
	d.playJob.Cancel()
	c := &pacedCall{t: t, br: br, d: d, from: netip.MustParseAddrPort("127.0.0.1:6000"), next: 20 * time.Millisecond}
	burst := func(from, to int, name string, pt uint8) []arrival {
		var arr []arrival
		for i := from; i < to; i++ {
			at := 200*time.Millisecond + time.Duration(i/5*5)*20*time.Millisecond + 80*time.Millisecond
			arr = append(arr, arrival{at: at, pkt: rtpPacket(t, pt, uint16(i), uint32(160*i), 0x9b, codec.EncodeG711(name, tone(1000, 8000, 160, 160*i), nil))})
		}
		return arr
	}
	c.run(burst(0, 50, "PCMU", 0), 1190*time.Millisecond)
	d.mu.Lock()
	held := d.pl.held
	d.mu.Unlock()
	if held == 0 {
		t.Fatal("nothing held at the switch: the test does not test it")
	}
	if _, _, err := br.AcceptOffer(SideB, sdpOffer(6000, "RTP/AVP", "8", "rtpmap:8 PCMA/8000", "ptime:20")); err != nil {
		t.Fatal(err)
	}
	c.run(burst(50, 100, "PCMA", 8), 2600*time.Millisecond)
	want := rms(tone(1000, 8000, 160, 0))
	var levels []float64
	for _, pkt := range d.dst.pkts {
		if level := rms(codec.DecodeG711("PCMU", pkt[12:], nil)); level >= 100 { // not silence
			levels = append(levels, level)
		}
	}
	// The last frames fade out: the concealment of the stream's end.
	n, bad := len(levels), 0
	for i, level := range levels[:max(0, n-3)] {
		if level < 0.8*want || level > 1.2*want {
			t.Logf("frame %d of the tone at %.0f, want about %.0f", i, level, want)
			bad++
		}
	}
	if n < 90 || bad > 0 {
		t.Errorf("%d frames of the tone, %d of them at the wrong level (%d held at the switch)", n, bad, held)
	}
}

// TestReofferLawSwitchKeepsOpusEncoder: a transcoded call (WhatsApp Opus,
// PBX G.711) whose PBX re-INVITEs from PCMU to PCMA mid-tone, keeping the
// tone's phase. WhatsApp's stream is one Opus encoder's from start to end:
// every frame it decodes after the start-up is the tone at its level.
// Before, the switch built a new encoder, whose first frames (its start-up
// and lookahead, in the middle of a stream the decoder had state for) were
// heard as a click and a dip.
func TestReofferLawSwitchKeepsOpusEncoder(t *testing.T) {
	c := newPacedCall(t, pcmuAnswer(6000), "PCMU", "PCMA")
	const n = 100
	packets := func(from, to int, name string, pt uint8) []arrival {
		var arr []arrival
		for i := from; i < to; i++ {
			arr = append(arr, arrival{at: 200*time.Millisecond + time.Duration(i)*20*time.Millisecond,
				pkt: rtpPacket(t, pt, uint16(i), uint32(160*i), 0x9b, codec.EncodeG711(name, tone(1000, 8000, 160, 160*i), nil))})
		}
		return arr
	}
	c.run(packets(0, n/2, "PCMU", 0), 200*time.Millisecond+n/2*20*time.Millisecond)
	c.d.mu.Lock()
	before := c.d.xc
	c.d.mu.Unlock()
	if before == nil {
		t.Fatal("no transcoder before the switch: the test does not test it")
	}
	if _, _, err := c.br.AcceptOffer(SideB, sdpOffer(6000, "RTP/AVP", "8", "rtpmap:8 PCMA/8000", "ptime:20")); err != nil {
		t.Fatal(err)
	}
	c.run(packets(n/2, n, "PCMA", 8), 200*time.Millisecond+(n+10)*20*time.Millisecond)

	dec, err := opus.NewDecoder(8000, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := rms(tone(1000, 8000, 160, 0))
	pcm := make([]int16, 960)
	var levels []float64
	for _, pkt := range c.d.dst.pkts {
		if bytes.Equal(pkt[12:], c.br.m.opusSilence) {
			continue
		}
		k, err := dec.Decode(pkt[12:], pcm)
		if err != nil {
			t.Fatalf("WhatsApp cannot decode packet %d: %v", len(levels), err)
		}
		levels = append(levels, rms(pcm[:k]))
	}
	// The first frames are the encoder's start-up, the last ones the fade
	// of the stream's end.
	bad := 0
	for i := 3; i < len(levels)-3; i++ {
		if levels[i] < 0.8*want || levels[i] > 1.2*want {
			t.Logf("frame %d of the tone at %.0f, want about %.0f", i, levels[i], want)
			bad++
		}
	}
	if len(levels) < n-5 || bad > 0 {
		t.Errorf("%d frames of the tone toward WhatsApp, %d of them at the wrong level", len(levels), bad)
	}
	c.d.mu.Lock()
	after := c.d.xc
	c.d.mu.Unlock()
	if after != before {
		t.Errorf("the switch to PCMA built a new transcoder toward WhatsApp (a new Opus encoder)")
	}
}

// TestReofferLawSwitchKeepsOpusDecoder: the other direction of the same
// switch, WhatsApp's Opus tone toward a PBX that re-INVITEs from PCMU to
// PCMA. The PBX gets the tone at its level throughout, in PCMU on 0 and
// then PCMA on 8, from the one Opus decoder: a new decoder in the middle
// of WhatsApp's stream has none of the history it predicts from.
func TestReofferLawSwitchKeepsOpusDecoder(t *testing.T) { lawSwitchKeepsOpusDecoder(t, 20) }

// TestReofferLawAndPtimeSwitchKeepsOpusDecoder: the same when the PBX's
// re-INVITE changes the ptime too (PCMU/20 to PCMA/30): before, that was
// not "a change of law only", and the direction built a new transcoder, a
// new Opus decoder in the middle of WhatsApp's stream (a click, its
// concealment reset).
func TestReofferLawAndPtimeSwitchKeepsOpusDecoder(t *testing.T) { lawSwitchKeepsOpusDecoder(t, 30) }

// lawSwitchKeepsOpusDecoder runs WhatsApp's Opus tone toward the PBX,
// which re-INVITEs from PCMU/20 to PCMA at ptime ms halfway.
func lawSwitchKeepsOpusDecoder(t *testing.T, ptime int) {
	t.Helper()
	br, d := pacedDirection(t, SideA, pcmuAnswer(6000), "PCMU", "PCMA")
	c := &pacedCall{t: t, br: br, d: d, from: br.routeAB.Load().from.rtp}
	enc, err := opus.NewEncoder(48000, 1, opus.AppVoIP)
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	packets := func(from, to int) []arrival {
		var arr []arrival
		for i := from; i < to; i++ {
			buf := make([]byte, 1500)
			k, err := enc.Encode(tone(1000, 48000, 960, 960*i), buf)
			if err != nil {
				t.Fatal(err)
			}
			arr = append(arr, arrival{at: time.Duration(i) * 20 * time.Millisecond, pkt: rtpPacket(t, 111, uint16(i), uint32(960*i), 0x3e7a, buf[:k])})
		}
		return arr
	}
	c.run(packets(0, n/2), n/2*20*time.Millisecond)
	d.mu.Lock()
	before := d.xc
	d.mu.Unlock()
	if before == nil {
		t.Fatal("no transcoder before the switch: the test does not test it")
	}
	if _, _, err := br.AcceptOffer(SideB, sdpOffer(6000, "RTP/AVP", "8", "rtpmap:8 PCMA/8000", "ptime:"+strconv.Itoa(ptime))); err != nil {
		t.Fatal(err)
	}
	c.run(packets(n/2, n), (n+15)*20*time.Millisecond)

	want := rms(tone(1000, 8000, 160, 0))
	var pts []uint8
	var levels []float64
	toneMs := 0
	for _, pkt := range d.dst.pkts {
		h := readHdr(pkt)
		name := map[uint8]string{0: "PCMU", 8: "PCMA"}[h.pt]
		if name == "" {
			t.Fatalf("the PBX got payload type %d", h.pt)
		}
		if h.pt == 8 && len(pkt[12:]) != ptime*8 {
			t.Fatalf("a PCMA packet of %d bytes, want %d ms", len(pkt[12:]), ptime)
		}
		if level := rms(codec.DecodeG711(name, pkt[12:], nil)); level >= 100 { // not silence
			levels = append(levels, level)
			toneMs += len(pkt[12:]) / 8
			if len(pts) == 0 || pts[len(pts)-1] != h.pt {
				pts = append(pts, h.pt)
			}
		}
	}
	if !bytes.Equal(pts, []byte{0, 8}) {
		t.Errorf("the tone reached the PBX on payload types %v, want PCMU (0) then PCMA (8)", pts)
	}
	// The first frames are the decoder's start-up, the last ones the
	// concealment of the stream's end.
	bad := 0
	for i := 3; i < len(levels)-3; i++ {
		if levels[i] < 0.8*want || levels[i] > 1.2*want {
			t.Logf("frame %d of the tone at %.0f, want about %.0f", i, levels[i], want)
			bad++
		}
	}
	if toneMs < (n-5)*20 || bad > 0 {
		t.Errorf("%d ms of the tone toward the PBX, %d frames of it at the wrong level", toneMs, bad)
	}
	d.mu.Lock()
	after := d.xc
	d.mu.Unlock()
	if after != before {
		t.Errorf("the switch to PCMA built a new transcoder from WhatsApp (a new Opus decoder)")
	}
}
