package codec

import (
	"fmt"
	"strings"
)

// Format is one side's codec as negotiated in SDP.
type Format struct {
	Name    string // "opus", "PCMU", "PCMA" (case-insensitive on input)
	Rate    int    // RTP clock rate: 48000 for opus, 8000 for G.711; 0 means that default
	PtimeMs int    // packet duration: 20 for opus; 5..60 in 5 ms steps for G.711; 0 means 20
}

// Options tunes the Opus encoder of a Transcoder whose output is Opus. They
// are ignored when the output is G.711. The ranges are those configs
// accepts for media.opus, so a loaded config always fits. Start from
// DefaultOptions (or the config): the zero value means complexity 0 and no
// FEC.
type Options struct {
	// OpusBitrate is the target bitrate in bit/s, 6000..510000; 0 means
	// DefaultOpusBitrate. Meta's SDP asks for maxaveragebitrate=20000.
	OpusBitrate int
	// OpusComplexity is libopus's 0..10 CPU/quality knob, taken literally
	// (0 is a legal, cheapest setting, so it cannot mean "default").
	OpusComplexity int
	// OpusFEC adds in-band forward error correction (LBRR) so the far end
	// can rebuild a lost packet from the next one.
	OpusFEC bool
}

// Defaults for Options, the same as configs' media.opus defaults. The
// encoder is most of a call's CPU: complexity 5 costs about half of 10 and
// about three times 0–1 (docs/codec.md).
const (
	DefaultOpusBitrate    = 20000
	DefaultOpusComplexity = 5
)

// DefaultOptions returns the settings for the WhatsApp leg: 20 kbit/s,
// complexity 5, in-band FEC on.
func DefaultOptions() Options {
	return Options{OpusBitrate: DefaultOpusBitrate, OpusComplexity: DefaultOpusComplexity, OpusFEC: true}
}

// Clock rates and frame sizes used throughout the package.
const (
	opusClock  = 48000 // RTP clock of opus, whatever the audio bandwidth
	g711Clock  = 8000
	pcmRate    = 8000           // the one internal PCM rate
	samplesPMs = pcmRate / 1000 // 8 kHz samples per millisecond
)

// kind is a codec as the transcoder handles it.
type kind uint8

const (
	kindOpus kind = iota + 1
	kindPCMU
	kindPCMA
)

func (k kind) String() string {
	switch k {
	case kindOpus:
		return "opus"
	case kindPCMU:
		return "PCMU"
	case kindPCMA:
		return "PCMA"
	}
	return "unknown"
}

// law returns the G.711 law of a G.711 kind.
func (k kind) law() G711Law {
	if k == kindPCMA {
		return ALaw
	}
	return MuLaw
}

// parseKind maps an SDP encoding name to a kind.
func parseKind(name string) (kind, bool) {
	switch {
	case strings.EqualFold(name, "opus"):
		return kindOpus, true
	case strings.EqualFold(name, "PCMU"):
		return kindPCMU, true
	case strings.EqualFold(name, "PCMA"):
		return kindPCMA, true
	}
	return 0, false
}

// normalize checks f and fills in defaults. It returns the kind and the
// format with canonical name, rate and ptime.
func (f Format) normalize() (kind, Format, error) {
	k, ok := parseKind(f.Name)
	if !ok {
		return 0, f, fmt.Errorf("codec %q not supported (want opus, PCMU or PCMA)", f.Name)
	}
	n := Format{Name: k.String(), Rate: f.Rate, PtimeMs: f.PtimeMs}
	if n.PtimeMs == 0 {
		n.PtimeMs = 20
	}
	switch k {
	case kindOpus:
		if n.Rate == 0 {
			n.Rate = opusClock
		}
		if n.Rate != opusClock {
			return 0, f, fmt.Errorf("opus clock rate %d: RTP opus is always 48000", f.Rate)
		}
		// libopus frames are 2.5–60 ms; below 10 ms SILK cannot run and
		// the packet rate doubles for nothing, so only these are offered.
		switch n.PtimeMs {
		case 10, 20, 40, 60:
		default:
			return 0, f, fmt.Errorf("opus ptime %d ms not supported (want 10, 20, 40 or 60)", f.PtimeMs)
		}
	default:
		if n.Rate == 0 {
			n.Rate = g711Clock
		}
		if n.Rate != g711Clock {
			return 0, f, fmt.Errorf("%s clock rate %d: G.711 is always 8000", n.Name, f.Rate)
		}
		if n.PtimeMs < 5 || n.PtimeMs > 60 || n.PtimeMs%5 != 0 {
			return 0, f, fmt.Errorf("%s ptime %d ms not supported (want 5..60 in steps of 5)", n.Name, f.PtimeMs)
		}
	}
	return k, n, nil
}

// normalize fills in the default bitrate and checks the ranges (the same
// as configs' checks of media.opus).
func (o Options) normalize() (Options, error) {
	if o.OpusBitrate == 0 {
		o.OpusBitrate = DefaultOpusBitrate
	}
	if o.OpusBitrate < 6000 || o.OpusBitrate > 510000 {
		return o, fmt.Errorf("opus bitrate %d bit/s out of range 6000..510000", o.OpusBitrate)
	}
	if o.OpusComplexity < 0 || o.OpusComplexity > 10 {
		return o, fmt.Errorf("opus complexity %d out of range 0..10", o.OpusComplexity)
	}
	return o, nil
}
