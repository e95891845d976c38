package b2bua

import (
	"sync"
	"sync/atomic"
)

// registry holds the live calls, found by either leg's Call-ID.
//
// sipgo runs each request in its own goroutine, so ACK, BYE and CANCEL for one
// call can race; the registry only finds calls, and each call serialises its
// own state under its own lock.
type registry struct {
	mu       sync.RWMutex
	byCallID map[string]callRef
	perEP    map[string]int
	// bySource counts live calls by the address their A-leg INVITE came
	// from, so that a stream connection carrying a dialog is not closed
	// as idle.
	bySource map[string]int
	live     int

	started atomic.Uint64
	ended   atomic.Uint64
}

type callRef struct {
	call *call
	leg  *leg
}

func newRegistry() *registry {
	return &registry{byCallID: make(map[string]callRef), perEP: make(map[string]int), bySource: make(map[string]int)}
}

// admit registers c under its A-leg Call-ID unless that Call-ID is already
// live or a concurrency cap would be exceeded. It reports why it refused.
func (r *registry) admit(c *call, maxTotal, maxA, maxB int) admitResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.byCallID[c.a.callID]; dup {
		return admitDuplicate
	}
	if maxTotal > 0 && r.live >= maxTotal {
		return admitFull
	}
	if maxA > 0 && r.perEP[c.aEndpoint] >= maxA {
		return admitFull
	}
	if maxB > 0 && r.perEP[c.bEndpoint] >= maxB {
		return admitFull
	}
	r.byCallID[c.a.callID] = callRef{call: c, leg: c.a}
	r.byCallID[c.b.callID] = callRef{call: c, leg: c.b}
	r.perEP[c.aEndpoint]++
	r.perEP[c.bEndpoint]++
	r.bySource[c.aSource]++
	r.live++
	r.started.Add(1)
	return admitOK
}

type admitResult int

const (
	admitOK admitResult = iota
	admitDuplicate
	admitFull
)

func (r *registry) lookup(callID string) (callRef, bool) {
	r.mu.RLock()
	ref, ok := r.byCallID[callID]
	r.mu.RUnlock()
	return ref, ok
}

// remove forgets c; it is idempotent.
func (r *registry) remove(c *call) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ref, ok := r.byCallID[c.a.callID]
	if !ok || ref.call != c {
		return
	}
	delete(r.byCallID, c.a.callID)
	delete(r.byCallID, c.b.getCallID())
	r.perEP[c.aEndpoint]--
	r.perEP[c.bEndpoint]--
	if r.perEP[c.aEndpoint] == 0 {
		delete(r.perEP, c.aEndpoint)
	}
	if r.perEP[c.bEndpoint] == 0 {
		delete(r.perEP, c.bEndpoint)
	}
	if r.bySource[c.aSource]--; r.bySource[c.aSource] <= 0 {
		delete(r.bySource, c.aSource)
	}
	r.live--
	r.ended.Add(1)
}

// rebindB moves c's B-leg to the Call-ID and endpoint of the attempt that
// answered; apply changes the call's own fields while the registry is
// locked, so that remove always finds what it registered.
func (r *registry) rebindB(c *call, callID, endpoint string, apply func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	oldID, oldEP := c.b.callID, c.bEndpoint
	ref, ok := r.byCallID[c.a.callID]
	registered := ok && ref.call == c
	apply()
	if !registered || (oldID == callID && oldEP == endpoint) {
		return
	}
	delete(r.byCallID, oldID)
	r.byCallID[callID] = callRef{call: c, leg: c.b}
	if oldEP != endpoint {
		if r.perEP[oldEP]--; r.perEP[oldEP] <= 0 {
			delete(r.perEP, oldEP)
		}
		r.perEP[endpoint]++
	}
}

// hasSource reports whether a live call's A-leg came from src.
func (r *registry) hasSource(src string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.bySource[src] > 0
}

func (r *registry) count() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.live
}

// snapshot returns the live calls, for shutdown.
func (r *registry) snapshot() []*call {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*call, 0, r.live)
	for id, ref := range r.byCallID {
		if ref.leg == ref.call.a && id == ref.call.a.callID {
			out = append(out, ref.call)
		}
	}
	return out
}
