package media

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	// maxBindAttempts bounds how many pairs one allocation tries when binds
	// fail (ports held by another process), so a crowded range costs an
	// allocation a few syscalls, not a walk over the whole range.
	maxBindAttempts = 16
	// bindBackoffMin and bindBackoffMax bound how long a pair that failed
	// to bind stays out of rotation; the delay doubles per consecutive
	// failure. Conflicts are usually transient (another program's
	// ephemeral UDP socket), so a pair is parked, never retired for good,
	// but one that keeps failing is retried rarely.
	bindBackoffMin = 5 * time.Second
	bindBackoffMax = 10 * time.Minute
)

// portPair is an RTP socket on an even port and its RTCP socket on port+1,
// owned by one bridge leg from allocation until release. The sockets are
// bound the first time the pair is handed out and then kept while the
// descriptor budget allows: a released pair waits in quarantine and in the
// free list still bound, but deaf: the kernel delivers nothing to it (see
// release). Past the budget a released pair is closed instead, and bound
// anew when it is next handed out.
type portPair struct {
	idx  int32
	port int      // RTP port; RTCP is port+1
	rtp  *rtpConn // rtpconn_linux.go: out of the runtime's poller on Linux
	rtcp *net.UDPConn
	// The sockets' raw handles, to make them deaf and to drain them, and
	// the addresses they connect to to go deaf.
	rawRTP, rawRTCP   syscall.RawConn
	selfRTP, selfRTCP syscall.Sockaddr
}

// closeSockets closes both sockets; closing twice is harmless.
func (p *portPair) closeSockets() {
	if p.rtp != nil {
		_ = p.rtp.Close()
	}
	if p.rtcp != nil {
		_ = p.rtcp.Close()
	}
}

// pastDeadline ends a blocked read at once.
var pastDeadline = time.Unix(1, 0)

// stopReads ends the reads under way on the RTP socket (the bridge's
// readers) without closing it; RTCP sockets are only read without waiting.
func (p *portPair) stopReads() {
	if p.rtp != nil {
		_ = p.rtp.SetReadDeadline(pastDeadline)
	}
}

// quiesce is called when the pair is released: from now until it is
// handed out again the kernel delivers nothing to its sockets.
func (p *portPair) quiesce() {
	_ = p.rtp.SetReadDeadline(pastDeadline)
	setQuiet(p.rawRTP, p.selfRTP)
	setQuiet(p.rawRTCP, p.selfRTCP)
}

// activate makes a kept pair ready for a new call: it hears again,
// anything that was queued before it went deaf is read and thrown away,
// and reads may block again. Nothing that arrived before this call can
// reach the new call.
func (p *portPair) activate() {
	for _, raw := range []syscall.RawConn{p.rawRTP, p.rawRTCP} {
		setQuiet(raw, nil)
		drainSocket(raw)
	}
	_ = p.rtp.SetReadDeadline(time.Time{})
}

// portAllocator hands out RTP/RTCP port pairs from [min, max].
//
// Free pairs wait in two FIFO lists ordered by readyAt (pairQueue): kept,
// the pairs still bound, and closed, those never bound or closed on
// release because the budget was full. When the budget covers the range,
// nothing is ever closed and a pair is taken from whichever head is older,
// as from one list: a released pair is reused last, every pair of the
// range in turn. When it does not, a ready kept pair is taken first, so
// binds happen only for the load the budget cannot keep bound (with one
// FIFO most heads would be closed pairs, whatever the load). Binding and
// closing happen outside the lock; the lock only guards list and
// parking-lot bookkeeping (tens of ns), so thousands of allocations per
// second do not contend.
type portAllocator struct {
	network string // udp4 for an IPv4 bind address, otherwise udp
	// bound holds each pair's sockets once bound (nil before); only the
	// allocation that pops a pair's index touches its entry.
	bound      []*portPair
	ip         net.IP // nil: all interfaces
	base       int    // RTP port of pair 0
	pairs      int
	quarantine time.Duration
	now        func() time.Time
	epoch      time.Time
	listen     func(network string, addr *net.UDPAddr) (*net.UDPConn, error)

	inUse atomic.Int64 // pairs handed out and not yet released
	// boundN counts pairs whose sockets are open (or being bound), in use
	// or free; budget is how many may stay bound once released (maxInt64:
	// no budget). Pairs in use are bound whatever the budget, up to
	// maxBound, which keeps the rest of the open-files limit for SIP, the
	// API, the events store and recordings (maxInt64: no cap).
	boundN   atomic.Int64
	budget   int64
	maxBound int64
	binds    atomic.Uint64 // pairs bound, first use and rebinds alike

	mu           sync.Mutex
	kept, closed pairQueue
	// parked holds pairs whose bind failed, until retryAt.
	parked    []freeEntry // readyAt is the retry time here
	nextRetry int64       // earliest retry in parked; maxInt64 when empty
}

const maxInt64 = int64(^uint64(0) >> 1)

// newPortAllocator returns an allocator for the even ports of [min, max]
// whose next port is also in range. now may be nil (time.Now).
func newPortAllocator(bind netip.Addr, min, max int, quarantine time.Duration, now func() time.Time) (*portAllocator, error) {
	if min < 1 || max > 65535 || min > max {
		return nil, fmt.Errorf("media: port range %d-%d: want 1 <= port_min <= port_max <= 65535", min, max)
	}
	base := min + min%2
	pairs := 0
	if max >= base+1 {
		pairs = (max-base-1)/2 + 1
	}
	if pairs == 0 {
		return nil, fmt.Errorf("media: port range %d-%d holds no even RTP port with its RTCP port", min, max)
	}
	if quarantine < 0 {
		return nil, fmt.Errorf("media: port quarantine %s is negative", quarantine)
	}
	if now == nil {
		now = time.Now
	}
	a := &portAllocator{
		network:    "udp",
		base:       base,
		pairs:      pairs,
		quarantine: quarantine,
		now:        now,
		epoch:      now(),
		listen:     net.ListenUDP,
		kept:       newPairQueue(pairs),
		closed:     newPairQueue(pairs),
		bound:      make([]*portPair, pairs),
		nextRetry:  maxInt64,
		budget:     maxInt64,
		maxBound:   maxInt64,
	}
	if bind.IsValid() {
		bind = bind.Unmap()
		a.ip = net.IP(bind.AsSlice())
		if bind.Is4() {
			a.network = "udp4"
		}
	}
	for i := range pairs {
		a.closed.push(freeEntry{idx: int32(i)}, -maxInt64)
	}
	return a, nil
}

func (a *portAllocator) clock() int64 { return int64(a.now().Sub(a.epoch)) }

// get binds and returns a free pair. Errors wrap ErrNoPorts.
func (a *portAllocator) get() (*portPair, error) {
	var lastErr error
	for range maxBindAttempts {
		e, kept, err := a.pop()
		if err != nil {
			if lastErr != nil {
				return nil, fmt.Errorf("%w (last bind error: %v)", err, lastErr)
			}
			return nil, err
		}
		if kept {
			p := a.bound[e.idx]
			p.activate()
			a.inUse.Add(1)
			return p, nil
		}
		if !a.reserveBound() && !(a.shedKept() && a.reserveBound()) {
			a.unpop(e)
			return nil, fmt.Errorf("%w: %d port pairs bound (%d in use), the most the open-files limit allows while keeping %d descriptors for SIP, the API, the events store and recordings, and %d for the media pacer",
				ErrNoPorts, a.boundN.Load(), a.inUse.Load(), DescriptorsBeside, PacerDescriptors())
		}
		p, err := a.bind(e.idx)
		if err == nil {
			a.bound[e.idx] = p
			a.binds.Add(1)
			a.inUse.Add(1)
			return p, nil
		}
		a.boundN.Add(-1)
		if outOfDescriptors(err) {
			// Not this port's fault, and every other pair would fail the
			// same way: give the pair back as it was and say why.
			a.unpop(e)
			return nil, fmt.Errorf("%w: out of file descriptors (open-files limit) with %d port pairs bound, %d of them in use: %v",
				ErrNoPorts, a.boundN.Load(), a.inUse.Load(), err)
		}
		lastErr = err
		a.park(e)
	}
	return nil, fmt.Errorf("%w: %d port pairs failed to bind, last: %v", ErrNoPorts, maxBindAttempts, lastErr)
}

// pop takes a free pair whose quarantine is over, and tells whether it
// is still bound.
func (a *portAllocator) pop() (e freeEntry, kept bool, err error) {
	now := a.clock()
	a.mu.Lock()
	defer a.mu.Unlock()
	if now >= a.nextRetry {
		a.unparkLocked(now)
	}
	k, c := &a.kept, &a.closed
	if k.n+c.n == 0 {
		return freeEntry{}, false, fmt.Errorf("%w: all %d port pairs in use", ErrNoPorts, a.pairs-len(a.parked))
	}
	switch {
	case (a.budget < int64(a.pairs) || a.boundN.Load() >= a.maxBound) && k.ready(now):
		// Past the budget, or with no descriptor to spare, a kept pair is
		// worth more than an older closed one: it costs no bind.
		kept = true
	case k.n > 0 && (c.n == 0 || k.headReadyAt() < c.headReadyAt()):
		kept = k.ready(now)
		if !kept {
			return freeEntry{}, false, fmt.Errorf("%w: %d free port pairs still in quarantine", ErrNoPorts, k.n+c.n)
		}
	case !c.ready(now):
		return freeEntry{}, false, fmt.Errorf("%w: %d free port pairs still in quarantine", ErrNoPorts, k.n+c.n)
	}
	if kept {
		return k.pop(), true, nil
	}
	return c.pop(), false, nil
}

// reserveBound counts one more pair bound, about to be, unless maxBound
// pairs are already: a compare-and-swap, so concurrent allocations cannot
// pass the cap together.
func (a *portAllocator) reserveBound() bool {
	for {
		n := a.boundN.Load()
		if n >= a.maxBound {
			return false
		}
		if a.boundN.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// shedKept closes the free kept pair released last (of those kept, the
// one due furthest in the future), so that a call can have its
// descriptors: at the cap, pairs in use come before pairs kept for reuse.
// It keeps its quarantine, now in the closed list. It reports whether
// there was one.
func (a *portAllocator) shedKept() bool {
	a.mu.Lock()
	if a.kept.n == 0 {
		a.mu.Unlock()
		return false
	}
	e := a.kept.popTail()
	p := a.bound[e.idx]
	a.bound[e.idx] = nil
	a.mu.Unlock()
	p.closeSockets()
	a.boundN.Add(-1)
	a.mu.Lock()
	a.closed.push(e, e.readyAt)
	a.mu.Unlock()
	return true
}

// unpop puts a closed pair that could not be bound for want of
// descriptors back where pop took it from.
func (a *portAllocator) unpop(e freeEntry) {
	a.mu.Lock()
	a.closed.unpop(e)
	a.mu.Unlock()
}

// outOfDescriptors tells a bind that failed for want of file descriptors
// (the process's or the system's) from one whose port is taken.
func outOfDescriptors(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// park keeps a pair that failed to bind out of rotation for a while.
func (a *portAllocator) park(e freeEntry) {
	if e.fails < 63 {
		e.fails++
	}
	delay := bindBackoffMax
	if e.fails < 16 {
		delay = min(bindBackoffMin<<(e.fails-1), bindBackoffMax)
	}
	delay = max(delay, a.quarantine)
	now := a.clock()
	e.readyAt = now + int64(delay)
	a.mu.Lock()
	a.parked = append(a.parked, e)
	a.nextRetry = min(a.nextRetry, e.readyAt)
	a.mu.Unlock()
}

// unparkLocked moves parked pairs whose retry time has come back to the
// free list, keeping their failure count for the next backoff.
func (a *portAllocator) unparkLocked(now int64) {
	next := maxInt64
	kept := a.parked[:0]
	for _, e := range a.parked {
		if e.readyAt <= now {
			a.closed.push(e, now)
			continue
		}
		kept = append(kept, e)
		next = min(next, e.readyAt)
	}
	clear(a.parked[len(kept):])
	a.parked = kept
	a.nextRetry = next
}

// release returns the pair to the tail of the free list, quarantined.
// Its sockets stay bound (binding and closing two sockets per leg was
// 7.5 % of wagate's CPU at 500 calls/s) but deaf: each is connected to
// itself, so the kernel delivers it nothing from anyone else (and answers
// the sender ICMP port unreachable, as for a closed port) until the pair
// is handed out again, when whatever was queued before is drained first.
// So a late packet of this call never reaches the next one (nor does
// anything else sent meanwhile), and the quarantine still keeps the pair
// out of use for port_quarantine, long enough for the old peers' packets
// in flight to stop.
//
// When more pairs are bound than the budget, the pair is closed instead
// (the open-files limit cannot hold every pair of a wide range bound) and
// bound again when next handed out; its place in the free list and its
// quarantine are the same either way. p must not be used afterwards.
func (a *portAllocator) release(p *portPair) {
	list := &a.kept
	if a.overBudget() {
		p.closeSockets()
		a.bound[p.idx] = nil
		list = &a.closed
	} else {
		p.quiesce()
	}
	readyAt := a.clock() + int64(a.quarantine)
	a.mu.Lock()
	list.push(freeEntry{idx: p.idx}, readyAt)
	a.mu.Unlock()
	a.inUse.Add(-1)
}

// overBudget takes one pair off the bound count if keeping it would leave
// more pairs bound than the budget: the caller then closes it. A
// compare-and-swap, so concurrent releases close exactly as many pairs as
// are over, without a lock.
func (a *portAllocator) overBudget() bool {
	for {
		n := a.boundN.Load()
		if n <= a.budget {
			return false
		}
		if a.boundN.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// bind opens both sockets of pair idx.
func (a *portAllocator) bind(idx int32) (*portPair, error) {
	port := a.base + 2*int(idx)
	c, err := a.listen(a.network, &net.UDPAddr{IP: a.ip, Port: port})
	if err != nil {
		return nil, fmt.Errorf("media: bind RTP port %d: %w", port, err)
	}
	rtp, err := newRTPConn(c)
	if err != nil {
		return nil, fmt.Errorf("media: RTP port %d: %w", port, err)
	}
	rtcp, err := a.listen(a.network, &net.UDPAddr{IP: a.ip, Port: port + 1})
	if err != nil {
		_ = rtp.Close()
		return nil, fmt.Errorf("media: bind RTCP port %d: %w", port+1, err)
	}
	// Best effort: the RTCP socket is drained once per reporting interval
	// (rtcpRecvBuffer explains the size); a larger buffer only costs
	// kernel memory.
	_ = rtcp.SetReadBuffer(rtcpRecvBuffer)
	p := &portPair{idx: idx, port: port, rtp: rtp, rtcp: rtcp}
	var err1, err2 error
	if p.rawRTP, err1 = rtp.SyscallConn(); err1 == nil {
		p.rawRTCP, err2 = rtcp.SyscallConn()
	}
	if err := errors.Join(err1, err2); err != nil {
		p.closeSockets()
		return nil, fmt.Errorf("media: port %d: %w", port, err)
	}
	p.selfRTP, p.selfRTCP = selfAddr(p.rawRTP), selfAddr(p.rawRTCP)
	return p, nil
}

// close closes the sockets of every pair that is bound and free; pairs in
// use are left alone (their bridges still own them). The pairs closed
// stay free, in quarantine as they were, and are bound anew if handed out.
func (a *portAllocator) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for a.kept.n > 0 {
		e := a.kept.pop()
		a.bound[e.idx].closeSockets()
		a.bound[e.idx] = nil
		a.boundN.Add(-1)
		a.closed.push(e, e.readyAt)
	}
}
