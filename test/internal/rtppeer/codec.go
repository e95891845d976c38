package rtppeer

import (
	"fmt"

	"github.com/wagate/wagate/test/internal/pcmu"
	"gopkg.in/hraban/opus.v2"
)

// Codec is an audio codec as SDP names it.
type Codec struct {
	Name     string // rtpmap encoding name
	PT       uint8  // payload type this side uses
	Rate     int    // RTP clock rate
	Channels int    // rtpmap channels (Opus: 2, though audio is mono)
}

// The codecs the peers speak.
var (
	// Opus as WhatsApp offers it: opus/48000/2, PT 111.
	Opus = Codec{Name: "opus", PT: 111, Rate: 48000, Channels: 2}
	// PCMU is G.711 μ-law, PT 0.
	PCMU = Codec{Name: "PCMU", PT: 0, Rate: 8000, Channels: 1}
	// PCMA is G.711 A-law, PT 8.
	PCMA = Codec{Name: "PCMA", PT: 8, Rate: 8000, Channels: 1}
)

// FrameSamples is the number of samples (at the clock rate) in 20 ms.
func (c Codec) FrameSamples() int { return c.Rate / 50 }

// Rtpmap is the a=rtpmap value.
func (c Codec) Rtpmap() string {
	if c.Channels > 1 {
		return fmt.Sprintf("%d %s/%d/%d", c.PT, c.Name, c.Rate, c.Channels)
	}
	return fmt.Sprintf("%d %s/%d", c.PT, c.Name, c.Rate)
}

// encoder turns 20 ms of mono PCM at the codec's rate into a payload.
type encoder interface {
	encode(pcm []int16) ([]byte, error)
}

// decoder turns a payload into mono PCM at the codec's rate.
type decoder interface {
	decode(payload []byte) ([]int16, error)
}

func newEncoder(c Codec, bitrate int) (encoder, error) {
	switch c.Name {
	case "opus":
		// As the WhatsApp client does: 48 kHz mono VoIP encoder, Meta's
		// maxaveragebitrate, wideband (maxplaybackrate=16000), in-band FEC.
		e, err := opus.NewEncoder(48000, 1, opus.AppVoIP)
		if err != nil {
			return nil, err
		}
		if bitrate == 0 {
			bitrate = 20000
		}
		if err := e.SetBitrate(bitrate); err != nil {
			return nil, err
		}
		if err := e.SetMaxBandwidth(opus.Wideband); err != nil {
			return nil, err
		}
		if err := e.SetInBandFEC(true); err != nil {
			return nil, err
		}
		return &opusEnc{e: e, buf: make([]byte, 1500)}, nil
	case "PCMU":
		return g711Enc{alaw: false}, nil
	case "PCMA":
		return g711Enc{alaw: true}, nil
	}
	return nil, fmt.Errorf("rtppeer: no encoder for %s", c.Name)
}

func newDecoder(c Codec) (decoder, error) {
	switch c.Name {
	case "opus":
		d, err := opus.NewDecoder(48000, 1)
		if err != nil {
			return nil, err
		}
		return &opusDec{d: d, pcm: make([]int16, 5760)}, nil
	case "PCMU":
		return g711Dec{alaw: false}, nil
	case "PCMA":
		return g711Dec{alaw: true}, nil
	}
	return nil, fmt.Errorf("rtppeer: no decoder for %s", c.Name)
}

type opusEnc struct {
	e   *opus.Encoder
	buf []byte
}

func (o *opusEnc) encode(pcm []int16) ([]byte, error) {
	n, err := o.e.Encode(pcm, o.buf)
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), o.buf[:n]...), nil
}

type opusDec struct {
	d   *opus.Decoder
	pcm []int16
}

func (o *opusDec) decode(p []byte) ([]int16, error) {
	n, err := o.d.Decode(p, o.pcm)
	if err != nil {
		return nil, err
	}
	return append([]int16(nil), o.pcm[:n]...), nil
}

type g711Enc struct{ alaw bool }

func (g g711Enc) encode(pcm []int16) ([]byte, error) {
	out := make([]byte, len(pcm))
	for i, v := range pcm {
		if g.alaw {
			out[i] = alawEncode(v)
		} else {
			out[i] = pcmu.Encode(v)
		}
	}
	return out, nil
}

type g711Dec struct{ alaw bool }

func (g g711Dec) decode(p []byte) ([]int16, error) {
	out := make([]int16, len(p))
	for i, b := range p {
		if g.alaw {
			out[i] = alawDecode(b)
		} else {
			out[i] = ulawDecode(b)
		}
	}
	return out, nil
}

// ulawDecode is G.711 μ-law expansion.
func ulawDecode(u byte) int16 {
	u = ^u
	t := (int(u&0x0f) << 3) + 0x84
	t <<= (u & 0x70) >> 4
	if u&0x80 != 0 {
		return int16(0x84 - t)
	}
	return int16(t - 0x84)
}

// alawEncode is G.711 A-law compression.
func alawEncode(s int16) byte {
	segEnd := [8]int{0x1f, 0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff}
	v := int(s) >> 3
	mask := byte(0xd5)
	if v < 0 {
		mask = 0x55
		v = -v - 1
	}
	seg := 0
	for seg < 8 && v > segEnd[seg] {
		seg++
	}
	if seg >= 8 {
		return 0x7f ^ mask
	}
	aval := byte(seg << 4)
	if seg < 2 {
		aval |= byte(v>>1) & 0x0f
	} else {
		aval |= byte(v>>seg) & 0x0f
	}
	return aval ^ mask
}

// alawDecode is G.711 A-law expansion.
func alawDecode(a byte) int16 {
	a ^= 0x55
	t := int(a&0x0f) << 4
	seg := int(a&0x70) >> 4
	switch seg {
	case 0:
		t += 8
	case 1:
		t += 0x108
	default:
		t += 0x108
		t <<= seg - 1
	}
	if a&0x80 != 0 {
		return int16(t)
	}
	return int16(-t)
}
