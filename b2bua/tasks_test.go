package b2bua

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestTasksGoDuringWait: a task started while Wait is waiting (a BYE sent
// during shutdown) is waited for too, and -race sees no misuse.
func TestTasksGoDuringWait(t *testing.T) {
	ts := newTasks()
	release := make(chan struct{})
	var ran atomic.Int32
	ts.Go(func() { <-release; ran.Add(1) })
	waited := make(chan struct{})
	go func() { ts.Wait(); close(waited) }()
	time.Sleep(10 * time.Millisecond)
	ts.Go(func() { <-release; ran.Add(1) })
	close(release)
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return")
	}
	if ran.Load() != 2 {
		t.Errorf("Wait returned with %d of 2 tasks done", ran.Load())
	}
	ts.Wait() // nothing running: returns at once
}
