package prompt

import (
	"container/list"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// diskCache keeps rendered speech as WAV files named by the hash of what
// was rendered, so that a restart does not render every prompt again. It is
// an LRU bounded by bytes; file times record use, so the order survives a
// restart. Files it cannot read back are deleted and count as misses.
type diskCache struct {
	dir string
	max int64

	mu   sync.Mutex
	size int64
	ll   *list.List // of *diskEntry, most recently used first
	m    map[string]*list.Element
}

type diskEntry struct {
	key   string
	bytes int64
}

const diskExt = ".wav"

// openDiskCache creates dir if needed and indexes the files already there.
func openDiskCache(dir string, max int64) (*diskCache, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("prompt: disk cache: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("prompt: disk cache: %w", err)
	}
	type file struct {
		key   string
		bytes int64
		mod   time.Time
	}
	var files []file
	for _, de := range ents {
		name := de.Name()
		if strings.HasPrefix(name, ".tmp-") {
			os.Remove(filepath.Join(dir, name)) // a write cut short by a crash
			continue
		}
		if !de.Type().IsRegular() || !strings.HasSuffix(name, diskExt) {
			continue
		}
		fi, err := de.Info()
		if err != nil {
			continue
		}
		files = append(files, file{strings.TrimSuffix(name, diskExt), fi.Size(), fi.ModTime()})
	}
	slices.SortFunc(files, func(a, b file) int { return b.mod.Compare(a.mod) })
	c := &diskCache{dir: dir, max: max, ll: list.New(), m: map[string]*list.Element{}}
	for _, f := range files {
		c.m[f.key] = c.ll.PushBack(&diskEntry{key: f.key, bytes: f.bytes})
		c.size += f.bytes
	}
	c.mu.Lock()
	c.evictLocked()
	c.mu.Unlock()
	return c, nil
}

func (c *diskCache) path(key string) string { return filepath.Join(c.dir, key+diskExt) }

func (c *diskCache) get(key string) (Audio, bool) {
	c.mu.Lock()
	el, ok := c.m[key]
	if ok {
		c.ll.MoveToFront(el)
	}
	c.mu.Unlock()
	if !ok {
		return Audio{}, false
	}
	data, err := os.ReadFile(c.path(key))
	var a Audio
	if err == nil {
		a, err = ParseWAV(data)
	}
	if err != nil {
		c.drop(key)
		return Audio{}, false
	}
	now := time.Now()
	_ = os.Chtimes(c.path(key), now, now) // best effort: only the order after a restart depends on it
	return a, true
}

// put writes a through a temporary file and a rename, so that a crash
// leaves either the whole file or none.
func (c *diskCache) put(key string, a Audio) error {
	data := EncodeWAV(a)
	if int64(len(data)) > c.max {
		return nil
	}
	f, err := os.CreateTemp(c.dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("prompt: disk cache: %w", err)
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(f.Name(), c.path(key))
	}
	if werr != nil {
		os.Remove(f.Name())
		return fmt.Errorf("prompt: disk cache: %w", werr)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[key]; ok {
		c.size -= el.Value.(*diskEntry).bytes
		c.ll.Remove(el)
	}
	c.m[key] = c.ll.PushFront(&diskEntry{key: key, bytes: int64(len(data))})
	c.size += int64(len(data))
	c.evictLocked()
	return nil
}

func (c *diskCache) drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[key]; ok {
		c.size -= el.Value.(*diskEntry).bytes
		c.ll.Remove(el)
		delete(c.m, key)
	}
	os.Remove(c.path(key))
}

func (c *diskCache) evictLocked() {
	for c.size > c.max && c.ll.Len() > 0 {
		e := c.ll.Remove(c.ll.Back()).(*diskEntry)
		delete(c.m, e.key)
		c.size -= e.bytes
		os.Remove(c.path(e.key))
	}
}

func (c *diskCache) stats() (bytes int64, files int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size, c.ll.Len()
}
