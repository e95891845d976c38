package prompt

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingTTS "speaks" a tone whose length follows the text, counts its
// renders and can be held to make concurrent requests overlap.
type countingTTS struct {
	renders atomic.Int64
	hold    chan struct{} // when set, each render waits for it to close
}

func (c *countingTTS) Name() string { return "counting" }

func (c *countingTTS) Render(ctx context.Context, s Speech, rate int) (Audio, error) {
	c.renders.Add(1)
	if c.hold != nil {
		select {
		case <-c.hold:
		case <-ctx.Done():
			return Audio{}, ctx.Err()
		}
	}
	if s.Text == "fail" {
		return Audio{}, errors.New("engine broke")
	}
	return Tone(rate, 500, 0.5, time.Duration(len(s.Text))*10*time.Millisecond/time.Duration(s.Speed)), nil
}

func newLib(t *testing.T, o Options) *Library {
	t.Helper()
	l, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

func TestSpeechRenderedOncePerTextVoiceSpeedRate(t *testing.T) {
	tts := &countingTTS{}
	l := newLib(t, Options{TTS: tts})
	ctx := context.Background()
	say := func(s Speech, rate int) {
		t.Helper()
		if _, err := l.Speech(ctx, s, rate); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		say(Speech{Text: "hello"}, Rate8k)
	}
	say(Speech{Text: "hello", Speed: 1}, Rate8k) // Speed 0 means 1: same render
	say(Speech{Text: "hello", Voice: "en-GB"}, Rate8k)
	say(Speech{Text: "hello", Speed: 1.5}, Rate8k)
	say(Speech{Text: "hello"}, Rate16k)
	if n := tts.renders.Load(); n != 4 {
		t.Fatalf("%d renders, want 4 (hello; en-GB; speed 1.5; 16 kHz)", n)
	}
	st := l.Stats()
	if st.Hits != 3 || st.Misses != 4 || st.Entries != 4 {
		t.Fatalf("stats %+v", st)
	}
	if r := st.HitRate(); r < 0.42 || r > 0.43 {
		t.Fatalf("hit rate %.3f, want 3/7", r)
	}
}

func TestConcurrentRequestsShareOneRender(t *testing.T) {
	tts := &countingTTS{hold: make(chan struct{})}
	l := newLib(t, Options{TTS: tts})
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			a, err := l.Speech(context.Background(), Speech{Text: "shared prompt"}, Rate8k)
			if err == nil && len(a.Samples) == 0 {
				err = errors.New("empty audio")
			}
			errs <- err
		})
	}
	// Let the callers pile up on the held render, then release it.
	deadline := time.Now().Add(5 * time.Second)
	for l.Stats().Misses < 20 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(tts.hold)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := tts.renders.Load(); n != 1 {
		t.Fatalf("%d renders for 20 concurrent requests, want 1", n)
	}
}

// A caller who gives up does not fail the others waiting on the render.
func TestCallerCancelDoesNotFailOthers(t *testing.T) {
	tts := &countingTTS{hold: make(chan struct{})}
	l := newLib(t, Options{TTS: tts})
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := l.Speech(ctx, Speech{Text: "x"}, Rate8k)
		first <- err
	}()
	second := make(chan error, 1)
	go func() {
		_, err := l.Speech(context.Background(), Speech{Text: "x"}, Rate8k)
		second <- err
	}()
	for l.Stats().Misses < 2 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller got %v", err)
	}
	close(tts.hold)
	if err := <-second; err != nil {
		t.Fatalf("second caller got %v", err)
	}
}

func TestRenderErrorIsNotCached(t *testing.T) {
	tts := &countingTTS{}
	l := newLib(t, Options{TTS: tts})
	for range 2 {
		if _, err := l.Speech(context.Background(), Speech{Text: "fail"}, Rate8k); err == nil {
			t.Fatal("no error")
		}
	}
	if n := tts.renders.Load(); n != 2 {
		t.Fatalf("%d renders, want 2: a failure must be retried", n)
	}
	if st := l.Stats(); st.RenderErrors != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestMemoryBoundEvictsLeastRecentlyUsed(t *testing.T) {
	tts := &countingTTS{}
	// Each 10-letter text is 100 ms at 8 kHz: 1600 bytes + overhead.
	l := newLib(t, Options{TTS: tts, MemoryBytes: 3 * (1600 + entryOverhead)})
	ctx := context.Background()
	say := func(text string) {
		if _, err := l.Speech(ctx, Speech{Text: text}, Rate8k); err != nil {
			t.Fatal(err)
		}
	}
	say("aaaaaaaaaa")
	say("bbbbbbbbbb")
	say("cccccccccc")
	say("aaaaaaaaaa") // a is now the most recent; b the least
	say("dddddddddd") // evicts b
	before := tts.renders.Load()
	say("aaaaaaaaaa")
	say("cccccccccc")
	if tts.renders.Load() != before {
		t.Fatal("a recently used prompt was evicted")
	}
	say("bbbbbbbbbb")
	if tts.renders.Load() != before+1 {
		t.Fatal("the least recently used prompt was not evicted")
	}
	st := l.Stats()
	if st.Evictions < 1 || st.MemoryBytes > 3*(1600+entryOverhead) {
		t.Fatalf("stats %+v", st)
	}
}

func TestDiskCacheSurvivesRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "prompts")
	tts := &countingTTS{}
	l1, err := New(Options{TTS: tts, DiskDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	want, err := l1.Speech(context.Background(), Speech{Text: "kept on disk"}, Rate16k)
	if err != nil {
		t.Fatal(err)
	}
	l1.Close()

	l2 := newLib(t, Options{TTS: tts, DiskDir: dir})
	got, err := l2.Speech(context.Background(), Speech{Text: "kept on disk"}, Rate16k)
	if err != nil {
		t.Fatal(err)
	}
	if tts.renders.Load() != 1 || len(got.Samples) != len(want.Samples) || got.Rate != Rate16k {
		t.Fatalf("after a restart: %d renders, %d samples at %d Hz", tts.renders.Load(), len(got.Samples), got.Rate)
	}
	if st := l2.Stats(); st.DiskHits != 1 || st.DiskFiles != 1 {
		t.Fatalf("stats %+v", st)
	}

	// A damaged file is a miss, deleted and rendered again.
	files, _ := filepath.Glob(filepath.Join(dir, "*.wav"))
	if len(files) != 1 {
		t.Fatalf("%d files in the disk cache", len(files))
	}
	os.WriteFile(files[0], []byte("garbage"), 0o600)
	l3 := newLib(t, Options{TTS: tts, DiskDir: dir})
	if _, err := l3.Speech(context.Background(), Speech{Text: "kept on disk"}, Rate16k); err != nil {
		t.Fatal(err)
	}
	if tts.renders.Load() != 2 {
		t.Fatal("a damaged cache file was played")
	}
}

func TestDiskCacheBound(t *testing.T) {
	dir := t.TempDir()
	tts := &countingTTS{}
	// Each prompt is 100 ms at 8 kHz: a 1644-byte file; room for two.
	l := newLib(t, Options{TTS: tts, DiskDir: dir, DiskBytes: 2*1644 + 100})
	for _, text := range []string{"aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc"} {
		if _, err := l.Speech(context.Background(), Speech{Text: text}, Rate8k); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.wav"))
	if st := l.Stats(); len(files) != 2 || st.DiskFiles != 2 || st.DiskBytes != 2*1644 {
		t.Fatalf("%d files, stats %+v", len(files), st)
	}
}

// fileServer serves test audio and counts requests per path.
type fileServer struct {
	*httptest.Server
	mu   sync.Mutex
	hits map[string]int
}

func newFileServer(t *testing.T) *fileServer {
	t.Helper()
	mp3, err := os.ReadFile("testdata/tone1k.mp3")
	if err != nil {
		t.Fatal(err)
	}
	wav := makeWAV(t, wavSpec{code: wavPCM, channels: 1, rate: 44100, bits: 16}, []float64{600}, 44100/2)
	fs := &fileServer{hits: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/tone.wav", func(w http.ResponseWriter, r *http.Request) { w.Write(wav) })
	mux.HandleFunc("/tone.mp3", func(w http.ResponseWriter, r *http.Request) { w.Write(mp3) })
	mux.HandleFunc("/big.wav", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(6<<20))
		w.Write(wav)
	})
	mux.HandleFunc("/endless.wav", func(w http.ResponseWriter, r *http.Request) {
		w.Write(wav[:44])
		chunk := make([]byte, 32<<10)
		for i := 0; i < 1000 && r.Context().Err() == nil; i++ { // 32 MB at most
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/page", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<html>not here</html>"))
	})
	mux.HandleFunc("/text", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("plain words")) })
	mux.HandleFunc("/slow.wav", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	mux.HandleFunc("/to-ftp", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "ftp://files.example.com/tone.wav", http.StatusFound)
	})
	mux.HandleFunc("/to-file", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
	})
	mux.HandleFunc("/to-metadata", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
	})
	mux.HandleFunc("/to-wav", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/tone.wav", http.StatusFound)
	})
	fs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fs.mu.Lock()
		fs.hits[r.URL.Path]++
		fs.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(fs.Close)
	return fs
}

func (fs *fileServer) count(path string) int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.hits[path]
}

func TestFilesDownloadedOnceDecodedAndExpire(t *testing.T) {
	fs := newFileServer(t)
	l := newLib(t, Options{Files: FileOptions{Allow: loopbackAllowed}})
	now := time.Now()
	l.now = func() time.Time { return now }
	ctx := context.Background()
	for _, c := range []struct {
		path string
		freq float64
	}{{"/tone.wav", 600}, {"/tone.mp3", 1000}, {"/to-wav", 600}} {
		for range 3 {
			a, err := l.File(ctx, fs.URL+c.path, Rate8k)
			if err != nil {
				t.Fatalf("%s: %v", c.path, err)
			}
			if p := goertzel(middle(a.Samples), Rate8k, c.freq); a.Rate != Rate8k || p < 0.9 {
				t.Fatalf("%s: %d Hz, purity at %g Hz %.3f", c.path, a.Rate, c.freq, p)
			}
		}
		if n := fs.count(c.path); n != 1 {
			t.Fatalf("%s fetched %d times, want once", c.path, n)
		}
	}
	before := fs.count("/tone.wav") // the redirect fetched it too
	now = now.Add(DefaultFileTTL + time.Second)
	if _, err := l.File(ctx, fs.URL+"/tone.wav", Rate8k); err != nil {
		t.Fatal(err)
	}
	if n := fs.count("/tone.wav"); n != before+1 {
		t.Fatalf("after the TTL: fetched %d more times, want 1", n-before)
	}
}

// refusedMaxBytes bounds a file in TestFilesRefused. The endless file must
// pass it well within the 500 ms the slow one is given: at the default 5 MB
// a -race test on a busy CI machine took over 500 ms to read that much and
// failed with a timeout instead of "too large".
const refusedMaxBytes = 256 << 10

func TestFilesRefused(t *testing.T) {
	fs := newFileServer(t)
	l := newLib(t, Options{Files: FileOptions{Timeout: 500 * time.Millisecond, MaxBytes: refusedMaxBytes, Allow: loopbackAllowed}})
	cases := map[string]struct {
		url    string
		want   error
		says   string
		reason string
	}{
		"declared too large":   {fs.URL + "/big.wav", ErrTooLarge, "declared", ReasonTooLarge},
		"grows too large":      {fs.URL + "/endless.wav", ErrTooLarge, "more than", ReasonTooLarge},
		"web page":             {fs.URL + "/page", ErrNotAudio, "web page", ReasonUnsupported},
		"text":                 {fs.URL + "/text", ErrNotAudio, "neither WAV nor MP3", ReasonUnsupported},
		"not found":            {fs.URL + "/missing.wav", nil, "404", ReasonFailed},
		"slow":                 {fs.URL + "/slow.wav", ErrTimeout, "within 500ms", ReasonTimeout},
		"redirect to ftp":      {fs.URL + "/to-ftp", ErrScheme, "redirected to", ReasonDenied},
		"redirect to file":     {fs.URL + "/to-file", ErrScheme, "redirected to", ReasonDenied},
		"redirect to metadata": {fs.URL + "/to-metadata", ErrDenied, "redirected to http://169.254.169.254/", ReasonDenied},
		"file scheme":          {"file:///etc/passwd", ErrScheme, "only http", ReasonDenied},
		"data scheme":          {"data:audio/wav;base64,UklGRg==", ErrScheme, "only http", ReasonDenied},
		"metadata service":     {"http://169.254.169.254/latest/meta-data/", ErrDenied, "link-local", ReasonDenied},
		"redis":                {"http://127.0.0.2:6379/", ErrDenied, "loopback", ReasonDenied},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			_, err := l.File(context.Background(), c.url, Rate8k)
			if err == nil || (c.want != nil && !errors.Is(err, c.want)) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("error %v; want %v saying %q", err, c.want, c.says)
			}
			if r := FileReason(err); r != c.reason {
				t.Fatalf("reason %q, want %q (error %v)", r, c.reason, err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("took %v", d)
			}
		})
	}
	if st := l.Stats(); st.Entries != 0 {
		t.Fatalf("refused files were cached: %+v", st)
	}
}

func BenchmarkEspeakRender(b *testing.B) {
	e := needEspeak(b)
	text := "Welcome to wagate. For sales press one, for support press two."
	for _, rate := range []int{Rate8k, Rate16k} {
		b.Run(fmt.Sprint(rate), func(b *testing.B) {
			var audio time.Duration
			for b.Loop() {
				a, err := e.Render(context.Background(), Speech{Text: text}, rate)
				if err != nil {
					b.Fatal(err)
				}
				audio = a.Duration()
			}
			b.ReportMetric(audio.Seconds(), "audio-s")
		})
	}
}

func BenchmarkSpeechCacheHit(b *testing.B) {
	l, err := New(Options{TTS: &countingTTS{}})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	s := Speech{Text: "Welcome to wagate. For sales press one, for support press two."}
	if _, err := l.Speech(context.Background(), s, Rate8k); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Speech(context.Background(), s, Rate8k); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestRendersBounded: a burst of distinct texts (each caller's own name or
// balance) runs at most MaxRenders engines at once; the rest wait, and
// every one is rendered.
func TestRendersBounded(t *testing.T) {
	tts := &peakTTS{hold: make(chan struct{})}
	l := newLib(t, Options{TTS: tts, MaxRenders: 2})
	const n = 6
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := l.Speech(context.Background(), Speech{Text: strings.Repeat("x", i+1), Speed: 1}, 8000)
			errs <- err
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for tts.running.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // room for a third to start, were it allowed
	close(tts.hold)
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if p := tts.peak.Load(); p != 2 {
		t.Errorf("%d renders ran at once, want 2 (MaxRenders)", p)
	}
	if r := tts.renders.Load(); r != n {
		t.Errorf("%d renders, want %d", r, n)
	}
}

// peakTTS records how many renders run at once.
type peakTTS struct {
	hold                   chan struct{}
	running, peak, renders atomic.Int64
}

func (p *peakTTS) Name() string { return "peak" }

func (p *peakTTS) Render(ctx context.Context, s Speech, rate int) (Audio, error) {
	p.renders.Add(1)
	r := p.running.Add(1)
	defer p.running.Add(-1)
	for {
		m := p.peak.Load()
		if r <= m || p.peak.CompareAndSwap(m, r) {
			break
		}
	}
	select {
	case <-p.hold:
	case <-ctx.Done():
		return Audio{}, ctx.Err()
	}
	return Tone(rate, 500, 0.5, 100*time.Millisecond), nil
}
