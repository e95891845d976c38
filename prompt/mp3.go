package prompt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hajimehoshi/go-mp3"
)

// DefaultMaxDuration bounds the audio one file may decode to. A 5 MB MP3 at
// 8 kbit/s would otherwise expand to 80 minutes of PCM in memory.
const DefaultMaxDuration = 10 * time.Minute

// ErrTooLong is wrapped when a file decodes to more than the allowed
// duration.
var ErrTooLong = errors.New("prompt: audio longer than allowed")

// DecodeMP3 decodes an MPEG-1/2/2.5 Layer III stream to mono PCM at the
// file's rate, refusing one longer than maxDur (0: DefaultMaxDuration).
// The decoder (github.com/hajimehoshi/go-mp3, pure Go) gives 16-bit stereo;
// the two channels are averaged.
func DecodeMP3(data []byte, maxDur time.Duration) (a Audio, err error) {
	if maxDur <= 0 {
		maxDur = DefaultMaxDuration
	}
	// A hostile file must cost an error, not the process: the decoder is
	// third-party code fed with bytes from the network.
	defer func() {
		if r := recover(); r != nil {
			a, err = Audio{}, fmt.Errorf("%w: MP3 decoder failed: %v", ErrNotAudio, r)
		}
	}()
	// Hide Seek: with a seeker the decoder first scans the whole file for
	// its length, which is not needed here.
	d, err := mp3.NewDecoder(struct{ io.Reader }{bytes.NewReader(data)})
	if err != nil {
		return Audio{}, fmt.Errorf("%w: MP3: %v", ErrNotAudio, err)
	}
	rate := d.SampleRate()
	if rate < minFileRate || rate > maxFileRate {
		return Audio{}, fmt.Errorf("%w: MP3 at %d Hz", ErrNotAudio, rate)
	}
	limit := samplesFor(rate, maxDur)
	// Mono output is a quarter of the decoded stereo bytes; MP3 compresses
	// about 10:1, so that guesses the size well enough to start with.
	out := make([]int16, 0, min(len(data)*3, limit))
	buf := make([]byte, 4*1152*4)
	for {
		n, rerr := d.Read(buf)
		for i := 0; i+4 <= n; i += 4 {
			l := int(int16(binary.LittleEndian.Uint16(buf[i:])))
			r := int(int16(binary.LittleEndian.Uint16(buf[i+2:])))
			out = append(out, int16((l+r)/2))
		}
		if len(out) > limit {
			return Audio{}, fmt.Errorf("%w: the MP3 plays for more than %s", ErrTooLong, maxDur)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if len(out) > 0 && errors.Is(rerr, io.ErrUnexpectedEOF) {
				break // a file cut in the middle of a frame: play what there is
			}
			return Audio{}, fmt.Errorf("%w: MP3: %v", ErrNotAudio, rerr)
		}
		if n == 0 {
			break
		}
	}
	if len(out) == 0 {
		return Audio{}, fmt.Errorf("%w: MP3 holds no audio", ErrNotAudio)
	}
	return Audio{Rate: rate, Samples: out}, nil
}

// Decode recognizes a WAV or MP3 file by its first bytes (not by its name or
// Content-Type, which are often wrong) and decodes it to mono PCM at rate.
func Decode(data []byte, rate int, maxDur time.Duration) (Audio, error) {
	if !validRate(rate) {
		return Audio{}, fmt.Errorf("prompt: rate %d (want %d or %d)", rate, Rate8k, Rate16k)
	}
	if maxDur <= 0 {
		maxDur = DefaultMaxDuration
	}
	var a Audio
	var err error
	switch {
	case isWAV(data):
		a, err = ParseWAV(data)
		if err == nil && a.Duration() > maxDur {
			return Audio{}, fmt.Errorf("%w: the WAV plays for %s, more than %s", ErrTooLong, a.Duration().Round(time.Second), maxDur)
		}
	case isMP3(data):
		a, err = DecodeMP3(data, maxDur)
	default:
		return Audio{}, fmt.Errorf("%w: neither WAV nor MP3 (it starts with %q)", ErrNotAudio, head(data, 16))
	}
	if err != nil {
		return Audio{}, err
	}
	return Audio{Rate: rate, Samples: Resample(a.Samples, a.Rate, rate)}, nil
}

func isWAV(b []byte) bool {
	return len(b) >= 12 && string(b[0:4]) == "RIFF" && string(b[8:12]) == "WAVE"
}

// isMP3 accepts an ID3v2 tag or an MPEG audio frame header: 11 sync bits,
// a version other than reserved, and layer III.
func isMP3(b []byte) bool {
	if len(b) >= 3 && string(b[0:3]) == "ID3" {
		return true
	}
	return len(b) >= 2 && b[0] == 0xFF && b[1]&0xE0 == 0xE0 && b[1]&0x18 != 0x08 && b[1]&0x06 == 0x02
}

// head returns the start of b for an error message, printable.
func head(b []byte, n int) string {
	b = b[:min(len(b), n)]
	out := make([]byte, len(b))
	for i, c := range b {
		if c < ' ' || c > '~' {
			c = '.'
		}
		out[i] = c
	}
	return string(out)
}
