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

// A packet held for playout is copied into a small buffer when it fits,
// and its read buffer goes back at once: a buffer as deep as the jitter
// (up to 120 ms, and bursts beyond) would otherwise keep a 1.5 KB buffer
// per 20 ms packet. Two sizes, each a size class of Go's allocator, so
// that the usual payload wastes little: tinyBufSize holds G.711 at 20 ms
// (160 bytes) and Opus at Meta's bitrates; smallBufSize G.711 up to
// 30 ms. Under a load generator's bursts a relayed call toward WhatsApp
// held about 16 packets, 4 KB in 256-byte buffers, 2.5 KB in these.
const (
	tinyBufSize  = 160
	smallBufSize = 256
)

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

// The free lists keep at most 2,048 packet buffers (3 MB), 8,192 tiny
// ones (1.3 MB) and 2,048 small ones (0.5 MB): what thousands of calls
// have in flight at once.
var (
	packetPool = newFreeList[packetBuf](2048)
	tinyPool   = newFreeList[[tinyBufSize]byte](8192)
	smallPool  = newFreeList[[smallBufSize]byte](2048)
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
