package permissions

// window holds the times (Unix nanoseconds, ascending) of the events of a
// rolling window: connected calls of a user, new calls of a number,
// permission requests. It keeps at most max events, which is all a limit of
// max needs: the caller refuses before adding the (max+1)th, and the oldest
// kept event says when the window frees a slot (Retry-After).
//
// It is a ring that grows on demand, so a user with one call costs one
// small slice, not the 100 slots of the daily cap, and a business number
// only holds 10,000 slots once it has made that many calls.
type window struct {
	buf  []int64
	head int // index of the oldest event
	n    int // events held
}

// prune drops the events at or before cutoff: they left the window.
func (w *window) prune(cutoff int64) {
	for w.n > 0 && w.buf[w.head] <= cutoff {
		w.head++
		if w.head == len(w.buf) {
			w.head = 0
		}
		w.n--
	}
	if w.n == 0 {
		w.head = 0
	}
}

// len is the number of events held.
func (w *window) len() int { return w.n }

// oldest is the time of the oldest event; call only when len() > 0.
func (w *window) oldest() int64 { return w.buf[w.head] }

// at is the i-th oldest event.
func (w *window) at(i int) int64 { return w.buf[(w.head+i)%len(w.buf)] }

// newest is the time of the newest event, or 0.
func (w *window) newest() int64 {
	if w.n == 0 {
		return 0
	}
	return w.at(w.n - 1)
}

// countAfter counts the events later than cutoff.
func (w *window) countAfter(cutoff int64) int {
	c := 0
	for i := w.n - 1; i >= 0; i-- {
		if w.at(i) <= cutoff {
			break
		}
		c++
	}
	return c
}

// firstAfter is the oldest event later than cutoff; ok is false when none.
func (w *window) firstAfter(cutoff int64) (t int64, ok bool) {
	for i := 0; i < w.n; i++ {
		if t := w.at(i); t > cutoff {
			return t, true
		}
	}
	return 0, false
}

// add records an event at t, keeping at most max events (the oldest is
// dropped when full), and returns the time it kept (remove takes it).
// Times are kept ascending even if the clock steps back, so that prune
// stays a walk from the front.
func (w *window) add(t int64, max int) int64 {
	if max <= 0 {
		return t
	}
	if last := w.newest(); w.n > 0 && t < last {
		t = last
	}
	if w.n == len(w.buf) && len(w.buf) < max {
		w.grow(max)
	}
	if w.n == len(w.buf) {
		// Full at max: overwrite the oldest.
		w.buf[w.head] = t
		w.head++
		if w.head == len(w.buf) {
			w.head = 0
		}
		return t
	}
	w.buf[(w.head+w.n)%len(w.buf)] = t
	w.n++
	return t
}

// remove takes back one event at t (a time add returned), newest first:
// the event a call counted that turned out not to count. False when no
// event at t is held (it left the window, or a smaller limit dropped it).
func (w *window) remove(t int64) bool {
	for i := w.n - 1; i >= 0; i-- {
		v := w.at(i)
		if v < t {
			return false
		}
		if v != t {
			continue
		}
		// Close the gap toward the newest end, keeping the order.
		for j := i; j < w.n-1; j++ {
			w.buf[(w.head+j)%len(w.buf)] = w.at(j + 1)
		}
		w.n--
		if w.n == 0 {
			w.head = 0
		}
		return true
	}
	return false
}

func (w *window) grow(max int) {
	size := 2 * len(w.buf)
	if size < 2 {
		size = 2
	}
	if size > max {
		size = max
	}
	nb := make([]int64, size)
	for i := 0; i < w.n; i++ {
		nb[i] = w.at(i)
	}
	w.buf, w.head = nb, 0
}

// reset forgets every event and releases the memory.
func (w *window) reset() { *w = window{} }
