package codec

import (
	"fmt"

	"gopkg.in/hraban/opus.v2"
)

// rateMode is how Opus's 48 kHz meets G.711's 8 kHz.
type rateMode uint8

const (
	// rateLibopus opens the libopus decoder and encoder at 8 kHz: libopus
	// resamples internally (SILK runs at 8 kHz natively for narrowband,
	// and its own 16→8 kHz resampler handles wideband packets).
	rateLibopus rateMode = iota + 1
	// rateFIR runs libopus at 48 kHz and converts with our polyphase FIR
	// (Downsampler, Upsampler).
	rateFIR
)

// defaultRateMode is the measured choice (docs/codec.md): the one line to
// change to swap the resampling strategy for every transcoder.
const defaultRateMode = rateLibopus

func (m rateMode) String() string {
	switch m {
	case rateLibopus:
		return "libopus-8k"
	case rateFIR:
		return "fir-48k"
	}
	return "unknown"
}

const (
	// maxOpusPacketMs is the longest audio one Opus packet may carry.
	maxOpusPacketMs = 120
	// maxOpusPayload bounds an encoded packet: libopus's limit is 1275
	// bytes per frame and a 60 ms packet at 510 kbit/s holds three; a
	// narrowband voice packet at 20 kbit/s is about 50.
	maxOpusPayload = 4000
	// initialFECLoss is the loss percentage the encoder assumes while FEC is
	// on: libopus writes no FEC data at all at 0 %, and at 1 % the FEC copy
	// is coarse and cheap until real loss figures arrive.
	initialFECLoss = 1
)

// opus8k is Opus as the rest of the package sees it: packets on one side,
// 8 kHz mono int16 PCM on the other. Where the 48 kHz ↔ 8 kHz conversion
// happens is decided here and only here (mode). One value is either a
// decoder or an encoder. Not safe for concurrent use.
type opus8k struct {
	mode rateMode
	fs   int // libopus sample rate: 8000 or 48000

	dec     *opus.Decoder
	lastDur int // duration of the last decoded packet, samples at fs

	enc      *opus.Encoder
	frameFs  int // samples per encoded frame at fs
	frame8k  int // samples per encoded frame at 8 kHz
	fec      bool
	lossPerc int // loss percentage last given to libopus

	down *Downsampler // rateFIR decoder
	up   *Upsampler   // rateFIR encoder
	wide []int16      // rateFIR: PCM at 48 kHz
}

// libopusRate is the rate libopus is opened at for mode m.
func libopusRate(m rateMode) int {
	if m == rateFIR {
		return 48000
	}
	return pcmRate
}

// newOpusDecoder8k returns a mono decoder producing 8 kHz PCM.
func newOpusDecoder8k(m rateMode) (*opus8k, error) {
	o := &opus8k{mode: m, fs: libopusRate(m)}
	// Mono whatever the SDP says: opus/48000/2 is the RTP name of every
	// Opus stream, and libopus downmixes a stereo packet for a mono decoder.
	dec, err := opus.NewDecoder(o.fs, 1)
	if err != nil {
		return nil, fmt.Errorf("opus decoder at %d Hz: %w", o.fs, err)
	}
	o.dec = dec
	o.lastDur = o.fs / 50 // until a packet says otherwise, 20 ms
	if m == rateFIR {
		o.wide = make([]int16, maxOpusPacketMs*48)
		o.down = NewDownsampler(len(o.wide))
	}
	return o, nil
}

// newOpusEncoder8k returns a mono VoIP encoder taking frameMs of 8 kHz PCM
// per packet.
func newOpusEncoder8k(m rateMode, opt Options, frameMs int) (*opus8k, error) {
	o := &opus8k{mode: m, fs: libopusRate(m), fec: opt.OpusFEC}
	enc, err := opus.NewEncoder(o.fs, 1, opus.AppVoIP)
	if err != nil {
		return nil, fmt.Errorf("opus encoder at %d Hz: %w", o.fs, err)
	}
	o.enc = enc
	o.frameFs = frameMs * o.fs / 1000
	o.frame8k = frameMs * samplesPMs
	if err := enc.SetBitrate(opt.OpusBitrate); err != nil {
		return nil, fmt.Errorf("opus bitrate %d: %w", opt.OpusBitrate, err)
	}
	if err := enc.SetComplexity(opt.OpusComplexity); err != nil {
		return nil, fmt.Errorf("opus complexity %d: %w", opt.OpusComplexity, err)
	}
	// The source is G.711: nothing above 4 kHz exists, so every bit goes to
	// the narrowband. At 48 kHz libopus would otherwise pick wideband or
	// more by bitrate alone and spend bits coding an empty band.
	if err := enc.SetMaxBandwidth(opus.Narrowband); err != nil {
		return nil, fmt.Errorf("opus max bandwidth: %w", err)
	}
	if err := enc.SetInBandFEC(opt.OpusFEC); err != nil {
		return nil, fmt.Errorf("opus in-band FEC: %w", err)
	}
	o.lossPerc = -1
	if err := o.setLoss(0); err != nil {
		return nil, err
	}
	if m == rateFIR {
		o.wide = make([]int16, o.frameFs)
		o.up = NewUpsampler(o.frame8k)
	}
	return o, nil
}

// maxDecoded8k is the most 8 kHz samples one decode or conceal call yields.
const maxDecoded8k = maxOpusPacketMs * samplesPMs

// decode decodes one packet into dst (8 kHz, room for maxDecoded8k) and
// returns the number of samples.
func (o *opus8k) decode(pkt []byte, dst []int16) (int, error) {
	if o.mode == rateFIR {
		n, err := o.dec.Decode(pkt, o.wide)
		if err != nil {
			return 0, fmt.Errorf("opus decode (%d bytes): %w", len(pkt), err)
		}
		o.lastDur = n
		return o.down.Process(dst, o.wide[:n])
	}
	// hraban/opus takes the slice's capacity as the largest frame it may
	// write: give it exactly the room for the longest packet.
	n, err := o.dec.Decode(pkt, dst[:maxDecoded8k:maxDecoded8k])
	if err != nil {
		return 0, fmt.Errorf("opus decode (%d bytes): %w", len(pkt), err)
	}
	o.lastDur = n
	return n, nil
}

// conceal writes one missing packet's worth of audio (as long as the last
// packet decoded) into dst. With next, the packet after the missing one,
// libopus rebuilds the missing audio from next's in-band FEC, falling back
// to PLC itself when next carries none; without next it is PLC only, which
// continues the last pitch and fades out over consecutive losses.
func (o *opus8k) conceal(next []byte, dst []int16) (int, error) {
	dur := o.lastDur
	buf := dst
	if o.mode == rateFIR {
		buf = o.wide
	}
	// Capacity is the frame size libopus must fill: exactly the gap.
	pcm := buf[:dur:dur]
	var err error
	if len(next) > 0 {
		err = o.dec.DecodeFEC(next, pcm)
	} else {
		err = o.dec.DecodePLC(pcm)
	}
	if err != nil {
		return 0, fmt.Errorf("opus conceal %d samples (fec=%t): %w", dur, len(next) > 0, err)
	}
	if o.mode == rateFIR {
		return o.down.Process(dst, pcm)
	}
	return dur, nil
}

// encode encodes exactly one frame (frame8k samples of 8 kHz PCM) into out
// and returns the payload length. libopus rejects anything but a legal
// frame size with "invalid argument", so callers go through the framer.
func (o *opus8k) encode(pcm []int16, out []byte) (int, error) {
	if len(pcm) != o.frame8k {
		return 0, fmt.Errorf("opus encode: %d samples, want exactly %d", len(pcm), o.frame8k)
	}
	in := pcm
	if o.mode == rateFIR {
		if _, err := o.up.Process(o.wide, pcm); err != nil {
			return 0, err
		}
		in = o.wide
	}
	n, err := o.enc.Encode(in, out)
	if err != nil {
		return 0, fmt.Errorf("opus encode %d samples at %d Hz: %w", len(in), o.fs, err)
	}
	return n, nil
}

// setLoss gives libopus the expected packet loss (0..100). It tunes how
// much FEC data libopus adds, so it is floored at initialFECLoss while FEC
// is on: at 0 libopus would drop FEC entirely.
func (o *opus8k) setLoss(pct int) error {
	pct = max(0, min(100, pct))
	if o.fec {
		pct = max(pct, initialFECLoss)
	}
	if pct == o.lossPerc {
		return nil
	}
	if err := o.enc.SetPacketLossPerc(pct); err != nil {
		return fmt.Errorf("opus packet loss %d%%: %w", pct, err)
	}
	o.lossPerc = pct
	return nil
}
