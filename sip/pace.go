package sip

import (
	"net/netip"
	"sync"
	"time"
)

// streamPacer paces the requests read from stream (TCP and TLS)
// connections, per source address, all its connections together: a token
// bucket (burst of two seconds' worth), and a source that has used it up is
// read from more slowly, one request per 1/rate, instead of being blocked.
// Nothing is dropped: the peer's further requests wait in its own socket
// buffers (TCP flow control), so a trunk that bursts past the rate gets
// latency, not lost calls, while one connection can no longer hand sipgo
// requests faster than sipgo handles them (sipgo starts a goroutine per
// message, which then queue on its transaction table: 249,000 goroutines
// and 2.2 GB from 60 pipelining connections, docs/security.md).
type streamPacer struct {
	mu      sync.Mutex
	sources map[netip.Addr]*paceBucket
	swept   time.Time
	now     func() time.Time
	// sleep waits d or until stop is closed (tests replace it).
	sleep func(d time.Duration, stop <-chan struct{})
}

type paceBucket struct {
	tokens float64
	last   time.Time
}

// paceSweepEvery is how often sources whose bucket is full again (idle for
// its two seconds) are forgotten; the table holds at most the sources with
// connections open meanwhile (sip.tcp.max_connections bounds them).
const paceSweepEvery = 10 * time.Second

func newStreamPacer() *streamPacer {
	return &streamPacer{sources: make(map[netip.Addr]*paceBucket), now: time.Now, sleep: sleepOrStop}
}

// take charges one request read from ip at rate requests/s (0: no pacing)
// and returns how long its connection waits before reading the next
// message (0: at once).
func (p *streamPacer) take(ip netip.Addr, rate int) time.Duration {
	if rate <= 0 {
		return 0
	}
	now := p.now()
	burst := float64(2 * rate)
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Sub(p.swept) >= paceSweepEvery {
		p.swept = now
		for a, b := range p.sources {
			if now.Sub(b.last) > 2*time.Second {
				delete(p.sources, a)
			}
		}
	}
	b := p.sources[ip]
	if b == nil {
		b = &paceBucket{tokens: burst, last: now}
		p.sources[ip] = b
	}
	b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*float64(rate))
	b.last = now
	b.tokens--
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / float64(rate) * float64(time.Second))
}

// size is the number of sources tracked, for tests.
func (p *streamPacer) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sources)
}

func sleepOrStop(d time.Duration, stop <-chan struct{}) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-stop:
	}
}
