package permissions

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// cutProxy is a TCP proxy in front of Redis that can cut one node off
// (every connection closed, new ones refused) while other nodes still
// reach Redis: a partition, not Redis down.
type cutProxy struct {
	ln    net.Listener
	cut   atomic.Bool
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func newCutProxy(t *testing.T, to string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.85.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln}
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if p.cut.Load() {
				c.Close()
				continue
			}
			s, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			p.wg.Go(func() { _, _ = io.Copy(s, c); s.Close() })
			p.wg.Go(func() { _, _ = io.Copy(c, s); c.Close() })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		p.closeAll()
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) closeAll() {
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
}

// setCut cuts the node off (true) or lets it through again (false).
func (p *cutProxy) setCut(on bool) {
	p.cut.Store(on)
	if on {
		p.closeAll()
	}
}

// TestRedisClearWinsOverWriteBack: a node cut off from Redis keeps a
// connected call and Meta's daily-cap 403 for the user; meanwhile an
// operator clears the user's connected calls through another node. When
// the first node reaches Redis again and writes back what it kept, the
// clear stands: the user's next call is admitted, not refused 403 / 138012
// for a day. Before, the write-back filled the window again and undid the
// operator's clear. A connected call made after the clear still counts.
func TestRedisClearWinsOverWriteBack(t *testing.T) {
	srv := startRedis(t)
	proxy := newCutProxy(t, srv.addr)
	lim := DefaultLimits()
	lim.ConnectedPerUser24h = 5
	n1 := openRedis(t, srv, "n1", lim, func(o *RedisOptions) {
		o.Addr = proxy.addr()
		o.OnDown = OnDownCache
		o.Timeout = time.Second
	})
	n2 := openRedis(t, srv, "n2", lim)
	k := key("+16505550401")
	if err := n2.Grant(k, true, time.Time{}, "api"); err != nil {
		t.Fatal(err)
	}
	// n1 sees the grant (its cache admits the pair while cut off), and
	// Redis knows the scripts.
	_, res := reserve(t, n1, k, Allow)
	res.Finish(Failed)

	proxy.setCut(true)
	_, res = reserve(t, n1, k, Allow) // from n1's cache
	res.Connected()
	res.Finish(Answered)
	_, res = reserve(t, n1, k, Allow)
	res.Finish(MetaDailyCap)
	if st := n1.Stats(); st.PendingOutcomes != 2 || st.AdmittedFromCache != 2 {
		t.Fatalf("n1 cut off: %+v, want 2 outcomes kept and 2 calls admitted from its cache", st)
	}

	// The operator clears through n2 (nothing is in Redis yet), then a
	// call through n2 connects after the clear.
	nextMilli() // the clear's millisecond is after the outcomes'
	if err := n2.ClearConnectedCalls(k); err != nil {
		t.Fatalf("clear through n2: %v", err)
	}
	nextMilli()
	_, res = reserve(t, n2, k, Allow)
	res.Connected()
	res.Finish(Answered)

	proxy.setCut(false)
	waitUp(t, n1)
	deadline := time.Now().Add(5 * time.Second)
	for n1.Stats().PendingOutcomes > 0 {
		if time.Now().After(deadline) {
			t.Fatal("n1 did not write back what it kept")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if en := lookup(t, n2, k); en.ConnectedCalls24h != 1 || en.Status != "permanent" {
		t.Errorf("after n1's write-back: %+v, want the one connected call made after the clear", en)
	}
	if d, res := n2.Reserve(k); d.Verdict != Allow {
		t.Errorf("the user's next call after the clear and n1's write-back: %+v, want admitted", d)
	} else {
		res.Finish(Failed)
	}
}

// nextMilli returns once the clock's millisecond (the stores' unit) has
// moved on, so that two events are ordered in it.
func nextMilli() {
	for ms := time.Now().UnixMilli(); time.Now().UnixMilli() <= ms; {
		time.Sleep(100 * time.Microsecond)
	}
}
