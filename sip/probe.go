package sip

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
)

// The prober sends OPTIONS to every pbx endpoint with a probe, as
// Kamailio's dispatcher does, and keeps whether each is up. The B2BUA asks
// Up before it rings an endpoint: a hunt skips a down one, and a route to
// a down endpoint alone is refused at once instead of waiting for a
// timeout while the caller hears nothing.
//
// An endpoint starts up (a restart must not refuse calls until probes have
// run) and goes down after probe.down_after failed probes in a row: no
// answer within probe.timeout, a transport error, 408, or a 5xx or 6xx
// (a PBX answering 503 says it takes no calls). Any other response proves
// the PBX is there, even 401, 404 or 405 to an OPTIONS it does not serve;
// probe.up_after of them in a row bring a down endpoint back.
type prober struct {
	s   *Server
	log *slog.Logger

	mu  sync.Mutex
	eps map[string]*probeState
	// wg holds the probes in flight; run waits for them before it returns.
	wg sync.WaitGroup
}

type probeState struct {
	up         bool
	since      time.Time // of the current state
	fails, oks int       // consecutive
	next       time.Time // when the next probe is due
	inFlight   bool
	lastAt     time.Time
	lastCode   int
	lastError  string
	probes     uint64
	failures   uint64
}

// EndpointHealth is what the probes say about one endpoint.
type EndpointHealth struct {
	Endpoint string `json:"endpoint"`
	Up       bool   `json:"up"`
	// Since is when the endpoint was last marked up or down (or first
	// probed).
	Since time.Time `json:"since"`
	// LastProbe is when the last probe ended; LastCode its response (0:
	// none) and LastError why it failed without one.
	LastProbe time.Time `json:"last_probe,omitzero"`
	LastCode  int       `json:"last_code,omitempty"`
	LastError string    `json:"last_error,omitempty"`
	// Probes and Failures count the probes sent and those that failed.
	Probes   uint64 `json:"probes"`
	Failures uint64 `json:"failures"`
}

// probeTick bounds the wait between two looks at the configuration, so
// that an endpoint a reload adds is probed within a second.
const probeTick = time.Second

func newProber(s *Server) *prober {
	return &prober{s: s, log: s.log, eps: make(map[string]*probeState)}
}

// run probes until ctx ends, then waits for the probes in flight.
func (p *prober) run(ctx context.Context) {
	defer p.wg.Wait()
	if !p.any() {
		// Most configurations probe nothing; look again only after a
		// reload could have changed that.
		if !p.idle(ctx) {
			return
		}
	}
	p.s.WaitUDPServing(ctx)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		t.Reset(p.tick(ctx, time.Now()))
	}
}

// idle waits until the configuration probes some endpoint (true) or ctx
// ends (false).
func (p *prober) idle(ctx context.Context) bool {
	t := time.NewTicker(probeTick)
	defer t.Stop()
	for !p.any() {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

func (p *prober) any() bool {
	for _, ep := range p.s.cfg.Load().Endpoints {
		if ep.Probe != nil && ep.Kind == configs.KindPBX {
			return true
		}
	}
	return false
}

// tick starts the probes that are due and returns how long to wait for
// the next one.
func (p *prober) tick(ctx context.Context, now time.Time) time.Duration {
	cfg := p.s.cfg.Load()
	wait := probeTick
	p.mu.Lock()
	defer p.mu.Unlock()
	probed := make(map[string]bool)
	for i := range cfg.Endpoints {
		ep := &cfg.Endpoints[i]
		if ep.Probe == nil || ep.Kind != configs.KindPBX || ep.Host == "" {
			continue
		}
		probed[ep.Name] = true
		st := p.eps[ep.Name]
		if st == nil {
			st = &probeState{up: true, since: now, next: now}
			p.eps[ep.Name] = st
		}
		if st.inFlight {
			continue
		}
		if d := st.next.Sub(now); d > 0 {
			wait = min(wait, d)
			continue
		}
		st.inFlight = true
		st.next = now.Add(ep.Probe.Interval.D())
		wait = min(wait, ep.Probe.Interval.D())
		req := p.options(cfg, ep)
		name, timeout := ep.Name, ep.Probe.Timeout.D()
		p.wg.Go(func() { p.probe(ctx, name, req, timeout) })
	}
	// An endpoint that lost its probe (or itself) in a reload is up again
	// for the B2BUA: nothing says otherwise any more.
	for name := range p.eps {
		if !probed[name] {
			delete(p.eps, name)
		}
	}
	return wait
}

// probe sends one OPTIONS and records what came of it.
func (p *prober) probe(ctx context.Context, name string, req *sip.Request, timeout time.Duration) {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := p.s.client.Do(pctx, req)
	if ctx.Err() != nil || p.s.draining.Load() {
		// Shutting down (the user agent may be closed): no verdict.
		p.mu.Lock()
		if st := p.eps[name]; st != nil {
			st.inFlight = false
		}
		p.mu.Unlock()
		return
	}
	code, why := 0, ""
	switch {
	case err != nil && errors.Is(err, context.DeadlineExceeded):
		why = "no answer within " + timeout.String()
	case err != nil:
		why = err.Error()
	case res == nil:
		why = "no answer"
	default:
		code = res.StatusCode
	}
	ok := code != 0 && code != 408 && code < 500
	if code != 0 && !ok {
		why = "answered " + itoa(code)
	}
	p.record(name, ok, code, why)
}

// record applies one probe's result to the endpoint's state.
func (p *prober) record(name string, ok bool, code int, why string) {
	cfg := p.s.cfg.Load()
	ep := cfg.Endpoint(name)
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.eps[name]
	if st == nil || ep == nil || ep.Probe == nil {
		return // reloaded away while the probe ran
	}
	now := time.Now()
	st.inFlight = false
	st.probes++
	st.lastAt, st.lastCode, st.lastError = now, code, why
	if ok {
		st.oks++
		st.fails = 0
		if !st.up && st.oks >= ep.Probe.UpAfter {
			st.up, st.since = true, now
			p.log.Info("endpoint up", "endpoint", name, "code", code, "probes_answered", st.oks)
		}
		return
	}
	st.failures++
	st.fails++
	st.oks = 0
	if st.up && st.fails >= ep.Probe.DownAfter {
		st.up, st.since = false, now
		p.log.Warn("endpoint down: hunts skip it and calls routed to it alone are refused", "endpoint", name,
			"failed_probes", st.fails, "why", why)
	}
}

// options is the probe of endpoint ep: an OPTIONS to its host and port,
// out of any dialog.
func (p *prober) options(cfg *configs.Config, ep *configs.Endpoint) *sip.Request {
	uri, dest := endpointURI(ep, "")
	req := sip.NewRequest(sip.OPTIONS, uri)
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "wagate", Host: cfg.SIP.Host}, Params: sip.NewParams()}
	from.Params.Add("tag", randomHex(8))
	req.AppendHeader(from)
	to := uri
	to.UriParams = nil
	req.AppendHeader(&sip.ToHeader{Address: to, Params: sip.NewParams()})
	cid := sip.CallIDHeader(randomHex(12) + "@wagate-probe")
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.OPTIONS})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	tr := strings.ToUpper(ep.Transport)
	req.AppendHeader(p.s.Contact(tr))
	req.AppendHeader(sip.NewHeader("User-Agent", cfg.SIP.UserAgent))
	req.AppendHeader(sip.NewHeader("Allow", allowedMethods))
	req.SetTransport(tr)
	if dest != "" {
		req.SetDestination(dest)
	}
	p.s.Prepare(req)
	return req
}

// up reports whether endpoint name may be rung: true unless its probes
// marked it down.
func (p *prober) up(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.eps[name]
	return st == nil || st.up
}

// health lists the probed endpoints by name.
func (p *prober) health() []EndpointHealth {
	p.mu.Lock()
	out := make([]EndpointHealth, 0, len(p.eps))
	for name, st := range p.eps {
		out = append(out, EndpointHealth{Endpoint: name, Up: st.up, Since: st.since, LastProbe: st.lastAt,
			LastCode: st.lastCode, LastError: st.lastError, Probes: st.probes, Failures: st.failures})
	}
	p.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Endpoint < out[j].Endpoint })
	return out
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
