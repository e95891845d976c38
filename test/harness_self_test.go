package test

import "testing"

// TestCrashEvidence: the harness fails a test on every sign of a bug in
// wagate's log, including a handler panic wagate recovered from (which
// keeps the process up, and so would otherwise pass unnoticed).
func TestCrashEvidence(t *testing.T) {
	tests := []struct {
		log  string
		want bool
	}{
		{`{"level":"INFO","msg":"call started"}` + "\n", false},
		{`{"level":"ERROR","msg":"panic recovered","method":"INVITE","panic":"runtime error"}` + "\n", true},
		{"panic: runtime error: invalid memory address\n", true},
		{`{"msg":"x"}` + "\npanic: boom\n", true},
		{"fatal error: concurrent map writes\n", true},
		{"==================\nWARNING: DATA RACE\n", true},
		{`{"level":"INFO","msg":"a call about panic buttons"}` + "\n", false},
	}
	for _, tt := range tests {
		if got := crashEvidence([]byte(tt.log)) != ""; got != tt.want {
			t.Errorf("crashEvidence(%q) = %v, want %v", tt.log, got, tt.want)
		}
	}
}
