package recording

import (
	"path"
	"path/filepath"
	"strings"
	"time"
)

// Sweep applies retention at time now: every day directory whose
// recordings all started more than RetentionDays ago (the UTC day ended
// before now − RetentionDays) loses its recordings (WAV, sidecar and
// leftover temporary files); emptied day, month and year directories are
// removed. Files wagate did not write, and an active recording (a call
// longer than the retention), are left alone. It returns the number of
// recordings (WAV files) removed; RetentionDays 0 keeps everything. The
// Manager runs it at start and hourly.
func (m *Manager) Sweep(now time.Time) int {
	if m.cfg.RetentionDays <= 0 {
		return 0
	}
	cutoff := now.Add(-time.Duration(m.cfg.RetentionDays) * 24 * time.Hour)
	removed := 0
	touched := map[string]bool{}
	for _, d := range m.days() {
		if d.date.Add(24 * time.Hour).After(cutoff) {
			break // days are oldest first
		}
		ents, err := m.readDir(d.rel)
		if err != nil {
			continue
		}
		for _, de := range ents {
			name := de.Name()
			if !de.Type().IsRegular() {
				continue
			}
			var wav string
			switch {
			case strings.HasPrefix(name, "."):
				if !strings.HasSuffix(name, ".json.tmp") {
					continue
				}
				wav = strings.TrimSuffix(strings.TrimPrefix(name, "."), ".json.tmp") + ".wav"
			case strings.HasSuffix(name, ".wav"):
				wav = name
			case strings.HasSuffix(name, ".json"):
				wav = strings.TrimSuffix(name, ".json") + ".wav"
			default:
				continue
			}
			if m.isActive(path.Join(d.rel, wav)) {
				continue
			}
			rel := path.Join(d.rel, name)
			if err := m.root.Remove(filepath.FromSlash(rel)); err != nil {
				m.log.Warn("retention: recording not removed", "file", rel, "error", err)
				continue
			}
			if name == wav {
				removed++
			}
		}
		// Remove fails on a directory that is not empty: that is the check.
		if m.root.Remove(filepath.FromSlash(d.rel)) == nil {
			touched[path.Dir(d.rel)] = true
		}
	}
	for month := range touched {
		if m.root.Remove(filepath.FromSlash(month)) == nil {
			m.root.Remove(filepath.FromSlash(path.Dir(month)))
		}
	}
	if removed > 0 {
		m.log.Info("retention: recordings removed", "count", removed,
			"retention_days", m.cfg.RetentionDays, "before", cutoff.UTC().Format(time.RFC3339))
	}
	return removed
}
