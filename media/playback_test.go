package media

import (
	"bytes"
	"math"
	"testing"
	"time"

	"github.com/wagate/wagate/codec"
	"gopkg.in/hraban/opus.v2"
)

// toneSource plays frames 20 ms frames of a tone, then ends. The tone is
// made once (one second of it, a whole number of periods at 500 and
// 1000 Hz), so reading allocates nothing.
type toneSource struct {
	freq   float64
	frames int
	n      int
	pcm    []int16
}

func (s *toneSource) ReadFrame(pcm []int16) bool {
	if s.n >= s.frames {
		return false
	}
	if s.pcm == nil {
		s.pcm = tone(s.freq, 8000, 8000, 0)
	}
	off := (s.n % 50) * PlaybackFrame
	copy(pcm, s.pcm[off:off+PlaybackFrame])
	s.n++
	return true
}

// TestPlaybackTowardWhatsApp: a 1 kHz prompt played toward Meta's leg
// (Opus over SRTP) arrives in the leg's own stream, 20 ms a packet, marked
// at its start, and decodes to 1 kHz; the PBX's 440 Hz sent meanwhile is
// not heard; when the prompt ends Done is closed, silence resumes, and the
// packets are counted as played, not forwarded.
func TestPlaybackTowardWhatsApp(t *testing.T) {
	c := newWhatsAppCall(t, newTestManager(t, 2, 0, 0), pcmuAnswer)
	if _, err := c.b.Play(SideA, &toneSource{freq: 1000, frames: 10}, time.Time{}); err == nil {
		t.Fatal("Play before Start: no error")
	}
	c.b.Start(nil)
	first := readHdr(c.meta.recvSRTP(t)) // silence first
	src := &toneSource{freq: 1000, frames: 50}
	pb, err := c.b.Play(SideA, src, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	// The PBX talks during the first half of the prompt.
	pbxDone := make(chan struct{})
	go func() {
		defer close(pbxDone)
		for i := range 25 {
			time.Sleep(20 * time.Millisecond)
			c.pbx.send(c.toB, rtpPacket(t, 0, uint16(i), uint32(160*i), 0x9b, codec.EncodeG711("PCMU", tone(440, 8000, 160, 160*i), nil)))
		}
	}()
	dec, err := opus.NewDecoder(48000, 1)
	if err != nil {
		t.Fatal(err)
	}
	pcm := make([]int16, 5760)
	var heard []int16
	prev, marked := first, 0
	silenceAfter := 0
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && silenceAfter < 5; {
		pkt := c.meta.recvSRTP(t)
		h := readHdr(pkt)
		if h.seq != prev.seq+1 || h.ssrc != first.ssrc {
			t.Fatalf("%+v after %+v", h, prev)
		}
		prev = h
		if h.marker {
			marked++
		}
		if bytes.Equal(pkt[12:], c.b.m.opusSilence) {
			if len(heard) > 0 {
				silenceAfter++
			}
			continue
		}
		n, err := dec.Decode(pkt[12:], pcm)
		if err != nil {
			t.Fatal(err)
		}
		heard = append(heard, pcm[:n]...)
	}
	<-pbxDone
	select {
	case <-pb.Done():
	case <-time.After(5 * time.Second): // a wait for what must come
		t.Fatal("Done not closed after the source ended")
	}
	if len(heard) < 45*960 {
		t.Fatalf("heard %d ms of the prompt, want 1 s", len(heard)/48)
	}
	if f := zeroCrossFreq(loud(heard, 960), 48000); math.Abs(f-1000) > 15 {
		t.Fatalf("the prompt decodes to %.1f Hz, want 1000 (the PBX's 440 Hz must not be mixed in)", f)
	}
	if marked < 1 {
		t.Error("no marker bit on the prompt's first packet")
	}
	if silenceAfter < 5 {
		t.Error("silence did not resume after the prompt")
	}
	if s := c.b.Stats(); s.Played < 48 || s.Played > 52 || s.BtoA != 0 {
		t.Errorf("stats %+v: want 50 played, nothing of the PBX's forwarded", s)
	}
}

// TestPlaybackStartStopReplace drives the play job on a simulated clock:
// a prompt due later leaves the silence alone until then; Stop brings the
// silence back at the next tick; a second Play ends the first.
func TestPlaybackStartStopReplace(t *testing.T) {
	c := newPacedCall(t, pcmuAnswer(6000), "PCMU")
	d := c.d.direction
	c.br.dirs[SideB] = d // Play finds the direction toward A here
	c.run(nil, 200*time.Millisecond)
	before := len(c.d.dst.pkts)
	at := d.epoch.Add(400 * time.Millisecond)
	pb, err := c.br.Play(SideA, &toneSource{freq: 1000, frames: 1000}, at)
	if err != nil {
		t.Fatal(err)
	}
	c.run(nil, 600*time.Millisecond)
	isSilence := func(p []byte) bool { return bytes.Equal(p[12:], testOpusSilence) }
	pkts := c.d.dst.pkts[before:]
	for i, p := range pkts {
		// The ticks from 200 ms to 380 ms are silence, from 400 ms the
		// prompt.
		if want := i < 10; isSilence(p) != want {
			t.Fatalf("packet %d (of %d) silence %v, want %v", i, len(pkts), isSilence(p), want)
		}
	}
	pb.Stop()
	select {
	case <-pb.Done():
	default:
		t.Fatal("Done not closed by Stop")
	}
	n := len(c.d.dst.pkts)
	c.run(nil, 700*time.Millisecond)
	for _, p := range c.d.dst.pkts[n:] {
		if !isSilence(p) {
			t.Fatal("audio after Stop")
		}
	}
	pb1, _ := c.br.Play(SideA, &toneSource{freq: 1000, frames: 1000}, time.Time{})
	pb2, _ := c.br.Play(SideA, &toneSource{freq: 500, frames: 1000}, time.Time{})
	select {
	case <-pb1.Done():
	default:
		t.Fatal("a second Play did not end the first")
	}
	pb2.Stop()
}

// TestPlaybackZeroAllocs: a playback tick (read, encode, send) allocates
// nothing.
func TestPlaybackZeroAllocs(t *testing.T) {
	c := newPacedCall(t, pcmuAnswer(6000), "PCMU")
	d := c.d.direction
	w := &nopWriter{}
	d.toDst = w
	c.br.dirs[SideB] = d
	if _, err := c.br.Play(SideA, &toneSource{freq: 1000, frames: 1 << 30}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	now := 20 * time.Millisecond
	step := func() {
		now = tickAt(d, now)
	}
	for range 50 {
		step()
	}
	if n := testing.AllocsPerRun(200, step); n != 0 {
		t.Errorf("%.1f allocations per playback tick", n)
	}
	if w.n < 250 {
		t.Errorf("%d packets for 250 ticks", w.n)
	}
}
