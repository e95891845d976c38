package test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// reloadLimit bounds how long a SIGHUP may take to show in the log.
const reloadLimit = 10 * time.Second

// logLine is one JSON line of wagate's log.
type logLine map[string]any

func (l logLine) str(key string) string { s, _ := l[key].(string); return s }

// logLines returns the JSON lines of wagate's log so far.
func (w *wagate) logLines() []logLine {
	data, _ := os.ReadFile(w.logPath)
	var out []logLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			out = append(out, l)
		}
	}
	return out
}

// waitLogMsg waits until wagate logs a line with msg, after the first
// skip lines, and returns it.
func (w *wagate) waitLogMsg(msg string, skip int) logLine {
	w.t.Helper()
	var found logLine
	w.pollLog(fmt.Sprintf("no %q", msg), reloadLimit, func(lines []logLine) bool {
		for _, l := range lines[min(skip, len(lines)):] {
			if l.str("msg") == msg {
				found = l
				return true
			}
		}
		return false
	})
	return found
}

// waitLogCount waits until wagate has logged n lines whose msg is msg
// (limit at most).
func (w *wagate) waitLogCount(msg string, n int, limit time.Duration) {
	w.t.Helper()
	w.pollLog(fmt.Sprintf("fewer than %d %q lines", n, msg), limit, func(lines []logLine) bool {
		got := 0
		for _, l := range lines {
			if l.str("msg") == msg {
				got++
			}
		}
		return got >= n
	})
}

// pollLog reads wagate's log every 50 ms until done says it holds what
// is awaited, failing with want after limit.
func (w *wagate) pollLog(want string, limit time.Duration, done func([]logLine) bool) {
	w.t.Helper()
	deadline := time.Now().Add(limit)
	for !done(w.logLines()) {
		if time.Now().After(deadline) {
			w.t.Fatalf("wagate logged %s within %v", want, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rewriteConfig replaces each old string of the running config file with
// its new one, failing when one is missing.
func (e *env) rewriteConfig(pairs ...string) {
	e.t.Helper()
	path := filepath.Join(e.dir, "wagate.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		e.t.Fatal(err)
	}
	s := string(data)
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			e.t.Fatalf("config has no %q:\n%s", pairs[i], s)
		}
		s = strings.Replace(s, pairs[i], pairs[i+1], 1)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (w *wagate) hup() {
	w.t.Helper()
	if err := w.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		w.t.Fatalf("SIGHUP: %v", err)
	}
}

// uicCall places one UIC from the meta SIPp to the pbx SIPp and returns
// the pbx, whose messages show the B-leg INVITE.
func (e *env) uicCall(w *wagate) *sippProc {
	e.t.Helper()
	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas.xml", Peer: e.PBX, Calls: 1})
	e.runSipp(sippSpec{Name: "meta", Scenario: "uac.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1,
		Args: callArgs(businessNumber, waUser, "-d", "200")})
	pbx.requireOK()
	return pbx
}

// checkReloadMetrics checks what /metrics says of the reloads so far.
func checkReloadMetrics(t *testing.T, e *env, applied, refused, lastOK float64) {
	t.Helper()
	m := scrapeMetrics(t, e)
	for _, c := range []struct {
		name, labels string
		want         float64
	}{
		{"wagate_config_reloads_total", `result="applied"`, applied},
		{"wagate_config_reloads_total", `result="refused"`, refused},
		{"wagate_config_last_reload_successful", "", lastOK},
	} {
		if v, ok := metricValue(m, c.name, c.labels); !ok || v != c.want {
			t.Errorf("%s{%s} = %v (present %v), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
	if v, ok := metricValue(m, "wagate_config_last_reload_success_timestamp_seconds", ""); !ok || v < float64(time.Now().Add(-time.Hour).Unix()) {
		t.Errorf("wagate_config_last_reload_success_timestamp_seconds = %v (present %v)", v, ok)
	}
}

// TestReloadRefusesRestartKeys: a SIGHUP whose file changes keys only a
// restart applies (the media port range and the API address) is refused
// as a whole, naming both keys, and wagate keeps running on the old config:
// the API answers on the old address only and calls get media ports from
// the old range.
func TestReloadRefusesRestartKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{PortMin: 30000, PortMax: 30099})
	start := w.waitLogMsg("wagate starting", 0)
	if !strings.HasSuffix(start.str("config"), "wagate.yaml") || len(start.str("config_sha256")) != 64 {
		t.Errorf("start-up line does not name the config and its sha256: %v", start)
	}

	newAPIPort := freeTCPPort(t, e.WagateIP)
	oldAPI := net.JoinHostPort(e.WagateIP, strconv.Itoa(e.APIPort))
	newAPI := net.JoinHostPort(e.WagateIP, strconv.Itoa(newAPIPort))
	e.rewriteConfig(
		"port_min: 30000, port_max: 30099", "port_min: 31000, port_max: 31099",
		`listen: "`+oldAPI+`"`, `listen: "`+newAPI+`"`,
		// A live key in the same file is not applied either.
		`user: "1001"`, `user: "2002"`)
	skip := len(w.logLines())
	w.hup()
	l := w.waitLogMsg("reload refused: changed keys take a restart; nothing was applied, the running config stays", skip)
	keys := strings.Split(l.str("restart_keys"), ", ")
	if len(keys) != 3 || keys[0] != "media.port_min" || keys[1] != "media.port_max" || keys[2] != "api.listen" {
		t.Errorf("restart_keys = %q, want media.port_min, media.port_max, api.listen", l.str("restart_keys"))
	}
	if l.str("level") != "ERROR" {
		t.Errorf("refusal logged at %s, want ERROR", l.str("level"))
	}
	for _, l := range w.logLines()[skip:] {
		if l.str("msg") == "config reloaded" {
			t.Errorf("wagate logged %q after a refused reload", l.str("msg"))
		}
	}
	// An alert can see it: what runs is not the file on disk.
	checkReloadMetrics(t, e, 0, 1, 0)

	// The old config runs: API on the old address, none on the new one,
	// the old route and the old media range.
	w.status()
	if c, err := net.DialTimeout("tcp", newAPI, time.Second); err == nil {
		c.Close()
		t.Errorf("something listens on the new api.listen %s after a refused reload", newAPI)
	}
	pbx := e.uicCall(w)
	checkBLegInvite(t, e, pbx, routeUser, waUser)
	if inv, ok := findMsg(pbx.messages(), false, "INVITE "); ok {
		if _, port, _, err := sdpAudio(inv.Body()); err != nil || port < 30000 || port > 30099 {
			t.Errorf("B-leg media port %d (%v), want the running range 30000-30099", port, err)
		}
	}
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}

// TestReloadAppliesLiveKeys: a SIGHUP that changes only live keys (a
// number's route and log.level) is applied: the next call rings the new
// extension and debug lines appear.
func TestReloadAppliesLiveKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{})
	e.rewriteConfig(`user: "1001"`, `user: "2002"`, "level: info", "level: debug")
	skip := len(w.logLines())
	w.hup()
	l := w.waitLogMsg("config reloaded", skip)
	if got := l.str("changed"); got != "numbers[0].route.user, log.level" {
		t.Errorf("changed = %q, want numbers[0].route.user, log.level", got)
	}
	if len(l.str("sha256")) != 64 {
		t.Errorf("reload line has no sha256: %v", l)
	}
	for _, l := range w.logLines()[:skip] {
		if l.str("level") == "DEBUG" {
			t.Fatalf("a debug line before the reload, at level info: %v", l)
		}
	}

	checkReloadMetrics(t, e, 1, 0, 1)

	pbx := e.uicCall(w)
	checkBLegInvite(t, e, pbx, "2002", waUser)
	w.waitLogMsg("B-leg INVITE sent", skip) // a debug line: log.level applied
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}

// TestReloadedNumberTakesAccountUpdate: a business number a SIGHUP adds
// is known to Meta's account_update webhook, which names numbers only as
// Meta displays them: a pause Meta sends for it is applied, not dropped as
// a number wagate does not serve.
func TestReloadedNumberTakesAccountUpdate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(ruleOpts(e, ""))
	const added, addedID = "15550100002", "100000000000002"
	e.rewriteConfig("\nmedia:", fmt.Sprintf("\n  - {number: \"+%s\", phone_number_id: %q, route: {endpoint: pbx, user: \"1002\"}}\nmedia:", added, addedID))
	skip := len(w.logLines())
	w.hup()
	if l := w.waitLogMsg("config reloaded", skip); l.str("changed") != "numbers" {
		t.Fatalf("changed = %q, want numbers", l.str("changed"))
	}
	until := time.Now().Add(7 * 24 * time.Hour).Unix()
	body := fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"WABA","time":%d,"changes":[{"field":"account_update","value":`+
		`{"phone_number":"%s","event":"ACCOUNT_RESTRICTION","restriction_info":[{"restriction_type":"RESTRICTED_BUSINESS_INITIATED_CALLING","expiration":%d}]}}]}]}`,
		time.Now().Unix(), added, until)
	if code := postWebhook(t, e.apiBase(), []byte(body)); code != 200 {
		t.Fatalf("webhook: %d", code)
	}
	if code, res := apiCall(t, http.MethodGet, e.apiBase()+"/v1/restrictions", ""); code != 200 || !strings.Contains(res, addedID) {
		t.Errorf("GET /v1/restrictions after Meta paused the reloaded number: %d %s", code, res)
	}
}

// TestReloadKeepsCallsOfMovedEndpoint: a SIGHUP that moves the PBX (its
// source_cidrs now name another address) leaves the call up on the old
// address whole: the agent's BYE from there is taken, not refused as a
// stranger's, and Meta's leg is hung up at once.
func TestReloadKeepsCallsOfMovedEndpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{})
	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas_bye.xml", Peer: e.PBX, Calls: 1, Args: []string{"-d", "2500"}})
	meta := e.startSipp(sippSpec{Name: "meta", Scenario: "uac_wait_bye.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1,
		Args: callArgs(businessNumber, waUser)})
	w.waitLogMsg("call answered", 0)
	e.rewriteConfig("source_cidrs: ["+e.PBX.IP+"/32]", "source_cidrs: ["+e.ip(30)+"/32]")
	skip := len(w.logLines())
	w.hup()
	if l := w.waitLogMsg("config reloaded", skip); l.str("changed") != "endpoints[1].source_cidrs" {
		t.Fatalf("changed = %q, want endpoints[1].source_cidrs", l.str("changed"))
	}
	pbx.requireOK()
	meta.requireOK()
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}

// TestReloadCallFlowWithoutPrompts: on a node whose prompt library could
// not start (no espeak-ng), a SIGHUP that brings in a call-flow route is
// refused, saying why, instead of being applied for the route's calls to
// get 503.
func TestReloadCallFlowWithoutPrompts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{
		Env:      []string{"PATH=" + filepath.Join(e.dir, "no-bin")},
		APIExtra: ", token: {value: t}",
		Extra:    fmt.Sprintf("recording: {enabled: true, directory: %q}\n", filepath.Join(e.dir, "rec")),
	})
	e.rewriteConfig(`route: {endpoint: pbx, user: "1001"}`,
		`route: {callflow: {url: "http://127.0.0.1:9/flow", secret: {value: s}, fallback: {endpoint: pbx, user: "1000"}}}`)
	skip := len(w.logLines())
	w.hup()
	l := w.waitLogMsg("reload refused: call-flow routes need the prompt library, which did not start; nothing was applied, the running config stays", skip)
	if !strings.Contains(l.str("error"), "espeak-ng not found") {
		t.Errorf("refusal does not say why: %v", l)
	}
}
