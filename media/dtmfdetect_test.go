package media

import (
	"encoding/binary"

	"math"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"

	"github.com/wagate/wagate/codec"
)

// The in-band DTMF detector against synthetic keys (every key, levels,
// noise, twist, frequency error, durations, pauses) and against what
// must not be a key (speech from espeak-ng, music, sweeps, single
// tones). All audio goes through μ-law and back, as it arrives on a
// G.711 leg.

// sig builds 8 kHz audio.
type sig struct{ pcm []float64 }

func (s *sig) silence(ms int) *sig {
	s.pcm = append(s.pcm, make([]float64, ms*8)...)
	return s
}

// tone adds a key: row and column at their levels (dBFS per tone, a
// full-scale sine being 0), frequencies scaled by 1+dev.
func (s *sig) tone(key rune, rowDB, colDB float64, ms int, dev float64) *sig {
	r, c := keyFreqs(key)
	ar, ac := dbfsAmp(rowDB), dbfsAmp(colDB)
	n0 := len(s.pcm)
	for i := range ms * 8 {
		t := float64(n0+i) / dtmfRate
		s.pcm = append(s.pcm, ar*math.Sin(2*math.Pi*r*(1+dev)*t)+ac*math.Sin(2*math.Pi*c*(1+dev)*t+1))
	}
	return s
}

func (s *sig) key(key rune, db float64, ms int) *sig { return s.tone(key, db, db, ms, 0) }

// noise adds white noise at db dBFS (its RMS over a full-scale sine's)
// to everything so far.
func (s *sig) noise(db float64, seed uint64) *sig {
	rng := rand.New(rand.NewPCG(seed, 1))
	sd := dbfsAmp(db) / math.Sqrt2
	for i := range s.pcm {
		s.pcm[i] += rng.NormFloat64() * sd
	}
	return s
}

// g711 returns the audio as it comes out of a μ-law leg.
func (s *sig) g711() []int16 {
	pcm := make([]int16, len(s.pcm))
	for i, v := range s.pcm {
		pcm[i] = int16(max(min(math.Round(v), 32767), -32768))
	}
	return throughG711(pcm)
}

func throughG711(pcm []int16) []int16 {
	return codec.DecodeG711("PCMU", codec.EncodeG711("PCMU", pcm, nil), nil)
}

func dbfsAmp(db float64) float64 { return 32767 * math.Pow(10, db/20) }

func keyFreqs(k rune) (float64, float64) {
	for r := range 4 {
		for c := range 4 {
			if dtmfKeys[r][c] == k {
				return dtmfRows[r], dtmfCols[c]
			}
		}
	}
	panic("not a key: " + string(k))
}

// detect runs pcm through a detector in 20 ms frames.
func detect(pcm []int16) string {
	var d DTMFDetector
	var got strings.Builder
	for len(pcm) > 0 {
		n := min(160, len(pcm))
		d.Write(pcm[:n], func(k rune) { got.WriteRune(k) })
		pcm = pcm[n:]
	}
	return got.String()
}

const allKeys = "123A456B789C*0#D"

func TestDTMFDetectKeys(t *testing.T) {
	for _, db := range []float64{-10, -20, -30} {
		for _, k := range allKeys {
			s := new(sig).silence(100).key(k, db, 80).silence(100)
			if got := detect(s.g711()); got != string(k) {
				t.Errorf("%c at %v dBFS per tone, 80 ms: got %q", k, db, got)
			}
		}
	}
}

func TestDTMFDetectNoise(t *testing.T) {
	// White noise 15 dB under each tone, at every level.
	for _, db := range []float64{-10, -20, -30} {
		for i, k := range allKeys {
			s := new(sig).silence(100).key(k, db, 80).silence(100).noise(db-15, uint64(i))
			if got := detect(s.g711()); got != string(k) {
				t.Errorf("%c at %v dBFS with noise at %v dBFS: got %q", k, db, db-15, got)
			}
		}
	}
}

func TestDTMFDetectTwist(t *testing.T) {
	for _, tt := range []struct {
		name         string
		rowDB, colDB float64
		want         bool
	}{
		{"low group 7 dB above high (normal twist)", -15, -22, true},
		{"low group 11 dB above high", -15, -26, false},
		{"high group 3 dB above low (reverse twist)", -23, -20, true},
		{"high group 7 dB above low", -27, -20, false},
		{"normal twist at the weakest level", -30, -37, true},
	} {
		for _, k := range allKeys {
			s := new(sig).silence(60).tone(k, tt.rowDB, tt.colDB, 100, 0).silence(60)
			got := detect(s.g711())
			if tt.want && got != string(k) || !tt.want && got != "" {
				t.Errorf("%s, key %c: got %q", tt.name, k, got)
			}
		}
	}
}

func TestDTMFDetectFrequencyError(t *testing.T) {
	// Q.23 senders are within 1.5 % of the nominal frequencies.
	for _, dev := range []float64{-0.015, 0.015} {
		for _, k := range allKeys {
			s := new(sig).silence(60).tone(k, -20, -20, 80, dev).silence(60)
			if got := detect(s.g711()); got != string(k) {
				t.Errorf("%c %+.1f %% off: got %q", k, dev*100, got)
			}
		}
	}
}

func TestDTMFDetectLevelFloor(t *testing.T) {
	for _, k := range allKeys {
		if got := detect(new(sig).silence(60).key(k, -50, 200).silence(60).g711()); got != "" {
			t.Errorf("%c at -50 dBFS (under the floor): got %q", k, got)
		}
	}
}

func TestDTMFDetectDuration(t *testing.T) {
	// Every alignment against the 102-sample blocks.
	for off := 0; off < dtmfBlock; off += 7 {
		for _, k := range "159D" {
			lead := make([]float64, off)
			long := &sig{pcm: lead}
			long.silence(50).key(k, -15, 40).silence(80)
			if got := detect(long.g711()); got != string(k) {
				t.Errorf("40 ms %c at offset %d: got %q", k, off, got)
			}
			short := &sig{pcm: append([]float64(nil), lead...)}
			short.silence(50).key(k, -15, 20).silence(80)
			if got := detect(short.g711()); got != "" {
				t.Errorf("20 ms %c at offset %d: got %q, want nothing", k, off, got)
			}
		}
	}
}

func TestDTMFDetectSequences(t *testing.T) {
	for _, tt := range []struct {
		name string
		s    *sig
		want string
	}{
		{"four keys, 60 ms on, 60 ms off", new(sig).key('1', -20, 60).silence(60).key('2', -20, 60).silence(60).
			key('3', -20, 60).silence(60).key('#', -20, 60).silence(60), "123#"},
		{"one key twice, 40 ms pause", new(sig).key('5', -20, 80).silence(40).key('5', -20, 80).silence(60), "55"},
		{"a long press is one key", new(sig).key('0', -12, 2000).silence(60), "0"},
		{"a long press with noise", new(sig).key('*', -25, 1500).silence(60).noise(-40, 7), "*"},
		{"one key straight after another", new(sig).key('4', -20, 100).key('8', -20, 100).silence(60), "48"},
	} {
		if got := detect(tt.s.g711()); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestDTMFDetectTalkOffTones(t *testing.T) {
	cases := map[string]*sig{}
	// A single tone of each group: half a key is no key.
	one := new(sig)
	for _, f := range append(dtmfRows[:], dtmfCols[:]...) {
		n0 := len(one.pcm)
		for i := range 1600 {
			one.pcm = append(one.pcm, dbfsAmp(-10)*math.Sin(2*math.Pi*f*float64(n0+i)/dtmfRate))
		}
	}
	cases["single tones"] = one
	// A sweep 300–3400 Hz over 3 s, alone and with a second sweep.
	sweep := new(sig)
	var ph1, ph2 float64
	for i := range 24000 {
		f1 := 300 + 3100*float64(i)/24000
		f2 := 3400 - 3100*float64(i)/24000
		ph1 += 2 * math.Pi * f1 / dtmfRate
		ph2 += 2 * math.Pi * f2 / dtmfRate
		sweep.pcm = append(sweep.pcm, dbfsAmp(-12)*(math.Sin(ph1)+math.Sin(ph2)))
	}
	cases["two crossing sweeps"] = sweep
	// Music: chords of harmonic-rich notes (five harmonics each) moving
	// through a scale, 250 ms a chord.
	music := new(sig)
	notes := []float64{261.63, 293.66, 329.63, 349.23, 392.00, 440.00, 493.88, 523.25}
	for step := range 32 {
		chord := []float64{notes[step%8], notes[(step+2)%8] * 1.0, notes[(step+4)%8] * 2}
		for i := range 2000 {
			t := float64(i) / dtmfRate
			var v float64
			for _, f := range chord {
				for h := 1; h <= 5; h++ {
					v += math.Sin(2*math.Pi*f*float64(h)*t) / float64(h)
				}
			}
			music.pcm = append(music.pcm, dbfsAmp(-20)*v)
		}
	}
	cases["music"] = music
	for name, s := range cases {
		if got := detect(s.g711()); got != "" {
			t.Errorf("%s: detected %q", name, got)
		}
	}
}

// TestDTMFDetectTalkOffSpeech: espeak-ng speech in several voices, speeds
// and pitches, loud and quiet, yields no key.
func TestDTMFDetectTalkOffSpeech(t *testing.T) {
	if _, err := exec.LookPath("espeak-ng"); err != nil {
		t.Fatalf("espeak-ng is needed (Debian package espeak-ng, installed by make test): %v", err)
	}
	const text = "Thank you for calling. Please hold while we connect you to the next available agent. " +
		"Your call is important to us. Press one for sales, two for support, or stay on the line. " +
		"Seven hundred and seventy, nine hundred and forty one, one thousand three hundred and thirty six."
	for _, v := range []struct{ voice, speed, pitch string }{
		{"en-us", "175", "50"}, {"en-us+f3", "160", "70"}, {"en-gb+m3", "200", "30"},
		{"es", "175", "50"}, {"de+f2", "150", "80"}, {"pt-br", "175", "99"},
	} {
		pcm := espeak(t, text, v.voice, v.speed, v.pitch)
		for _, gain := range []float64{1, 0.1} {
			scaled := make([]int16, len(pcm))
			for i, s := range pcm {
				scaled[i] = int16(float64(s) * gain)
			}
			if got := detect(throughG711(scaled)); got != "" {
				t.Errorf("speech (%s, %s wpm, pitch %s, gain %v, %.1f s): detected %q", v.voice, v.speed, v.pitch, gain,
					float64(len(pcm))/dtmfRate, got)
			}
		}
	}
}

// espeak renders text at 8 kHz with espeak-ng and sox.
func espeak(t *testing.T, text, voice, speed, pitch string) []int16 {
	t.Helper()
	cmd := exec.Command("sh", "-c", "espeak-ng -v \"$1\" -s \"$2\" -p \"$3\" --stdout | sox -t wav - -t raw -r 8000 -e signed -b 16 -c 1 -",
		"espeak", voice, speed, pitch)
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.Output()
	if err != nil || len(out) < 16000 {
		t.Fatalf("espeak-ng %s: %v (%d bytes)", voice, err, len(out))
	}
	pcm := make([]int16, len(out)/2)
	for i := range pcm {
		pcm[i] = int16(binary.LittleEndian.Uint16(out[2*i:]))
	}
	return pcm
}

func FuzzDTMFDetect(f *testing.F) {
	f.Add([]byte{}, uint8(160))
	f.Add([]byte(new(sig).key('7', -10, 100).silence(40).key('#', -30, 60).g711Bytes()), uint8(37))
	f.Fuzz(func(t *testing.T, raw []byte, chunk uint8) {
		pcm := make([]int16, len(raw)/2)
		for i := range pcm {
			pcm[i] = int16(binary.LittleEndian.Uint16(raw[2*i:]))
		}
		var d DTMFDetector
		n := max(int(chunk), 1)
		keys := 0
		for len(pcm) > 0 {
			k := min(n, len(pcm))
			d.Write(pcm[:k], func(key rune) {
				keys++
				if !strings.ContainsRune(allKeys, key) {
					t.Fatalf("reported %q", key)
				}
			})
			pcm = pcm[k:]
		}
		// One key needs at least two blocks and a release between keys.
		if limit := len(raw)/2/dtmfBlock/2 + 1; keys > limit {
			t.Fatalf("%d keys from %d samples", keys, len(raw)/2)
		}
	})
}

func (s *sig) g711Bytes() string {
	var b []byte
	for _, v := range s.g711() {
		b = binary.LittleEndian.AppendUint16(b, uint16(v))
	}
	return string(b)
}

// BenchmarkDTMFDetect: the cost of one 20 ms G.711 frame (160 samples)
// of speech-like noise, as a caller's audio is fed while a call is
// answered locally.
func BenchmarkDTMFDetect(b *testing.B) {
	for _, tc := range []struct {
		name string
		pcm  []int16
	}{
		{"noise", new(sig).silence(1000).noise(-20, 3).g711()},
		{"key", new(sig).key('5', -15, 1000).g711()},
		{"silence", new(sig).silence(1000).g711()},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var d DTMFDetector
			frames := len(tc.pcm) / 160
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				d.Write(tc.pcm[i*160:(i+1)*160], func(rune) {})
				i = (i + 1) % frames
			}
		})
	}
}
