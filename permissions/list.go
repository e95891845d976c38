package permissions

import (
	"container/heap"
	"errors"
	"sort"
	"strings"
	"time"
)

// Filter selects entries for List. Zero fields match everything.
type Filter struct {
	PhoneNumberID string
	Status        Status
	// Limit defaults to DefaultListLimit and is capped at MaxListLimit.
	Limit  int
	Offset int
	// Deadline, when set, bounds a listing that must read its entries
	// one by one from a shared store (Redis): past it, Entries stops
	// with ErrListTooLong. The in-memory cache ignores it.
	Deadline time.Time
}

// ErrListTooLong is Entries running out of its Deadline: the filter
// matches too little of the index, or the offset is too far, for a page
// to be read in time.
var ErrListTooLong = errors.New("permission list: the page could not be read in time; narrow it by phone_number_id or page with a smaller offset")

// Page bounds of List: a page is a bounded amount of JSON, whatever the
// cache holds.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// List returns entries ordered by (phone_number_id, user), Offset of them
// skipped. It walks every shard, holding one shard lock at a time, and keeps
// only the Offset+Limit smallest keys (a bounded heap) — not a sorted copy
// of the whole cache.
func (c *Cache) List(f Filter) []Entry {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)
	offset := max(f.Offset, 0)
	var only *number
	if f.PhoneNumberID != "" {
		id, err := NormalizePhoneNumberID(f.PhoneNumberID)
		if err != nil {
			return nil
		}
		if only = c.number(id, false); only == nil {
			return nil
		}
	}
	now := c.now()
	h := &keyHeap{max: offset + limit}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for mk, e := range sh.m {
			if only != nil && mk.num != only {
				continue
			}
			if f.Status != "" && e.state(now).status() != f.Status {
				continue
			}
			h.offer(mk)
		}
		sh.mu.Unlock()
	}
	keys := h.keys
	sort.Slice(keys, func(i, j int) bool { return less(keys[i], keys[j]) })
	if offset >= len(keys) {
		return nil
	}
	keys = keys[offset:]
	out := make([]Entry, 0, len(keys))
	for _, mk := range keys {
		// Looked up again: the pair may have changed or gone since the scan.
		if en, ok := c.Get(Key{PhoneNumberID: mk.num.id, User: mk.user}); ok {
			out = append(out, en)
		}
	}
	return out
}

func less(a, b mapKey) bool {
	if a.num != b.num {
		return a.num.id < b.num.id
	}
	return strings.Compare(a.user, b.user) < 0
}

// keyHeap keeps the max smallest keys offered: a max-heap whose root is the
// largest kept key, replaced when a smaller one comes.
type keyHeap struct {
	keys []mapKey
	max  int
}

func (h *keyHeap) offer(k mapKey) {
	if len(h.keys) < h.max {
		heap.Push(h, k)
		return
	}
	if h.max > 0 && less(k, h.keys[0]) {
		h.keys[0] = k
		heap.Fix(h, 0)
	}
}

func (h *keyHeap) Len() int           { return len(h.keys) }
func (h *keyHeap) Less(i, j int) bool { return less(h.keys[j], h.keys[i]) }
func (h *keyHeap) Swap(i, j int)      { h.keys[i], h.keys[j] = h.keys[j], h.keys[i] }
func (h *keyHeap) Push(x any)         { h.keys = append(h.keys, x.(mapKey)) }
func (h *keyHeap) Pop() any {
	k := h.keys[len(h.keys)-1]
	h.keys = h.keys[:len(h.keys)-1]
	return k
}
