package b2bua

import (
	"testing"
	"time"
)

// A line's estimated wait is the mean of its latest connected waits
// (queueHistory of them) less what the caller has waited; nothing before
// any call was connected, or once the caller has waited longer.
func TestQueueEstimate(t *testing.T) {
	var w waitLines
	if e := w.estimate("sales", 0); e != 0 {
		t.Fatalf("no history: estimate %v, want none", e)
	}
	w.connected("sales", 60*time.Second)
	w.connected("sales", 120*time.Second)
	w.connected("support", 10*time.Minute)
	if e := w.estimate("sales", 0); e != 90*time.Second {
		t.Errorf("waits 60 s and 120 s: estimate %v, want 1m30s", e)
	}
	if e := w.estimate("sales", 30*time.Second); e != time.Minute {
		t.Errorf("after 30 s of waiting: estimate %v, want 1m0s", e)
	}
	if e := w.estimate("sales", 5*time.Minute); e != 0 {
		t.Errorf("waited past the mean: estimate %v, want none", e)
	}
	// Only the latest queueHistory count: old long waits age out.
	for range queueHistory {
		w.connected("sales", 20*time.Second)
	}
	if e := w.estimate("sales", 0); e != 20*time.Second {
		t.Errorf("after %d waits of 20 s: estimate %v, want 20s", queueHistory, e)
	}
	if e := w.estimate("support", 0); e != 10*time.Minute {
		t.Errorf("lines mixed up: support's estimate %v", e)
	}
}

// TestQueueRejectBackoff: an agent whose ring failed rests for its list's
// back-off, for that line only, and is free again after it; a back-off
// of 0 never rests anyone; rests that are over are dropped.
func TestQueueRejectBackoff(t *testing.T) {
	var w waitLines
	now := time.Now()
	w.failed("sales", "1001@pbx", 10*time.Second, now)
	w.failed("sales", "1002@pbx", 0, now)
	if u := w.restsUntil("sales", "1001@pbx", now.Add(9*time.Second)); !u.Equal(now.Add(10 * time.Second)) {
		t.Errorf("an agent that failed 9 s ago, back-off 10 s: rests until %v, want 1 s from then", u)
	}
	if u := w.restsUntil("sales", "1001@pbx", now.Add(10*time.Second)); !u.IsZero() {
		t.Error("an agent still resting once its 10 s back-off is over")
	}
	if u := w.restsUntil("support", "1001@pbx", now); !u.IsZero() {
		t.Error("an agent resting for another line")
	}
	if u := w.restsUntil("sales", "1002@pbx", now); !u.IsZero() {
		t.Error("an agent resting with a back-off of 0")
	}
	w.failed("sales", "1003@pbx", 5*time.Second, now.Add(11*time.Second))
	if len(w.resting) != 1 {
		t.Errorf("%d rests kept, want only the one not over", len(w.resting))
	}
}
