package sip

import "testing"

// TestDefaultReason: a response wagate words itself carries RFC 3261's
// phrase for its code (a REFER refused 491 said "Request Failed", which
// reads in a PBX's log as a failure, not "retry later").
func TestDefaultReason(t *testing.T) {
	for code, want := range map[int]string{400: "Bad Request", 403: "Forbidden", 481: "Call/Transaction Does Not Exist",
		491: "Request Pending", 488: "Not Acceptable Here", 499: "Request Failed", 500: "Server Error", 603: "Decline", 604: "Global Failure"} {
		if got := DefaultReason(code); got != want {
			t.Errorf("DefaultReason(%d) = %q, want %q", code, got, want)
		}
	}
}
