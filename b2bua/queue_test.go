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
