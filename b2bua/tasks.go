package b2bua

import "sync"

// tasks owns the goroutines the server starts outside request handlers
// (BYEs, CANCELs, stray-2xx clean-up, the restart's BYEs) so that
// shutdown can wait for them. Unlike a sync.WaitGroup it may be added to
// while a Wait is under way: a late BYE from a peer can make wagate send
// one during shutdown.
type tasks struct {
	mu   sync.Mutex
	n    int
	zero *sync.Cond
}

func newTasks() *tasks {
	t := &tasks{}
	t.zero = sync.NewCond(&t.mu)
	return t
}

// Go runs f in a goroutine the server owns.
func (t *tasks) Go(f func()) {
	t.mu.Lock()
	t.n++
	t.mu.Unlock()
	go func() {
		defer t.done()
		f()
	}()
}

func (t *tasks) done() {
	t.mu.Lock()
	t.n--
	if t.n == 0 {
		t.zero.Broadcast()
	}
	t.mu.Unlock()
}

// Wait returns once no task is running.
func (t *tasks) Wait() {
	t.mu.Lock()
	for t.n > 0 {
		t.zero.Wait()
	}
	t.mu.Unlock()
}
