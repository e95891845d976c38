package codec

import (
	"slices"
	"strings"

	"github.com/zaf/g711"
)

// G711Law is a G.711 companding law.
type G711Law uint8

// The two G.711 laws: μ-law (PCMU, North America and Japan) and A-law
// (PCMA, everywhere else).
const (
	MuLaw G711Law = iota + 1
	ALaw
)

// ParseG711 maps an SDP encoding name ("PCMU", "PCMA", any case) to its law.
func ParseG711(name string) (G711Law, bool) {
	switch {
	case strings.EqualFold(name, "PCMU"):
		return MuLaw, true
	case strings.EqualFold(name, "PCMA"):
		return ALaw, true
	}
	return 0, false
}

// String returns the SDP encoding name.
func (l G711Law) String() string {
	switch l {
	case MuLaw:
		return "PCMU"
	case ALaw:
		return "PCMA"
	}
	return "G711(?)"
}

// Silence is the code word for zero amplitude. It is not 0x00: μ-law's zero
// is 0xFF and A-law's is 0xD5 (even bits inverted), and a payload of 0x00
// is full-scale noise.
func (l G711Law) Silence() byte {
	if l == ALaw {
		return g711.EncodeAlawFrame(0)
	}
	return g711.EncodeUlawFrame(0)
}

// Encode appends the G.711 code of each sample of pcm to dst and returns the
// extended slice. It allocates only when dst lacks capacity.
func (l G711Law) Encode(dst []byte, pcm []int16) []byte {
	n := len(dst)
	dst = slices.Grow(dst, len(pcm))[:n+len(pcm)]
	out := dst[n:]
	if l == ALaw {
		for i, s := range pcm {
			out[i] = g711.EncodeAlawFrame(s)
		}
	} else {
		for i, s := range pcm {
			out[i] = g711.EncodeUlawFrame(s)
		}
	}
	return dst
}

// Decode appends the linear sample of each code in payload to dst and
// returns the extended slice. It allocates only when dst lacks capacity.
func (l G711Law) Decode(dst []int16, payload []byte) []int16 {
	n := len(dst)
	dst = slices.Grow(dst, len(payload))[:n+len(payload)]
	out := dst[n:]
	if l == ALaw {
		for i, c := range payload {
			out[i] = g711.DecodeAlawFrame(c)
		}
	} else {
		for i, c := range payload {
			out[i] = g711.DecodeUlawFrame(c)
		}
	}
	return dst
}

// Transcode appends payload converted from law l to law to (PCMU↔PCMA) to
// dst with zaf/g711's direct code-to-code tables: one lookup per byte, for
// relays that only need the other law and no repacketization.
func (l G711Law) Transcode(dst []byte, payload []byte, to G711Law) []byte {
	n := len(dst)
	dst = slices.Grow(dst, len(payload))[:n+len(payload)]
	out := dst[n:]
	switch {
	case l == to:
		copy(out, payload)
	case l == MuLaw:
		for i, c := range payload {
			out[i] = g711.Ulaw2AlawFrame(c)
		}
	default:
		for i, c := range payload {
			out[i] = g711.Alaw2UlawFrame(c)
		}
	}
	return dst
}

// DecodeG711 appends the 8 kHz linear samples of a PCMU or PCMA payload to
// dst and returns the extended slice; it is for recording media that is
// relayed without transcoding. An unknown name appends nothing: recording
// must never fail a call.
func DecodeG711(name string, payload []byte, dst []int16) []int16 {
	l, ok := ParseG711(name)
	if !ok {
		return dst
	}
	return l.Decode(dst, payload)
}

// EncodeG711 appends the PCMU or PCMA codes of 8 kHz linear samples to dst
// and returns the extended slice. An unknown name appends nothing.
func EncodeG711(name string, pcm []int16, dst []byte) []byte {
	l, ok := ParseG711(name)
	if !ok {
		return dst
	}
	return l.Encode(dst, pcm)
}
