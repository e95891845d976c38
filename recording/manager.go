package recording

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wagate/wagate/configs"
)

// Clock tells the recorders what time it is. Tests inject a clock they move
// by hand so that a 30-second call is recorded in milliseconds.
type Clock interface{ Now() time.Time }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Option adjusts a Manager.
type Option func(*Manager)

// WithClock makes the Manager and its recorders take time from c.
func WithClock(c Clock) Option { return func(m *Manager) { m.clock = c } }

// WithNodeID names the wagate node in every sidecar it writes (node_id), so
// that recordings gathered from several nodes say where they were made.
func WithNodeID(id string) Option { return func(m *Manager) { m.nodeID = id } }

// Errors returned by the Manager.
var (
	ErrClosed   = errors.New("recording: manager closed")
	ErrNotFound = errors.New("recording: not found")
)

const (
	// dirPerm and filePerm are the modes of what the recorder creates.
	dirPerm  = 0o750
	filePerm = 0o640
	// maxCollisions bounds the "-2", "-3", … suffixes tried for one name.
	maxCollisions = 10000
	// sweepInterval is how often the retention sweep runs.
	sweepInterval = time.Hour
)

// Stats counts recordings since the Manager was created.
type Stats struct {
	// Active recordings (started, not finished).
	Active int64 `json:"active"`
	// Completed recordings that ran to the end of their call.
	Completed int64 `json:"completed"`
	// Failed recordings: could not start, or stopped by a write error or
	// the size limit (the calls went on).
	Failed int64 `json:"failed"`
	// DroppedChunks is PCM chunks dropped because a recorder's buffer was
	// full (the writer could not keep up with the disk).
	DroppedChunks int64 `json:"dropped_chunks"`
	// BytesWritten to WAV files (headers included).
	BytesWritten int64 `json:"bytes_written"`
}

// Manager owns the recordings directory: it starts recorders, repairs what
// a crash left, lists and serves recordings and applies retention.
type Manager struct {
	cfg   configs.Recording
	dir   string   // absolute recordings directory (for logs and the Rel check)
	root  *os.Root // every file operation goes through it
	log   *slog.Logger
	clock Clock
	rate  int
	// nodeID goes into every sidecar (WithNodeID).
	nodeID string

	// wrap lets tests put a failing or slow writer under a recorder.
	wrap func(f *os.File) wavFile
	// noSweepLoop keeps tests' retention deterministic.
	noSweepLoop bool
	// noSync skips the fsyncs at the end of a recording (benchmarks only:
	// to measure the write path without the disk's flush latency).
	noSync bool

	// failure log throttling (logFailure)
	logMu      sync.Mutex
	lastFail   string
	lastFailAt time.Time
	suppressed int

	// obs hears about finished recordings (SetObserver).
	obs observer

	mu     sync.Mutex
	active map[*Recorder]struct{}
	files  map[string]struct{} // rel paths of active recordings' WAVs
	closed bool

	active64  atomic.Int64
	completed atomic.Int64
	failed    atomic.Int64
	dropped   atomic.Int64
	bytes     atomic.Int64

	stop      chan struct{}
	loopDone  chan struct{}
	closeOnce sync.Once
}

// New opens (creating it, mode 0750) the recordings directory, repairs the
// recordings a crash left behind and, when retention is set, starts the
// hourly sweep. It does not look at cfg.Enabled: whether a call is recorded
// is decided per call (recording.enabled and the number's override) by the
// caller of Start.
func New(cfg configs.Recording, log *slog.Logger, opts ...Option) (*Manager, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Directory == "" {
		return nil, errors.New("recording: no directory configured")
	}
	switch cfg.SampleRate {
	case 0:
		cfg.SampleRate = 8000
	case 8000, 16000:
	default:
		return nil, fmt.Errorf("recording: sample_rate %d: must be 8000 or 16000", cfg.SampleRate)
	}
	switch cfg.NameBy {
	case "":
		cfg.NameBy = "a"
	case "a", "b":
	default:
		return nil, fmt.Errorf("recording: name_by %q: must be \"a\" or \"b\"", cfg.NameBy)
	}
	if cfg.RetentionDays < 0 {
		return nil, fmt.Errorf("recording: retention_days %d: must be 0 (keep) or more", cfg.RetentionDays)
	}
	dir, err := filepath.Abs(cfg.Directory)
	if err != nil {
		return nil, fmt.Errorf("recording: directory %q: %w", cfg.Directory, err)
	}
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return nil, fmt.Errorf("recording: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("recording: %w", err)
	}
	m := &Manager{
		cfg:      cfg,
		dir:      dir,
		root:     root,
		log:      log.With("component", "recording"),
		clock:    systemClock{},
		rate:     cfg.SampleRate,
		active:   make(map[*Recorder]struct{}),
		files:    make(map[string]struct{}),
		stop:     make(chan struct{}),
		loopDone: make(chan struct{}),
	}
	for _, o := range opts {
		o(m)
	}
	m.obs.starting = true // single-threaded: nothing runs yet
	m.recoverAll()
	m.obs.starting = false
	if cfg.RetentionDays > 0 && !m.noSweepLoop {
		go m.sweepLoop()
	} else {
		close(m.loopDone)
	}
	return m, nil
}

// Dir is the absolute recordings directory.
func (m *Manager) Dir() string { return m.dir }

// Stats returns the counters.
func (m *Manager) Stats() Stats {
	return Stats{
		Active:        m.active64.Load(),
		Completed:     m.completed.Load(),
		Failed:        m.failed.Load(),
		DroppedChunks: m.dropped.Load(),
		BytesWritten:  m.bytes.Load(),
	}
}

// Close finishes every active recording (hangup side "wagate", cause
// "shutdown"; recordings already finishing keep their own end), waits
// until all of them are finalized, stops the retention sweep and releases the directory. Start
// returns ErrClosed afterwards; List and Open keep failing quietly. Safe to
// call more than once.
func (m *Manager) Close() {
	if m == nil {
		return
	}
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.closed = true
		recs := make([]*Recorder, 0, len(m.active))
		for r := range m.active {
			recs = append(recs, r)
		}
		m.mu.Unlock()
		close(m.stop)
		<-m.loopDone
		for _, r := range recs {
			r.Finish(EndInfo{HangupSide: "wagate", Cause: "shutdown"})
		}
		for _, r := range recs {
			r.Wait()
		}
		m.root.Close()
	})
}

func (m *Manager) sweepLoop() {
	defer close(m.loopDone)
	// The first sweep runs at once so that a restart after a long stop
	// catches up; then hourly.
	m.Sweep(m.clock.Now())
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.Sweep(m.clock.Now())
		}
	}
}

// namingID returns the Call-ID that names meta's file.
func (m *Manager) namingID(meta *Meta) string {
	if meta.CallID != "" {
		return meta.CallID
	}
	if m.cfg.NameBy == "b" {
		return meta.BCallID
	}
	return meta.ACallID
}

// dayDir is the relative day directory ("2025/01/31") of a call started at t.
func dayDir(t time.Time) string {
	return t.UTC().Format("2006/01/02")
}

// checkInside verifies that rel (slash-separated, relative to the
// recordings directory) names something strictly inside it. The names are
// built from SafeName and a date, so this never fails; it is the last line
// of defence should that ever change. os.Root enforces the same at the
// system-call level, symbolic links included.
func (m *Manager) checkInside(rel string) error {
	native := filepath.FromSlash(rel)
	if !filepath.IsLocal(native) {
		return fmt.Errorf("recording: path %q escapes the recordings directory", rel)
	}
	abs := filepath.Join(m.dir, native)
	r, err := filepath.Rel(m.dir, abs)
	if err != nil || r == "." || !filepath.IsLocal(r) {
		return fmt.Errorf("recording: path %q escapes the recordings directory", rel)
	}
	return nil
}

// Start creates the recording of a call that has just been answered and
// returns its Recorder; audio goes in through Recorder.PCM and Finish ends
// it. The file is created at once (header and an in-progress sidecar), so
// an error here means nothing will be recorded: the caller logs it and
// carries on with the call. Start on a nil Manager returns (nil, nil), and
// a nil *Recorder accepts PCM and Finish as no-ops.
func (m *Manager) Start(meta Meta) (*Recorder, error) {
	if m == nil {
		return nil, nil
	}
	return m.start(meta, m.clock)
}

func (m *Manager) start(meta Meta, clock Clock) (*Recorder, error) {
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	r, err := m.create(meta, clock)
	if err != nil {
		m.failed.Add(1)
		m.logFailure("recording not started; the call goes on without it", err,
			"call_id", m.namingID(&meta))
		return nil, err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		r.abandon()
		return nil, ErrClosed
	}
	m.active[r] = struct{}{}
	m.files[r.rel] = struct{}{}
	m.active64.Add(1)
	m.mu.Unlock()
	go r.run()
	return r, nil
}

// create makes the day directory, reserves a unique name with O_EXCL
// (WAV first, then the sidecar) and writes the header and the in-progress
// sidecar.
func (m *Manager) create(meta Meta, clock Clock) (*Recorder, error) {
	now := clock.Now()
	if meta.StartTime.IsZero() {
		meta.StartTime = now
	}
	if meta.AnswerTime.IsZero() {
		meta.AnswerTime = now
	}
	if meta.WhatsAppSide > SideB {
		return nil, fmt.Errorf("recording: WhatsAppSide %d is neither SideA nor SideB", meta.WhatsAppSide)
	}
	id := m.namingID(&meta)
	day := dayDir(meta.StartTime)
	if err := m.checkInside(day); err != nil {
		return nil, err
	}
	if err := m.root.MkdirAll(filepath.FromSlash(day), dirPerm); err != nil {
		return nil, fmt.Errorf("recording: %w", err)
	}
	safe := nameFor(id)
	hdr := wavHeader(m.rate, 0)
	for k := 1; k <= maxCollisions; k++ {
		name := candidateName(safe, k)
		wavRel := path.Join(day, name+".wav")
		jsonRel := path.Join(day, name+".json")
		if err := m.checkInside(wavRel); err != nil {
			return nil, err
		}
		f, err := m.root.OpenFile(filepath.FromSlash(wavRel), os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("recording: %w", err)
		}
		e := Entry{
			CallID:         id,
			NameBy:         m.cfg.NameBy,
			ACallID:        meta.ACallID,
			BCallID:        meta.BCallID,
			WhatsAppCallID: meta.WhatsAppCallID,
			SessionID:      meta.SessionID,
			Direction:      meta.Direction,
			BusinessNumber: meta.BusinessNumber,
			UserNumber:     meta.UserNumber,
			AEndpoint:      meta.AEndpoint,
			BEndpoint:      meta.BEndpoint,
			WhatsAppSide:   meta.WhatsAppSide.String(),
			Channels:       channelNames,
			Kind:           meta.Kind,
			StartTime:      meta.StartTime.UTC(),
			AnswerTime:     meta.AnswerTime.UTC(),
			SampleRate:     m.rate,
			File:           wavRel,
			NodeID:         m.nodeID,
			Bytes:          headerSize,
			InProgress:     true,
		}
		switch meta.CallID {
		case "":
		case meta.ACallID:
			e.NameBy = "a"
		case meta.BCallID:
			e.NameBy = "b"
		default:
			e.NameBy = "" // named by a Call-ID of the caller's choosing
		}
		if err := m.createSidecar(jsonRel, &e); err != nil {
			f.Close()
			m.root.Remove(filepath.FromSlash(wavRel))
			if errors.Is(err, fs.ErrExist) {
				continue // a sidecar without its WAV holds this name
			}
			return nil, fmt.Errorf("recording: %w", err)
		}
		var w wavFile = f
		if m.wrap != nil {
			w = m.wrap(f)
		}
		if _, err := w.Write(hdr); err != nil {
			w.Close()
			m.root.Remove(filepath.FromSlash(wavRel))
			m.root.Remove(filepath.FromSlash(jsonRel))
			return nil, fmt.Errorf("recording: writing header: %w", err)
		}
		m.bytes.Add(headerSize)
		return newRecorder(m, clock, w, wavRel, jsonRel, e, meta), nil
	}
	return nil, fmt.Errorf("recording: %d files already named %q in %s", maxCollisions, safe, day)
}

// createSidecar writes a new sidecar; it fails with fs.ErrExist if one is
// there.
func (m *Manager) createSidecar(rel string, e *Entry) error {
	b, err := marshalEntry(e)
	if err != nil {
		return err
	}
	f, err := m.root.OpenFile(filepath.FromSlash(rel), os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		m.root.Remove(filepath.FromSlash(rel))
		return err
	}
	return f.Close()
}

// replaceSidecar rewrites a sidecar atomically (temporary file + rename),
// so readers see the old or the new one, never half of one.
func (m *Manager) replaceSidecar(rel string, e *Entry) error {
	b, err := marshalEntry(e)
	if err != nil {
		return err
	}
	dir, base := path.Split(rel)
	tmp := path.Join(dir, "."+base+".tmp")
	f, err := m.root.OpenFile(filepath.FromSlash(tmp), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, filePerm)
	if err != nil {
		return err
	}
	_, werr := f.Write(b)
	if werr == nil && !m.noSync {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = m.root.Rename(filepath.FromSlash(tmp), filepath.FromSlash(rel))
	}
	if werr == nil {
		return nil
	}
	m.root.Remove(filepath.FromSlash(tmp))
	// No room for a second copy (disk full): rewrite the sidecar in place.
	// Truncating frees its blocks first, so the small file usually fits;
	// a torn sidecar is still better than one that says the call goes on.
	f, err = m.root.OpenFile(filepath.FromSlash(rel), os.O_WRONLY|os.O_TRUNC, filePerm)
	if err != nil {
		return fmt.Errorf("%w; in place: %w", werr, err)
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%w; in place: %w", werr, err)
	}
	return nil
}

// readSidecar reads and decodes the sidecar at rel.
func (m *Manager) readSidecar(rel string) (Entry, error) {
	var e Entry
	f, err := m.root.Open(filepath.FromSlash(rel))
	if err != nil {
		return e, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return e, err
	} else if !st.Mode().IsRegular() {
		return e, fmt.Errorf("recording: %s is not a regular file", rel)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSidecarBytes+1))
	if err != nil {
		return e, err
	}
	if len(b) > maxSidecarBytes {
		return e, fmt.Errorf("recording: sidecar %s larger than %d bytes", rel, maxSidecarBytes)
	}
	if err := unmarshalEntry(b, &e); err != nil {
		return e, fmt.Errorf("recording: sidecar %s: %w", rel, err)
	}
	return e, nil
}

// logFailure logs a recording failure. The same cause (a full disk, a
// read-only directory) is logged at most once a minute, so that a broken
// disk does not turn every call into a log line; every failure is counted
// in Stats regardless.
func (m *Manager) logFailure(msg string, err error, attrs ...any) {
	cause := err.Error()
	var pe *fs.PathError
	if errors.As(err, &pe) {
		cause = pe.Op + ": " + pe.Err.Error()
	}
	key := msg + "\x00" + cause
	now := time.Now()
	m.logMu.Lock()
	if key == m.lastFail && now.Sub(m.lastFailAt) < time.Minute {
		m.suppressed++
		m.logMu.Unlock()
		return
	}
	n := m.suppressed
	m.lastFail, m.lastFailAt, m.suppressed = key, now, 0
	m.logMu.Unlock()
	if n > 0 {
		attrs = append(attrs, "failures_not_logged", n)
	}
	m.log.Error(msg, append(attrs, "error", err)...)
}

// finished takes a recorder out of the active set.
func (m *Manager) finished(r *Recorder) {
	m.mu.Lock()
	if _, ok := m.active[r]; ok {
		delete(m.active, r)
		delete(m.files, r.rel)
		m.active64.Add(-1)
	}
	m.mu.Unlock()
}

// isActive reports whether rel is the WAV of an active recording.
func (m *Manager) isActive(rel string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.files[rel]
	return ok
}
