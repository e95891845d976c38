package api

import (
	"sync"
	"time"
)

func validIdemKey(k string) bool {
	if k == "" || len(k) > 255 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// idempotency keeps the answers of POST /v1/calls by Idempotency-Key for
// idemTTL, at most idemMax of them (the oldest go first).
type idempotency struct {
	mu    sync.Mutex
	now   func() time.Time
	ttl   time.Duration
	max   int
	keys  map[string]*idemEntry
	order []*idemEntry // by creation
}

type idemEntry struct {
	key     string
	sum     [32]byte
	created time.Time
	done    chan struct{} // closed once res is set
	res     keptResponse
}

const (
	idemTTL = 24 * time.Hour
	idemMax = 10000
)

func newIdempotency(now func() time.Time) *idempotency {
	return &idempotency{now: now, ttl: idemTTL, max: idemMax, keys: make(map[string]*idemEntry)}
}

// claim returns the entry of key, and whether this request is the first
// with it (it must then set res and close done).
func (m *idempotency) claim(key string, sum [32]byte) (*idemEntry, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	// Expire from the oldest; an entry still running is never dropped.
	// A forgotten entry (a refusal) only leaves the queue: it counts
	// toward neither the limit nor the keys, so a burst of refusals does
	// not push out the keys of calls that started.
	for len(m.order) > 0 {
		e := m.order[0]
		if kept := m.keys[e.key] == e; kept {
			expired := now.Sub(e.created) > m.ttl || len(m.keys) >= m.max
			if !expired || !isDone(e) {
				break
			}
			delete(m.keys, e.key)
		}
		m.order[0] = nil
		m.order = m.order[1:]
	}
	if e, ok := m.keys[key]; ok {
		return e, false
	}
	e := &idemEntry{key: key, sum: sum, created: now, done: make(chan struct{})}
	m.keys[key] = e
	m.order = append(m.order, e)
	return e, true
}

// forget drops the answer of e's key (done: a refusal that started
// nothing), so that the next request with the key runs. Requests that
// were waiting on e still get its answer.
func (m *idempotency) forget(e *idemEntry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.keys[e.key] == e {
		delete(m.keys, e.key)
	}
}

func isDone(e *idemEntry) bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}
