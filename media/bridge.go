package media

import (
	"bytes"
	"log/slog"
	"sync"
	"sync/atomic"
)

// Bridge relays one call's media between side A (the caller, whose INVITE
// carried the offer) and side B (the callee). Each side has its own port
// pair; the relay only accepts each side's media from the address that
// side's SDP signalled.
//
// Use: OfferB, AnswerB (again for each answer B sends), Start, Close. All
// methods are safe for concurrent use.
type Bridge struct {
	m          *Manager
	log        *slog.Logger
	legA, legB *portPair // legA faces side A, legB side B

	// Routes of the directions A→B and B→A, swapped by OfferB/AnswerB and
	// read per packet by the relay goroutines.
	routeAB, routeBA atomic.Pointer[route]

	aToB, bToA, droppedSource, droppedInvalid atomic.Uint64

	mu      sync.Mutex
	neg     negotiation
	started bool
	closed  bool
	// onTimeout is set by Start before the goroutines start and not
	// changed afterwards.
	onTimeout func(err error)

	wg       sync.WaitGroup // the relay goroutines
	closing  atomic.Bool    // Close has begun: no more onTimeout
	fired    atomic.Bool    // onTimeout was called
	released chan struct{}  // closed when Close has released everything
}

// BridgeStats counts a bridge's packets.
type BridgeStats struct {
	// AtoB and BtoA count packets relayed in each direction. Valid
	// packets from a side whose peer's address is not known yet (before
	// AnswerB) are neither relayed nor counted.
	AtoB, BtoA uint64
	// DroppedSource counts packets from an address other than the one the
	// sending side signalled, including any that arrived before that
	// address was known.
	DroppedSource uint64
	// DroppedInvalid counts packets from the right source that are not
	// valid RTP (bad header, truncated) or carry a payload type that was
	// not negotiated (neither the codec nor telephone-event, e.g. CN).
	// Multiplexed RTCP is discarded without being counted.
	DroppedInvalid uint64
}

func newBridge(m *Manager, log *slog.Logger, legA, legB *portPair) *Bridge {
	return &Bridge{m: m, log: log, legA: legA, legB: legB, released: make(chan struct{})}
}

// LocalAnswerA returns the last SDP answer produced for A (to answer
// re-INVITEs from A locally), or nil before AnswerB. It is a copy.
func (b *Bridge) LocalAnswerA() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.neg.answerA)
}

// LocalOfferB returns the SDP offer produced for B, or nil before OfferB.
// It is a copy.
func (b *Bridge) LocalOfferB() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.neg.offerB)
}

// Start begins relaying; later calls, and calls after Close, do nothing.
//
// Each side has RTPStartTimeout from Start to send its first valid RTP
// packet, then may go RTPTimeout without one (zero disables either). When a
// side exceeds that, or its socket fails, onTimeout (if not nil) is called
// once, from a relay goroutine, with an error saying which side; the SIP
// layer then hangs up both legs and calls Close, which it may do from
// inside onTimeout. onTimeout is not called once Close has begun (a call
// already under way may still complete while Close runs).
func (b *Bridge) Start(onTimeout func(err error)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started || b.closed {
		return
	}
	b.started = true
	b.onTimeout = onTimeout
	dirs := [2]*direction{
		newDirection(b, "A", b.legA.rtp, b.legB.rtp, &b.routeAB, &b.aToB),
		newDirection(b, "B", b.legB.rtp, b.legA.rtp, &b.routeBA, &b.bToA),
	}
	b.wg.Add(len(dirs))
	for _, d := range dirs {
		go b.runDirection(d)
	}
	b.log.Debug("media: relay started")
}

// runDirection is the body of a relay goroutine.
func (b *Bridge) runDirection(d *direction) {
	err := d.run(b.m.startTimeout, b.m.timeout)
	// Done before the callback: onTimeout may call Close, which waits for
	// the relay goroutines and must not wait for this one.
	b.wg.Done()
	if err == nil || b.closing.Load() || !b.fired.CompareAndSwap(false, true) {
		return
	}
	b.log.Warn("media: relay ended", "err", err)
	if b.onTimeout != nil {
		b.onTimeout(err)
	}
}

// Close stops relaying, closes the sockets, waits for the relay goroutines
// to exit and returns the ports to the allocator (quarantined). It is
// idempotent, safe from any goroutine (onTimeout included) and before
// Start; every call returns only once the bridge is fully released.
func (b *Bridge) Close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		<-b.released
		return
	}
	b.closed = true
	b.closing.Store(true)
	b.mu.Unlock()

	// Closing the sockets unblocks the reads; the goroutines then return.
	b.legA.closeSockets()
	b.legB.closeSockets()
	b.wg.Wait()
	b.m.ports.release(b.legA)
	b.m.ports.release(b.legB)
	b.m.bridges.Add(-1)
	s := b.Stats()
	b.log.Debug("media: bridge closed", "a_to_b", s.AtoB, "b_to_a", s.BtoA,
		"dropped_source", s.DroppedSource, "dropped_invalid", s.DroppedInvalid)
	close(b.released)
}

// Stats returns the bridge's packet counters.
func (b *Bridge) Stats() BridgeStats {
	return BridgeStats{
		AtoB:           b.aToB.Load(),
		BtoA:           b.bToA.Load(),
		DroppedSource:  b.droppedSource.Load(),
		DroppedInvalid: b.droppedInvalid.Load(),
	}
}
