package test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// Hunt lists, redirects, OPTIONS probes, business hours and blocklists
// (issue 14) through the real binary. Meta is SIPp; the agents are Go UAS
// peers (agent below) that answer each INVITE as a test tells them and
// note when each message came, so that failover latency can be measured.

// agentMode is how an agent answers an INVITE.
type agentMode int

const (
	agentAnswers  agentMode = iota // 180, then 200 with SDP after delay
	agentRings                     // 180 and never answers (CANCEL: 200 + 487)
	agentRefuses                   // the final response code
	agentRedirect                  // 302 to contact
	agentSilent                    // no response at all (a hung PBX)
)

// agentEvent is one request an agent received, or one final response it
// sent ("SIP/2.0 503").
type agentEvent struct {
	what, user, callID string
	at                 time.Time
}

// agentClockSlack is how much sooner than a ring time two agents' timestamps
// may say the next target rang. wagate starts a target's ring timer as it
// sends the INVITE, but an agent stamps a request when its reader goroutine
// gets it, which on a busy CI machine can lag by a millisecond or so (CI once
// saw 999.46 ms for a 1 s ring time). A hunt that ignored the ring time
// would ring the next target within milliseconds, far outside this slack.
const agentClockSlack = 50 * time.Millisecond

// parallelRingLimit is how far apart two targets of a parallel hunt may
// say they rang, not 200 ms. Each stamps the INVITE when its own reader
// goroutine gets it, so a machine that stalls one goroutine splits them
// (beside CPU hogs the suite saw whole calls stalled for a second). Rung
// one after the other, the second would ring only after the first's ring
// time (60 s here) or not at all.
const parallelRingLimit = time.Second

type agent struct {
	t       *testing.T
	name    string
	p       peer
	mode    agentMode
	code    int
	delay   time.Duration
	contact string
	// optionsCode answers OPTIONS (0: silence, a PBX that is gone).
	optionsCode int
	// answersCancelled: agentAnswers still sends its 200 after a CANCEL
	// (the 2xx crosses it) instead of 487.
	answersCancelled bool

	mu     sync.Mutex
	events []agentEvent
	invite map[string]string // Call-ID → its INVITE, for the 487
	final  map[string]bool   // Call-IDs answered with a final response
	seen   map[string]bool
}

// startAgent serves SIP at p until the test ends; set changes its
// settings (code, delay, contact, optionsCode) before it serves.
func startAgent(t *testing.T, name string, p peer, mode agentMode, set ...func(*agent)) *agent {
	t.Helper()
	a := &agent{t: t, name: name, p: p, mode: mode, code: 486, delay: 200 * time.Millisecond, optionsCode: 200,
		invite: map[string]string{}, final: map[string]bool{}, seen: map[string]bool{}}
	for _, f := range set {
		f(a)
	}
	startRawUAS(t, p.Addr(), a.handle)
	return a
}

func (a *agent) note(what, user, callID string) {
	a.mu.Lock()
	a.events = append(a.events, agentEvent{what: what, user: user, callID: callID, at: time.Now()})
	a.mu.Unlock()
}

// handle runs in the UAS goroutine, one datagram at a time.
func (a *agent) handle(msg string, reply func(string)) {
	line, _, _ := strings.Cut(msg, "\r\n")
	method, rest, _ := strings.Cut(line, " ")
	if method == "SIP/2.0" {
		return
	}
	user := ""
	if uri, _, ok := strings.Cut(rest, " "); ok {
		if u, _, ok := strings.Cut(strings.TrimPrefix(uri, "sip:"), "@"); ok {
			user = u
		}
	}
	callID := agentHeader(msg, "Call-ID")
	key := method + " " + callID + " " + agentHeader(msg, "CSeq")
	a.mu.Lock()
	retrans := a.seen[key]
	a.seen[key] = true
	a.mu.Unlock()
	if retrans && method == "INVITE" {
		return
	}
	if method != "OPTIONS" {
		a.note(method, user, callID)
	}
	respond := func(status string, extra []string, body string) {
		if !strings.HasPrefix(status, "1") {
			a.mu.Lock()
			done := a.final[callID]
			a.final[callID] = true
			a.mu.Unlock()
			if done && method == "INVITE" {
				return
			}
			if method == "INVITE" {
				a.note("SIP/2.0 "+status[:3], user, callID)
			}
		}
		reply(agentResponse(msg, status, a.name+"-tag", extra, body))
	}
	switch method {
	case "OPTIONS":
		if a.optionsCode != 0 {
			reply(agentResponse(msg, fmt.Sprintf("%d Probe Answer", a.optionsCode), "", nil, ""))
		}
	case "INVITE":
		a.mu.Lock()
		a.invite[callID] = msg
		a.mu.Unlock()
		switch a.mode {
		case agentAnswers:
			respond("180 Ringing", nil, "")
			time.AfterFunc(a.delay, func() {
				sdp := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
					a.p.IP, a.p.IP, a.p.MediaPort)
				respond("200 OK", []string{fmt.Sprintf("Contact: <sip:%s@%s>", user, a.p.Addr()), "Content-Type: application/sdp"}, sdp)
			})
		case agentRings:
			respond("180 Ringing", nil, "")
		case agentRefuses:
			respond(fmt.Sprintf("%d Refused", a.code), nil, "")
		case agentRedirect:
			respond("302 Moved Temporarily", []string{"Contact: " + a.contact}, "")
		case agentSilent:
		}
	case "CANCEL":
		reply(agentResponse(msg, "200 OK", a.name+"-tag", nil, ""))
		a.mu.Lock()
		inv := a.invite[callID]
		a.mu.Unlock()
		if inv != "" && !a.answersCancelled {
			msg, method = inv, "INVITE"
			respond("487 Request Terminated", nil, "")
		}
	case "BYE":
		reply(agentResponse(msg, "200 OK", a.name+"-tag", nil, ""))
	}
}

// got returns the agent's events of kind what ("INVITE", "CANCEL",
// "SIP/2.0 503", …).
func (a *agent) got(what string) []agentEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []agentEvent
	for _, e := range a.events {
		if e.what == what {
			out = append(out, e)
		}
	}
	return out
}

// one returns the agent's only event of kind what, waiting up to
// replyLimit for it: it must come, and returns as soon as it does (the
// event's time is the agent's stamp, not this wait's end).
func (a *agent) one(what string) agentEvent {
	a.t.Helper()
	deadline := time.Now().Add(replyLimit)
	for {
		evs := a.got(what)
		if len(evs) == 1 {
			return evs[0]
		}
		if len(evs) > 1 || time.Now().After(deadline) {
			a.t.Fatalf("agent %s: %d %s, want 1 (events %v)", a.name, len(evs), what, a.all())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (a *agent) all() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, e := range a.events {
		out = append(out, e.what+" "+e.user)
	}
	return out
}

// agentHeader is the value of header name (long form) in a raw message.
func agentHeader(msg, name string) string {
	for _, l := range strings.Split(msg, "\r\n") {
		if l == "" {
			break
		}
		k, v, ok := strings.Cut(l, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// agentResponse answers the raw request msg: its Via, From, To (with tag),
// Call-ID and CSeq, extra header lines and an optional body.
func agentResponse(msg, status, tag string, extra []string, body string) string {
	var b strings.Builder
	b.WriteString("SIP/2.0 " + status + "\r\n")
	for _, l := range strings.Split(msg, "\r\n") {
		if l == "" {
			break
		}
		name, _, _ := strings.Cut(l, ":")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "via", "v", "from", "f", "call-id", "i", "cseq":
			b.WriteString(l + "\r\n")
		case "to", "t":
			if tag != "" && !strings.Contains(l, ";tag=") {
				l += ";tag=" + tag
			}
			b.WriteString(l + "\r\n")
		}
	}
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	return b.String()
}

// pbxEndpoint is the YAML item of another pbx endpoint at p.
func pbxEndpoint(name string, p peer, extra string) string {
	return fmt.Sprintf("\n  - {name: %s, kind: pbx, host: %s, port: %d, transport: udp, source_cidrs: [%s/32], codecs: [PCMU, PCMA]%s}",
		name, p.IP, p.Port, p.IP, extra)
}

// huntCDR is the part of a CDR this file checks.
type huntCDR struct {
	A struct {
		SIPCallID string `json:"sip_call_id"`
	} `json:"a"`
	B struct {
		Endpoint  string `json:"endpoint"`
		User      string `json:"user"`
		SIPCallID string `json:"sip_call_id"`
	} `json:"b"`
	SIPCode    int    `json:"sip_code"`
	Outcome    string `json:"outcome"`
	Cause      string `json:"cause"`
	User       string `json:"user"`
	Hunt       string `json:"hunt"`
	AfterHours bool   `json:"after_hours"`
	Attempts   []struct {
		Endpoint  string `json:"endpoint"`
		User      string `json:"user"`
		SIPCallID string `json:"sip_call_id"`
		SIPCode   int    `json:"sip_code"`
		Result    string `json:"result"`
	} `json:"attempts"`
}

// huntCDRs waits for n CDRs and returns them by A-leg Call-ID.
func huntCDRs(t *testing.T, e *env, n int) map[string]huntCDR {
	t.Helper()
	out := map[string]huntCDR{}
	for _, c := range waitCDRs(t, e, n) {
		var h huntCDR
		if err := json.Unmarshal(c.raw, &h); err != nil {
			t.Fatal(err)
		}
		out[h.A.SIPCallID] = h
	}
	return out
}

func (c huntCDR) attempts() string {
	var out []string
	for _, a := range c.Attempts {
		out = append(out, fmt.Sprintf("%s@%s:%s:%d", a.User, a.Endpoint, a.Result, a.SIPCode))
	}
	return strings.Join(out, " ")
}

// holdArgs are uac.xml's arguments for a call held ms milliseconds.
func holdArgs(ms int) []string {
	return callArgs(businessNumber, waUser, "-d", fmt.Sprint(ms))
}

// TestHuntSequentialFailover: a sequential hunt over three agents: the
// first answers 503, the second rings past its own ring time and is
// cancelled, the third answers. Each rings as soon as the one before has
// failed; the call is connected to the third, who gets the BYE; the CDR
// names it and every attempt. The failover latencies are logged.
func TestHuntSequentialFailover(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p2, p3 := e.newPeer("pbx2", 5), e.newPeer("pbx3", 6)
	a1 := startAgent(t, "a1", e.PBX, agentRefuses, func(a *agent) { a.code = 503 })
	a2 := startAgent(t, "a2", p2, agentRings)
	a3 := startAgent(t, "a3", p3, agentAnswers)
	w := e.startWagate(wagateOpts{APIExtra: tokenAPI, Route: "{hunt: agents}",
		EndpointsExtra: pbxEndpoint("pbx2", p2, "") + pbxEndpoint("pbx3", p3, ""),
		Extra: `hunt_lists:
  - name: agents
    targets:
      - {endpoint: pbx, user: "1001"}
      - {endpoint: pbx2, user: "2001", ring_timeout: 1s}
      - {endpoint: pbx3, user: "3001"}`})

	meta := e.runSipp(sippSpec{Name: "meta", Scenario: "uac.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1, Args: holdArgs(500)})
	failed := a1.one("SIP/2.0 503")
	inv2 := a2.one("INVITE")
	a2.one("CANCEL")
	inv3 := a3.one("INVITE")
	a3.one("ACK")
	a3.one("BYE")
	if inv2.user != "2001" || inv3.user != "3001" || inv2.callID == inv3.callID || inv2.callID == failed.callID {
		t.Errorf("INVITEs %+v %+v: want users 2001 and 3001, each its own Call-ID", inv2, inv3)
	}
	t.Logf("failover latency: 503 from the first agent → INVITE at the second: %v", inv2.at.Sub(failed.at))
	t.Logf("failover latency: ring timeout (1s) of the second → INVITE at the third: %v", inv3.at.Sub(inv2.at)-time.Second)
	if d := inv3.at.Sub(inv2.at); d < time.Second-agentClockSlack {
		t.Errorf("the third agent rang %v after the second, before its 1s ring time", d)
	}
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
	c := huntCDRs(t, e, 1)[sippCallID(t, meta)]
	if c.Outcome != "answered" || c.B.Endpoint != "pbx3" || c.B.User != "3001" || c.B.SIPCallID != inv3.callID || c.Hunt != "agents" {
		t.Errorf("CDR %+v: want answered by 3001 at pbx3 on %s, hunt agents", c, inv3.callID)
	}
	if got, want := c.attempts(), "1001@pbx:failed:503 2001@pbx2:no_answer:0 3001@pbx3:answered:200"; got != want {
		t.Errorf("CDR attempts %s, want %s", got, want)
	}
}

// TestHuntSilentTarget: a target that never answers the INVITE at all
// (not even 100) holds the hunt only for its own ring time: the next
// target rings then, and the silent one gets no CANCEL (RFC 3261 §9.1:
// nothing to cancel before a provisional response).
func TestHuntSilentTarget(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p2 := e.newPeer("pbx2", 5)
	a1 := startAgent(t, "a1", e.PBX, agentAnswers)
	a2 := startAgent(t, "a2", p2, agentSilent)
	w := e.startWagate(wagateOpts{APIExtra: tokenAPI, Route: "{hunt: agents}", EndpointsExtra: pbxEndpoint("pbx2", p2, ""),
		Extra: `hunt_lists: [{name: agents, targets: [{endpoint: pbx2, user: "2001", ring_timeout: 1s}, {endpoint: pbx, user: "1001"}]}]`})

	meta := e.runSipp(sippSpec{Name: "meta", Scenario: "uac.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1, Args: holdArgs(300)})
	inv2 := a2.one("INVITE")
	inv1 := a1.one("INVITE")
	a1.one("BYE")
	d := inv1.at.Sub(inv2.at)
	t.Logf("failover latency: ring timeout (1s) of the silent target → INVITE at the next: %v", d-time.Second)
	if d < time.Second-agentClockSlack || d > 3*time.Second {
		t.Errorf("the next target rang %v after the silent one, want just after its 1s ring time", d)
	}
	if n := len(a2.got("CANCEL")); n != 0 {
		t.Errorf("the silent target got %d CANCEL before any provisional response", n)
	}
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
	c := huntCDRs(t, e, 1)[sippCallID(t, meta)]
	if got, want := c.attempts(), "2001@pbx2:no_answer:0 1001@pbx:answered:200"; c.Outcome != "answered" || got != want {
		t.Errorf("CDR outcome %s attempts %s, want answered, %s", c.Outcome, got, want)
	}
}

// TestHuntParallel: every target rings at once; the first 2xx wins and the
// other target gets CANCEL.
func TestHuntParallel(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p2 := e.newPeer("pbx2", 5)
	a1 := startAgent(t, "a1", e.PBX, agentRings)
	a2 := startAgent(t, "a2", p2, agentAnswers, func(a *agent) { a.delay = 300 * time.Millisecond })
	w := e.startWagate(wagateOpts{Route: "{hunt: all}", EndpointsExtra: pbxEndpoint("pbx2", p2, ""),
		Extra: `hunt_lists: [{name: all, strategy: parallel, targets: [{endpoint: pbx, user: "1001"}, {endpoint: pbx2, user: "2001"}]}]`})

	meta := e.runSipp(sippSpec{Name: "meta", Scenario: "uac.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1, Args: holdArgs(300)})
	i1, i2 := a1.one("INVITE"), a2.one("INVITE")
	if d := i2.at.Sub(i1.at); d > parallelRingLimit || d < -parallelRingLimit {
		t.Errorf("the targets rang %v apart, want at once", d)
	}
	a1.one("CANCEL")
	a1.one("SIP/2.0 487")
	a2.one("BYE")
	if n := len(a1.got("BYE")); n != 0 {
		t.Errorf("the losing target got %d BYE", n)
	}
	var ringing int
	for _, m := range meta.messages() {
		if !m.Sent && strings.HasPrefix(m.StartLine(), "SIP/2.0 18") {
			ringing++
		}
	}
	if ringing != 1 {
		t.Errorf("Meta got %d ringing responses, want 1 for the whole hunt", ringing)
	}
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}

// TestHuntFailsEverywhere: every target fails (one busy, one rings out);
// Meta gets the last meaningful code: the busy agent's 486, not wagate's
// ring timeout, and never a hang.
func TestHuntFailsEverywhere(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p2 := e.newPeer("pbx2", 5)
	startAgent(t, "a1", e.PBX, agentRefuses) // 486
	a2 := startAgent(t, "a2", p2, agentRings)
	w := e.startWagate(wagateOpts{APIExtra: tokenAPI, Route: "{hunt: agents}", EndpointsExtra: pbxEndpoint("pbx2", p2, ""),
		Extra: `hunt_lists: [{name: agents, ring_timeout: 1s, targets: [{endpoint: pbx, user: "1001"}, {endpoint: pbx2, user: "2001"}]}]`})

	start := time.Now()
	meta := e.runSipp(sippSpec{Name: "meta", Scenario: "uac_expect.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1,
		Args: expectArgs(businessNumber, waUser, "486")})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the failed hunt took %v", d)
	}
	a2.one("CANCEL")
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
	c := huntCDRs(t, e, 1)[sippCallID(t, meta)]
	if c.SIPCode != 486 || c.Outcome != "busy" || c.attempts() != "1001@pbx:busy:486 2001@pbx2:no_answer:0" {
		t.Errorf("CDR code %d outcome %s attempts %s", c.SIPCode, c.Outcome, c.attempts())
	}
}

// TestHuntSkipsDownEndpoint: an endpoint whose OPTIONS go unanswered is
// marked down (status, metric) and never INVITEd by a hunt; a route to it
// alone is refused at once with 503.
func TestHuntSkipsDownEndpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p2 := e.newPeer("pbx2", 5)
	a1 := startAgent(t, "a1", e.PBX, agentAnswers)
	a2 := startAgent(t, "a2", p2, agentAnswers, func(a *agent) { a.optionsCode = 0 }) // gone: probes time out
	probe := ", probe: {interval: 200ms, timeout: 150ms, down_after: 2, up_after: 1}"
	waitDown := func(w *wagate) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			s := w.status()
			if len(s.Endpoints) == 1 && s.Endpoints[0].Endpoint == "pbx2" && !s.Endpoints[0].Up {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("pbx2 not marked down: %+v", s.Endpoints)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	t.Run("hunt", func(t *testing.T) {
		w := e.startWagate(wagateOpts{Route: "{hunt: agents}", EndpointsExtra: pbxEndpoint("pbx2", p2, probe),
			Extra: `hunt_lists: [{name: agents, targets: [{endpoint: pbx2, user: "2001"}, {endpoint: pbx, user: "1001"}]}]`})
		waitDown(w)
		if v, ok := metricValue(scrapeMetrics(t, e), "wagate_endpoint_up", `endpoint="pbx2"`); !ok || v != 0 {
			t.Errorf("wagate_endpoint_up{endpoint=\"pbx2\"} = %v (found %v), want 0", v, ok)
		}
		start := time.Now()
		e.runSipp(sippSpec{Name: "meta", Scenario: "uac.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1, Args: holdArgs(200)})
		inv := a1.one("INVITE")
		t.Logf("down target skipped: INVITE at the next target %v after the call started", inv.at.Sub(start))
		a1.one("BYE")
		if n := len(a2.got("INVITE")); n != 0 {
			t.Errorf("the down endpoint got %d INVITEs", n)
		}
		s := w.waitIdle()
		w.expectCounts(s, 1, 1)
		w.terminate()
	})
	t.Run("single route", func(t *testing.T) {
		w := e.startWagate(wagateOpts{Route: `{endpoint: pbx2, user: "2001"}`, EndpointsExtra: pbxEndpoint("pbx2", p2, probe)})
		waitDown(w)
		start := time.Now()
		e.runSipp(sippSpec{Name: "meta-single", Scenario: "uac_expect.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1,
			Args: expectArgs(businessNumber, waUser, "503")})
		// The time includes starting SIPp, which a loaded machine can
		// stretch to a second or more. A route that tried the down
		// endpoint is caught by its INVITE count below (it answers
		// INVITEs; only its OPTIONS go unanswered); a refusal that waited
		// for something (a probe, the ring time) takes seconds more.
		t.Logf("route to the down endpoint alone: 503 %v after SIPp was started", time.Since(start).Round(time.Millisecond))
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("503 after %v, want at once", d)
		}
		if n := len(a2.got("INVITE")); n != 0 {
			t.Errorf("the down endpoint got %d INVITEs", n)
		}
		s := w.waitIdle()
		w.expectCounts(s, 0, 0)
	})
}

// TestRedirect: a 302 from a pbx with follow_redirects rings the Contact
// when it is a configured pbx endpoint; a 302 to any other host is never
// dialled: Meta gets 480 and nothing reaches that host.
func TestRedirect(t *testing.T) {
	t.Parallel()
	t.Run("to a configured endpoint", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		p2 := e.newPeer("pbx2", 5)
		startAgent(t, "a1", e.PBX, agentRedirect, func(a *agent) { a.contact = fmt.Sprintf("<sip:2001@%s>", p2.Addr()) })
		a2 := startAgent(t, "a2", p2, agentAnswers)
		w := e.startWagate(wagateOpts{PBXExtra: ", follow_redirects: true", EndpointsExtra: pbxEndpoint("pbx2", p2, "")})
		e.runSipp(sippSpec{Name: "meta", Scenario: "uac.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1, Args: holdArgs(200)})
		if inv := a2.one("INVITE"); inv.user != "2001" {
			t.Errorf("the redirect target got an INVITE for %q, want 2001", inv.user)
		}
		a2.one("BYE")
		s := w.waitIdle()
		w.expectCounts(s, 1, 1)
	})
	t.Run("to a stranger", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		stranger := listenUDP(t, e.Stranger.Addr())
		startAgent(t, "a1", e.PBX, agentRedirect, func(a *agent) { a.contact = fmt.Sprintf("<sip:+442079460000@%s>", e.Stranger.Addr()) })
		w := e.startWagate(wagateOpts{PBXExtra: ", follow_redirects: true"})
		e.runSipp(sippSpec{Name: "meta", Scenario: "uac_expect.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1,
			Args: expectArgs(businessNumber, waUser, "480")})
		stranger.expectSilence(t, "the host the 302 named", 500*time.Millisecond)
		s := w.waitIdle()
		w.expectCounts(s, 1, 1)
	})
}

// TestBusinessHours: with the clock injected (WAGATE_FAKE_NOW), a call in
// hours rings the route, one after hours the after-hours route.
func TestBusinessHours(t *testing.T) {
	t.Parallel()
	hours := `, hours: {timezone: Europe/London, weekly: [{days: [mon-fri], from: "09:00", to: "17:00"}], after_hours: {endpoint: pbx2, user: "9000"}}`
	for _, tc := range []struct {
		name, now string
		wantDay   bool
	}{
		{"monday 10:00 London", "2025-06-02T10:00:00+01:00", true},
		{"monday 20:00 London", "2025-06-02T19:00:00Z", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			p2 := e.newPeer("pbx2", 5)
			day := startAgent(t, "day", e.PBX, agentAnswers)
			night := startAgent(t, "night", p2, agentAnswers)
			w := e.startWagate(wagateOpts{APIExtra: tokenAPI, NumberExtra: hours, EndpointsExtra: pbxEndpoint("pbx2", p2, ""),
				Env: []string{"WAGATE_FAKE_NOW=" + tc.now}})
			meta := e.runSipp(sippSpec{Name: "meta", Scenario: "uac.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1, Args: holdArgs(200)})
			rang, quiet := day, night
			if !tc.wantDay {
				rang, quiet = night, day
			}
			inv := rang.one("INVITE")
			if want := map[bool]string{true: routeUser, false: "9000"}[tc.wantDay]; inv.user != want {
				t.Errorf("INVITE for %s, want %s", inv.user, want)
			}
			if n := len(quiet.got("INVITE")); n != 0 {
				t.Errorf("agent %s got %d INVITEs", quiet.name, n)
			}
			s := w.waitIdle()
			w.expectCounts(s, 1, 1)
			if c := huntCDRs(t, e, 1)[sippCallID(t, meta)]; c.AfterHours == tc.wantDay {
				t.Errorf("CDR after_hours = %v", c.AfterHours)
			}
		})
	}
}

// TestBlocklist: a caller on the global blocklist gets 603, a business-
// scoped user id on the number's list its 403, before any B-leg; others
// get through. The refused calls are recorded with the caller.
func TestBlocklist(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a1 := startAgent(t, "a1", e.PBX, agentAnswers)
	w := e.startWagate(wagateOpts{APIExtra: tokenAPI,
		NumberExtra: `, blocklist: {callers: ["US.13491208655302741918"], code: 403}`,
		Extra:       `blocklist: {callers: ["+447700900666"]}`})
	blocked := e.runSipp(sippSpec{Name: "blocked", Scenario: "uac_expect.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1,
		Args: expectArgs(businessNumber, "+447700900666", "603")})
	bsuid := e.runSipp(sippSpec{Name: "bsuid", Scenario: "uac_expect.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1,
		Args: expectArgs(businessNumber, "US.13491208655302741918", "403")})
	if n := len(a1.got("INVITE")); n != 0 {
		t.Fatalf("the PBX got %d INVITEs from blocked callers", n)
	}
	e.runSipp(sippSpec{Name: "meta", Scenario: "uac.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1, Args: holdArgs(200)})
	a1.one("INVITE")
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
	cdrs := huntCDRs(t, e, 3)
	for _, tc := range []struct {
		p    *sippProc
		code int
		user string
	}{{blocked, 603, "+447700900666"}, {bsuid, 403, "US.13491208655302741918"}} {
		c := cdrs[sippCallID(t, tc.p)]
		if c.Outcome != "refused" || c.SIPCode != tc.code || c.Cause != "caller blocklisted" || c.User != tc.user {
			t.Errorf("CDR of %s: %+v", tc.user, c)
		}
	}
}
