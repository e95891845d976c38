package recording

import "sync"

// maxPendingReports bounds the repaired recordings kept for the first
// observer (each is a sidecar's worth of memory).
const maxPendingReports = 10000

// observer holds the hook that hears about finished recordings, and the
// recordings repaired at start-up until a hook is set.
type observer struct {
	mu sync.Mutex
	fn func(Entry)
	// starting: New is repairing; what it repairs waits in pending
	// (dropped counts what did not fit).
	starting bool
	pending  []Entry
	dropped  int
}

// SetObserver makes fn hear about every recording once it is finished:
// its WAV file synced and closed (or abandoned after a write error) and
// its sidecar written. fn gets the sidecar's Entry (CutShort and Error
// say whether the recording stopped early). The recordings New repaired
// after a crash are reported to the first fn set, before SetObserver
// returns (at most 10,000 of them). fn runs on the recorder's own
// goroutine and must return at once; nil stops the reports.
func (m *Manager) SetObserver(fn func(Entry)) {
	m.obs.mu.Lock()
	defer m.obs.mu.Unlock()
	m.obs.fn = fn
	if fn == nil {
		return
	}
	for _, e := range m.obs.pending {
		fn(e)
	}
	if m.obs.dropped > 0 {
		m.log.Warn("repaired recordings not reported: too many", "reported", len(m.obs.pending), "not_reported", m.obs.dropped)
	}
	m.obs.pending, m.obs.dropped = nil, 0
}

// report hands a finished recording to the observer; during New's repair
// it is kept for the first observer set.
func (m *Manager) report(e Entry) {
	m.obs.mu.Lock()
	fn := m.obs.fn
	if fn == nil && m.obs.starting {
		if len(m.obs.pending) < maxPendingReports {
			m.obs.pending = append(m.obs.pending, e)
		} else {
			m.obs.dropped++
		}
	}
	m.obs.mu.Unlock()
	if fn != nil {
		fn(e)
	}
}
