package media

import (
	"errors"
	"math"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wagate/wagate/configs"
)

// openDescriptors counts the process's open descriptors, and of them the
// UDP sockets bound to a port in [lo, hi]: what a pair kept bound costs
// against the open-files limit. It skips where /proc cannot tell.
func openDescriptors(t *testing.T, lo, hi int) (all, inRange int) {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink("/proc/self/fd/" + fd.Name())
		if err != nil {
			continue // the directory's own descriptor, closed by now
		}
		if ino, ok := strings.CutPrefix(link, "socket:["); ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	for _, table := range []string{"/proc/self/net/udp", "/proc/self/net/udp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			t.Skipf("no %s: %v", table, err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		for _, line := range lines[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || !inodes[f[9]] {
				continue
			}
			_, portHex, _ := strings.Cut(f[1], ":")
			var port int
			for _, c := range portHex {
				port = port*16 + strings.IndexRune("0123456789ABCDEF", c)
			}
			if port >= lo && port <= hi {
				inRange++
			}
		}
	}
	return len(fds), inRange
}

// boundEntries counts the pairs whose sockets the allocator holds, to
// check its count against.
func boundEntries(a *portAllocator) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, p := range a.bound {
		if p != nil {
			n++
		}
	}
	return n
}

// TestPortAllocatorBudgetBoundsDescriptors: with a budget of 4 pairs,
// cycling through a 64-pair range with 3 pairs held throughout and up to
// 16 more at a time never leaves more sockets open than the pairs in use
// plus the budget, where keeping every pair used would hold all 128.
// While the pairs in use fit the budget, reuse binds nothing.
func TestPortAllocatorBudgetBoundsDescriptors(t *testing.T) {
	const pairs, budget, held = 64, 4, 3
	a, base := newTestAllocator(t, pairs, 0, nil)
	t.Cleanup(a.close)
	a.budget = budget
	fds0, _ := openDescriptors(t, base, base+2*pairs-1)
	check := func(when string, inUse int) {
		t.Helper()
		all, inRange := openDescriptors(t, base, base+2*pairs-1)
		wantMax := 2*budget + 2*inUse
		if inRange > wantMax {
			t.Fatalf("%s: %d sockets of the range open with %d pairs in use, want at most %d", when, inRange, inUse, wantMax)
		}
		// The process as a whole: the same, with room for the runtime.
		if all > fds0+wantMax+8 {
			t.Fatalf("%s: %d descriptors open (%d before), want at most %d+8", when, all, fds0, fds0+wantMax)
		}
		if n, want := int(a.boundN.Load()), boundEntries(a); n != want || 2*n != inRange {
			t.Fatalf("%s: bound count %d, %d pairs bound, %d sockets open", when, n, want, inRange)
		}
	}
	var hold []*portPair
	for range held {
		p, err := a.get()
		if err != nil {
			t.Fatal(err)
		}
		hold = append(hold, p)
	}
	for round := range 12 {
		var burst []*portPair
		for range 2 + 2*round {
			p, err := a.get()
			if err != nil {
				t.Fatal(err)
			}
			burst = append(burst, p)
		}
		check("burst", held+len(burst))
		for _, p := range burst {
			a.release(p)
		}
		check("after release", held)
		if n := a.boundN.Load(); n > budget {
			t.Fatalf("%d pairs left bound with %d in use, budget %d", n, held, budget)
		}
	}
	if a.binds.Load() <= pairs/2 {
		t.Fatalf("only %d binds over the rounds: released pairs past the budget were not closed", a.binds.Load())
	}

	// Within the budget nothing is closed: releasing one held pair and
	// cycling through the range binds only the pair that replaces it.
	for _, p := range hold[1:] {
		a.release(p)
	}
	hold = hold[:1]
	for range 3 * pairs {
		p, err := a.get()
		if err != nil {
			t.Fatal(err)
		}
		a.release(p)
	}
	binds := a.binds.Load()
	for range 3 * pairs {
		p, err := a.get()
		if err != nil {
			t.Fatal(err)
		}
		a.release(p)
	}
	if n := a.binds.Load() - binds; n != 0 {
		t.Fatalf("%d binds reusing pairs within the budget, want 0", n)
	}
	check("within budget", 1)
	a.release(hold[0])
}

// TestPortAllocatorClosedPairQuarantineAndRebind: a pair closed on release
// (over the budget) is not handed out again before port_quarantine, like
// a kept one, and when it is, it is bound anew and carries packets on
// both ports.
func TestPortAllocatorClosedPairQuarantineAndRebind(t *testing.T) {
	clock := newFakeClock()
	a, _ := newTestAllocator(t, 2, 10*time.Second, clock)
	t.Cleanup(a.close)
	a.budget = 1
	p1, err := a.get()
	if err != nil {
		t.Fatal(err)
	}
	p2, err := a.get()
	if err != nil {
		t.Fatal(err)
	}
	oldRTP := p1.rtp
	port := p1.port
	a.release(p1) // 2 bound, budget 1: closed
	if a.bound[p1.idx] != nil || a.boundN.Load() != 1 {
		t.Fatalf("released pair over the budget still bound (%d bound)", a.boundN.Load())
	}
	if _, err := readSocket(oldRTP, make([]byte, 1), 0); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("the closed pair's socket reads %v, want net.ErrClosed", err)
	}
	for _, adv := range []time.Duration{0, 9*time.Second + 999*time.Millisecond} {
		clock.advance(adv)
		if _, err := a.get(); !errors.Is(err, ErrNoPorts) {
			t.Fatalf("%s after release: got %v, want ErrNoPorts (quarantine)", adv, err)
		}
	}
	clock.advance(time.Millisecond)
	binds := a.binds.Load()
	q, err := a.get()
	if err != nil {
		t.Fatal(err)
	}
	if q.port != port || q.rtp == oldRTP || a.binds.Load() != binds+1 {
		t.Fatalf("got port %d (want %d), rebound: %v", q.port, port, a.binds.Load() == binds+1)
	}
	sender, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	buf := make([]byte, 16)
	for _, c := range []pairSocket{q.rtp, q.rtcp} {
		if _, err := sender.WriteToUDP([]byte("after rebind"), c.LocalAddr().(*net.UDPAddr)); err != nil {
			t.Fatal(err)
		}
		n, err := readSocket(c, buf, 2*time.Second)
		if err != nil || string(buf[:n]) != "after rebind" {
			t.Fatalf("rebound port %v read %q, %v", c.LocalAddr(), buf[:n], err)
		}
	}
	a.release(q)  // 2 bound: closed again
	a.release(p2) // 1 bound: within the budget, kept
	if a.bound[p2.idx] != p2 || a.boundN.Load() != 1 {
		t.Fatalf("pair within the budget was closed (%d bound)", a.boundN.Load())
	}
}

// TestPortAllocatorOutOfDescriptors: a bind that fails for want of
// descriptors says so, is tried once (every port would fail alike), and
// does not park the pair: it is handed out as soon as a bind succeeds.
func TestPortAllocatorOutOfDescriptors(t *testing.T) {
	a, base := newTestAllocator(t, 4, 0, nil)
	t.Cleanup(a.close)
	calls := 0
	a.listen = func(string, *net.UDPAddr) (*net.UDPConn, error) {
		calls++
		return nil, &net.OpError{Op: "listen", Net: "udp", Err: os.NewSyscallError("socket", syscall.EMFILE)}
	}
	_, err := a.get()
	if !errors.Is(err, ErrNoPorts) || !strings.Contains(err.Error(), "out of file descriptors") ||
		!strings.Contains(err.Error(), "too many open files") {
		t.Fatalf("got %v, want ErrNoPorts naming the descriptor limit", err)
	}
	if calls != 1 {
		t.Fatalf("%d binds tried, want 1", calls)
	}
	a.listen = net.ListenUDP
	p, err := a.get()
	if err != nil || p.port != base {
		t.Fatalf("got %v, %v; want port %d (not parked)", p, err, base)
	}
	a.release(p)
	if a.inUse.Load() != 0 || a.boundN.Load() != 1 {
		t.Fatalf("in use %d, bound %d; want 0, 1", a.inUse.Load(), a.boundN.Load())
	}
}

// TestPortAllocatorCapKeepsDescriptorsBeside: past the pairs the
// open-files limit holds while keeping DescriptorsBeside for the rest, a
// new pair is refused with the reason and without a bind; the pair it
// would have used is not parked, and a pair released is reused.
func TestPortAllocatorCapKeepsDescriptorsBeside(t *testing.T) {
	a, _ := newTestAllocator(t, 8, 0, nil)
	t.Cleanup(a.close)
	a.maxBound = 3
	binds := 0
	a.listen = func(network string, addr *net.UDPAddr) (*net.UDPConn, error) {
		binds++
		return net.ListenUDP(network, addr)
	}
	var held []*portPair
	for range 3 {
		p, err := a.get()
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, p)
	}
	_, err := a.get()
	if !errors.Is(err, ErrNoPorts) || !strings.Contains(err.Error(), "the most the open-files limit allows") {
		t.Fatalf("4th pair over a cap of 3: %v, want ErrNoPorts naming the limit", err)
	}
	if binds != 6 || a.boundN.Load() != 3 {
		t.Fatalf("%d binds, %d pairs bound; want 6 and 3 (none tried past the cap)", binds, a.boundN.Load())
	}
	a.release(held[0])
	p, err := a.get()
	if err != nil || p.port != held[0].port {
		t.Fatalf("after a release got %v, %v; want the kept pair %d", p, err, held[0].port)
	}
	a.maxBound = 4
	q, err := a.get()
	if err != nil || q.port != held[2].port+2 {
		t.Fatalf("with room again got %v, %v; want the pair the refusal left, %d", q, err, held[2].port+2)
	}
	for _, x := range []*portPair{p, q, held[1], held[2]} {
		a.release(x)
	}
}

// TestPortAllocatorCapShedsKeptPairs: at the cap, a pair kept free in
// quarantine is closed so that a call can have a pair; the pair shed still
// waits out its quarantine.
func TestPortAllocatorCapShedsKeptPairs(t *testing.T) {
	clock := newFakeClock()
	a, _ := newTestAllocator(t, 4, 10*time.Second, clock)
	t.Cleanup(a.close)
	a.maxBound = 2
	p1, err := a.get()
	if err != nil {
		t.Fatal(err)
	}
	p2, err := a.get()
	if err != nil {
		t.Fatal(err)
	}
	rtp1 := p1.rtp
	a.release(p1) // kept, in quarantine, holding 2 of the cap's descriptors
	p3, err := a.get()
	if err != nil {
		t.Fatalf("at the cap with a kept pair in quarantine: %v, want it shed for the call", err)
	}
	if p3.port == p1.port {
		t.Fatal("the quarantined pair was handed out")
	}
	if _, err := readSocket(rtp1, make([]byte, 1), 0); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("the kept pair was not closed: read %v", err)
	}
	if n := a.boundN.Load(); n != 2 {
		t.Fatalf("%d pairs bound, want 2", n)
	}
	a.release(p2)
	clock.advance(9 * time.Second)
	p4, err := a.get() // p2 shed for it: p1 and p2 still in quarantine
	if err != nil || p4.port == p1.port || p4.port == p2.port {
		t.Fatalf("got %v, %v; want the 4th pair, not a quarantined one", p4, err)
	}
	a.release(p3)
	a.release(p4)
	clock.advance(time.Second)
	q, err := a.get()
	if err != nil || q.port != p1.port {
		t.Fatalf("after the quarantine got %v, %v; want %d, released first", q, err, p1.port)
	}
	a.release(q)
}

// TestPortAllocatorBudgetConcurrent: under concurrent gets and releases
// the bound count matches the pairs actually bound, never passes the cap
// that keeps descriptors for the rest of wagate (8 allocations at once
// against a cap of 5), and once all are released no more than the budget
// stay bound.
func TestPortAllocatorBudgetConcurrent(t *testing.T) {
	const pairs, budget, maxBound = 16, 3, 5
	a, _ := newTestAllocator(t, pairs, 0, nil)
	t.Cleanup(a.close)
	a.budget, a.maxBound = budget, maxBound
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 300 {
				p, err := a.get()
				if n := a.boundN.Load(); n > maxBound {
					t.Errorf("%d pairs bound, cap %d", n, maxBound)
					return
				}
				if err != nil {
					if !errors.Is(err, ErrNoPorts) {
						t.Error(err)
						return
					}
					continue
				}
				a.release(p)
			}
		})
	}
	wg.Wait()
	if n, want := int(a.boundN.Load()), boundEntries(a); n != want || n > budget {
		t.Fatalf("bound count %d, %d pairs bound; want equal and at most %d", n, want, budget)
	}
}

// BenchmarkPortAllocatorOverBudget measures one get+release of a pair past
// the bound-pair budget: bound and closed each time (two sockets).
func BenchmarkPortAllocatorOverBudget(b *testing.B) { benchPortAllocator(b, 0) }

// TestManagerMaxBoundPairs: media.max_bound_pairs reaches the allocator,
// and Stats reports the sockets left open: after two calls on a 4-pair
// range with max_bound_pairs 1, one pair (two ports) stays bound.
func TestManagerMaxBoundPairs(t *testing.T) {
	m := newTestManagerWith(t, 4, func(c *configs.Media) { c.MaxBoundPairs = 1 })
	t.Cleanup(m.Close)
	b1, err := m.NewBridge("c1", nil)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := m.NewBridge("c2", nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := m.Stats(); s.PortsBound != 8 {
		t.Fatalf("%d ports bound with two calls up, want 8", s.PortsBound)
	}
	b1.Close()
	b2.Close()
	if s := m.Stats(); s.PortsBound != 2 || s.PortsInUse != 0 {
		t.Fatalf("stats %+v after both calls ended, want 2 ports bound", s)
	}
	if _, err := NewManager(configs.Media{BindIP: "127.0.0.1", PortMin: 30000, PortMax: 30010, MaxBoundPairs: -1}, nil); err == nil {
		t.Fatal("a negative max_bound_pairs was accepted")
	}
}

// TestBoundPairBudget: the budget an operator gets from the open-files
// limit: a quarter (at least 1,024) left to everything else, two
// descriptors a pair; a configured value wins; an unknown limit means no
// budget.
func TestBoundPairBudget(t *testing.T) {
	for _, tc := range []struct {
		configured int
		limit      uint64
		want       int
	}{
		{0, 20000, 7500},  // this container: 5,000 left aside
		{0, 65536, 24576}, // deploy/wagate.service
		{0, 4096, 1536},   // 1,024 left aside
		{0, 1024, 0},      // nothing left: every released pair is closed
		{0, 100, 0},
		{0, 0, math.MaxInt},              // unknown
		{0, math.MaxUint64, math.MaxInt}, // RLIM_INFINITY
		{3000, 20000, 3000},
		{50000, 20000, 50000}, // the operator's word (fdlimit warns)
	} {
		if got := BoundPairBudget(tc.configured, tc.limit); got != tc.want {
			t.Errorf("BoundPairBudget(%d, %d) = %d, want %d", tc.configured, tc.limit, got, tc.want)
		}
	}
	// The cap on pairs bound at all leaves DescriptorsBeside and the
	// pacer's timerfds, at two and a half descriptors a pair (the call
	// reader's epoll set).
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	for limit, want := range map[uint64]int{20000: 7587, 65536: 25801, 1024: 0, 1032: 0, 1037: 2, 0: math.MaxInt} {
		if got := MaxBoundPairsInUse(limit); got != want {
			t.Errorf("MaxBoundPairsInUse(%d) at 2 CPUs = %d, want %d", limit, got, want)
		}
	}
	// On a 64-core host the pacer holds up to 256 timerfds: they come on
	// top of DescriptorsBeside, not out of it.
	runtime.GOMAXPROCS(64)
	if got, want := MaxBoundPairsInUse(65536), (65536-1024-256)*2/5; got != want {
		t.Errorf("MaxBoundPairsInUse(65536) at 64 CPUs = %d, want %d", got, want)
	}
}
