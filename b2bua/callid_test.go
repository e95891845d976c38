package b2bua

import (
	"strings"
	"testing"
)

// TestBLegCallIDsAreOurs: every B-leg Call-ID wagate numbers, a queue's
// thousandth attempt and beyond included, is one it recognises as its own
// (a stray 2xx to it gets ACK and BYE); look-alikes are not.
func TestBLegCallIDsAreOurs(t *testing.T) {
	id := newCallID()
	for _, n := range []int{1, 2, 9, 10, 999, 1000, 1001, 65536, 180000, 999_999_999} {
		if cid := bLegCallID(id, n); !isOurCallID(cid) {
			t.Errorf("attempt %d: Call-ID %q not recognised as wagate's", n, cid)
		}
	}
	for _, cid := range []string{
		id + "-1000000000" + bLegCallIDSuffix, // more digits than wagate numbers
		id + "-" + bLegCallIDSuffix,
		id + "-0" + bLegCallIDSuffix,
		id + "-0012" + bLegCallIDSuffix,
		id + "-12a" + bLegCallIDSuffix,
		id + "-1-2" + bLegCallIDSuffix,
		id[:23] + "-2" + bLegCallIDSuffix,
		strings.ToUpper(id) + bLegCallIDSuffix,
		id + "-2@elsewhere",
		id,
	} {
		if isOurCallID(cid) {
			t.Errorf("Call-ID %q recognised as wagate's", cid)
		}
	}
}

// FuzzIsOurCallID: any Call-ID a peer sends is checked without a panic,
// and one accepted has the form bLegCallID makes.
func FuzzIsOurCallID(f *testing.F) {
	id := newCallID()
	f.Add(bLegCallID(id, 1))
	f.Add(bLegCallID(id, 1000))
	f.Add(id + "-" + bLegCallIDSuffix)
	f.Add("-@wagate")
	f.Fuzz(func(t *testing.T, cid string) {
		if !isOurCallID(cid) {
			return
		}
		base, _ := strings.CutSuffix(cid, bLegCallIDSuffix)
		hexID, n, found := strings.Cut(base, "-")
		if len(hexID) != 24 || found && (n == "" || n[0] == '0' || len(n) > maxAttemptDigits) {
			t.Fatalf("accepted %q", cid)
		}
	})
}
