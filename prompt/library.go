package prompt

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options configures a Library. The zero value works, without speech.
type Options struct {
	// TTS speaks texts; nil makes Speech fail.
	TTS TTS
	// MemoryBytes bounds the in-memory cache of rendered audio (default
	// 64 MiB: about 70 minutes at 8 kHz).
	MemoryBytes int64
	// DiskDir, when set, keeps rendered speech as WAV files there too
	// (typically <data_dir>/prompts), bounded by DiskBytes (default
	// 256 MiB). Files are not kept on disk: they expire within FileTTL.
	DiskDir   string
	DiskBytes int64
	// RenderTimeout bounds one text-to-speech render, its wait for a
	// free engine included (default 30s).
	RenderTimeout time.Duration
	// MaxRenders bounds the renders running at once (default 2 per CPU).
	MaxRenders int
	// Files sets the fetch rules for audio files.
	Files FileOptions
	// Logger gets one line per failed render or fetch.
	Logger *slog.Logger
}

// FileOptions are the rules for audio files fetched from URLs.
type FileOptions struct {
	// MaxBytes bounds one file (default 5 MB).
	MaxBytes int64
	// Timeout bounds one download (default 10s).
	Timeout time.Duration
	// TTL is how long a file is played from the cache (default 1h).
	TTL time.Duration
	// MaxDuration bounds the audio one file decodes to (default 10m).
	MaxDuration time.Duration
	// Allow lists the private networks and host names files may come
	// from; every other address that is not public unicast (AddrClass) is
	// refused, whatever name or redirect leads there.
	Allow Allow
}

// Library renders speech and fetches files, each once, and keeps the PCM
// in an LRU cache. It is safe for concurrent use; concurrent requests for
// the same prompt share one render or download.
type Library struct {
	o      Options
	mem    *memCache
	disk   *diskCache
	client *http.Client
	// trusted fetches the URLs of the operator's own config (TrustedFile),
	// without the address check.
	trusted *http.Client
	log     *slog.Logger
	now     func() time.Time

	// base is the parent of every render and download, which do not
	// belong to the call that asked first (others may wait on them);
	// Close cancels it and waits for them.
	base    context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	flights map[string]*flight
	// renderSlots bounds the speech engines running at once: each distinct
	// text is a process (espeak-ng), and a burst of callers with their own
	// texts would otherwise take the CPU the media pacer needs.
	renderSlots chan struct{}

	hits, diskHits, misses, renders, renderErrors, downloads, downloadErrors, downloadsRefused atomic.Uint64
}

type flight struct {
	done chan struct{}
	a    Audio
	err  error
}

// Stats are a Library's counters since New.
type Stats struct {
	// Hits are requests answered from memory, DiskHits from the disk
	// cache, Misses needed a render or download (shared ones count once
	// per request).
	Hits     uint64 `json:"hits"`
	DiskHits uint64 `json:"disk_hits"`
	Misses   uint64 `json:"misses"`
	// Renders and Downloads ran; the Errors counts are those that failed.
	Renders        uint64 `json:"renders"`
	RenderErrors   uint64 `json:"render_errors"`
	Downloads      uint64 `json:"downloads"`
	DownloadErrors uint64 `json:"download_errors"`
	// DownloadsRefused are the DownloadErrors whose URL (or a redirect)
	// led to an address prompts.fetch_allow does not allow, or not over
	// http(s): a business's web service pointing wagate at its own
	// network, or a fetch_allow too narrow for a legitimate one.
	DownloadsRefused uint64 `json:"downloads_refused"`
	// Evictions from memory to stay within MemoryBytes.
	Evictions uint64 `json:"evictions"`
	// MemoryBytes and Entries held in memory; DiskBytes and DiskFiles on
	// disk.
	MemoryBytes int64 `json:"memory_bytes"`
	Entries     int   `json:"entries"`
	DiskBytes   int64 `json:"disk_bytes"`
	DiskFiles   int   `json:"disk_files"`
}

// HitRate is the share of requests answered from a cache.
func (s Stats) HitRate() float64 {
	total := s.Hits + s.DiskHits + s.Misses
	if total == 0 {
		return 0
	}
	return float64(s.Hits+s.DiskHits) / float64(total)
}

// New returns a Library; with DiskDir set it opens (creating) the disk
// cache.
func New(o Options) (*Library, error) {
	if o.MemoryBytes <= 0 {
		o.MemoryBytes = 64 << 20
	}
	if o.DiskBytes <= 0 {
		o.DiskBytes = 256 << 20
	}
	if o.RenderTimeout <= 0 {
		o.RenderTimeout = 30 * time.Second
	}
	f := &o.Files
	if f.MaxBytes <= 0 {
		f.MaxBytes = DefaultMaxFileBytes
	}
	if f.Timeout <= 0 {
		f.Timeout = DefaultFileTimeout
	}
	if f.TTL <= 0 {
		f.TTL = DefaultFileTTL
	}
	if f.MaxDuration <= 0 {
		f.MaxDuration = DefaultMaxDuration
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxRenders <= 0 {
		o.MaxRenders = 2 * runtime.NumCPU()
	}
	l := &Library{o: o, mem: newMemCache(o.MemoryBytes), client: fetchClient(f.Allow), trusted: SafeClient(nil),
		log: o.Logger, now: time.Now, flights: map[string]*flight{},
		renderSlots: make(chan struct{}, o.MaxRenders)}
	if o.DiskDir != "" {
		d, err := openDiskCache(o.DiskDir, o.DiskBytes)
		if err != nil {
			return nil, err
		}
		l.disk = d
	}
	l.base, l.cancel = context.WithCancel(context.Background())
	return l, nil
}

// Close stops the renders and downloads in flight and waits for them.
func (l *Library) Close() {
	l.cancel()
	l.wg.Wait()
}

// Speech returns s spoken at rate, rendering it only when no cache holds it.
func (l *Library) Speech(ctx context.Context, s Speech, rate int) (Audio, error) {
	if l.o.TTS == nil {
		return Audio{}, errors.New("prompt: no text-to-speech engine configured")
	}
	s, err := s.normalize()
	if err != nil {
		return Audio{}, err
	}
	if !validRate(rate) {
		return Audio{}, fmt.Errorf("prompt: rate %d (want %d or %d)", rate, Rate8k, Rate16k)
	}
	key := speechKey(l.o.TTS.Name(), s, rate)
	if a, ok := l.mem.get(key, l.now()); ok {
		l.hits.Add(1)
		return a, nil
	}
	if l.disk != nil {
		if a, ok := l.disk.get(key); ok && a.Rate == rate {
			l.diskHits.Add(1)
			l.mem.put(key, a, time.Time{})
			return a, nil
		}
	}
	l.misses.Add(1)
	return l.share(ctx, key, func(ctx context.Context) (Audio, error) {
		ctx, cancel := context.WithTimeout(ctx, l.o.RenderTimeout)
		defer cancel()
		select {
		case l.renderSlots <- struct{}{}:
			defer func() { <-l.renderSlots }()
		case <-ctx.Done():
			return Audio{}, fmt.Errorf("prompt: waiting for a free speech engine: %w", ctx.Err())
		}
		start := time.Now()
		l.renders.Add(1)
		a, err := l.o.TTS.Render(ctx, s, rate)
		if err != nil {
			l.renderErrors.Add(1)
			l.log.Warn("prompt: speech not rendered", "engine", l.o.TTS.Name(), "voice", s.Voice, "err", err)
			return Audio{}, err
		}
		l.log.Debug("prompt: speech rendered", "engine", l.o.TTS.Name(), "voice", s.Voice,
			"audio", a.Duration(), "took", time.Since(start))
		l.mem.put(key, a, time.Time{})
		if l.disk != nil {
			if err := l.disk.put(key, a); err != nil {
				l.log.Warn("prompt: speech not kept on disk", "err", err)
			}
		}
		return a, nil
	})
}

// File returns the WAV or MP3 file at rawURL decoded to rate, downloading
// it only when the cache holds no copy younger than FileTTL. The download
// connects only to addresses FileOptions.Allow permits.
func (l *Library) File(ctx context.Context, rawURL string, rate int) (Audio, error) {
	return l.file(ctx, rawURL, rate, false)
}

// TrustedFile is File for a URL of the operator's own config (a queue
// route's music), which is fetched from whatever address it names, as
// before the address check existed: the check guards against businesses'
// URLs, not the operator's. It shares File's cache.
func (l *Library) TrustedFile(ctx context.Context, rawURL string, rate int) (Audio, error) {
	return l.file(ctx, rawURL, rate, true)
}

func (l *Library) file(ctx context.Context, rawURL string, rate int, trusted bool) (Audio, error) {
	if _, err := CheckURL(rawURL); err != nil {
		return Audio{}, err
	}
	if !validRate(rate) {
		return Audio{}, fmt.Errorf("prompt: rate %d (want %d or %d)", rate, Rate8k, Rate16k)
	}
	key := "file\x00" + strconv.Itoa(rate) + "\x00" + rawURL
	if a, ok := l.mem.get(key, l.now()); ok {
		l.hits.Add(1)
		return a, nil
	}
	l.misses.Add(1)
	client, allow, flightKey := l.client, &l.o.Files.Allow, key
	if trusted {
		// Its own flight: a business's download of the same URL may be
		// refused, and must not answer the operator's.
		client, allow, flightKey = l.trusted, nil, key+"\x00trusted"
	}
	return l.share(ctx, flightKey, func(ctx context.Context) (Audio, error) {
		l.downloads.Add(1)
		data, err := download(ctx, client, allow, rawURL, l.o.Files.MaxBytes, l.o.Files.Timeout)
		var a Audio
		if err == nil {
			a, err = Decode(data, rate, l.o.Files.MaxDuration)
			if err != nil {
				err = fmt.Errorf("%s: %w", redact(rawURL), err)
			}
		}
		if err != nil {
			l.downloadErrors.Add(1)
			if FileReason(err) == ReasonDenied {
				l.downloadsRefused.Add(1)
			}
			// Debug: the call flow that asked logs it once, with its call.
			l.log.Debug("prompt: file not fetched", "reason", FileReason(err), "err", err)
			return Audio{}, err
		}
		l.mem.put(key, a, l.now().Add(l.o.Files.TTL))
		return a, nil
	})
}

// share runs fn once for all concurrent callers asking for key. fn runs
// under the Library's own context, not the first caller's, so that a caller
// who hangs up does not fail the others; each caller stops waiting when
// its own ctx is done.
func (l *Library) share(ctx context.Context, key string, fn func(context.Context) (Audio, error)) (Audio, error) {
	l.mu.Lock()
	f, ok := l.flights[key]
	if !ok {
		if l.base.Err() != nil {
			l.mu.Unlock()
			return Audio{}, errors.New("prompt: library closed")
		}
		f = &flight{done: make(chan struct{})}
		l.flights[key] = f
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			f.a, f.err = fn(l.base)
			l.mu.Lock()
			delete(l.flights, key)
			l.mu.Unlock()
			close(f.done)
		}()
	}
	l.mu.Unlock()
	select {
	case <-f.done:
		return f.a, f.err
	case <-ctx.Done():
		return Audio{}, ctx.Err()
	}
}

// Stats returns the counters.
func (l *Library) Stats() Stats {
	s := Stats{
		Hits: l.hits.Load(), DiskHits: l.diskHits.Load(), Misses: l.misses.Load(),
		Renders: l.renders.Load(), RenderErrors: l.renderErrors.Load(),
		Downloads: l.downloads.Load(), DownloadErrors: l.downloadErrors.Load(), DownloadsRefused: l.downloadsRefused.Load(),
	}
	s.MemoryBytes, s.Entries, s.Evictions = l.mem.stats()
	if l.disk != nil {
		s.DiskBytes, s.DiskFiles = l.disk.stats()
	}
	return s
}

// speechKey names a render: engine, voice, speed, rate and text, hashed so
// that it can name a file.
func speechKey(engine string, s Speech, rate int) string {
	h := sha256.New()
	for _, part := range []string{engine, strings.ToLower(s.Voice), strconv.FormatFloat(s.Speed, 'f', 3, 64), strconv.Itoa(rate), s.Text} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func redact(raw string) string {
	if u, err := CheckURL(raw); err == nil {
		return u.Redacted()
	}
	return raw
}
