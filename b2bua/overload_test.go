package b2bua

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestCPSGuard(t *testing.T) {
	g := newCPSGuard()
	now := time.Unix(1000, 0)
	g.now = func() time.Time { return now }
	allowed := 0
	for range 10 {
		if g.allow("dialer", 3) {
			allowed++
		}
	}
	if allowed != 3 {
		t.Errorf("%d of 10 calls at once allowed at 3 calls/s, want the second's worth, 3", allowed)
	}
	now = now.Add(time.Second)
	if !g.allow("dialer", 3) || !g.allow("pbx", 3) {
		t.Error("a second later, calls are still refused")
	}
	for range 100 {
		if !g.allow("other", 0) {
			t.Fatal("an endpoint without max_cps was limited")
		}
	}
}

// TestOverloadWarnsOncePerInterval: a burst of refusals is one warn line
// (with the count), not one per call.
func TestOverloadWarnsOncePerInterval(t *testing.T) {
	var buf bytes.Buffer
	o := overload{log: slog.New(slog.NewTextHandler(&buf, nil))}
	for range 50 {
		o.note(overPorts, "all pairs in use")
	}
	if n := strings.Count(buf.String(), "overload: new calls refused"); n != 1 {
		t.Errorf("%d warn lines for 50 refusals in a burst, want 1:\n%s", n, buf.String())
	}
	if got := o.snapshot()["ports"]; got != 50 {
		t.Errorf("ports refusals = %d, want 50", got)
	}
	o.warned[overPorts] = time.Now().Add(-overloadWarnEvery)
	o.note(overPorts, "again")
	if !strings.Contains(buf.String(), "refused_since_last_warning=50") {
		t.Errorf("second warning does not say how many were refused since the first:\n%s", buf.String())
	}
}
