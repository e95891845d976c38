package recording

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

const (
	// DefaultListLimit and MaxListLimit bound List.
	DefaultListLimit = 100
	MaxListLimit     = 1000
	// probeGap is how many consecutive missing names end the search of a
	// day for a Call-ID's "-2", "-3", … chain (files deleted by hand leave
	// holes; creation always takes the first free name).
	probeGap = 3
)

// ErrInProgress is returned by Open for a call that is still being recorded.
var ErrInProgress = errors.New("recording: still in progress")

// ErrBadDate is returned by List for a date that is not YYYY-MM-DD.
var ErrBadDate = errors.New("recording: date must be YYYY-MM-DD")

// List returns recordings, newest first: those of one UTC day (date
// "YYYY-MM-DD") or of every day (date ""), optionally only those named by
// exactly callID, at most limit (≤ 0: DefaultListLimit; capped at
// MaxListLimit). Entries come from the sidecars; recordings in progress are
// included (InProgress true).
func (m *Manager) List(date, callID string, limit int) ([]Entry, error) {
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)
	var days []day
	if date != "" {
		t, err := time.Parse("2006-01-02", date)
		if err != nil || t.Format("2006-01-02") != date {
			return nil, fmt.Errorf("%w: %q", ErrBadDate, date)
		}
		days = []day{{rel: t.Format("2006/01/02"), date: t}}
	} else {
		days = m.days()
		slices.Reverse(days)
	}
	out := []Entry{}
	for _, d := range days {
		var es []Entry
		if callID != "" {
			es = m.probe(d.rel, callID)
		} else {
			es = m.readDay(d.rel)
		}
		sortNewestFirst(es)
		out = append(out, es...)
		if len(out) >= limit {
			return out[:limit], nil
		}
	}
	return out, nil
}

func sortNewestFirst(es []Entry) {
	slices.SortStableFunc(es, func(a, b Entry) int {
		if c := b.StartTime.Compare(a.StartTime); c != 0 {
			return c
		}
		return strings.Compare(b.File, a.File)
	})
}

// readDay reads every sidecar of one day directory.
func (m *Manager) readDay(dayRel string) []Entry {
	ents, err := m.readDir(dayRel)
	if err != nil {
		return nil
	}
	var out []Entry
	for _, de := range ents {
		name := de.Name()
		if !de.Type().IsRegular() || strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".json") {
			continue
		}
		rel := path.Join(dayRel, name)
		e, err := m.readSidecar(rel)
		if err != nil {
			m.log.Debug("recording sidecar skipped", "file", rel, "error", err)
			continue
		}
		e.File = strings.TrimSuffix(rel, ".json") + ".wav" // never trust the file's own idea
		out = append(out, e)
	}
	return out
}

// probe returns the recordings of one day named by exactly callID: the
// sidecars of SafeName(callID), then its "-2", "-3", … variants, checked
// against the Call-ID they record (different Call-IDs can share a name).
func (m *Manager) probe(dayRel, callID string) []Entry {
	safe := nameFor(callID)
	var out []Entry
	missing := 0
	for k := 1; k <= maxCollisions && missing < probeGap; k++ {
		base := path.Join(dayRel, candidateName(safe, k))
		e, err := m.readSidecar(base + ".json")
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				if _, werr := m.root.Lstat(filepath.FromSlash(base + ".wav")); werr != nil {
					missing++
				}
			}
			continue
		}
		missing = 0
		if e.CallID != callID {
			continue
		}
		e.File = base + ".wav"
		out = append(out, e)
	}
	return out
}

// find returns the newest recording named by callID.
func (m *Manager) find(callID string) (Entry, error) {
	days := m.days()
	for i := len(days) - 1; i >= 0; i-- {
		if es := m.probe(days[i].rel, callID); len(es) > 0 {
			sortNewestFirst(es)
			return es[0], nil
		}
	}
	return Entry{}, ErrNotFound
}

// Open finds the newest recording named by callID (the exact Call-ID, not
// a file name) and opens its WAV file for reading. It returns ErrNotFound
// when there is none and ErrInProgress while the call is still recorded.
func (m *Manager) Open(callID string) (io.ReadSeekCloser, Entry, error) {
	e, err := m.find(callID)
	if err != nil {
		return nil, Entry{}, err
	}
	// The manager, not the sidecar, knows whether a call is still being
	// recorded: a sidecar that could not be rewritten at the end (disk
	// full) still says in_progress.
	if e.InProgress && m.isActive(e.File) {
		return nil, e, ErrInProgress
	}
	if err := m.checkInside(e.File); err != nil {
		return nil, e, err
	}
	f, err := m.root.OpenFile(filepath.FromSlash(e.File), os.O_RDONLY, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, e, ErrNotFound
		}
		return nil, e, err
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, e, ErrNotFound
	}
	return f, e, nil
}
