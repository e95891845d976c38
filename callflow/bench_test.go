package callflow

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wagate/wagate/prompt"
)

// BenchmarkFirstAudio measures, per call, the time from the engine's start
// to its first Play (the webhook round trip over loopback included, the
// SIP and media path excluded), with the greeting already cached (warm) or
// rendered for this call (cold: a new text each call). It also reports the
// prompt cache's hit rate over the run.
func BenchmarkFirstAudio(b *testing.B) {
	for _, warm := range []bool{true, false} {
		name := "cold"
		if warm {
			name = "warm"
		}
		b.Run(name, func(b *testing.B) {
			tts, err := prompt.NewEspeak("", "en")
			if err != nil {
				b.Fatal(err)
			}
			lib, err := prompt.New(prompt.Options{TTS: tts})
			if err != nil {
				b.Fatal(err)
			}
			defer lib.Close()
			var n atomic.Int64
			svc := newService(b, func(Request, int) (int, string) {
				text := "Welcome to wagate."
				if !warm {
					text = fmt.Sprintf("Welcome, caller number %d.", n.Add(1))
				}
				return 200, `{"callflow":[{"action":"say","params":{"text":"` + text + `"}},{"action":"hangup"}]}`
			})
			defer svc.Close()
			e, err := New(Options{URL: svc.URL, Secret: []byte(testSecret), Prompts: lib})
			if err != nil {
				b.Fatal(err)
			}
			var total time.Duration
			for b.Loop() {
				call := newFakeCall(prompt.Rate8k)
				var first time.Time
				call.onPlay = func(n int, _ prompt.Audio) {
					if n == 0 {
						first = time.Now()
					}
				}
				start := time.Now()
				e.Run(context.Background(), call)
				total += first.Sub(start)
			}
			b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms-to-audio")
			b.ReportMetric(lib.Stats().HitRate()*100, "%hits")
		})
	}
}
