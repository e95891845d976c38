package test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrapeMetrics fetches wagate's /metrics.
func scrapeMetrics(t *testing.T, e *env) string {
	t.Helper()
	resp, err := httpClient.Get(fmt.Sprintf("http://%s/metrics", net.JoinHostPort(e.WagateIP, strconv.Itoa(e.APIPort))))
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, body)
	}
	return string(body)
}

// metricValue returns the value of the sample whose name and labels (in
// Prometheus' order, e.g. `direction="UIC",outcome="answered"`) match.
func metricValue(text, name, labels string) (float64, bool) {
	sel := name
	if labels != "" {
		sel += "{" + labels + "}"
	}
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sel) + ` (\S+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

// TestMetricsEndToEnd: /metrics passes `promtool check metrics`, and its
// counters move as calls happen (an answered UIC, a refused one, SIP
// messages both ways, the set-up histogram).
func TestMetricsEndToEnd(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is not installed (%v): make test installs it (Debian package prometheus)", err)
	}
	e := newEnv(t)
	// Recording and a webhook subscriber on, so that every metric the
	// dashboard uses exists (the subscriber's address refuses: its
	// deliveries fail, which is counted too).
	w := e.startWagate(wagateOpts{
		APIExtra: ", token: {value: metrics-token}",
		Extra: fmt.Sprintf("recording: {enabled: true, directory: %q}\n", filepath.Join(e.dir, "rec")) +
			fmt.Sprintf("events: {subscribers: [{name: crm, url: \"http://%s/hook\", secret: {value: s3cret}}]}\n", net.JoinHostPort(e.ip(8), "9")),
	})

	before := scrapeMetrics(t, e)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(before)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}

	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas.xml", Peer: e.PBX, Calls: 1})
	e.runSipp(sippSpec{Name: "meta", Scenario: "uac.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1,
		Args: callArgs(businessNumber, waUser, "-d", "300")})
	pbx.requireOK()
	e.runSipp(sippSpec{Name: "meta2", Scenario: "uac_expect.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1,
		Args: expectArgs("+15550100099", waUser, "404")})
	w.waitIdle()

	after := scrapeMetrics(t, e)
	cmd = exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(after)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics after calls: %v\n%s", err, out)
	}
	for _, c := range []struct {
		name, labels string
		min          float64
	}{
		{"wagate_calls_total", `direction="UIC",outcome="answered"`, 1},
		{"wagate_uic_calls_total", `business_number="+15550100001",outcome="answered"`, 1},
		{"wagate_calls_refused_total", `code="404",direction="UIC",waba_error="0"`, 1},
		{"wagate_call_setup_seconds_count", `direction="UIC"`, 1},
		{"wagate_sip_requests_total", `direction="in",method="INVITE"`, 2},
		{"wagate_sip_requests_total", `direction="out",method="INVITE"`, 1},
		{"wagate_sip_requests_total", `direction="in",method="BYE"`, 1},
		{"wagate_sip_responses_total", `class="2xx",direction="out"`, 2},
		{"wagate_sip_responses_total", `class="2xx",direction="in"`, 1},
		{"wagate_sip_edge_passed_total", "", 5},
		// The call's silence and RTCP toward Meta ran on the pacer.
		{"wagate_media_pacer_lateness_seconds_count", "", 1},
	} {
		v, ok := metricValue(after, c.name, c.labels)
		if !ok || v < c.min {
			t.Errorf("%s{%s} = %v (present %v), want at least %v", c.name, c.labels, v, ok, c.min)
		}
	}
	if v, _ := metricValue(after, "wagate_calls_active", ""); v != 0 {
		t.Errorf("wagate_calls_active = %v after the calls, want 0", v)
	}
	if strings.Contains(after, "+447700900123") || strings.Contains(after, "sip_call_id") {
		t.Errorf("a user number or call id appears in a metric label")
	}

	// The Grafana dashboard shipped in docs/ uses only metrics that exist.
	dash, err := os.ReadFile(filepath.Join(repoRoot, "docs", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range regexp.MustCompile(`wagate_[a-z_]+`).FindAllString(string(dash), -1) {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count"), "_sum")
		if !strings.Contains(after, "# TYPE "+base+" ") {
			t.Errorf("docs/grafana-dashboard.json uses %s, which /metrics does not have", name)
		}
	}
}

// TestDrainTakesNodeOut: on SIGTERM, /readyz and OPTIONS flip to 503 at
// once, so a dispatcher or load balancer takes the node out, while the
// call that is up goes on to its normal end; then wagate exits.
func TestDrainTakesNodeOut(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{})
	readyz := fmt.Sprintf("http://%s/readyz", net.JoinHostPort(e.WagateIP, strconv.Itoa(e.APIPort)))
	getReady := func() (int, string) {
		resp, err := httpClient.Get(readyz)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(bytes.TrimSpace(b))
	}
	options := func(callID string) string {
		p := newRawPeer(t, e.PBX.IP, w)
		return p.exchange(fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-%s\r\nFrom: <sip:probe@%s>;tag=d\r\nTo: <sip:%s>\r\nCall-ID: %s\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
			p.to, p.local(), callID, p.local(), p.to, callID), replyLimit)
	}
	if code, body := getReady(); code != 200 {
		t.Fatalf("/readyz before the drain: %d %s", code, body)
	}
	if got := options("drain-1"); !strings.HasPrefix(got, "SIP/2.0 200") {
		t.Fatalf("OPTIONS before the drain: %q", got)
	}

	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas.xml", Peer: e.PBX, Calls: 1})
	meta := e.startSipp(sippSpec{Name: "meta", Scenario: "uac.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1,
		Args: callArgs(businessNumber, waUser, "-d", "4000")})
	deadline := time.Now().Add(5 * time.Second)
	for w.status().Calls != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the call did not come up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	w.drain()
	// Checked once wagate has taken the signal (it stops admitting,
	// then logs "draining"): a loaded machine may take longer to deliver
	// and handle it than any fixed wait.
	w.waitLogMsg("draining", 0)
	if code, body := getReady(); code != 503 || !strings.Contains(body, "draining") {
		t.Errorf("/readyz while draining: %d %s, want 503 naming the drain", code, body)
	}
	if got := options("drain-2"); !strings.HasPrefix(got, "SIP/2.0 503") {
		t.Errorf("OPTIONS while draining: %q, want 503", got)
	}
	if s := w.status(); s.Calls != 1 {
		t.Errorf("calls while draining = %d, want the live call to go on", s.Calls)
	}
	// The call ends normally (the caller's BYE), and then wagate exits.
	meta.requireOK()
	pbx.requireOK()
	select {
	case <-w.exited:
		if w.waitErr != nil {
			t.Errorf("wagate exited with %v after the drain", w.waitErr)
		}
	case <-time.After(10 * time.Second):
		t.Error("wagate still running 10 s after its last call ended")
	}
}

// grepLines is the lines of text that contain s, for a failure message.
func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
