package prompt

import (
	"encoding/binary"
	"math"
	"os/exec"
	"testing"

	"github.com/zaf/g711"
)

// goertzel returns the share of s's power at freq (rate Hz): near 1 for a
// pure tone at freq, near 0 when the energy is elsewhere.
func goertzel(s []int16, rate int, freq float64) float64 {
	if len(s) == 0 {
		return 0
	}
	coeff := 2 * math.Cos(2*math.Pi*freq/float64(rate))
	var s1, s2, total float64
	for _, v := range s {
		x := float64(v) / 32768
		total += x * x
		s0 := x + coeff*s1 - s2
		s2, s1 = s1, s0
	}
	if total == 0 {
		return 0
	}
	return (s1*s1 + s2*s2 - coeff*s1*s2) / (total * float64(len(s)) / 2)
}

// rms is the RMS level of s, 0–1 of full scale.
func rms(s []int16) float64 {
	if len(s) == 0 {
		return 0
	}
	var sum float64
	for _, v := range s {
		f := float64(v) / 32768
		sum += f * f
	}
	return math.Sqrt(sum / float64(len(s)))
}

// dbfs is the level of s in dB of full scale (-120 for silence).
func dbfs(s []int16) float64 {
	r := rms(s)
	if r < 1e-6 {
		return -120
	}
	return 20 * math.Log10(r)
}

// middle drops the first and last tenth of s: the resampler's and
// decoders' edges are not the signal.
func middle(s []int16) []int16 { return s[len(s)/10 : len(s)-len(s)/10] }

// sine returns n samples of a sine at freq Hz (rate Hz), peak amp.
func sine(rate int, freq, amp float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = amp * math.Sin(2*math.Pi*freq*float64(i)/float64(rate))
	}
	return out
}

// wavSpec describes a WAV file for makeWAV.
type wavSpec struct {
	code, channels, rate, bits int
	extensible                 bool
	extraChunk                 string // a chunk id written before data ("LIST"), odd-sized
	streamSize                 bool   // data size 0xFFFFFFFF, as a stream that was never finalized
}

// makeWAV writes a WAV of spec whose channel c holds freqs[c] (amp 0.5).
func makeWAV(t testing.TB, spec wavSpec, freqs []float64, n int) []byte {
	t.Helper()
	width := spec.bits / 8
	align := width * spec.channels
	data := make([]byte, n*align)
	for c := range spec.channels {
		x := sine(spec.rate, freqs[c%len(freqs)], 0.5, n)
		for i, v := range x {
			b := data[i*align+c*width:]
			switch {
			case spec.code == wavFloat:
				binary.LittleEndian.PutUint32(b, math.Float32bits(float32(v)))
			case spec.code == wavMuLaw:
				b[0] = g711.EncodeUlawFrame(int16(v * 32767))
			case spec.code == wavALaw:
				b[0] = g711.EncodeAlawFrame(int16(v * 32767))
			case width == 1:
				b[0] = byte(int(math.Round(v*127)) + 128)
			case width == 2:
				binary.LittleEndian.PutUint16(b, uint16(int16(math.Round(v*32767))))
			case width == 3:
				x := int32(math.Round(v * 8388607))
				b[0], b[1], b[2] = byte(x), byte(x>>8), byte(x>>16)
			case width == 4:
				binary.LittleEndian.PutUint32(b, uint32(int32(math.Round(v*2147483647))))
			}
		}
	}
	fmtChunk := make([]byte, 16)
	code := spec.code
	if spec.extensible {
		code = wavExtensible
		fmtChunk = make([]byte, 40)
		binary.LittleEndian.PutUint16(fmtChunk[16:], 22)
		binary.LittleEndian.PutUint16(fmtChunk[18:], uint16(spec.bits))
		binary.LittleEndian.PutUint16(fmtChunk[24:], uint16(spec.code))
	}
	binary.LittleEndian.PutUint16(fmtChunk[0:], uint16(code))
	binary.LittleEndian.PutUint16(fmtChunk[2:], uint16(spec.channels))
	binary.LittleEndian.PutUint32(fmtChunk[4:], uint32(spec.rate))
	binary.LittleEndian.PutUint32(fmtChunk[8:], uint32(spec.rate*align))
	binary.LittleEndian.PutUint16(fmtChunk[12:], uint16(align))
	binary.LittleEndian.PutUint16(fmtChunk[14:], uint16(spec.bits))
	var body []byte
	body = append(body, "WAVE"...)
	body = appendChunk(body, "fmt ", fmtChunk, len(fmtChunk))
	if spec.extraChunk != "" {
		body = appendChunk(body, spec.extraChunk, []byte("INFOabc"), 7)
	}
	size := len(data)
	if spec.streamSize {
		size = -1
	}
	body = appendChunk(body, "data", data, size)
	out := append([]byte("RIFF"), 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(out[4:], uint32(len(body)))
	return append(out, body...)
}

func appendChunk(b []byte, id string, data []byte, size int) []byte {
	b = append(b, id...)
	b = binary.LittleEndian.AppendUint32(b, uint32(size))
	b = append(b, data...)
	if len(data)%2 == 1 {
		b = append(b, 0)
	}
	return b
}

// needEspeak fails the test when espeak-ng is missing: make deps-test
// installs it, and a skipped speech test would hide a broken machine.
func needEspeak(t testing.TB) *Espeak {
	t.Helper()
	if _, err := exec.LookPath("espeak-ng"); err != nil {
		t.Fatal("espeak-ng is not installed (Debian package espeak-ng; make deps-test installs it)")
	}
	e, err := NewEspeak("", "en")
	if err != nil {
		t.Fatal(err)
	}
	return e
}
