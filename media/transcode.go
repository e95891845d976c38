package media

import (
	"fmt"
	"strings"
	"time"

	"github.com/wagate/wagate/codec"
)

// codecFmt is one leg's audio format as the relay needs it.
type codecFmt struct {
	name  string // canonical: "opus", "PCMU", "PCMA"
	rate  int    // RTP clock rate
	ptime int    // packet duration in ms
}

func (f codecFmt) format() codec.Format {
	return codec.Format{Name: f.name, Rate: f.rate, PtimeMs: f.ptime}
}

// canonicalCodec returns the name wagate uses for a codec it can relay or
// transcode, or "" for anything else.
func canonicalCodec(name string) string {
	for _, c := range []string{"opus", "PCMU", "PCMA"} {
		if strings.EqualFold(name, c) {
			return c
		}
	}
	return ""
}

// codecClock is the RTP clock of a canonical codec.
func codecClock(name string) int {
	if name == "opus" {
		return 48000
	}
	return 8000
}

// canTranscode reports whether codec can convert between a and b
// (canonical names, different): Opus ↔ G.711 and μ-law ↔ A-law.
func canTranscode(a, b string) bool {
	return a != "" && b != "" && a != b
}

// normalPtime returns a ptime the codec package takes for name: Opus
// packets are 20 ms (what Meta sends and wants), G.711 follows the peer
// within 10–40 ms in steps of 5.
func normalPtime(name string, ptime int) int {
	if name == "opus" || ptime <= 0 {
		return 20
	}
	ptime = min(max(ptime, 10), 40)
	return ptime - ptime%5
}

// opusSilence is a 20 ms Opus packet of silence (CELT, one frame): what
// WebRTC stacks send to keep a muted Opus stream alive. Used toward
// WhatsApp when relaying Opus and the other side sends nothing.
var opusSilence = []byte{0xf8, 0xff, 0xfe}

// g711Silence returns a G.711 payload of silence of samples length.
func g711Silence(name string, samples int) []byte {
	b := make([]byte, samples)
	v := byte(0xff) // μ-law zero
	if name == "PCMA" {
		v = 0xd5
	}
	for i := range b {
		b[i] = v
	}
	return b
}

// silencePayload returns one packet of silence for relaying toward a
// WhatsApp leg in format f, and its duration in f's clock.
func silencePayload(f codecFmt) ([]byte, uint32) {
	if f.name == "opus" {
		return opusSilence, 960
	}
	n := f.rate * 20 / 1000
	return g711Silence(f.name, n), uint32(n)
}

// opusSamples returns the duration at 48 kHz of an Opus packet from its
// TOC byte (RFC 6716 §3.1), or 0 if it cannot tell.
func opusSamples(p []byte) int {
	if len(p) == 0 {
		return 0
	}
	cfg := p[0] >> 3
	var frame int // in 48 kHz samples
	switch {
	case cfg < 12: // SILK: 10, 20, 40, 60 ms
		frame = [4]int{480, 960, 1920, 2880}[cfg&3]
	case cfg < 16: // Hybrid: 10, 20 ms
		frame = [2]int{480, 960}[cfg&1]
	default: // CELT: 2.5, 5, 10, 20 ms
		frame = [4]int{120, 240, 480, 960}[cfg&3]
	}
	switch p[0] & 3 {
	case 0:
		return frame
	case 1, 2:
		return 2 * frame
	}
	if len(p) < 2 {
		return 0
	}
	return int(p[1]&0x3f) * frame
}

// payloadSamples is the duration of an audio payload in its clock units.
func payloadSamples(f codecFmt, payload []byte) uint32 {
	if f.name == "opus" {
		if n := opusSamples(payload); n > 0 {
			return uint32(n)
		}
		return uint32(f.rate * f.ptime / 1000)
	}
	return uint32(len(payload)) // G.711: one byte a sample
}

// transcodeStage converts one direction's audio where the legs' codecs
// differ: reorder buffer → codec.Transcoder → our own outgoing packets.
// Owned by the direction's goroutine.
type transcodeStage struct {
	d       *direction
	in, out codecFmt
	outPT   uint8
	tc      *codec.Transcoder
	jb      *jitterBuffer

	havePrev bool
	inSSRC   uint32
	prevTS   uint32 // input timestamp of the last packet delivered
	prevDur  uint32 // its duration, input clock
	// filled is the silence sent toward WhatsApp since the last input
	// audio, output clock: a gap in the input it covered is not added to
	// the outgoing timestamps again.
	filled uint32

	emitAudio, emitSilence func(frame []byte, samples int)
}

func newTranscodeStage(d *direction, rt *route, opt codec.Options, depth time.Duration) (*transcodeStage, error) {
	tc, err := codec.NewTranscoder(rt.in.format(), rt.out.format(), opt)
	if err != nil {
		return nil, fmt.Errorf("media: transcoder %s→%s: %w", rt.in.name, rt.out.name, err)
	}
	s := &transcodeStage{d: d, in: rt.in, out: rt.out, outPT: rt.outPT, tc: tc}
	s.jb = newJitterBuffer(depth, s.deliver)
	s.emitAudio = func(frame []byte, samples int) { d.emitOwn(s.outPT, frame, samples, false) }
	s.emitSilence = func(frame []byte, samples int) {
		d.emitOwn(s.outPT, frame, samples, true)
		s.filled += uint32(samples)
	}
	side := d.side
	tc.SetPCMTap(func(pcm []int16) {
		if t := d.b.tap.Load(); t != nil {
			t.tap.PCM(side, pcm)
		}
	})
	return s, nil
}

// matches reports whether the stage already converts what rt asks for.
func (s *transcodeStage) matches(rt *route) bool {
	return s.in == rt.in && s.out == rt.out && s.outPT == rt.outPT
}

func (s *transcodeStage) close() { s.tc.Close() }

// push takes one audio packet of the input stream.
func (s *transcodeStage) push(ssrc uint32, seq uint16, ts uint32, payload []byte, now time.Duration) jbResult {
	if s.havePrev && ssrc != s.inSSRC {
		// A new input stream: hand over what is held of the old one and
		// mark the discontinuity.
		s.jb.reset()
		s.havePrev = false
		s.d.stream.marker = true
	}
	s.inSSRC = ssrc
	return s.jb.push(seq, ts, payload, now)
}

// deliver is the reorder buffer's output: one input packet in order, with
// the number of packets given up before it.
func (s *transcodeStage) deliver(ts uint32, payload []byte, lost int) {
	if s.havePrev {
		expected := s.prevTS + s.prevDur*uint32(1+lost)
		if lost > codec.MaxConcealPackets {
			// Too long to conceal: a new talk spurt instead.
			expected, lost = s.prevTS+s.prevDur, 0
		}
		// The input's timestamps moved on more than its packets cover:
		// silence suppression or DTX. Move ours on as much, less what
		// silence fill already covered, and mark the new talk spurt.
		if gap := int32(ts - expected); gap > int32(s.prevDur/2) {
			g := int64(gap) * int64(s.out.rate) / int64(s.in.rate)
			if g -= int64(s.filled); g > 0 {
				s.d.stream.ts += uint32(g)
			}
			s.d.stream.marker = true
		}
	}
	s.havePrev, s.prevTS, s.prevDur, s.filled = true, ts, payloadSamples(s.in, payload), 0
	if err := s.tc.Write(payload, lost, s.emitAudio); err != nil {
		s.d.logOnce(&s.d.loggedCodec, "media: transcoding failed for a packet", "err", err)
	}
}

// tapDecoder decodes a relayed direction's audio for the PCM tap. Relaying
// needs no decoder, so one exists only while a tap is set.
type tapDecoder struct {
	b       *Bridge
	side    Side
	name    string // codec being decoded
	pcm     []int16
	opus    *codec.Transcoder // Opus → PCMU, used only for its PCM tap
	have    bool
	lastSeq uint16
}

// decode hands payload (codec f, sequence seq) to tap as 8 kHz PCM.
func (t *tapDecoder) decode(f codecFmt, seq uint16, payload []byte, tap PCMTap) {
	if t.name != f.name {
		t.close()
		t.name = f.name
	}
	lost := 0
	if t.have {
		if d := int16(seq - t.lastSeq); d <= 0 {
			return // reordered or duplicate: the recording has moved on
		} else if d > 1 {
			lost = min(int(d)-1, codec.MaxConcealPackets)
		}
	}
	t.have, t.lastSeq = true, seq
	if f.name != "opus" {
		if t.pcm == nil {
			t.pcm = make([]int16, 0, jbSlotSize)
		}
		tap.PCM(t.side, codec.DecodeG711(f.name, payload, t.pcm[:0]))
		return
	}
	if t.opus == nil {
		tc, err := codec.NewTranscoder(codec.Format{Name: "opus"}, codec.Format{Name: "PCMU"}, codec.Options{})
		if err != nil {
			return
		}
		b, side := t.b, t.side
		tc.SetPCMTap(func(pcm []int16) {
			if h := b.tap.Load(); h != nil {
				h.tap.PCM(side, pcm)
			}
		})
		t.opus = tc
	}
	_ = t.opus.Write(payload, lost, discardFrame)
}

func (t *tapDecoder) close() {
	if t.opus != nil {
		t.opus.Close()
		t.opus = nil
	}
	t.have = false
}

func discardFrame([]byte, int) {}
