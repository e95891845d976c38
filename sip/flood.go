package sip

import (
	"net/netip"
	"sync"
	"time"
)

// floodGuard limits the request rate of each source address, in the
// manner of Kamailio's pike module: a token bucket per address (burst of
// two seconds' worth), and an address that empties its bucket is blocked
// for a while, its messages dropped before they are read.
//
// The table is bounded: a flood from spoofed addresses fills it, and then
// new addresses are refused until idle entries are swept. That errs toward
// silence, which is right for the sources it is used for (strangers, and
// endpoints configured with a rate).
type floodGuard struct {
	mu      sync.Mutex
	sources map[netip.Addr]*floodBucket
	max     int
	swept   time.Time
	now     func() time.Time
}

type floodBucket struct {
	tokens  float64
	last    time.Time
	blocked time.Time // zero: not blocked
}

// floodVerdict is the guard's answer for one request.
type floodVerdict uint8

const (
	floodAllow   floodVerdict = iota
	floodBlocked              // over the rate now: blocked from this request on
	floodStill                // already blocked
)

const floodTableMax = 100_000

func newFloodGuard() *floodGuard {
	return &floodGuard{sources: make(map[netip.Addr]*floodBucket), max: floodTableMax, now: time.Now}
}

// allow takes one request from ip at rate requests/s (0: no limit), and
// blocks ip for blockFor when it is over.
func (g *floodGuard) allow(ip netip.Addr, rate int, blockFor time.Duration) floodVerdict {
	if rate <= 0 {
		return floodAllow
	}
	now := g.now()
	burst := float64(2 * rate)
	g.mu.Lock()
	defer g.mu.Unlock()
	b := g.sources[ip]
	if b == nil {
		if len(g.sources) >= g.max {
			g.sweep(now, blockFor)
			if len(g.sources) >= g.max {
				return floodStill
			}
		}
		b = &floodBucket{tokens: burst, last: now}
		g.sources[ip] = b
	}
	if !b.blocked.IsZero() {
		if now.Before(b.blocked) {
			return floodStill
		}
		b.blocked = time.Time{}
		b.tokens, b.last = burst, now
	}
	b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*float64(rate))
	b.last = now
	if b.tokens < 1 {
		b.blocked = now.Add(blockFor)
		return floodBlocked
	}
	b.tokens--
	return floodAllow
}

// blockedNow reports whether ip is blocked, without taking a request: the
// edge asks before it spends anything on a message.
func (g *floodGuard) blockedNow(ip netip.Addr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	b := g.sources[ip]
	return b != nil && !b.blocked.IsZero() && g.now().Before(b.blocked)
}

// sweep forgets addresses that are neither blocked nor seen for a while.
// Called with g.mu held.
func (g *floodGuard) sweep(now time.Time, idle time.Duration) {
	if now.Sub(g.swept) < time.Second {
		return
	}
	g.swept = now
	for ip, b := range g.sources {
		if (b.blocked.IsZero() || now.After(b.blocked)) && now.Sub(b.last) > idle {
			delete(g.sources, ip)
		}
	}
}

// size is the number of addresses tracked, for tests and stats.
func (g *floodGuard) size() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.sources)
}

// connLimiter counts inbound stream connections, in all and per source
// address.
type connLimiter struct {
	mu    sync.Mutex
	per   map[netip.Addr]int
	total int
}

func newConnLimiter() *connLimiter { return &connLimiter{per: make(map[netip.Addr]int)} }

// acquire takes a connection slot for ip unless a cap is reached
// (maxTotal 0: no total cap).
func (l *connLimiter) acquire(ip netip.Addr, maxTotal, maxPer int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if maxTotal > 0 && l.total >= maxTotal {
		return false
	}
	if maxPer > 0 && l.per[ip] >= maxPer {
		return false
	}
	l.per[ip]++
	l.total++
	return true
}

func (l *connLimiter) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.per[ip] <= 1 {
		delete(l.per, ip)
	} else {
		l.per[ip]--
	}
	l.total--
}

func (l *connLimiter) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}
