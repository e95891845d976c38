package media

import (
	"net/netip"
	"testing"
	"time"

	"github.com/wagate/wagate/codec"
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
