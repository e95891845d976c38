package b2bua

import (
	"io"
	"log/slog"
	"strconv"
	"testing"
)

// TestStrayByesBounded: one BYE per stray dialog, at most maxStrayByes at
// once, and a slot is free again when its BYE is over.
func TestStrayByesBounded(t *testing.T) {
	var b strayByes
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if !b.start("a", log) {
		t.Fatal("first stray dialog refused a BYE")
	}
	if b.start("a", log) {
		t.Error("a retransmitted 2xx got a second BYE while the first is under way")
	}
	for i := 1; i < maxStrayByes; i++ {
		if !b.start(strconv.Itoa(i), log) {
			t.Fatalf("stray dialog %d refused with %d under way", i, i)
		}
	}
	if b.start("over", log) {
		t.Errorf("a BYE started with %d under way", maxStrayByes)
	}
	b.done("a")
	if !b.start("over", log) {
		t.Error("no BYE after one under way ended")
	}
}
