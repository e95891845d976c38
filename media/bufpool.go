package media

import "sync"

// packetBuf is one datagram's worth of memory: a packet read, one built
// or encrypted for sending, or a large packet held by a playout buffer.
// Buffers come from a process-wide free list and go back to it as soon as
// the packet is done with, so an idle call holds none (a direction used
// to keep three 1,500-byte buffers for its whole life, ≈ 8 KB per call)
// and a busy one holds only what it is working on.
type packetBuf struct {
	b [packetBufSize + srtpOverhead]byte
}

// smallBufSize holds the payloads a playout buffer usually keeps: G.711
// up to 30 ms, Opus at Meta's bitrates. A packet held for playout is
// copied into a small buffer when it fits, and its read buffer goes back
// at once: a buffer as deep as the jitter (up to 120 ms, and bursts
// beyond) would otherwise keep a 1.5 KB buffer per 20 ms packet.
const smallBufSize = 256

type smallBuf struct {
	b [smallBufSize]byte
}

// freeList is a bounded LIFO of buffers. Not sync.Pool: that one drops
// items at random under the race detector, so a test of the per-packet
// path's allocations could not be run with -race, and it empties at every
// garbage collection, when a steady stream of calls wants its buffers
// back at once. What is above max when buffers come back goes to the
// garbage collector.
type freeList[T any] struct {
	mu   sync.Mutex
	free []*T
}

func newFreeList[T any](max int) *freeList[T] {
	return &freeList[T]{free: make([]*T, 0, max)}
}

func (f *freeList[T]) get() *T {
	f.mu.Lock()
	if n := len(f.free); n > 0 {
		b := f.free[n-1]
		f.free[n-1] = nil
		f.free = f.free[:n-1]
		f.mu.Unlock()
		return b
	}
	f.mu.Unlock()
	return new(T)
}

func (f *freeList[T]) put(b *T) {
	f.mu.Lock()
	if len(f.free) < cap(f.free) {
		f.free = append(f.free, b)
	}
	f.mu.Unlock()
}

// The free lists keep at most 2,048 packet buffers (3 MB) and 8,192 small
// ones (2 MB): what thousands of calls have in flight at once.
var (
	packetPool = newFreeList[packetBuf](2048)
	smallPool  = newFreeList[smallBuf](8192)
)

// getBuf takes a buffer from the pool. Its contents are undefined.
func getBuf() *packetBuf { return packetPool.get() }

// putBuf returns b to the pool; b must not be used afterwards. nil is
// ignored.
func putBuf(b *packetBuf) {
	if b != nil {
		packetPool.put(b)
	}
}
