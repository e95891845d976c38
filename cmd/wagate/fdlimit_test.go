package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/wagate/wagate/configs"
)

// TestDescriptorLimitWarning: a port range whose kept-bound pairs need
// more descriptors than the limit allows is named at start, with how many
// calls fit; one that fits says nothing.
func TestDescriptorLimitWarning(t *testing.T) {
	m := configs.Media{PortMin: 30000, PortMax: 40000} // 5,000 pairs: 10,000 sockets
	for _, tc := range []struct {
		limit uint64
		warn  bool
	}{
		{limit: 65536, warn: false},
		{limit: 11024, warn: false},
		{limit: 11023, warn: true},
		{limit: 4096, warn: true},
	} {
		var buf bytes.Buffer
		checkDescriptorLimit(m, tc.limit, slog.New(slog.NewJSONHandler(&buf, nil)))
		got := buf.String()
		if warned := strings.Contains(got, "open-files limit"); warned != tc.warn {
			t.Errorf("limit %d: warned %v, want %v: %s", tc.limit, warned, tc.warn, got)
		}
		if tc.limit == 4096 && !strings.Contains(got, `"calls_at_most":768`) {
			t.Errorf("limit 4096: the warning should say 768 calls fit ((4096-1024)/4): %s", got)
		}
	}
}
