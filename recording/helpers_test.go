package recording

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/configs"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// logBuf collects log output for assertions.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuf) count(s string) int {
	return bytes.Count([]byte(l.String()), []byte(s))
}

func testLogger(t testing.TB) (*slog.Logger, *logBuf) {
	lb := &logBuf{}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// newTestManager makes a Manager on a fresh directory with a fake clock.
func newTestManager(t testing.TB, cfg configs.Recording, clk Clock, opts ...Option) (*Manager, *logBuf) {
	t.Helper()
	if cfg.Directory == "" {
		cfg.Directory = filepath.Join(t.TempDir(), "rec")
	}
	log, lb := testLogger(t)
	opts = append([]Option{WithClock(clk), func(m *Manager) { m.noSweepLoop = true }}, opts...)
	m, err := New(cfg, log, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m, lb
}

// tone generates a continuous sine per call.
type tone struct {
	freq  float64
	amp   float64
	phase float64
	buf   []int16
}

func (g *tone) next(n int) []int16 {
	if cap(g.buf) < n {
		g.buf = make([]int16, n)
	}
	g.buf = g.buf[:n]
	for i := range g.buf {
		g.buf[i] = int16(g.amp * math.Sin(g.phase))
		g.phase += 2 * math.Pi * g.freq / inRate
	}
	g.phase = math.Mod(g.phase, 2*math.Pi)
	return g.buf
}

// waitQueue keeps a test producer from outrunning the writer (which would
// drop chunks, as it must).
func waitQueue(r *Recorder) {
	for len(r.ch) > queueLen/4 {
		time.Sleep(50 * time.Microsecond)
	}
}

// wavFileData is a parsed recording.
type wavFileData struct {
	rate        int
	left, right []int16
	riff, data  uint32
	size        int64
}

// parseWAV is a small strict WAV reader: canonical header, sizes that
// agree with the file, whole frames.
func parseWAV(t testing.TB, path string) wavFileData {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := parseWAVBytes(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return w
}

func parseWAVBytes(b []byte) (wavFileData, error) {
	var w wavFileData
	info, err := parseHeader(b)
	if err != nil {
		return w, err
	}
	if info.channels != 2 || info.blockAlign != 4 || binary.LittleEndian.Uint16(b[34:]) != 16 {
		return w, fmt.Errorf("format %d ch, align %d", info.channels, info.blockAlign)
	}
	w.rate, w.riff, w.data, w.size = info.rate, info.riffSize, info.dataSize, int64(len(b))
	if int64(w.data)+headerSize != w.size || w.riff != w.data+36 {
		return w, fmt.Errorf("sizes riff=%d data=%d disagree with file length %d", w.riff, w.data, w.size)
	}
	if w.data%4 != 0 {
		return w, fmt.Errorf("partial frame: data %d", w.data)
	}
	pcm := b[headerSize:]
	n := len(pcm) / 4
	w.left, w.right = make([]int16, n), make([]int16, n)
	for i := range n {
		w.left[i] = int16(binary.LittleEndian.Uint16(pcm[4*i:]))
		w.right[i] = int16(binary.LittleEndian.Uint16(pcm[4*i+2:]))
	}
	return w, nil
}

func (w wavFileData) seconds() float64 { return float64(len(w.left)) / float64(w.rate) }

// goertzel returns the normalised power of freq in x.
func goertzel(x []int16, rate int, freq float64) float64 {
	k := 2 * math.Cos(2*math.Pi*freq/float64(rate))
	var s1, s2 float64
	for _, v := range x {
		s := float64(v) + k*s1 - s2
		s2, s1 = s1, s
	}
	p := s1*s1 + s2*s2 - k*s1*s2
	return p / float64(len(x)) / float64(len(x))
}

func rms(x []int16) float64 {
	if len(x) == 0 {
		return 0
	}
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s / float64(len(x)))
}

// window returns x between seconds a and b.
func window(x []int16, rate int, a, b float64) []int16 {
	i, j := int(a*float64(rate)), int(b*float64(rate))
	j = min(j, len(x))
	if i >= j {
		return nil
	}
	return x[i:j]
}

func readEntry(t testing.TB, path string) Entry {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return e
}

// abs returns the absolute path of a recording's file.
func abs(m *Manager, rel string) string { return filepath.Join(m.Dir(), filepath.FromSlash(rel)) }

// record runs a short call (n chunks of 20 ms per side) and finishes it.
func record(t testing.TB, m *Manager, clk *fakeClock, meta Meta, n int) *Recorder {
	t.Helper()
	r, err := m.Start(meta)
	if err != nil {
		t.Fatal(err)
	}
	a, b := &tone{freq: 440, amp: 8000}, &tone{freq: 1000, amp: 8000}
	for range n {
		clk.Advance(20 * time.Millisecond)
		r.PCM(SideA, a.next(160))
		r.PCM(SideB, b.next(160))
		waitQueue(r)
	}
	r.Finish(EndInfo{HangupSide: "a", Cause: "BYE"})
	r.Wait()
	return r
}

var t0 = time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)
