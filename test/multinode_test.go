package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMultiNodeDailyCapExact: 100 connected calls per user per 24 h hold
// exactly across three nodes behind Kamailio under concurrent SIPp load
// (the cap is 10 here to keep the test short; the rule is the same): every
// user gets exactly 10 connected calls wherever they land, the calls over
// the cap are refused with 403 and X-WABA-Error 138012, and the next call
// to each node is refused too.
func TestMultiNodeDailyCapExact(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, "connected_calls_per_user_24h: 10")
	users := []string{"+447700900101", "+447700900102", "+447700900103"}
	for _, u := range users {
		c.nodes[0].grant(t, u, "permanent")
	}
	c.startKamailio()
	const calls = 150
	meta := c.e.startSipp(sippSpec{Name: "meta", Scenario: "uas.xml", Peer: c.e.Meta, Calls: 10 * len(users), NoTrace: true})
	inf := c.usersFile("users.csv", users)
	d := c.e.runSipp(withNoTrace(c.dialSpec("dialer", inf, calls, "-r", "50", "-l", "9", "-d", "50")))
	meta.requireOK()
	got := outcomes(d)
	if len(got) != calls {
		t.Fatalf("%d outcomes logged, want %d", len(got), calls)
	}
	per := map[string]int{}
	for _, o := range got {
		switch {
		case o.code == "200":
			per[o.user]++
		case o.code == "403" && o.wabaError == "138012", o.code == "486" && o.wabaError == "138003":
		default:
			t.Errorf("call to %s: %s %s", o.user, o.code, o.wabaError)
		}
	}
	for _, u := range users {
		if per[u] != 10 {
			t.Errorf("%s got %d connected calls, want exactly 10 (across 3 nodes)", u, per[u])
		}
	}
	t.Logf("outcomes: %v", countBy(got))
	for _, nd := range c.nodes {
		if nd.started(t) == 0 {
			t.Errorf("%s took no call: Kamailio did not spread the load", nd.id)
		}
	}
	// The 11th connected call is refused wherever it lands.
	for _, nd := range c.nodes {
		res := expectDialerRejectedAt(t, nd, "over_"+nd.id, users[0], "403")
		checkRejection(t, res, "403", "Business Initiated Connected Call Per Day Limit Hit", "", "138012")
	}
}

func withNoTrace(s sippSpec) sippSpec { s.NoTrace = true; return s }

// expectDialerRejectedAt places one BIC straight at node nd (the dialer's
// own address is a dialer source too) and expects code.
func expectDialerRejectedAt(t *testing.T, nd *node, name, user, code string) sipMsg {
	t.Helper()
	d := nd.e.runSipp(sippSpec{Name: name, Scenario: "bic_dialer_expect.xml", Peer: nd.e.Dialer, Remote: nd.w.SIPAddr, Calls: 1,
		Args: append(bicArgs(user, phoneNumberID, businessNumber), "-key", "expect_code", code)})
	res, ok := findMsg(d.messages(), false, "SIP/2.0 "+code)
	if !ok {
		t.Fatalf("%s: no %s received", name, code)
	}
	return res
}

// TestMultiNodeGrantShared: a grant through node 1's API, and one through
// node 1's webhook, are honoured by node 2; a revocation on node 2 is
// honoured by node 1.
func TestMultiNodeGrantShared(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2, "")
	n1, n2 := c.nodes[0], c.nodes[1]
	byAPI, byHook := "+447700900201", "+447700900202"
	n1.grant(t, byAPI, "temporary")
	if code := postWebhook(t, n1.apiURL(), replyJSON("wamid.shared1", strings.TrimPrefix(byHook, "+"), "", "accept", true, time.Now().Unix())); code != 200 {
		t.Fatalf("webhook: %d", code)
	}
	meta := c.e.startSipp(sippSpec{Name: "meta", Scenario: "uas.xml", Peer: c.e.Meta, Calls: 2})
	for _, u := range []string{byAPI, byHook} {
		n2.e.runSipp(sippSpec{Name: "dialer_" + u[1:], Scenario: "bic_dialer.xml", Peer: c.e.Dialer, Remote: n2.w.SIPAddr, Calls: 1,
			Args: bicArgs(u, phoneNumberID, businessNumber, "-d", "100")})
	}
	meta.requireOK()
	if d, ok := getPermission(t, n2.apiURL(), byAPI); !ok || d.Status != "temporary" || d.ConnectedCalls24h != 1 {
		t.Errorf("node 2 sees %+v", d)
	}
	if code, body := apiCall(t, http.MethodDelete, n2.apiURL()+"/v1/permissions/"+phoneNumberID+"/"+byHook, ""); code != 200 {
		t.Fatalf("revoke on node 2: %d %s", code, body)
	}
	res := expectDialerRejectedAt(t, n1, "revoked_on_n1", byHook, "403")
	checkRejection(t, res, "403", "No Approved Call Permission Found", "", "138006")
}

// TestMultiNodeConcurrencyCapExact: the per-number cap on calls up at once
// holds exactly across three nodes: a burst of calls to distinct users,
// held long, spread by Kamailio, gets exactly cap answers and 503 138002
// for the rest.
func TestMultiNodeConcurrencyCapExact(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, "concurrent_calls_per_number: 3")
	var users []string
	for i := range 12 {
		u := fmt.Sprintf("+4477009003%02d", i)
		users = append(users, u)
		c.nodes[i%3].grant(t, u, "permanent")
	}
	c.startKamailio()
	meta := c.e.startSipp(sippSpec{Name: "meta", Scenario: "uas.xml", Peer: c.e.Meta, Calls: 3, NoTrace: true})
	d := c.e.runSipp(withNoTrace(c.dialSpec("dialer", c.usersFile("users.csv", users), len(users), "-r", "100", "-l", "12", "-d", "2500")))
	meta.requireOK()
	got := countBy(outcomes(d))
	if got["200"] != 3 || got["503/138002"] != 9 || len(got) != 2 {
		t.Errorf("outcomes %v, want exactly 3 answered and 9 × 503/138002", got)
	}
	spread := 0
	for _, nd := range c.nodes {
		if nd.started(t) > 0 {
			spread++
		}
	}
	if spread < 2 {
		t.Errorf("answered calls on %d node(s): the cap was not tested across nodes", spread)
	}
}

// TestMultiNodeKill9: a node killed with SIGKILL while holding calls.
// Grants made through it are not lost; the concurrency slots of its dead
// calls come free within permissions.redis.slot_ttl; Kamailio's probes
// take it out, so new calls go to the other nodes; restarted with its id,
// it takes calls again.
func TestMultiNodeKill9(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, "concurrent_calls_per_number: 2")
	victim := c.nodes[2]
	var users []string
	for i := range 10 {
		u := fmt.Sprintf("+4477009004%02d", i)
		users = append(users, u)
		victim.grant(t, u, "permanent") // through the node that will die
	}
	c.startKamailio()
	meta := c.e.startSipp(sippSpec{Name: "meta", Scenario: "uas.xml", Peer: c.e.Meta, Calls: 1000, NoTrace: true})
	_ = meta

	// Two long calls held on the victim: the number's two slots.
	holder := c.e.newPeer("dialer2", 7)
	c.e.startSipp(sippSpec{Name: "hold", Scenario: "bic_dialer_multi.xml", Peer: holder, Remote: victim.w.SIPAddr, Calls: 2, NoTrace: true,
		Args: []string{"-inf", c.usersFile("hold.csv", users[:2]), "-key", "from_user", "agent42", "-key", "pnid", phoneNumberID,
			"-key", "bnum", businessNumber, "-d", "60000", "-r", "10"}})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s, err := victim.w.tryStatus(); err == nil && s.Calls == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the victim never held its two calls")
		}
		time.Sleep(50 * time.Millisecond)
	}
	victim.w.kill()
	killed := time.Now()
	kamLogAtKill := fileSize(c.kam.logPath)

	// One call at a time through Kamailio until one is answered: before
	// the dead node's slots expire the number is full (503 138002). What
	// is bounded is when the last refused call was placed, not when the
	// first answered one ended: each try is a SIPp run (its start-up, the
	// call through Kamailio) that a loaded machine can stretch to a second
	// or more, while a call placed after slot_ttl that still finds the
	// number full is the bug. The victim's last heartbeat was before the
	// kill, so its instance key (and with it its slots) is gone by
	// killed+slot_ttl; slotExpirySlack is only for the clocks read.
	const slotExpirySlack = 250 * time.Millisecond
	ttl, err := time.ParseDuration(slotTTL)
	if err != nil {
		t.Fatal(err)
	}
	var first, lastFull time.Duration
	for i := 0; first == 0; i++ {
		if time.Since(killed) > 8*time.Second {
			t.Fatal("no call answered 8 s after the kill: the dead node's slots were never freed")
		}
		placed := time.Since(killed)
		d := c.e.runSipp(withNoTrace(c.dialSpec(fmt.Sprintf("probe%d", i), c.usersFile(fmt.Sprintf("p%d.csv", i), users[2+i%4:3+i%4]), 1, "-d", "50")))
		for _, o := range outcomes(d) {
			switch {
			case o.code == "200":
				first = time.Since(killed)
			case o.code == "503" && o.wabaError == "138002":
				lastFull = placed
			default:
				t.Errorf("call %d after the kill: %s %s", i, o.code, o.wabaError)
			}
		}
		if first == 0 {
			time.Sleep(200 * time.Millisecond)
		}
	}
	t.Logf("first call answered %v after the kill; the last refused for the dead node's slots was placed %v after it (slot_ttl %s)", first, lastFull, slotTTL)
	if lastFull > ttl+slotExpirySlack {
		t.Errorf("a call placed %v after the kill still found the dead node's slots held, beyond slot_ttl %s", lastFull, slotTTL)
	}

	// By now the probes took the victim out: a burst of calls goes to the
	// other nodes without Kamailio trying the dead one.
	time.Sleep(time.Until(killed.Add(time.Duration(2*probeInterval)*time.Second + 500*time.Millisecond)))
	mark := fileSize(c.kam.logPath)
	d := c.e.runSipp(withNoTrace(c.dialSpec("after", c.usersFile("after.csv", users[2:8]), 6, "-r", "10", "-l", "2", "-d", "50")))
	if got := countBy(outcomes(d)); got["200"] != 6 {
		t.Errorf("calls after the probes: %v, want 6 answered", got)
	}
	if tried := kamLogSince(t, c.kam.logPath, mark); strings.Contains(tried, victim.w.SIPAddr) {
		t.Errorf("Kamailio still tried the dead node %v after the kill:\n%s", time.Since(killed), tried)
	}
	_ = kamLogAtKill

	// Nothing granted through the dead node is lost; it comes back.
	for _, u := range users {
		if p, ok := getPermission(t, c.nodes[0].apiURL(), u); !ok || p.Status != "permanent" {
			t.Errorf("grant of %s made through the dead node: %+v %v", u, p, ok)
		}
	}
	c.restartNode(victim)
	time.Sleep(time.Duration(probeInterval)*time.Second + 500*time.Millisecond)
	before := victim.started(t)
	c.e.runSipp(withNoTrace(c.dialSpec("back", c.usersFile("back.csv", users[2:8]), 6, "-r", "10", "-l", "1", "-d", "50")))
	if victim.started(t) == before {
		t.Error("the restarted node took no call: Kamailio did not put it back")
	}
}

func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}

// kamLogSince is what Kamailio logged after offset.
func kamLogSince(t *testing.T, p string, offset int64) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	var out []string
	for _, l := range strings.Split(string(b[offset:]), "\n") {
		if strings.Contains(l, "failed") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestMultiNodeDrain: SIGTERM on a node under load: it answers Kamailio's
// probes with 503, is taken out, finishes its calls and exits; the new
// calls it refuses meanwhile are retried on the others, so the dialer sees
// zero failed calls.
func TestMultiNodeDrain(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, "")
	const calls = 60
	// A user per call: a WhatsApp user on a call is busy (486/138003) for
	// the next. With 20 users reused every second, a machine stalled for a
	// second kept three 400 ms calls up past their user's next call.
	var users []string
	for i := range calls {
		u := fmt.Sprintf("+4477009005%02d", i)
		users = append(users, u)
		c.nodes[0].grant(t, u, "permanent")
	}
	c.startKamailio()
	c.e.startSipp(sippSpec{Name: "meta", Scenario: "uas.xml", Peer: c.e.Meta, Calls: 1000, NoTrace: true})
	load := c.e.startSipp(withNoTrace(c.dialSpec("dialer", c.usersFile("users.csv", users), calls, "-r", "20", "-l", "20", "-d", "400")))
	// A second into the load, and once the node has taken a call (a
	// loaded machine may take longer to get one there), so that it is
	// drained with calls up and more coming.
	time.Sleep(time.Second)
	drained := c.nodes[1]
	for deadline := time.Now().Add(10 * time.Second); drained.started(t) == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the node to drain took no call in 11 s of load")
		}
	}
	drained.w.drain()
	load.requireOK()
	got := countBy(outcomes(load))
	if got["200"] != calls {
		t.Errorf("outcomes %v, want all %d answered", got, calls)
	}
	select {
	case <-drained.w.exited:
		if drained.w.waitErr != nil {
			t.Errorf("drained node exited with %v", drained.w.waitErr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("drained node still running 15 s after SIGTERM")
	}
	if n := startedAfterDraining(t, drained.w.logPath); n > 0 {
		t.Errorf("drained node started %d calls after SIGTERM", n)
	}
	for _, nd := range []*node{c.nodes[0], c.nodes[2]} {
		if nd.started(t) == 0 {
			t.Errorf("%s took no call", nd.id)
		}
	}
}

// startedAfterDraining counts the calls a node logged as started once it
// logged "draining". wagate stops admitting before it logs that line and
// checks again after the permission gate, so only a call that passed that
// last check an instant before can still log its start after it: 50 ms
// is allowed for such a goroutine being descheduled on a loaded machine,
// far less than the 150 ms between the load's INVITEs to one node.
func startedAfterDraining(t *testing.T, logPath string) int {
	t.Helper()
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	var drainedAt time.Time
	n := 0
	for _, l := range bytes.Split(b, []byte("\n")) {
		var line struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if json.Unmarshal(l, &line) != nil {
			continue
		}
		switch {
		case line.Msg == "draining":
			drainedAt = line.Time
		case line.Msg == "call started" && !drainedAt.IsZero() && line.Time.Sub(drainedAt) > 50*time.Millisecond:
			n++
		}
	}
	if drainedAt.IsZero() {
		t.Error("drained node never logged draining")
	}
	return n
}

// TestMultiNodeRedisDown: Redis killed with SIGKILL and restarted. While
// it is down a node with on_down refuse answers BICs 503 and a node with
// on_down cache admits a pair it saw, both saying so in logs and
// /v1/status; the grant made before is there after the restart (AOF), and
// the call admitted from the cache is written back.
func TestMultiNodeRedisDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := &cluster{t: t, e: e, onDownFor: map[string]string{"node2": "cache"}}
	c.redis = startRedis(t, e.ip(20), e.dir+"/redis")
	c.addNode(1)
	c.addNode(2)
	refuse, cache := c.nodes[0], c.nodes[1]
	u := "+447700900601"
	refuse.grant(t, u, "permanent")
	meta := e.startSipp(sippSpec{Name: "meta", Scenario: "uas.xml", Peer: e.Meta, Calls: 3, NoTrace: true})
	call := func(nd *node, name string) {
		nd.e.runSipp(sippSpec{Name: name, Scenario: "bic_dialer.xml", Peer: e.Dialer, Remote: nd.w.SIPAddr, Calls: 1,
			Args: bicArgs(u, phoneNumberID, businessNumber, "-d", "50")})
	}
	call(cache, "seen") // the cache node learns the pair

	c.redis.kill()
	res := expectDialerRejectedAt(t, refuse, "down_refused", u, "503")
	if res.Header("X-WABA-Error") != "" || res.Header("Retry-After") == "" {
		t.Errorf("503 while Redis is down: X-WABA-Error %q Retry-After %q", res.Header("X-WABA-Error"), res.Header("Retry-After"))
	}
	call(cache, "from_cache")
	if s := refuse.w.status(); s.Permissions == nil || s.Permissions.Up || s.Permissions.RefusedUnavailable == 0 {
		t.Errorf("refusing node's status while Redis is down: %+v", s.Permissions)
	}
	if s := cache.w.status(); s.Permissions == nil || s.Permissions.AdmittedFromCache != 1 || s.Permissions.PendingOutcomes == 0 {
		t.Errorf("caching node's status while Redis is down: %+v", s.Permissions)
	}
	for _, nd := range c.nodes {
		if log, _ := os.ReadFile(nd.w.logPath); !bytes.Contains(log, []byte("redis unreachable")) {
			t.Errorf("%s did not log that Redis is unreachable", nd.id)
		}
	}

	c.redis.start()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s1, s2 := refuse.w.status(), cache.w.status()
		if s1.Permissions.Up && s2.Permissions.Up && s2.Permissions.PendingOutcomes == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not back 10 s after Redis restarted: %+v %+v", s1.Permissions, s2.Permissions)
		}
		time.Sleep(100 * time.Millisecond)
	}
	p, ok := getPermission(t, refuse.apiURL(), u)
	if !ok || p.Status != "permanent" || p.ConnectedCalls24h != 2 {
		t.Errorf("after the Redis restart: %+v %v, want the grant and 2 connected calls (one written back)", p, ok)
	}
	call(refuse, "after")
	meta.requireOK()
}

// TestMultiNodeDuplicateNodeID: a second node started with a running
// node's id, or on a running node's data_dir, stops at start with an error
// that says so, and the running node keeps its calls.
func TestMultiNodeDuplicateNodeID(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, "")
	n1 := c.nodes[0]

	// Another address and directory, the same node_id.
	twin := *c.e
	twin.WagateIP = c.e.ip(15)
	twin.SIPPort = freeTCPUDPPort(t, twin.WagateIP)
	twin.APIPort = freeTCPPort(t, twin.WagateIP)
	twin.dir = filepath.Join(c.e.dir, "twin")
	if err := os.MkdirAll(twin.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out := runToExit(t, &twin, c.nodeOpts(n1.id), 10*time.Second)
	if !strings.Contains(out, "is held by another running wagate") || !strings.Contains(out, "node1") {
		t.Errorf("twin node_id: %s", out)
	}

	// Another node_id, node1's directory.
	shared := twin
	shared.dir = n1.e.dir
	shared.SIPPort = freeTCPUDPPort(t, twin.WagateIP)
	shared.APIPort = freeTCPPort(t, twin.WagateIP)
	out = runToExit(t, &shared, c.nodeOpts("node9"), 10*time.Second)
	if !strings.Contains(out, "is in use by another running wagate") {
		t.Errorf("shared data_dir: %s", out)
	}
	if s := n1.w.status(); s.Permissions == nil || !s.Permissions.Up {
		t.Errorf("the running node after the intruders: %+v", s.Permissions)
	}
}

// runToExit starts wagate with a config written for e and returns its
// output once it exited, failing the test if it is still running after
// limit or exited 0.
func runToExit(t *testing.T, e *env, o wagateOpts, limit time.Duration) string {
	t.Helper()
	cfg := e.writeConfig(o)
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, wagateBin, "-config", cfg)
	cmd.Dir = e.dir
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("wagate still running after %v; it should have refused to start:\n%s", limit, out)
	}
	if err == nil {
		t.Fatalf("wagate exited 0; it should have refused to start:\n%s", out)
	}
	return string(out)
}

// TestMultiNodeRedisDownAtStart: a node started while Redis is down (a
// host that rebooted before Redis, a deploy during a Redis restart) runs:
// a user's call to the business reaches the agent, a business-initiated
// call gets 503 with Retry-After and no X-WABA-Error, /v1/status says the
// store is down; once Redis is there the node claims its id, takes grants
// and places business-initiated calls. Before, the node exited at start,
// and users calling in got nothing until Redis came back.
func TestMultiNodeRedisDownAtStart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := &cluster{t: t, e: e}
	c.redis = startRedis(t, e.ip(20), filepath.Join(e.dir, "redis"))
	c.redis.kill()
	nd := c.addNode(1)
	if s := nd.w.status(); s.Permissions == nil || s.Permissions.Up {
		t.Errorf("status with Redis down since the start: %+v", s.Permissions)
	}

	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas.xml", Peer: e.PBX, Calls: 1, Args: ringArgs})
	e.runSipp(sippSpec{Name: "meta_uic", Scenario: "uac.xml", Peer: e.Meta, Remote: nd.w.SIPAddr, Calls: 1,
		Args: callArgs(businessNumber, waUser, "-d", "200")})
	pbx.requireOK()

	u := "+447700900611"
	res := expectDialerRejectedAt(t, nd, "down_bic", u, "503")
	// The outage is said every 10 s, not once per probe (four a second)
	// by go-redis on stderr.
	if log, _ := os.ReadFile(nd.w.logPath); bytes.Contains(log, []byte("connection pool: failed to dial")) {
		t.Errorf("the log repeats every failed dial: %d lines", bytes.Count(log, []byte("connection pool: failed to dial")))
	}
	if res.Header("X-WABA-Error") != "" || res.Header("Retry-After") == "" {
		t.Errorf("BIC while Redis is down: X-WABA-Error %q Retry-After %q", res.Header("X-WABA-Error"), res.Header("Retry-After"))
	}

	c.redis.start()
	deadline := time.Now().Add(10 * time.Second)
	for s := nd.w.status(); s.Permissions == nil || !s.Permissions.Up; s = nd.w.status() {
		if time.Now().After(deadline) {
			t.Fatalf("store not up 10 s after Redis started: %+v", s.Permissions)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := c.redisCLI("GET", "wagate:node:node1"); !strings.HasPrefix(got, "node1.") {
		t.Errorf("node id in Redis: %q, want node1's instance", got)
	}
	nd.grant(t, u, "permanent")
	meta := e.startSipp(sippSpec{Name: "meta", Scenario: "uas.xml", Peer: e.Meta, Calls: 1, NoTrace: true})
	nd.e.runSipp(sippSpec{Name: "up_bic", Scenario: "bic_dialer.xml", Peer: e.Dialer, Remote: nd.w.SIPAddr, Calls: 1,
		Args: bicArgs(u, phoneNumberID, businessNumber, "-d", "50")})
	meta.requireOK()
}

// TestMultiNodeRedisDownKeepsUICs: with Redis down every node refuses
// business-initiated calls 503 (no X-WABA-Error). That refusal is not the
// node's failure — every node shares the Redis, and users' calls need none
// — so Kamailio must not take the nodes out for it: while a dialer keeps
// calling, users calling the business through Kamailio still reach an
// agent. Before, each such 503 took a node out of the dispatcher set until
// its next probe, a dialer's stream kept all of them out, and Kamailio
// answered Meta's INVITEs "503 No wagate node available".
func TestMultiNodeRedisDownKeepsUICs(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2, "")
	u := "+447700900621"
	c.nodes[0].grant(t, u, "permanent")
	c.startKamailio()
	c.redis.kill()

	dialer := c.e.startSipp(withNoTrace(c.dialSpec("dialer", c.usersFile("users.csv", []string{u}), 40, "-r", "10", "-l", "4", "-d", "50")))
	time.Sleep(500 * time.Millisecond) // the first refusals are in
	const uics = 5
	pbx := c.e.startSipp(sippSpec{Name: "pbx", Scenario: "uas.xml", Peer: c.e.PBX, Calls: uics, Args: ringArgs})
	meta := c.e.startSipp(sippSpec{Name: "meta_uic", Scenario: "uac.xml", Peer: c.e.Meta, Remote: c.kam.edge, Calls: uics,
		Args: callArgs(businessNumber, waUser, "-d", "200", "-r", "2", "-l", "1")})
	meta.requireOK()
	pbx.requireOK()
	dialer.requireOK()
	got := outcomes(dialer)
	for _, o := range got {
		if o.code != "503" || o.wabaError != "" {
			t.Errorf("BIC with Redis down: %s %s, want 503 without X-WABA-Error", o.code, o.wabaError)
		}
	}
	t.Logf("BIC outcomes: %v", countBy(got))
	if log, _ := os.ReadFile(c.kam.logPath); bytes.Contains(log, []byte("taken out")) {
		t.Errorf("Kamailio took a node out for a refusal by the shared permission store:\n%s", tail(log, 10))
	}
}

// TestMultiNodeMetaRefusalStaysOnNode: Meta answering business-initiated
// calls "503 Service Unavailable" (retry later), which wagate relays as
// it is (no Reason, no X-WABA-Error), is the call's answer, not the node's
// trouble: Kamailio passes it back to the dialer once, without placing
// the call again on the next node (a second INVITE to Meta for each) and
// without taking the nodes out — users calling the business meanwhile
// still reach an agent.
func TestMultiNodeMetaRefusalStaysOnNode(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2, "")
	u := "+447700900631"
	c.nodes[0].grant(t, u, "permanent")
	c.startKamailio()
	tmpl, err := os.ReadFile(filepath.Join(sippDir, "bic_meta_code.xml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	scenario := filepath.Join(c.e.dir, "bic_meta_503.xml")
	if err := os.WriteFile(scenario, []byte(strings.Replace(string(tmpl), "SIP/2.0 CODE REASON", "SIP/2.0 503 Service Unavailable", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	const bics, uics = 6, 4
	meta := c.e.startSipp(sippSpec{Name: "meta_503", Scenario: scenario, Peer: c.e.Meta, Calls: bics})
	dialer := c.e.startSipp(withNoTrace(c.dialSpec("dialer", c.usersFile("users.csv", []string{u}), bics, "-r", "4", "-l", "1", "-d", "50")))
	time.Sleep(500 * time.Millisecond)
	pbx := c.e.startSipp(sippSpec{Name: "pbx", Scenario: "uas.xml", Peer: c.e.PBX, Calls: uics, Args: ringArgs})
	// Meta's side calling in, from Meta's address on ports of its own
	// (its other side answers the BICs).
	metaUAC := c.e.newPeer("meta_uac", 2)
	uic := c.e.startSipp(sippSpec{Name: "meta_uic", Scenario: "uac.xml", Peer: metaUAC, Remote: c.kam.edge, Calls: uics,
		Args: callArgs(businessNumber, waUser, "-d", "200", "-r", "2", "-l", "1")})
	uic.requireOK()
	pbx.requireOK()
	dialer.requireOK()
	meta.requireOK()
	got := outcomes(dialer)
	for _, o := range got {
		if o.code != "503" || o.wabaError != "" {
			t.Errorf("BIC that Meta refused 503: %s %s", o.code, o.wabaError)
		}
	}
	invites := 0
	for _, m := range meta.messages() {
		if !m.Sent && strings.HasPrefix(m.StartLine(), "INVITE ") {
			invites++
		}
	}
	if len(got) != bics || invites != bics {
		t.Errorf("%d BICs answered, Meta got %d INVITEs; want %d and %d (one per call)", len(got), invites, bics, bics)
	}
	if log, _ := os.ReadFile(c.kam.logPath); bytes.Contains(log, []byte("taken out")) {
		t.Errorf("Kamailio took a node out for Meta's answer:\n%s", tail(log, 10))
	}
}

// TestMultiNodeCallRefusalStaysOnNode: a refusal that is about the call,
// not the node — here a second business number whose only PBX the nodes'
// probes mark down, so its users' calls get wagate's own "503 Service
// Unavailable" — goes back to Meta from the node it reached. Kamailio
// fails over, and takes a node out, only for the node's own trouble
// (draining, overloaded, out of call slots or ports: wagate says so in
// X-Wagate-Node-Unavailable) or silence. Before, every such 503 took the
// node out and was tried on the next, so one number's dead PBX left
// Kamailio no node for every other number's users: "503 No wagate node
// available".
func TestMultiNodeCallRefusalStaysOnNode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pbx2 := e.newPeer("pbx2", 8) // nothing answers there: its probes fail
	const second = "+15550100002"
	c := &cluster{t: t, e: e, mod: func(o *wagateOpts) {
		o.EndpointsExtra = pbxEndpoint("pbx2", pbx2, ", probe: {interval: 200ms, timeout: 150ms, down_after: 2, up_after: 1}")
		o.MoreNumbers = fmt.Sprintf("\n  - {number: %q, phone_number_id: \"100000000000002\", route: {endpoint: pbx2, user: \"2001\"}}", second)
	}}
	c.redis = startRedis(t, e.ip(20), filepath.Join(e.dir, "redis"))
	c.addNode(1)
	c.addNode(2)
	for _, nd := range c.nodes {
		deadline := time.Now().Add(5 * time.Second)
		for s := nd.w.status(); len(s.Endpoints) != 1 || s.Endpoints[0].Up; s = nd.w.status() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: pbx2 not marked down: %+v", nd.id, s.Endpoints)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	c.startKamailio()

	const dead, live = 8, 4
	toDead := c.e.newPeer("meta_dead", 2)
	deadCalls := c.e.startSipp(sippSpec{Name: "meta_dead", Scenario: "uac_expect.xml", Peer: toDead, Remote: c.kam.edge, Calls: dead,
		Args: append(expectArgs(second, waUser, "503"), "-r", "5", "-l", "2")})
	time.Sleep(400 * time.Millisecond)
	pbx := c.e.startSipp(sippSpec{Name: "pbx", Scenario: "uas.xml", Peer: c.e.PBX, Calls: live, Args: ringArgs})
	toLive := c.e.newPeer("meta_live", 2)
	liveCalls := c.e.startSipp(sippSpec{Name: "meta_live", Scenario: "uac.xml", Peer: toLive, Remote: c.kam.edge, Calls: live,
		Args: callArgs(businessNumber, waUser, "-d", "200", "-r", "2", "-l", "1")})
	liveCalls.requireOK()
	pbx.requireOK()
	deadCalls.requireOK()
	for _, m := range deadCalls.messages() {
		if !m.Sent && strings.HasPrefix(m.StartLine(), "SIP/2.0 503") && strings.Contains(m.StartLine(), "No wagate node") {
			t.Errorf("a call to the number whose PBX is down got Kamailio's %q, not the node's answer", m.StartLine())
			break
		}
	}
	if log, _ := os.ReadFile(c.kam.logPath); bytes.Contains(log, []byte("taken out")) {
		t.Errorf("Kamailio took a node out for a call's refusal:\n%s", tail(log, 10))
	}
}

// TestMultiNodeDrainMovesRingingCaller: a rolling restart. A WhatsApp
// user's call rings an agent through one node when that node is told to
// stop (SIGTERM, -drain-timeout 1s); the agent has not answered when the
// drain ends. The node cancels the agent and answers the caller 503 with
// X-Wagate-Node-Unavailable: draining, so Kamailio places the call on the
// other node, where the agent rings again and answers: the caller is
// connected, not dropped. Before, the 503 named no node trouble and went
// back to the caller: every call ringing at a node's restart was lost.
func TestMultiNodeDrainMovesRingingCaller(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := &cluster{t: t, e: e, mod: func(o *wagateOpts) { o.Args = append(o.Args, "-drain-timeout", "1s") }}
	c.redis = startRedis(t, e.ip(20), filepath.Join(e.dir, "redis"))
	c.addNode(1)
	c.addNode(2)
	c.startKamailio()
	// The agent answers 4 s after an INVITE: long past the drain's end,
	// so the first node's ring is cut by the drain.
	ag := startAgent(t, "pbx", e.PBX, agentAnswers, func(a *agent) { a.delay = 4 * time.Second })
	meta := e.startSipp(sippSpec{Name: "meta_uic", Scenario: "uac.xml", Peer: e.Meta, Remote: c.kam.edge, Calls: 1,
		Args: callArgs(businessNumber, waUser, "-d", "200")})
	var first *node
	for deadline := time.Now().Add(10 * time.Second); first == nil; time.Sleep(50 * time.Millisecond) {
		for _, nd := range c.nodes {
			if nd.started(t) > 0 {
				first = nd
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no node took the call")
		}
	}
	ag.one("INVITE")
	first.w.drain()
	meta.requireOK()
	invites, cancels := ag.got("INVITE"), ag.got("CANCEL")
	if len(invites) != 2 || len(cancels) != 1 || cancels[0].callID != invites[0].callID {
		t.Errorf("the agent got %d INVITEs and %d CANCELs (%v); want the first node's INVITE cancelled, then the other node's", len(invites), len(cancels), ag.all())
	}
	var second *node
	for _, nd := range c.nodes {
		if nd != first {
			second = nd
		}
	}
	if n := second.started(t); n != 1 {
		t.Errorf("the other node started %d calls, want the caller's", n)
	}
	if log, _ := os.ReadFile(c.kam.logPath); !bytes.Contains(log, []byte("taken out")) {
		t.Errorf("Kamailio did not fail over on the drained node's 503:\n%s", tail(log, 10))
	}
}

// TestMultiNodeTLSMetaThroughKamailio: the deployment docs/multinode.md
// describes. Each node's whatsapp endpoint is on transport tls (a node
// places business-initiated calls to Meta itself), and Meta's requests
// reach the nodes from Kamailio's META_SOCK over UDP, which the endpoint
// lists in proxy_cidrs: users' calls through Kamailio reach the agent and
// are answered, while a UDP INVITE forged from Meta's own address straight
// to a node is dropped. With META_SOCK in source_cidrs, as before
// proxy_cidrs, dropping UDP from a TLS endpoint's addresses dropped every
// call through Kamailio.
func TestMultiNodeTLSMetaThroughKamailio(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := &cluster{t: t, e: e, metaTLS: newTestPKI(t, t.TempDir(), e.WagateIP)}
	c.redis = startRedis(t, e.ip(20), filepath.Join(e.dir, "redis"))
	c.addNode(1)
	c.addNode(2)
	c.startKamailio()

	const calls = 2
	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas.xml", Peer: e.PBX, Calls: calls, Args: ringArgs})
	meta := e.startSipp(sippSpec{Name: "meta_uic", Scenario: "uac.xml", Peer: e.Meta, Remote: c.kam.edge, Calls: calls,
		Args: callArgs(businessNumber, waUser, "-d", "200", "-r", "2", "-l", "1")})
	meta.requireOK()
	pbx.requireOK()

	w := c.nodes[0].w
	forged := newRawPeer(t, e.Meta.IP, w)
	if _, err := forged.conn.WriteToUDP([]byte(metaUDPInvite(e, forged, "forged")), forged.to); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second) // a wait for the count, not a timing
	for w.status().Edge.Refused["wrong_transport"] == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("a UDP INVITE from Meta's address to a node was not refused: %+v", w.status().Edge)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
