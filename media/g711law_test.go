package media

import (
	"bytes"
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/wagate/wagate/codec"
	"gopkg.in/hraban/opus.v2"
)

// pcmuPCMAAnswer is a PBX's answer listing both laws wagate offered,
// PCMU first: under RFC 3264 §6.1 it may then send either, and Asterisk
// does, forwarding an A-law phone's or music source's packets as they
// are once its bridge has the call.
func pcmuPCMAAnswer(port int) []byte {
	return sdpOffer(port, "RTP/AVP", "0 8 101", "rtpmap:0 PCMU/8000", "rtpmap:8 PCMA/8000",
		"rtpmap:101 telephone-event/8000", "fmtp:101 0-16", "ptime:20")
}

// TestPBXSwitchesG711Law: the PBX answered PCMU and PCMA, and after 300 ms
// of PCMU sends the rest of a 1 kHz tone in PCMA. The WhatsApp user hears
// the tone throughout (transcoded to Opus), not silence from the switch
// on: the PCMA packets were dropped as an unknown payload type.
func TestPBXSwitchesG711Law(t *testing.T) {
	c := newPacedCall(t, pcmuPCMAAnswer(6000), "PCMU", "PCMA")
	const n, pcmu = 50, 15
	var arr []arrival
	for i := range n {
		name, pt := "PCMU", uint8(0)
		if i >= pcmu {
			name, pt = "PCMA", 8
		}
		payload := codec.EncodeG711(name, tone(1000, 8000, 160, 160*i), nil)
		arr = append(arr, arrival{at: time.Duration(i) * 20 * time.Millisecond, pkt: rtpPacket(t, pt, uint16(7000+i), uint32(160*i), 0x9b, payload)})
	}
	c.run(arr, 1500*time.Millisecond)
	dec, err := opus.NewDecoder(48000, 1)
	if err != nil {
		t.Fatal(err)
	}
	pcm := make([]int16, 5760)
	var heard []int16
	for _, pkt := range c.d.dst.pkts {
		k, err := dec.Decode(pkt[12:], pcm)
		if err != nil {
			t.Fatal(err)
		}
		heard = append(heard, pcm[:k]...)
	}
	tone := loud(heard, 960)
	if got := len(tone) / 960; got < n-2 {
		t.Fatalf("WhatsApp heard %d frames of the tone, want at least %d of the %d sent (%d of them PCMU)", got, n-2, n, pcmu)
	}
	if f := zeroCrossFreq(tone, 48000); math.Abs(f-1000) > 20 {
		t.Fatalf("WhatsApp hears %.1f Hz, want 1000", f)
	}
	if got := c.br.droppedInvalid.Load(); got != 0 {
		t.Errorf("%d packets dropped as invalid", got)
	}
}

// TestPBXSwitchesG711LawRelayed: relaying PCMU end to end (Meta's own
// G.711), a PCMA packet of the PBX reaches WhatsApp as the same audio in
// PCMU under the call's payload type.
func TestPBXSwitchesG711LawRelayed(t *testing.T) {
	br := socketlessBridge(LegConfig{WhatsApp: true, Codecs: []string{"PCMU"}}, LegConfig{Codecs: []string{"PCMU", "PCMA"}})
	if _, err := br.Offer(sdpOffer(5000, "RTP/AVP", "0", "rtpmap:0 PCMU/8000")); err != nil {
		t.Fatal(err)
	}
	if _, err := br.AnswerB(pcmuPCMAAnswer(6000)); err != nil {
		t.Fatal(err)
	}
	d := newTestDirection(br, SideB)
	t.Cleanup(d.closeStages)
	d.silenceFrom, d.playAt = 0, 20*time.Millisecond
	c := &pacedCall{t: t, br: br, d: d, from: netip.MustParseAddrPort("127.0.0.1:6000"), next: 20 * time.Millisecond}
	var arr []arrival
	var want []byte
	for i := range 20 {
		name, pt := "PCMU", uint8(0)
		if i >= 5 {
			name, pt = "PCMA", 8
		}
		pcm := tone(1000, 8000, 160, 160*i)
		want = codec.EncodeG711("PCMU", pcm, want)
		arr = append(arr, arrival{at: 200*time.Millisecond + time.Duration(i)*20*time.Millisecond,
			pkt: rtpPacket(t, pt, uint16(i), uint32(160*i), 0x77, codec.EncodeG711(name, pcm, nil))})
	}
	c.run(arr, 800*time.Millisecond)
	var got []byte
	for _, pkt := range d.dst.pkts {
		if h := readHdr(pkt); h.pt != 0 {
			t.Fatalf("WhatsApp got PT %d, want the call's PCMU (0)", h.pt)
		}
		if len(bytes.Trim(pkt[12:], "\xff")) > 0 { // not silence
			got = append(got, pkt[12:]...)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("WhatsApp got %d bytes of audio, want %d (PCMA packets dropped?)", len(got), len(want))
	}
	// A-law and μ-law quantize differently: compare as linear audio.
	a, b := codec.DecodeG711("PCMU", got, nil), codec.DecodeG711("PCMU", want, nil)
	for i := range a {
		if d := math.Abs(float64(a[i]) - float64(b[i])); d > 600 {
			t.Fatalf("sample %d: %d, want about %d", i, a[i], b[i])
		}
	}
}
