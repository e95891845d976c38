// Sources: the audio a session sends (tones, silence, bursts).

package rtppeer

import (
	"sync/atomic"
	"time"

	"github.com/wagate/wagate/test/internal/audio"
)

// Source fills 20 ms of mono PCM at the codec's rate.
type Source interface{ Read(pcm []int16) }

// Tone is a continuous sine.
type Tone struct {
	Freq, Amp float64
	Rate      int
	n         atomic.Int64
}

// NewTone returns a tone source at rate Hz.
func NewTone(freq, amp float64, rate int) *Tone { return &Tone{Freq: freq, Amp: amp, Rate: rate} }

func (t *Tone) Read(pcm []int16) {
	start := int(t.n.Add(int64(len(pcm)))) - len(pcm)
	copy(pcm, audio.Tone(t.Freq, t.Amp, t.Rate, start, len(pcm)))
}

// Silence is digital silence.
type Silence struct{}

func (Silence) Read(pcm []int16) { clear(pcm) }

// Bursts is a tone On long every Period, silence in between (for latency:
// each burst's onset is timed leaving and coming back).
type Bursts struct {
	Freq, Amp  float64
	Rate       int
	On, Period time.Duration
	n          atomic.Int64
}

func (b *Bursts) Read(pcm []int16) {
	start := int(b.n.Add(int64(len(pcm)))) - len(pcm)
	on := int(b.On.Seconds() * float64(b.Rate))
	period := int(b.Period.Seconds() * float64(b.Rate))
	tone := audio.Tone(b.Freq, b.Amp, b.Rate, start, len(pcm))
	for i := range pcm {
		if (start+i)%period < on {
			pcm[i] = tone[i]
		} else {
			pcm[i] = 0
		}
	}
}
