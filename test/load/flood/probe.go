package main

// The legitimate peer: the pbx endpoint (a configured source) sends an
// OPTIONS every -probe interval while the attack runs and times wagate's
// answer. Each OPTIONS is sent once (no retransmission), so one lost
// datagram or one ignored request shows as unanswered.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"time"
)

// probeTimeout is how long an OPTIONS may wait for its answer before it
// counts as unanswered.
const probeTimeout = 5 * time.Second

type probeSent struct {
	phase string
	sent  time.Time
	rtt   time.Duration // 0: no answer yet
	code  int
}

// prober sends OPTIONS from the pbx endpoint's address until stopped.
type prober struct {
	o     options
	conn  *net.UDPConn
	run   string
	mu    sync.Mutex
	phase string
	sent  []*probeSent
	done  chan struct{}
}

func startProber(ctx context.Context, o options, run, phase string) (*prober, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(o.ip(3))})
	if err != nil {
		return nil, fmt.Errorf("probe socket on %s: %w", o.ip(3), err)
	}
	p := &prober{o: o, conn: c, run: run, phase: phase, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.read() }()
	go func() { defer wg.Done(); p.send(ctx) }()
	go func() { wg.Wait(); close(p.done) }()
	return p, nil
}

// setPhase names the phase the following probes belong to.
func (p *prober) setPhase(s string) {
	p.mu.Lock()
	p.phase = s
	p.mu.Unlock()
}

func (p *prober) send(ctx context.Context) {
	t := time.NewTicker(p.o.probeEvery)
	defer t.Stop()
	local := p.conn.LocalAddr().(*net.UDPAddr)
	dst := &net.UDPAddr{IP: net.ParseIP(p.o.ip(1)), Port: p.o.sipPort}
	// Bounded: the run's longest phase sequence at this interval, plus
	// slack; the send loop also ends with the context or stop.
	limit := int(maxRunTime/p.o.probeEvery) + 10
	for i := 0; i < limit; i++ {
		p.mu.Lock()
		if p.phase == "" {
			p.mu.Unlock()
			return
		}
		ps := &probeSent{phase: p.phase, sent: time.Now()}
		p.sent = append(p.sent, ps)
		p.mu.Unlock()
		_, _ = p.conn.WriteToUDP(optionsMsg(p.run, i, local.IP.String(), local.Port, dst.IP.String(), dst.Port), dst)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *prober) read() {
	buf := make([]byte, 65536)
	for {
		n, _, err := p.conn.ReadFromUDP(buf)
		now := time.Now()
		if err != nil {
			return // closed by stop
		}
		r, ok := parseResponse(buf[:n])
		if !ok || r.code < 200 {
			continue
		}
		i := callIndex(r.callID, probePrefix, p.run)
		p.mu.Lock()
		if i >= 0 && i < len(p.sent) && p.sent[i].rtt == 0 {
			p.sent[i].rtt = now.Sub(p.sent[i].sent)
			p.sent[i].code = r.code
		}
		p.mu.Unlock()
	}
}

// stop ends the probe, giving the last OPTIONS up to probeTimeout to be
// answered.
func (p *prober) stop() {
	p.setPhase("")
	p.mu.Lock()
	var last time.Time
	if n := len(p.sent); n > 0 {
		last = p.sent[n-1].sent
	}
	p.mu.Unlock()
	for deadline := last.Add(probeTimeout); time.Now().Before(deadline) && p.pending() > 0; {
		time.Sleep(50 * time.Millisecond)
	}
	p.conn.Close()
	<-p.done
}

// pending is how many probes have no answer yet.
func (p *prober) pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, s := range p.sent {
		if s.rtt == 0 {
			n++
		}
	}
	return n
}

// probeStats is one phase's probes.
type probeStats struct {
	phase                  string
	sent, answered, non200 int
	unanswered             int
	p50, max               time.Duration
}

func (s probeStats) String() string {
	if s.sent == 0 {
		return s.phase + ": no probes"
	}
	out := fmt.Sprintf("%s: %d OPTIONS, %d answered, %d unanswered (within %v), latency p50 %.2f ms, max %.2f ms",
		s.phase, s.sent, s.answered, s.unanswered, probeTimeout, ms(s.p50), ms(s.max))
	if s.non200 > 0 {
		out += fmt.Sprintf(", %d answered with other than 200", s.non200)
	}
	return out
}

// stats summarises the probes of each phase, in the order phases began.
func (p *prober) stats() []probeStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	var order []string
	by := map[string]*probeStats{}
	lat := map[string][]time.Duration{}
	for _, s := range p.sent {
		st := by[s.phase]
		if st == nil {
			st = &probeStats{phase: s.phase}
			by[s.phase] = st
			order = append(order, s.phase)
		}
		st.sent++
		if s.rtt > 0 && s.rtt <= probeTimeout {
			st.answered++
			lat[s.phase] = append(lat[s.phase], s.rtt)
			if s.code != 200 {
				st.non200++
			}
		} else {
			st.unanswered++
		}
	}
	var out []probeStats
	for _, ph := range order {
		st := by[ph]
		st.p50, st.max = quantile(lat[ph], 0.5), quantile(lat[ph], 1)
		out = append(out, *st)
	}
	return out
}

// ping sends one OPTIONS from the pbx endpoint and waits up to timeout
// for a 200: wagate is up and answers its endpoints.
func ping(ctx context.Context, o options, timeout time.Duration) error {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(o.ip(3))})
	if err != nil {
		return err
	}
	defer c.Close()
	local := c.LocalAddr().(*net.UDPAddr)
	dst := &net.UDPAddr{IP: net.ParseIP(o.ip(1)), Port: o.sipPort}
	run := fmt.Sprintf("ping%d", time.Now().UnixNano())
	if _, err := c.WriteToUDP(optionsMsg(run, 0, local.IP.String(), local.Port, dst.IP.String(), dst.Port), dst); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.SetReadDeadline(deadline)
	buf := make([]byte, 65536)
	for {
		n, _, err := c.ReadFromUDP(buf)
		if err != nil {
			return err
		}
		r, ok := parseResponse(buf[:n])
		if ok && r.code == 200 && callIndex(r.callID, probePrefix, run) == 0 {
			return nil
		}
		if ok && r.code >= 300 {
			return errors.New("OPTIONS answered " + strings.TrimSpace(string(buf[:min(n, 40)])))
		}
	}
}

// quantile is the q-quantile (0..1) of ds by nearest rank; 0 when empty.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(q*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
