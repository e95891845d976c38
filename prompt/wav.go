package prompt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/zaf/g711"
)

// ErrNotAudio is wrapped by every error about data that is not a file wagate
// can play: neither WAV nor MP3, or a WAV or MP3 it cannot decode.
var ErrNotAudio = errors.New("prompt: not playable audio")

// WAV format codes this package decodes.
const (
	wavPCM        = 1
	wavFloat      = 3
	wavALaw       = 6
	wavMuLaw      = 7
	wavExtensible = 0xFFFE
)

// Bounds on what a WAV header may claim; outside them the file is refused.
const (
	minFileRate = 4000
	maxFileRate = 192000
	maxChannels = 8
)

// wavFormat is a decoded "fmt " chunk.
type wavFormat struct {
	code     int
	channels int
	rate     int
	align    int // bytes per sample frame (all channels)
	bits     int
}

// ParseWAV decodes a RIFF/WAVE file: PCM of 8, 16, 24 or 32 bits, 32-bit
// float, A-law or μ-law, at 4–192 kHz with 1–8 channels. Channels are mixed
// down to mono; the rate is the file's (see Resample). A data chunk whose
// size runs past the end of the file (a stream that was never finalized,
// espeak-ng's --stdout) is read to the end.
func ParseWAV(data []byte) (Audio, error) {
	if len(data) < 12 || string(data[0:4]) != "RIFF" || string(data[8:12]) != "WAVE" {
		return Audio{}, fmt.Errorf("%w: not a RIFF/WAVE file", ErrNotAudio)
	}
	var f *wavFormat
	rest := data[12:]
	for len(rest) >= 8 {
		id := string(rest[0:4])
		size := int64(binary.LittleEndian.Uint32(rest[4:8]))
		body := rest[8:]
		switch id {
		case "fmt ":
			if size > int64(len(body)) {
				return Audio{}, fmt.Errorf("%w: WAV fmt chunk is cut short", ErrNotAudio)
			}
			var err error
			if f, err = parseFmt(body[:size]); err != nil {
				return Audio{}, err
			}
		case "data":
			if f == nil {
				return Audio{}, fmt.Errorf("%w: WAV data chunk comes before its fmt chunk", ErrNotAudio)
			}
			size = min(size, int64(len(body)))
			return decodeWAVData(f, body[:size])
		}
		if size > int64(len(body)) {
			break
		}
		// Chunks are padded to an even length.
		next := size + size&1
		if next > int64(len(body)) {
			break
		}
		rest = body[next:]
	}
	if f == nil {
		return Audio{}, fmt.Errorf("%w: WAV file has no fmt chunk", ErrNotAudio)
	}
	return Audio{}, fmt.Errorf("%w: WAV file has no data chunk", ErrNotAudio)
}

func parseFmt(b []byte) (*wavFormat, error) {
	if len(b) < 16 {
		return nil, fmt.Errorf("%w: WAV fmt chunk is %d bytes, want at least 16", ErrNotAudio, len(b))
	}
	f := &wavFormat{
		code:     int(binary.LittleEndian.Uint16(b[0:])),
		channels: int(binary.LittleEndian.Uint16(b[2:])),
		rate:     int(binary.LittleEndian.Uint32(b[4:])),
		align:    int(binary.LittleEndian.Uint16(b[12:])),
		bits:     int(binary.LittleEndian.Uint16(b[14:])),
	}
	if f.code == wavExtensible {
		// WAVE_FORMAT_EXTENSIBLE: the real format code opens the sub-format
		// GUID at offset 24.
		if len(b) < 26 {
			return nil, fmt.Errorf("%w: WAV extensible fmt chunk is cut short", ErrNotAudio)
		}
		f.code = int(binary.LittleEndian.Uint16(b[24:]))
	}
	switch {
	case f.channels < 1 || f.channels > maxChannels:
		return nil, fmt.Errorf("%w: WAV with %d channels (1–%d are played)", ErrNotAudio, f.channels, maxChannels)
	case f.rate < minFileRate || f.rate > maxFileRate:
		return nil, fmt.Errorf("%w: WAV at %d Hz (%d–%d Hz are played)", ErrNotAudio, f.rate, minFileRate, maxFileRate)
	}
	switch f.code {
	case wavPCM:
		if f.bits != 8 && f.bits != 16 && f.bits != 24 && f.bits != 32 {
			return nil, fmt.Errorf("%w: WAV PCM of %d bits (8, 16, 24 or 32 are played)", ErrNotAudio, f.bits)
		}
	case wavFloat:
		if f.bits != 32 {
			return nil, fmt.Errorf("%w: WAV float of %d bits (32 is played)", ErrNotAudio, f.bits)
		}
	case wavALaw, wavMuLaw:
		if f.bits != 8 {
			return nil, fmt.Errorf("%w: WAV G.711 of %d bits (8 is played)", ErrNotAudio, f.bits)
		}
	default:
		return nil, fmt.Errorf("%w: WAV format code %d (PCM, float, A-law and μ-law are played)", ErrNotAudio, f.code)
	}
	if want := f.channels * f.bits / 8; f.align != want {
		return nil, fmt.Errorf("%w: WAV block align %d, want %d for %d channels of %d bits", ErrNotAudio, f.align, want, f.channels, f.bits)
	}
	return f, nil
}

// decodeWAVData mixes the sample frames of b down to mono 16-bit; a partial
// last frame is dropped.
func decodeWAVData(f *wavFormat, b []byte) (Audio, error) {
	n := len(b) / f.align
	if n == 0 {
		return Audio{}, fmt.Errorf("%w: WAV data chunk holds no samples", ErrNotAudio)
	}
	out := make([]int16, n)
	width := f.bits / 8
	for i := range out {
		frame := b[i*f.align : (i+1)*f.align]
		var sum float64
		for c := range f.channels {
			sum += sampleAt(f.code, width, frame[c*width:])
		}
		out[i] = saturate(sum / float64(f.channels))
	}
	return Audio{Rate: f.rate, Samples: out}, nil
}

// sampleAt returns one sample scaled to the int16 range.
func sampleAt(code, width int, b []byte) float64 {
	switch code {
	case wavALaw:
		return float64(g711.DecodeAlawFrame(b[0]))
	case wavMuLaw:
		return float64(g711.DecodeUlawFrame(b[0]))
	case wavFloat:
		v := float64(math.Float32frombits(binary.LittleEndian.Uint32(b)))
		if math.IsNaN(v) {
			return 0
		}
		return max(-1, min(1, v)) * 32767
	}
	switch width {
	case 1:
		return float64(int(b[0])-128) * 256 // 8-bit WAV is unsigned
	case 2:
		return float64(int16(binary.LittleEndian.Uint16(b)))
	case 3:
		return float64(int32(uint32(b[0])<<8|uint32(b[1])<<16|uint32(b[2])<<24) >> 16)
	default:
		return float64(int32(binary.LittleEndian.Uint32(b)) >> 16)
	}
}

// EncodeWAV writes a as a canonical mono 16-bit PCM WAV file.
func EncodeWAV(a Audio) []byte {
	data := len(a.Samples) * 2
	b := make([]byte, 44+data)
	copy(b[0:], "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+data))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16)
	binary.LittleEndian.PutUint16(b[20:], wavPCM)
	binary.LittleEndian.PutUint16(b[22:], 1)
	binary.LittleEndian.PutUint32(b[24:], uint32(a.Rate))
	binary.LittleEndian.PutUint32(b[28:], uint32(a.Rate*2))
	binary.LittleEndian.PutUint16(b[32:], 2)
	binary.LittleEndian.PutUint16(b[34:], 16)
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], uint32(data))
	for i, s := range a.Samples {
		binary.LittleEndian.PutUint16(b[44+2*i:], uint16(s))
	}
	return b
}
