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

// maxSilence is the longest G.711 silence payload: 60 ms.
const maxSilence = 480

// g711Silences are G.711 silence, μ-law and A-law, sliced per use.
var g711Silences = func() (s [2][maxSilence]byte) {
	for i := range maxSilence {
		s[0][i], s[1][i] = 0xff, 0xd5 // μ-law and A-law zero
	}
	return s
}()

// g711Silence returns a G.711 payload of silence of samples length (at
// most maxSilence), shared: callers must not write to it.
func g711Silence(name string, samples int) []byte {
	samples = min(samples, maxSilence)
	if name == "PCMA" {
		return g711Silences[1][:samples]
	}
	return g711Silences[0][:samples]
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

// payloadSamples is the duration of an audio payload in its clock units:
// 0 for an empty one, ptime for Opus whose duration cannot be read.
func payloadSamples(f codecFmt, payload []byte) uint32 {
	if f.name == "opus" && len(payload) > 0 {
		if n := opusSamples(payload); n > 0 {
			return uint32(n)
		}
		return uint32(f.rate * f.ptime / 1000)
	}
	return uint32(len(payload)) // G.711: one byte a sample
}

// transcodeStage converts one direction's audio where the legs' codecs
// differ: the playout buffer feeds it input packets in order (and says
// which are missing) on the pacer's ticks; its output frames wait in a
// small queue and leave one per tick. Guarded by the direction's lock.
type transcodeStage struct {
	d       *direction
	in, out codecFmt
	outPT   uint8
	tc      *codec.Transcoder
	fec     bool          // the input is Opus: a missing packet can come from the next one's FEC
	outDur  time.Duration // one output frame

	q      [maxQueued]queuedFrame
	qh, qn int

	emitAudio func(frame []byte, samples int)
}

// queuedFrame is one encoded output frame waiting for its tick, in a
// pooled buffer.
type queuedFrame struct {
	buf        *packetBuf
	n, samples int
}

// maxQueued bounds the output frames one input packet may yield: a 60 ms
// Opus packet into 10 ms G.711 is six.
const maxQueued = 8

func newTranscodeStage(d *direction, rt *route, opt codec.Options) (*transcodeStage, error) {
	tc, err := codec.NewTranscoder(rt.in.format(), rt.out.format(), opt)
	if err != nil {
		return nil, fmt.Errorf("media: transcoder %s→%s: %w", rt.in.name, rt.out.name, err)
	}
	s := &transcodeStage{d: d, in: rt.in, out: rt.out, outPT: rt.outPT, tc: tc, fec: rt.in.name == "opus",
		outDur: time.Duration(tc.Out().PtimeMs) * time.Millisecond}
	s.emitAudio = s.enqueue
	if s.fec {
		// Opus input is recorded from this decoder (concealment
		// included); G.711 input is tapped as it arrives (hold).
		side := d.side
		tc.SetPCMTap(func(pcm []int16) {
			if t := d.b.tap.Load(); t != nil {
				t.tap.PCM(side, pcm)
			}
		})
	}
	return s, nil
}

// matches reports whether the stage already converts what rt asks for.
func (s *transcodeStage) matches(rt *route) bool {
	return s.in == rt.in && s.out == rt.out && s.outPT == rt.outPT
}

// adopt reports whether the stage can convert what rt asks for: it does
// already, or rt moves the G.711 side to the other law or ptime (a PBX's
// re-INVITE from PCMU/20 to PCMA/30), which the stage takes on while
// keeping its Opus encoder or decoder. Frames already encoded in the old
// law are converted; those already cut at the old ptime go out as they
// are (each carries its own duration).
func (s *transcodeStage) adopt(rt *route) bool {
	if s.matches(rt) {
		return true
	}
	if s.tc.SwitchLaw(rt.in.format(), rt.out.format()) != nil {
		return false
	}
	if s.out.name != rt.out.name {
		if conv := lawConversion(rt.out.name); conv != nil {
			for i := range s.qn {
				f := s.q[(s.qh+i)%maxQueued]
				convertLaw(f.buf.b[:f.n], conv)
			}
		}
	}
	s.in, s.out, s.outPT = rt.in, rt.out, rt.outPT
	s.outDur = time.Duration(s.tc.Out().PtimeMs) * time.Millisecond
	return true
}

func (s *transcodeStage) close() {
	s.tc.Close()
	for s.qn > 0 {
		putBuf(s.q[s.qh].buf)
		s.q[s.qh] = queuedFrame{}
		s.qh, s.qn = (s.qh+1)%maxQueued, s.qn-1
	}
}

// enqueue keeps one encoded output frame for its tick.
func (s *transcodeStage) enqueue(frame []byte, samples int) {
	if s.qn == maxQueued || len(frame) > packetBufSize-rtpHeaderMin {
		return // cannot happen with the ptimes allowed; never block
	}
	b := getBuf()
	i := (s.qh + s.qn) % maxQueued
	s.q[i] = queuedFrame{buf: b, n: copy(b.b[:], frame), samples: samples}
	s.qn++
}

// sendOne sends the oldest queued frame.
func (s *transcodeStage) sendOne(now time.Duration) {
	f := s.q[s.qh]
	s.q[s.qh] = queuedFrame{}
	s.qh, s.qn = (s.qh+1)%maxQueued, s.qn-1
	s.d.emitOwn(s.outPT, f.buf.b[:f.n], f.samples, emitAudio, now)
	putBuf(f.buf)
}

// buffered is the input audio decoded but not yet a whole output frame.
func (s *transcodeStage) buffered() time.Duration {
	return time.Duration(s.tc.Buffered()) * time.Second / time.Duration(s.out.rate)
}

// write decodes one input packet.
func (s *transcodeStage) write(payload []byte) {
	if len(payload) == 0 {
		payload = nil
	}
	if err := s.tc.Write(payload, 0, s.emitAudio); err != nil {
		s.d.logOnce(&s.d.loggedCodec, "media: transcoding failed for a packet", "err", err)
	}
}

// conceal makes up one missing input packet: from next's in-band FEC when
// next is given (next itself is then decoded too), else by concealment.
func (s *transcodeStage) conceal(next []byte) {
	var err error
	if len(next) > 0 {
		err = s.tc.Write(next, 1, s.emitAudio)
	} else {
		err = s.tc.Write(nil, 0, s.emitAudio) // an empty payload is one missing packet
	}
	if err != nil {
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
			t.pcm = make([]int16, 0, packetBufSize)
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
