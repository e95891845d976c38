package audio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// WriteWAV writes mono 16-bit PCM samples at rate Hz as a RIFF WAVE file.
func WriteWAV(path string, rate int, s []int16) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	data := len(s) * 2
	h := make([]byte, 44)
	copy(h[0:], "RIFF")
	le.PutUint32(h[4:], uint32(36+data))
	copy(h[8:], "WAVEfmt ")
	le.PutUint32(h[16:], 16)
	le.PutUint16(h[20:], 1) // PCM
	le.PutUint16(h[22:], 1) // mono
	le.PutUint32(h[24:], uint32(rate))
	le.PutUint32(h[28:], uint32(rate*2))
	le.PutUint16(h[32:], 2)
	le.PutUint16(h[34:], 16)
	copy(h[36:], "data")
	le.PutUint32(h[40:], uint32(data))
	buf := make([]byte, data)
	for i, v := range s {
		le.PutUint16(buf[2*i:], uint16(v))
	}
	_, err = f.Write(append(h, buf...))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// ReadWAV reads a 16-bit PCM WAV file and returns its first channel and
// its sample rate. A data chunk whose size field was never filled in (a
// writer killed mid-file) is read to the end of the file.
func ReadWAV(path string) ([]int16, int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	le := binary.LittleEndian
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return nil, 0, errors.New("not a RIFF WAVE file")
	}
	var rate, channels, bits int
	off := 12
	for off+8 <= len(b) {
		id := string(b[off : off+4])
		size := int(le.Uint32(b[off+4:]))
		body := off + 8
		switch id {
		case "fmt ":
			if body+16 > len(b) {
				return nil, 0, io.ErrUnexpectedEOF
			}
			if f := le.Uint16(b[body:]); f != 1 && f != 0xfffe {
				return nil, 0, fmt.Errorf("WAV format %d, want PCM", f)
			}
			channels = int(le.Uint16(b[body+2:]))
			rate = int(le.Uint32(b[body+4:]))
			bits = int(le.Uint16(b[body+14:]))
		case "data":
			if rate == 0 || bits != 16 || channels < 1 {
				return nil, 0, fmt.Errorf("WAV: %d Hz, %d bits, %d channels: want 16-bit PCM", rate, bits, channels)
			}
			end := body + size
			if size == 0 || end > len(b) {
				end = len(b)
			}
			frame := 2 * channels
			n := (end - body) / frame
			out := make([]int16, n)
			for i := range out {
				out[i] = int16(le.Uint16(b[body+i*frame:]))
			}
			return out, rate, nil
		}
		off = body + size + size%2
	}
	return nil, 0, errors.New("WAV: no data chunk")
}
