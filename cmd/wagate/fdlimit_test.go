package main

import (
	"bytes"
	"log/slog"
	"runtime"
	"strings"
	"testing"

	"github.com/wagate/wagate/configs"
)

// TestDescriptorLimitWarning: a port range wider than the bound-pair
// budget the open-files limit allows is named at start, saying that pairs
// past it are closed and rebound (not that calls will be refused), with
// the budget and how many concurrent calls fit; a max_bound_pairs the
// limit cannot hold is named as a cause of 503s; one that fits says
// nothing.
func TestDescriptorLimitWarning(t *testing.T) {
	const rangeMsg = "cannot keep the whole media port range bound"
	const overMsg = "max_bound_pairs keeps more sockets bound than the open-files limit allows"
	// Two CPUs: the pacer's eight timerfds are kept aside too.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	for _, tc := range []struct {
		name    string
		limit   uint64
		max     int
		want    string // "" : no warning
		details []string
	}{
		// 5,000 pairs need 10,000 descriptors; the derived budget leaves a
		// quarter of the limit (at least 1,024) to the rest.
		{name: "roomy", limit: 65536},
		{name: "just fits", limit: 13333},
		{name: "one short", limit: 13332, want: rangeMsg, details: []string{`"max_bound_pairs":4999`}},
		{name: "small", limit: 4096, want: rangeMsg, details: []string{`"max_bound_pairs":1536`, `"concurrent_calls_at_most":612`, "closed and bound again"}},
		{name: "unknown limit", limit: 0},
		// Configured: all 5,000 pairs in use are 2,500 calls, each four
		// sockets and its reader's epoll set, 12,500 descriptors, and
		// 1,024 + 8 beside them.
		{name: "configured fits", limit: 13532, max: 5000},
		{name: "configured below range", limit: 13532, max: 100, want: rangeMsg, details: []string{`"max_bound_pairs":100`}},
		{name: "configured over limit", limit: 13531, max: 5000, want: overMsg, details: []string{"503", `"descriptors_wanted":13532`}},
	} {
		m := configs.Media{PortMin: 30000, PortMax: 40000, MaxBoundPairs: tc.max}
		var buf bytes.Buffer
		// No time attribute: its digits once held "503" (…184503084Z).
		noTime := &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}
		checkDescriptorLimit(m, tc.limit, slog.New(slog.NewJSONHandler(&buf, noTime)))
		got := buf.String()
		if tc.want == "" {
			if got != "" {
				t.Errorf("%s: warned: %s", tc.name, got)
			}
			continue
		}
		if !strings.Contains(got, tc.want) {
			t.Errorf("%s: want a warning with %q, got %s", tc.name, tc.want, got)
		}
		for _, d := range tc.details {
			if !strings.Contains(got, d) {
				t.Errorf("%s: the warning should carry %s: %s", tc.name, d, got)
			}
		}
		if tc.want == rangeMsg && strings.Contains(got, "503") {
			t.Errorf("%s: a range wider than the budget is no longer refused with 503: %s", tc.name, got)
		}
	}
}
