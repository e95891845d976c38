package codec

import (
	"errors"
	"fmt"
	"sync/atomic"
)

// MaxConcealPackets caps how many lost packets one Write conceals. Within
// it the output covers the whole gap (timestamps stay continuous); a larger
// gap (a network outage, a hold without RTP) is concealed only up to the
// cap, because a burst of seconds of made-up audio sent at once helps no
// receiver: the media layer should start a new talk spurt (marker bit,
// timestamp jump) instead.
const MaxConcealPackets = 50

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("codec: transcoder closed")

// Transcoder converts one direction of a call: payloads of In to payloads of
// Out, through 8 kHz mono PCM. It is not safe for concurrent use, except
// SetPacketLoss and SetPCMTap, which may be called from any goroutine (an
// RTCP reader, a recorder starting) while another one writes.
type Transcoder struct {
	in, out         Format
	inKind, outKind kind

	dec *opus8k // In is Opus
	enc *opus8k // Out is Opus

	plc     fadePLC // In is G.711
	inFrame int     // 8 kHz samples in the last G.711 packet: the size of a lost one

	fr       framer  // the repacketizer
	outFrame int     // 8 kHz samples per output packet
	outTicks int     // Out RTP clock units per output packet
	scratch  []int16 // decoded input, one packet (≤ 120 ms) at a time
	outBuf   []byte  // the payload handed to emit
	zeros    []int16 // one output frame of silence for the Opus encoder

	// lossSet is written by SetPacketLoss from any goroutine; the writing
	// goroutine hands it to libopus when it differs from lossSeen, so
	// libopus is only ever touched by one goroutine.
	lossSet  atomic.Int32
	lossSeen int32
	tap      atomic.Pointer[func([]int16)] // nil: no tap
	closed   bool
}

// NewTranscoder returns a transcoder from in to out. Supported: Opus ↔
// PCMU/PCMA, PCMU ↔ PCMA, and PCMU→PCMU or PCMA→PCMA with a different
// ptime (a pure repacketizer). Opus → Opus is refused: it would squeeze a
// wideband stream through narrowband for nothing; relay it instead.
func NewTranscoder(in, out Format, opt Options) (*Transcoder, error) {
	return newTranscoder(in, out, opt, defaultRateMode)
}

// newTranscoder is NewTranscoder with the resampling strategy chosen by the
// caller: the measurements and benchmarks compare both.
func newTranscoder(in, out Format, opt Options, mode rateMode) (*Transcoder, error) {
	inK, in, err := in.normalize()
	if err != nil {
		return nil, fmt.Errorf("transcoder input: %w", err)
	}
	outK, out, err := out.normalize()
	if err != nil {
		return nil, fmt.Errorf("transcoder output: %w", err)
	}
	if inK == kindOpus && outK == kindOpus {
		return nil, fmt.Errorf("transcoder opus→opus not supported: relay the packets")
	}
	t := &Transcoder{in: in, out: out, inKind: inK, outKind: outK}
	t.inFrame = in.PtimeMs * samplesPMs
	t.outFrame = out.PtimeMs * samplesPMs
	t.outTicks = out.PtimeMs * out.Rate / 1000
	// One decode step yields at most one Opus packet's worth (120 ms); G.711
	// payloads are fed in steps of that size too.
	t.scratch = make([]int16, maxDecoded8k)
	t.fr = newFramer(t.outFrame, maxDecoded8k)
	t.zeros = make([]int16, t.outFrame)
	if inK == kindOpus {
		if t.dec, err = newOpusDecoder8k(mode); err != nil {
			return nil, fmt.Errorf("transcoder %s→%s: %w", in.Name, out.Name, err)
		}
	}
	if outK == kindOpus {
		if opt, err = opt.normalize(); err != nil {
			return nil, fmt.Errorf("transcoder %s→%s: %w", in.Name, out.Name, err)
		}
		if t.enc, err = newOpusEncoder8k(mode, opt, out.PtimeMs); err != nil {
			return nil, fmt.Errorf("transcoder %s→%s: %w", in.Name, out.Name, err)
		}
		t.outBuf = make([]byte, maxOpusPayload)
	} else {
		t.outBuf = make([]byte, 0, t.outFrame)
	}
	return t, nil
}

// In returns the input format with defaults filled in.
func (t *Transcoder) In() Format { return t.in }

// Out returns the output format with defaults filled in.
func (t *Transcoder) Out() Format { return t.out }

// SwitchLaw moves the transcoder's G.711 side to in's or out's law and
// ptime (a re-INVITE from PCMU/20 to PCMA/30, or either alone) and keeps
// the Opus side's codec: a new encoder toward Opus starts its stream over
// (its start-up and lookahead in the middle of a stream the far end's
// decoder has state for, heard as a click and a surge), and a new decoder
// has lost the history it predicts and conceals from (a click, and a
// reset concealment). Audio waiting for a whole output frame is kept and
// goes out in the new law and ptime; no sample is lost or repeated. It
// fails, changing nothing, unless the transcoder is Opus ↔ G.711 and only
// the G.711 side's law or ptime differs.
func (t *Transcoder) SwitchLaw(in, out Format) error {
	inK, in, err := in.normalize()
	if err != nil {
		return fmt.Errorf("codec: switch law: input: %w", err)
	}
	outK, out, err := out.normalize()
	if err != nil {
		return fmt.Errorf("codec: switch law: output: %w", err)
	}
	switch {
	case t.inKind == kindOpus && in == t.in && outK != kindOpus && out.Rate == t.out.Rate:
		t.out, t.outKind = out, outK
		if t.outFrame != out.PtimeMs*samplesPMs {
			t.outFrame = out.PtimeMs * samplesPMs
			t.outTicks = out.PtimeMs * out.Rate / 1000
			t.fr.resize(t.outFrame, maxDecoded8k)
			if cap(t.outBuf) < t.outFrame {
				t.outBuf = make([]byte, 0, t.outFrame)
			}
		}
	case t.outKind == kindOpus && out == t.out && inK != kindOpus && in.Rate == t.in.Rate:
		t.in, t.inKind = in, inK
		t.inFrame = in.PtimeMs * samplesPMs
	default:
		return fmt.Errorf("codec: switch law: %s→%s to %s→%s is not a change of G.711 law only", t.in.Name, t.out.Name, in.Name, out.Name)
	}
	return nil
}

// Write takes the payload of the next input packet in sequence order. lost
// > 0 says that many packets before this one are missing (capped at
// MaxConcealPackets): they are rebuilt from this packet's in-band FEC when
// In is Opus (the one right before it) and by PLC otherwise, and output
// frames covering the gap are still emitted so timing stays continuous. An
// empty payload counts as one more missing packet: that is how to feed an
// Opus DTX gap or a packet the jitter buffer gave up on.
//
// emit is called zero or more times, synchronously, with each complete
// output payload and its duration in Out's RTP clock units (960 for 20 ms
// Opus, 160 for 20 ms G.711). frame is reused after emit returns. Nothing is
// allocated per call.
//
// A payload libopus cannot decode is concealed as if lost, so timing stays
// continuous, and reported in the error; the transcoder stays usable.
func (t *Transcoder) Write(payload []byte, lost int, emit func(frame []byte, samples int)) error {
	if t.closed {
		return ErrClosed
	}
	lost = max(0, min(lost, MaxConcealPackets))
	if len(payload) == 0 {
		payload = nil
		lost = min(lost+1, MaxConcealPackets)
	}
	if t.inKind == kindOpus {
		return t.writeOpus(payload, lost, emit)
	}
	return t.writeG711(payload, lost, emit)
}

func (t *Transcoder) writeOpus(payload []byte, lost int, emit func([]byte, int)) error {
	for i := range lost {
		var next []byte
		if i == lost-1 {
			// In-band FEC in a packet describes only the packet before it.
			next = payload
		}
		n, err := t.dec.conceal(next, t.scratch)
		if err != nil && next != nil {
			// A corrupt packet has no usable FEC: plain PLC instead (the
			// packet's own decode below reports the corruption).
			n, err = t.dec.conceal(nil, t.scratch)
		}
		if err != nil {
			return fmt.Errorf("transcoder %s→%s: %w", t.in.Name, t.out.Name, err)
		}
		if err := t.push(t.scratch[:n], emit); err != nil {
			return err
		}
	}
	if payload == nil {
		return nil
	}
	n, derr := t.dec.decode(payload, t.scratch)
	if derr != nil {
		// Keep the clock running: a corrupt packet is a lost packet.
		var err error
		if n, err = t.dec.conceal(nil, t.scratch); err != nil {
			return fmt.Errorf("transcoder %s→%s: %w (concealing: %v)", t.in.Name, t.out.Name, derr, err)
		}
	}
	if err := t.push(t.scratch[:n], emit); err != nil {
		return err
	}
	if derr != nil {
		return fmt.Errorf("transcoder %s→%s: %w", t.in.Name, t.out.Name, derr)
	}
	return nil
}

func (t *Transcoder) writeG711(payload []byte, lost int, emit func([]byte, int)) error {
	for range lost {
		for left := t.inFrame; left > 0; {
			n := min(left, len(t.scratch))
			t.plc.conceal(t.scratch[:n])
			if err := t.push(t.scratch[:n], emit); err != nil {
				return err
			}
			left -= n
		}
	}
	if len(payload) > 0 {
		// The peer's real packet size beats the SDP's ptime (PBXs do not
		// always send what they signal); capped so a giant payload cannot
		// turn the next loss into a burst of made-up audio.
		t.inFrame = min(len(payload), maxDecoded8k)
	}
	law := t.inKind.law()
	for len(payload) > 0 {
		n := min(len(payload), len(t.scratch))
		pcm := law.Decode(t.scratch[:0], payload[:n])
		t.plc.remember(pcm)
		if err := t.push(pcm, emit); err != nil {
			return err
		}
		payload = payload[n:]
	}
	return nil
}

// push hands decoded input audio to the tap and the framer, and encodes and
// emits every output frame it completes.
func (t *Transcoder) push(pcm []int16, emit func([]byte, int)) error {
	if fn := t.tap.Load(); fn != nil {
		(*fn)(pcm)
	}
	for len(pcm) > 0 {
		k := t.fr.fill(pcm)
		pcm = pcm[k:]
		for {
			frame, ok := t.fr.take()
			if !ok {
				break
			}
			if err := t.encode(frame, emit); err != nil {
				return err
			}
		}
	}
	return nil
}

// encode turns one output frame of PCM into a payload and emits it.
func (t *Transcoder) encode(frame []int16, emit func([]byte, int)) error {
	if t.enc == nil {
		emit(t.outKind.law().Encode(t.outBuf[:0], frame), t.outTicks)
		return nil
	}
	if l := t.lossSet.Load(); l != t.lossSeen {
		if err := t.enc.setLoss(int(l)); err != nil {
			return fmt.Errorf("transcoder %s→%s: %w", t.in.Name, t.out.Name, err)
		}
		t.lossSeen = l
	}
	n, err := t.enc.encode(frame, t.outBuf)
	if err != nil {
		return fmt.Errorf("transcoder %s→%s: %w", t.in.Name, t.out.Name, err)
	}
	emit(t.outBuf[:n], t.outTicks)
	return nil
}

// Silence emits one output packet's worth of silence: for sending media
// first toward WhatsApp and for filling while the other side sends nothing.
// An Opus packet goes through the real encoder so the stream stays one
// continuous, decodable Opus stream. Audio waiting in the repacketizer is
// left alone.
func (t *Transcoder) Silence(emit func(frame []byte, samples int)) {
	if t.closed {
		return
	}
	if t.enc == nil {
		// Built in the output buffer like any frame, so a caller that
		// scribbles on a frame (in-place SRTP) cannot corrupt a template.
		buf := t.outBuf[:t.outFrame]
		s := t.outKind.law().Silence()
		for i := range buf {
			buf[i] = s
		}
		emit(buf, t.outTicks)
		return
	}
	// Encoding digital silence cannot fail with a legal frame size; if it
	// somehow does, sending nothing is the only sane fallback.
	_ = t.encode(t.zeros, emit)
}

// SetPacketLoss tells the Opus encoder the observed loss percentage
// (0..100), which sizes its in-band FEC; a no-op when Out is not Opus. Safe
// to call from another goroutine: it takes effect at the next encoded
// packet.
func (t *Transcoder) SetPacketLoss(pct int) {
	t.lossSet.Store(int32(max(0, min(100, pct))))
}

// SetPCMTap sets (or with nil removes) a tap that receives the decoded input
// audio as 8 kHz mono int16, concealment included, in order, for recording.
// The slice is reused after fn returns. Safe to call from another
// goroutine; fn itself runs inside Write.
func (t *Transcoder) SetPCMTap(fn func(pcm []int16)) {
	if fn == nil {
		t.tap.Store(nil)
		return
	}
	t.tap.Store(&fn)
}

// Buffered returns the input audio, in Out RTP clock units, waiting for a
// complete output packet (less than one packet's worth).
func (t *Transcoder) Buffered() int {
	return t.fr.buffered() * t.out.Rate / pcmRate
}

// Close releases the codec state; Write then returns ErrClosed and Silence
// does nothing. libopus state lives in Go memory here, so nothing leaks if
// Close is forgotten, but the call documents the end of the stream.
func (t *Transcoder) Close() {
	t.closed = true
	t.dec, t.enc = nil, nil
	t.tap.Store(nil)
}

// OpusSilence returns 20 ms of silence as an Opus packet from an encoder at
// opt (mono, 8 kHz in, as every transcoder toward Opus) once it has settled:
// a stream toward Opus that has nothing to say can send this precomputed
// frame instead of running the encoder every 20 ms, and stays one
// encoder's stream (same mode, bandwidth and FEC) as far as the far end's
// decoder can tell. It also checks opt.
func OpusSilence(opt Options) ([]byte, error) {
	t, err := NewTranscoder(Format{Name: "PCMU"}, Format{Name: "opus"}, opt)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	var out []byte
	// The first frames carry the encoder's start-up; later ones are all
	// alike.
	for range 10 {
		t.Silence(func(f []byte, _ int) { out = append(out[:0], f...) })
	}
	if len(out) == 0 {
		return nil, errors.New("codec: the Opus encoder made no silence frame")
	}
	return out, nil
}

// NewEncoder returns a transcoder fed with 8 kHz mono PCM through
// WritePCM rather than with payloads: for audio wagate makes itself
// (prompts, music on hold) toward a leg of format out. Opus output is
// encoded as any transcoder's, G.711 is framed at out's ptime.
func NewEncoder(out Format, opt Options) (*Transcoder, error) {
	return newTranscoder(Format{Name: "PCMU"}, out, opt, defaultRateMode)
}

// WritePCM encodes 8 kHz mono PCM of any length and emits every complete
// output packet, as Write does with decoded input (emit's frame is reused
// after it returns). Nothing is allocated.
func (t *Transcoder) WritePCM(pcm []int16, emit func(frame []byte, samples int)) error {
	if t.closed {
		return ErrClosed
	}
	return t.push(pcm, emit)
}
