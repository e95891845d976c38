package test

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestOverloadVisible: a dialer over its endpoint's max_cps gets 503 with
// Retry-After: 1 at once (not a failure mid-setup), and the operator sees
// why: /v1/status overload_refusals, the wagate_overload_refusals_total
// metric and one rate-limited warn line naming the reason.
func TestOverloadVisible(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{MetaExtra: ", max_cps: 2"})
	p := newRawPeer(t, e.Meta.IP, w)
	// Six INVITEs back to back, their answers read after: waiting for
	// each answer before sending the next would let a loaded machine's
	// round trips refill the bucket (2 calls/s) and pass more of them.
	// An unknown number: the calls that pass the rate get 404 at once and
	// hold nothing.
	var ids []string
	for i := range 6 {
		id := fmt.Sprintf("cps-%d", i)
		ids = append(ids, id)
		if _, err := p.conn.WriteToUDP([]byte(rawInvite(p, id, "+15550100077", "application/sdp", "v=0\r\n")), p.to); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	answers := p.finals(ids, replyLimit)
	var codes []string
	var n503, n404 int
	for _, id := range ids {
		res := answers[id]
		line, _, _ := strings.Cut(res, "\r\n")
		codes = append(codes, line)
		switch {
		case strings.HasPrefix(line, "SIP/2.0 503"):
			n503++
			if headerOf(res, "Retry-After") != "1" {
				t.Errorf("503 for the call rate has Retry-After %q, want 1", headerOf(res, "Retry-After"))
			}
			// The node's own state: a dispatcher tries another node.
			if v := headerOf(res, "X-Wagate-Node-Unavailable"); v != "overloaded" {
				t.Errorf("503 for the call rate has X-Wagate-Node-Unavailable %q, want overloaded", v)
			}
		case strings.HasPrefix(line, "SIP/2.0 404"):
			n404++
		}
	}
	if n503 < 3 || n503 > 4 || n404+n503 != len(ids) {
		t.Errorf("answers %q: want the calls within the rate routed (404) and the rest over 2 calls/s refused with 503", codes)
	}
	s := w.waitIdle()
	if got := s.Overload["cps"]; got != uint64(n503) {
		t.Errorf("status overload_refusals.cps = %d, want %d", got, n503)
	}
	if v, ok := metricValue(scrapeMetrics(t, e), "wagate_overload_refusals_total", `reason="cps"`); !ok || v != float64(n503) {
		t.Errorf(`wagate_overload_refusals_total{reason="cps"} = %v (present %v), want %d`, v, ok, n503)
	}
	log, _ := os.ReadFile(w.logPath)
	if n := strings.Count(string(log), `"msg":"overload: new calls refused with 503"`); n != 1 {
		t.Errorf("%d overload warn lines for one burst, want 1", n)
	}
}
