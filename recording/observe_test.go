package recording

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/configs"
)

// heard collects what an observer was told.
type heard struct {
	mu sync.Mutex
	es []Entry
}

func (h *heard) add(e Entry) {
	h.mu.Lock()
	h.es = append(h.es, e)
	h.mu.Unlock()
}

func (h *heard) all() []Entry {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Entry(nil), h.es...)
}

// TestObserverFinished: the observer hears a recording once, after its
// file is closed and its sidecar written, with the sidecar's sizes and
// times; a recording stopped by a write error is heard with its error.
func TestObserverFinished(t *testing.T) {
	clk := newFakeClock(t0)
	m, _ := newTestManager(t, configs.Recording{}, clk)
	h := &heard{}
	var sidecarAtReport Entry
	m.SetObserver(func(e Entry) {
		// The sidecar is complete by the time the observer hears of it.
		sidecarAtReport = readEntry(t, filepath.Join(m.Dir(), strings.TrimSuffix(e.File, ".wav")+".json"))
		h.add(e)
	})
	r := record(t, m, clk, Meta{CallID: "obs-1", SessionID: "sess-1", AnswerTime: t0}, 100) // 2 s
	got := h.all()
	if len(got) != 1 {
		t.Fatalf("heard %d recordings, want 1", len(got))
	}
	e := got[0]
	st, err := os.Stat(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	if e.File != r.File() || e.SessionID != "sess-1" || e.CallID != "obs-1" || e.InProgress || e.CutShort || e.Error != "" ||
		e.Bytes != st.Size() || e.DurationSeconds < 1.9 || e.DurationSeconds > 2.1 ||
		!e.AnswerTime.Equal(t0) || !e.EndTime.Equal(t0.Add(2*time.Second)) {
		t.Errorf("heard %+v (file %d bytes)", e, st.Size())
	}
	if sidecarAtReport.InProgress || sidecarAtReport.Bytes != e.Bytes {
		t.Errorf("sidecar when heard: %+v", sidecarAtReport)
	}

	m2, _ := newTestManager(t, configs.Recording{}, clk, func(m *Manager) {
		m.wrap = func(f *os.File) wavFile { return &failingFile{File: f, limit: 10 << 10} }
	})
	h2 := &heard{}
	m2.SetObserver(h2.add)
	record(t, m2, clk, Meta{CallID: "obs-full"}, 100)
	if got := h2.all(); len(got) != 1 || !got[0].CutShort || !strings.Contains(got[0].Error, "no space") {
		t.Errorf("heard %+v, want one recording cut short by the full disk", got)
	}
}

// TestObserverRepaired: recordings New repaired after a crash are told to
// the first observer set; later observers hear only new recordings.
func TestObserverRepaired(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rec")
	day := filepath.Join(dir, "2025", "03", "04")
	if err := os.MkdirAll(day, 0o750); err != nil {
		t.Fatal(err)
	}
	audio := make([]byte, 8000*frameBytes) // 1 s at 8 kHz; the header says 0
	if err := os.WriteFile(filepath.Join(day, "crashed.wav"), append(wavHeader(8000, 0), audio...), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(day, "crashed.json"),
		[]byte(`{"call_id":"crashed","session_id":"s9","sample_rate":8000,"in_progress":true}`), 0o640); err != nil {
		t.Fatal(err)
	}
	m, err := New(configs.Recording{Directory: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	h := &heard{}
	m.SetObserver(h.add)
	got := h.all()
	if len(got) != 1 || got[0].SessionID != "s9" || !got[0].Recovered || got[0].Error == "" || got[0].DurationSeconds != 1 {
		t.Fatalf("heard %+v, want the repaired recording", got)
	}
	h2 := &heard{}
	m.SetObserver(h2.add)
	if got := h2.all(); len(got) != 0 {
		t.Errorf("second observer heard %+v", got)
	}
}
