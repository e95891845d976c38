package api

import "sync"

// idSet remembers the last max ids claimed (FIFO), so that a redelivered
// webhook message is applied once.
type idSet struct {
	mu   sync.Mutex
	max  int
	set  map[string]struct{}
	ring []string
	next int
}

func newIDSet(max int) *idSet {
	return &idSet{max: max, set: make(map[string]struct{}, max), ring: make([]string, 0, max)}
}

// claim records id and reports whether it was new.
func (s *idSet) claim(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.set[id]; ok {
		return false
	}
	if len(s.ring) < s.max {
		s.ring = append(s.ring, id)
	} else {
		delete(s.set, s.ring[s.next])
		s.ring[s.next] = id
		s.next = (s.next + 1) % s.max
	}
	s.set[id] = struct{}{}
	return true
}

// release forgets id so that a redelivery is applied (the first attempt
// failed). Its ring slot stays, so if it is claimed again its older slot
// may evict it early: at worst one more application of an idempotent grant.
func (s *idSet) release(id string) {
	if id == "" {
		return
	}
	s.mu.Lock()
	delete(s.set, id)
	s.mu.Unlock()
}
