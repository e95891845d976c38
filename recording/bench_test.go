package recording

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wagate/wagate/configs"
)

// BenchmarkPCM is the cost the media goroutine pays per 20 ms chunk. The
// loop runs far faster than real time, so most chunks end up trimmed (or
// dropped when the queue is full); the writer's work is not in the number.
func BenchmarkPCM(b *testing.B) {
	m, err := New(configs.Recording{Directory: b.TempDir()}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	r, err := m.Start(Meta{CallID: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	pcm := make([]int16, 160)
	b.ReportAllocs()
	for b.Loop() {
		r.PCM(SideA, pcm)
	}
	b.StopTimer()
	r.Finish(EndInfo{})
	r.Wait()
	b.ReportMetric(float64(m.Stats().DroppedChunks)/float64(b.N), "dropped/op")
}

// BenchmarkPCMParallel: both sides' goroutines at once on one recorder.
func BenchmarkPCMParallel(b *testing.B) {
	m, err := New(configs.Recording{Directory: b.TempDir()}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	r, err := m.Start(Meta{CallID: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	var side atomic.Uint32
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		s := Side(side.Add(1) & 1)
		pcm := make([]int16, 160)
		for pb.Next() {
			r.PCM(s, pcm)
		}
	})
	b.StopTimer()
	r.Finish(EndInfo{})
	r.Wait()
}

// stepClock is a recorder's own simulated time, advanced by its feeder.
type stepClock struct {
	base time.Time
	n    atomic.Int64
}

func (c *stepClock) Now() time.Time {
	return c.base.Add(time.Duration(c.n.Load()) * 20 * time.Millisecond)
}

// BenchmarkWrite100 records 100 concurrent 30-second calls (two tones),
// each fed as fast as its writer takes it, and reports the WAV bytes
// written per second across all of them. "sync" includes the two fsyncs
// each recording ends with (file and sidecar), which on most disks cost
// more than the writing; "nosync" is the write path alone.
func BenchmarkWrite100(b *testing.B) {
	for _, tc := range []struct {
		rate int
		sync bool
	}{{8000, false}, {16000, false}, {8000, true}} {
		rate := tc.rate
		name := fmt.Sprintf("%dHz/nosync", rate)
		if tc.sync {
			name = fmt.Sprintf("%dHz/sync", rate)
		}
		b.Run(name, func(b *testing.B) {
			const recorders, steps = 100, 1500
			b.SetBytes(int64(recorders * (headerSize + steps*160*frameBytes*rate/inRate)))
			base := b.TempDir()
			// One second of each tone (whole cycles), fed in a loop, so the
			// feeders cost next to nothing.
			toneA := (&tone{freq: 440, amp: 8000}).next(inRate)
			toneB := slices.Clone((&tone{freq: 1000, amp: 8000}).next(inRate))
			toneA = slices.Clone(toneA)
			iter := 0
			for b.Loop() {
				iter++
				dir := filepath.Join(base, fmt.Sprint(iter))
				m, err := New(configs.Recording{Directory: dir, SampleRate: rate}, nil,
					func(m *Manager) { m.noSync = !tc.sync })
				if err != nil {
					b.Fatal(err)
				}
				var wg sync.WaitGroup
				for i := range recorders {
					wg.Go(func() {
						clk := &stepClock{base: t0}
						r, err := m.start(Meta{CallID: fmt.Sprintf("call-%d", i)}, clk)
						if err != nil {
							b.Error(err)
							return
						}
						for s := range steps {
							clk.n.Add(1)
							o := s % 50 * 160
							r.PCM(SideA, toneA[o:o+160])
							r.PCM(SideB, toneB[o:o+160])
							for len(r.ch) > queueLen/2 {
								runtime.Gosched()
							}
						}
						r.Finish(EndInfo{})
						r.Wait()
					})
				}
				wg.Wait()
				if s := m.Stats(); s.DroppedChunks != 0 || s.Completed != recorders {
					b.Fatalf("stats %+v", s)
				}
				m.Close()
				b.StopTimer()
				os.RemoveAll(dir)
				b.StartTimer()
			}
		})
	}
}
