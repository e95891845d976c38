package media

import "sync"

// packetBuf is one datagram's worth of memory: a packet read, one built
// or encrypted for sending, or a packet held by a playout buffer. Buffers
// come from a process-wide pool and go back to it as soon as the packet is
// done with, so an idle call holds none (a direction used to keep three
// 1,500-byte buffers for its whole life, ≈ 8 KB per call) and a busy one
// holds only what its playout buffer is waiting to play.
type packetBuf struct {
	b [packetBufSize + srtpOverhead]byte
}

var packetPool = sync.Pool{New: func() any { return new(packetBuf) }}

// getBuf takes a buffer from the pool. Its contents are undefined.
func getBuf() *packetBuf { return packetPool.Get().(*packetBuf) }

// putBuf returns b to the pool; b must not be used afterwards. nil is
// ignored.
func putBuf(b *packetBuf) {
	if b != nil {
		packetPool.Put(b)
	}
}

// smallBufSize holds the payloads a playout buffer usually keeps: G.711
// up to 30 ms, Opus at Meta's bitrates. A packet held for playout is
// copied into a small buffer when it fits, and its read buffer goes back
// to the pool at once: a buffer as deep as the jitter (up to 120 ms, and
// bursts beyond) would otherwise keep a 1.5 KB buffer per 20 ms packet.
const smallBufSize = 256

type smallBuf struct {
	b [smallBufSize]byte
}

var smallPool = sync.Pool{New: func() any { return new(smallBuf) }}
