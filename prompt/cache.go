package prompt

import (
	"container/list"
	"sync"
	"time"
)

// entryOverhead is what an entry costs beyond its samples (key, list
// element, map slot), so that many tiny prompts still count.
const entryOverhead = 128

// memCache is an LRU of rendered audio bounded by bytes. Entries may carry
// an expiry (files: an hour); an expired entry is a miss and is dropped.
type memCache struct {
	mu        sync.Mutex
	max, size int64
	ll        *list.List
	m         map[string]*list.Element
	evictions uint64
}

type memEntry struct {
	key     string
	a       Audio
	bytes   int64
	expires time.Time // zero: never
}

func newMemCache(max int64) *memCache {
	return &memCache{max: max, ll: list.New(), m: map[string]*list.Element{}}
}

func (c *memCache) get(key string, now time.Time) (Audio, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[key]
	if !ok {
		return Audio{}, false
	}
	e := el.Value.(*memEntry)
	if !e.expires.IsZero() && !now.Before(e.expires) {
		c.remove(el)
		return Audio{}, false
	}
	c.ll.MoveToFront(el)
	return e.a, true
}

// put stores a, evicting the least recently used entries to make room. An
// entry larger than the whole cache is not stored.
func (c *memCache) put(key string, a Audio, expires time.Time) {
	n := int64(len(a.Samples))*2 + entryOverhead
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[key]; ok {
		c.remove(el)
	}
	if n > c.max {
		return
	}
	for c.size+n > c.max && c.ll.Len() > 0 {
		c.remove(c.ll.Back())
		c.evictions++
	}
	c.m[key] = c.ll.PushFront(&memEntry{key: key, a: a, bytes: n, expires: expires})
	c.size += n
}

func (c *memCache) remove(el *list.Element) {
	e := c.ll.Remove(el).(*memEntry)
	delete(c.m, e.key)
	c.size -= e.bytes
}

func (c *memCache) stats() (bytes int64, entries int, evictions uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size, c.ll.Len(), c.evictions
}
