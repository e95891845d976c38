package media

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"

	"github.com/wagate/wagate/codec"
)

// Music on hold: audio wagate plays toward a leg while the other holds,
// so that the WhatsApp user hears something (and Meta sees media) while an
// agent has them on hold. A configured WAV file is decoded once, at
// start-up, to 8 kHz mono in memory and looped; without one, comfort
// noise is played, which costs nothing to make and is not the dead air
// that makes callers think the call dropped.

// maxClip bounds a music-on-hold clip: 10 minutes at 8 kHz (9.6 MB of
// samples); a longer file is refused rather than held in memory.
const maxClip = 10 * 60 * 8000

// maxWAVFile bounds the file read (a 10-minute 48 kHz stereo WAV is
// 115 MB).
const maxWAVFile = 128 << 20

// Clip is audio in memory, 8 kHz mono, to play with Bridge.Play.
type Clip struct {
	pcm []int16
}

// Duration is how long the clip plays once.
func (c *Clip) Duration() float64 { return float64(len(c.pcm)) / 8000 }

// Loop returns a FrameSource that plays the clip over and over, from its
// start; each source has its own position.
func (c *Clip) Loop() FrameSource { return &clipLoop{pcm: c.pcm} }

type clipLoop struct {
	pcm []int16
	pos int
}

func (l *clipLoop) ReadFrame(pcm []int16) bool {
	for i := range pcm {
		if l.pos >= len(l.pcm) {
			l.pos = 0
		}
		pcm[i] = l.pcm[l.pos]
		l.pos++
	}
	return true
}

// LoadWAV reads a WAV file for music on hold: 16-bit PCM (mono or
// stereo, mixed down), 8-bit μ-law or A-law, at any rate from 8 to 48 kHz
// (resampled to 8 kHz), at least 20 ms and at most 10 minutes long.
func LoadWAV(path string) (*Clip, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("media: music on hold: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("media: music on hold: %w", err)
	}
	if st.Size() > maxWAVFile {
		return nil, fmt.Errorf("media: music on hold %s: %d bytes is more than %d", path, st.Size(), maxWAVFile)
	}
	data := make([]byte, st.Size())
	if _, err := f.ReadAt(data, 0); err != nil {
		return nil, fmt.Errorf("media: music on hold %s: %w", path, err)
	}
	c, err := ParseWAV(data)
	if err != nil {
		return nil, fmt.Errorf("media: music on hold %s: %w", path, err)
	}
	return c, nil
}

// WAV format tags.
const (
	wavPCM        = 1
	wavALaw       = 6
	wavMuLaw      = 7
	wavExtensible = 0xFFFE
)

// ParseWAV decodes a WAV file's bytes as LoadWAV does.
func ParseWAV(data []byte) (*Clip, error) {
	if len(data) < 12 || string(data[:4]) != "RIFF" || string(data[8:12]) != "WAVE" {
		return nil, errors.New("not a RIFF WAVE file")
	}
	var (
		format, channels, bits int
		rate                   int
		sawFmt                 bool
		body                   []byte
	)
	for rest := data[12:]; len(rest) >= 8; {
		id, size := string(rest[:4]), int(binary.LittleEndian.Uint32(rest[4:8]))
		rest = rest[8:]
		if size < 0 || size > len(rest) {
			if id == "data" && sawFmt {
				size = len(rest) - len(rest)%4 // a streamed file's data runs to the end
			} else {
				return nil, fmt.Errorf("chunk %q of %d bytes runs past the end of the file", id, size)
			}
		}
		chunk := rest[:size]
		rest = rest[min(len(rest), size+size%2):] // chunks are padded to even sizes
		switch id {
		case "fmt ":
			if len(chunk) < 16 {
				return nil, errors.New("fmt chunk too short")
			}
			format = int(binary.LittleEndian.Uint16(chunk[0:]))
			channels = int(binary.LittleEndian.Uint16(chunk[2:]))
			rate = int(binary.LittleEndian.Uint32(chunk[4:]))
			bits = int(binary.LittleEndian.Uint16(chunk[14:]))
			if format == wavExtensible && len(chunk) >= 26 {
				format = int(binary.LittleEndian.Uint16(chunk[24:])) // the sub-format GUID starts with the tag
			}
			sawFmt = true
		case "data":
			if !sawFmt {
				return nil, errors.New("data chunk before the fmt chunk")
			}
			body = chunk
		}
		if body != nil {
			break
		}
	}
	switch {
	case !sawFmt:
		return nil, errors.New("no fmt chunk")
	case body == nil:
		return nil, errors.New("no data chunk")
	case channels < 1 || channels > 2:
		return nil, fmt.Errorf("%d channels: want mono or stereo", channels)
	case rate < 8000 || rate > 48000:
		return nil, fmt.Errorf("sample rate %d Hz: want 8000 to 48000", rate)
	}
	var mono []int16
	switch {
	case format == wavPCM && bits == 16:
		frames := len(body) / (2 * channels)
		mono = make([]int16, frames)
		for i := range mono {
			var sum int
			for c := range channels {
				sum += int(int16(binary.LittleEndian.Uint16(body[2*(i*channels+c):])))
			}
			mono[i] = int16(sum / channels)
		}
	case (format == wavMuLaw || format == wavALaw) && bits == 8:
		name := "PCMU"
		if format == wavALaw {
			name = "PCMA"
		}
		all := codec.DecodeG711(name, body, nil)
		mono = make([]int16, len(all)/channels)
		for i := range mono {
			var sum int
			for c := range channels {
				sum += int(all[i*channels+c])
			}
			mono[i] = int16(sum / channels)
		}
	default:
		return nil, fmt.Errorf("format %d with %d bits: want 16-bit PCM, or 8-bit μ-law or A-law", format, bits)
	}
	if int64(len(mono))*8000/int64(rate) > maxClip {
		return nil, fmt.Errorf("%.0f s long: at most %d s", float64(len(mono))/float64(rate), maxClip/8000)
	}
	pcm := resampleTo8k(mono, rate)
	if len(pcm) < PlaybackFrame {
		return nil, errors.New("shorter than 20 ms")
	}
	return &Clip{pcm: pcm}, nil
}

// resampleTo8k converts mono audio at rate to 8 kHz: a windowed-sinc low
// pass at 3.6 kHz evaluated at each output instant. It runs once per file,
// at start-up, so it favours quality and simplicity over speed.
func resampleTo8k(in []int16, rate int) []int16 {
	if rate == 8000 {
		return in
	}
	const (
		cutoff = 3600.0
		taps   = 16 // each side, in input samples at 8 kHz spacing
	)
	step := float64(rate) / 8000
	fc := cutoff / float64(rate)
	half := int(math.Ceil(taps * step))
	n := int(float64(len(in)) / step)
	out := make([]int16, n)
	for i := range out {
		center := float64(i) * step
		c := int(center)
		var acc, norm float64
		for j := c - half; j <= c+half; j++ {
			if j < 0 || j >= len(in) {
				continue
			}
			x := float64(j) - center
			w := 0.5 + 0.5*math.Cos(math.Pi*x/float64(half+1)) // Hann
			h := 2 * fc
			if x != 0 {
				h = math.Sin(2*math.Pi*fc*x) / (math.Pi * x)
			}
			acc += float64(in[j]) * h * w
			norm += h * w
		}
		if norm != 0 {
			acc /= norm
		}
		out[i] = int16(max(-32768, min(32767, math.Round(acc))))
	}
	return out
}

// ComfortNoise returns a FrameSource of soft noise at about dBFS (−60 is
// a quiet room): what a held caller hears when no music is configured,
// instead of digital silence. Its noise is lowpassed, so it is a hiss
// rather than a fizz.
func ComfortNoise(dbfs float64) FrameSource {
	amp := 32768 * math.Pow(10, dbfs/20) * math.Sqrt(3) // uniform noise of that RMS
	return &noise{amp: float32(amp), state: 0x2545F491}
}

type noise struct {
	amp   float32
	state uint32
	prev  float32
}

func (n *noise) ReadFrame(pcm []int16) bool {
	for i := range pcm {
		// xorshift32: cheap and good enough for a hiss.
		n.state ^= n.state << 13
		n.state ^= n.state >> 17
		n.state ^= n.state << 5
		white := (float32(n.state)/float32(math.MaxUint32)*2 - 1) * n.amp
		n.prev += 0.5 * (white - n.prev)
		pcm[i] = int16(n.prev * 1.4) // the lowpass loses about 3 dB
	}
	return true
}
