package media

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for quarantine and backoff tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestAllocator(t *testing.T, pairs int, quarantine time.Duration, clock *fakeClock) (*portAllocator, int) {
	t.Helper()
	base := freePortRange(t, 2*pairs)
	var now func() time.Time
	if clock != nil {
		now = clock.now
	}
	a, err := newPortAllocator(loopback, base, base+2*pairs-1, quarantine, now)
	if err != nil {
		t.Fatal(err)
	}
	return a, base
}

func TestNewPortAllocatorRange(t *testing.T) {
	for _, tt := range []struct {
		min, max int
		pairs    int // 0: error
		base     int
	}{
		{30000, 40000, 5000, 30000},
		{30001, 40000, 4999, 30002},
		{30000, 30001, 1, 30000},
		{30001, 30002, 0, 0}, // 30002 needs 30003
		{30000, 30000, 0, 0},
		{40000, 30000, 0, 0},
		{0, 10, 0, 0},
		{65534, 65535, 1, 65534},
		{65535, 65536, 0, 0},
	} {
		a, err := newPortAllocator(loopback, tt.min, tt.max, 0, nil)
		if tt.pairs == 0 {
			if err == nil {
				t.Errorf("%d-%d: no error, want one", tt.min, tt.max)
			}
			continue
		}
		if err != nil {
			t.Errorf("%d-%d: %v", tt.min, tt.max, err)
			continue
		}
		if a.pairs != tt.pairs || a.base != tt.base {
			t.Errorf("%d-%d: %d pairs from %d, want %d from %d", tt.min, tt.max, a.pairs, a.base, tt.pairs, tt.base)
		}
	}
}

func TestPortAllocatorExhaustion(t *testing.T) {
	a, base := newTestAllocator(t, 4, 0, nil)
	var got []*portPair
	seen := map[int]bool{}
	for range 4 {
		p, err := a.get()
		if err != nil {
			t.Fatal(err)
		}
		if p.port%2 != 0 || p.port < base || p.port+1 > base+7 || seen[p.port] {
			t.Fatalf("bad or duplicate port %d", p.port)
		}
		if rtcp := p.rtcp.LocalAddr().(*net.UDPAddr).Port; rtcp != p.port+1 {
			t.Fatalf("RTCP port %d for RTP %d", rtcp, p.port)
		}
		seen[p.port] = true
		got = append(got, p)
	}
	if _, err := a.get(); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("5th get: %v, want ErrNoPorts", err)
	}
	if n := a.inUse.Load(); n != 4 {
		t.Fatalf("inUse %d, want 4", n)
	}
	for _, p := range got {
		a.release(p)
	}
	if n := a.inUse.Load(); n != 0 {
		t.Fatalf("inUse %d after release, want 0", n)
	}
}

func TestPortAllocatorQuarantineAndFIFO(t *testing.T) {
	clock := newFakeClock()
	a, _ := newTestAllocator(t, 3, 10*time.Second, clock)
	p1, _ := a.get()
	p2, _ := a.get()
	p3, err := a.get()
	if err != nil {
		t.Fatal(err)
	}
	a.release(p2)
	clock.advance(time.Second)
	a.release(p1)

	for _, step := range []struct {
		advance time.Duration
		port    int // 0: want ErrNoPorts
	}{
		{0, 0},
		{8 * time.Second, 0},   // p2 released 9 s ago
		{time.Second, p2.port}, // 10 s: p2 (released first) comes back first
		{0, 0},                 // p1 released 9 s ago
		{time.Second, p1.port}, // then p1
		{time.Hour, 0},         // all in use
	} {
		clock.advance(step.advance)
		p, err := a.get()
		if step.port == 0 {
			if !errors.Is(err, ErrNoPorts) {
				t.Fatalf("after %s: got %v, want ErrNoPorts", step.advance, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("after %s: %v", step.advance, err)
		}
		if p.port != step.port {
			t.Fatalf("got port %d, want %d", p.port, step.port)
		}
		defer a.release(p)
	}
	a.release(p3)
}

func TestPortAllocatorReusesReleasedPairLast(t *testing.T) {
	a, _ := newTestAllocator(t, 3, 0, nil)
	p, _ := a.get()
	first := p.port
	a.release(p)
	var ports []int
	for range 3 {
		p, err := a.get()
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, p.port)
		defer a.release(p)
	}
	if ports[2] != first {
		t.Fatalf("order %v: released port %d should come last", ports, first)
	}
}

// TestPortAllocatorReleaseKeepsSocketsDeaf: a released pair keeps its
// sockets (the next allocation of that pair gets the same ones, no bind),
// and nothing sent to them while the pair was free, nor before its
// release, reaches whoever gets the pair next.
func TestPortAllocatorReleaseKeepsSocketsDeaf(t *testing.T) {
	a, _ := newTestAllocator(t, 1, 0, nil)
	t.Cleanup(a.close)
	p, err := a.get()
	if err != nil {
		t.Fatal(err)
	}
	rtp, rtcp := p.rtp, p.rtcp
	sender, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	send := func(what string) {
		for _, c := range []net.Addr{rtp.LocalAddr(), rtcp.LocalAddr()} {
			if _, err := sender.WriteToUDP([]byte(what), c.(*net.UDPAddr)); err != nil {
				t.Fatal(err)
			}
		}
	}
	send("before release") // queued, never read by the call
	a.release(p)
	send("while free") // dropped by the filter (or drained)
	time.Sleep(20 * time.Millisecond)
	q, err := a.get()
	if err != nil {
		t.Fatal(err)
	}
	defer a.release(q)
	if q.rtp != rtp || q.rtcp != rtcp {
		t.Fatal("the pair was bound again instead of reused")
	}
	send("new call")
	buf := make([]byte, 100)
	for _, c := range []pairSocket{q.rtp, q.rtcp} {
		n, err := readSocket(c, buf, 2*time.Second)
		if err != nil {
			t.Fatalf("read on the reused pair: %v", err)
		}
		if got := string(buf[:n]); got != "new call" {
			t.Fatalf("the new call read %q: a packet from before it reached it", got)
		}
	}
}

func TestPortAllocatorSkipsBusyPorts(t *testing.T) {
	clock := newFakeClock()
	a, base := newTestAllocator(t, 3, 0, clock)
	// Another process holds the RTCP port of the first pair.
	squatter, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: base + 1})
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.get()
	if err != nil {
		t.Fatal(err)
	}
	if p.port != base+2 {
		t.Fatalf("got port %d, want %d (first pair busy)", p.port, base+2)
	}
	// The RTP socket of the failed pair was not leaked: we can bind it.
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: base})
	if err != nil {
		t.Fatalf("RTP port of failed pair leaked: %v", err)
	}
	c.Close()

	q, err := a.get()
	if err != nil || q.port != base+4 {
		t.Fatalf("got %v, %v; want port %d", q, err, base+4)
	}
	// The busy pair is parked, not retried at once.
	if _, err := a.get(); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("got %v, want ErrNoPorts while the busy pair is parked", err)
	}
	squatter.Close()
	clock.advance(bindBackoffMin)
	r, err := a.get()
	if err != nil || r.port != base {
		t.Fatalf("after backoff got %v, %v; want port %d", r, err, base)
	}
	for _, x := range []*portPair{p, q, r} {
		a.release(x)
	}
}

func TestPortAllocatorBoundedBindAttempts(t *testing.T) {
	a, _ := newTestAllocator(t, maxBindAttempts+4, 0, nil)
	calls := 0
	a.listen = func(string, *net.UDPAddr) (*net.UDPConn, error) {
		calls++
		return nil, errors.New("address already in use")
	}
	_, err := a.get()
	if !errors.Is(err, ErrNoPorts) {
		t.Fatalf("got %v, want ErrNoPorts", err)
	}
	if calls != maxBindAttempts {
		t.Fatalf("%d bind calls, want %d", calls, maxBindAttempts)
	}
	if a.inUse.Load() != 0 {
		t.Fatal("failed binds counted as in use")
	}
}

func TestPortAllocatorConcurrent(t *testing.T) {
	const pairs = 8
	a, _ := newTestAllocator(t, pairs, 0, nil)
	var (
		mu     sync.Mutex
		inUse  = map[int]bool{}
		wg     sync.WaitGroup
		failed = make(chan string, 1)
	)
	for range 16 {
		wg.Go(func() {
			for range 200 {
				p, err := a.get()
				if err != nil {
					if !errors.Is(err, ErrNoPorts) {
						select {
						case failed <- err.Error():
						default:
						}
					}
					continue
				}
				mu.Lock()
				dup := inUse[p.port]
				inUse[p.port] = true
				mu.Unlock()
				if dup {
					select {
					case failed <- "duplicate pair handed out":
					default:
					}
				}
				mu.Lock()
				delete(inUse, p.port)
				mu.Unlock()
				a.release(p)
			}
		})
	}
	wg.Wait()
	select {
	case msg := <-failed:
		t.Fatal(msg)
	default:
	}
	if n := a.inUse.Load(); n != 0 {
		t.Fatalf("inUse %d, want 0", n)
	}
}

// BenchmarkPortAllocator measures one get+release of a kept pair (the
// filter off, a drain, the filter on); it used to bind and close two UDP
// sockets. SIP load needs ~5,000 per second.
func BenchmarkPortAllocator(b *testing.B) { benchPortAllocator(b, maxInt64) }

// benchPortAllocator runs get+release in parallel on 100 pairs with the
// given bound-pair budget.
func benchPortAllocator(b *testing.B, budget int64) {
	base := freePortRange(b, 200)
	a, err := newPortAllocator(loopback, base, base+199, 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	a.budget = budget
	b.Cleanup(a.close)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p, err := a.get()
			if err != nil {
				b.Error(err)
				return
			}
			a.release(p)
		}
	})
}
