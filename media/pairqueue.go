package media

// freeEntry is a pair waiting in a free list; readyAt is when its
// quarantine ends (nanoseconds since the allocator's epoch).
type freeEntry struct {
	idx     int32
	fails   uint8 // consecutive bind failures, for the backoff
	readyAt int64
}

// pairQueue is a FIFO ring of free pairs ordered by readyAt: a pair pushed
// is taken last, and the head is always the first to leave quarantine (if
// it is still quarantined, every pair in the list is). Its owner locks.
type pairQueue struct {
	ring      []freeEntry
	head, n   int
	lastReady int64 // readyAt of the tail, keeps the ring ordered
}

func newPairQueue(capacity int) pairQueue {
	return pairQueue{ring: make([]freeEntry, capacity), lastReady: -maxInt64}
}

// ready tells whether the head has left quarantine at now.
func (l *pairQueue) ready(now int64) bool { return l.n > 0 && l.ring[l.head].readyAt <= now }

// headReadyAt is the head's readyAt; the list must not be empty.
func (l *pairQueue) headReadyAt() int64 { return l.ring[l.head].readyAt }

// pop takes the head; the list must not be empty.
func (l *pairQueue) pop() freeEntry {
	e := l.ring[l.head]
	l.head = (l.head + 1) % len(l.ring)
	l.n--
	return e
}

// popTail takes the entry pushed last; the list must not be empty. The
// tail's readyAt stays the bound for later pushes, which only delays them
// (never shortens a quarantine).
func (l *pairQueue) popTail() freeEntry {
	l.n--
	return l.ring[(l.head+l.n)%len(l.ring)]
}

// push appends e, ready at readyAt or when the current tail is, whichever
// is later, so the list stays ordered.
func (l *pairQueue) push(e freeEntry, readyAt int64) {
	e.readyAt = max(readyAt, l.lastReady)
	l.lastReady = e.readyAt
	l.ring[(l.head+l.n)%len(l.ring)] = e
	l.n++
}

// unpop puts e back at the head, where pop took it from. e was ready, so
// it goes first; its readyAt is lowered, if need be, to that of the pair
// now at the head (itself ready, put back the same way) to keep the list
// ordered.
func (l *pairQueue) unpop(e freeEntry) {
	if l.n > 0 {
		e.readyAt = min(e.readyAt, l.ring[l.head].readyAt)
	}
	l.head = (l.head - 1 + len(l.ring)) % len(l.ring)
	l.ring[l.head] = e
	l.n++
}

// each calls f with every entry's pair index.
func (l *pairQueue) each(f func(idx int32)) {
	for i := range l.n {
		f(l.ring[(l.head+i)%len(l.ring)].idx)
	}
}
