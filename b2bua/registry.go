package b2bua

import (
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/wagate/wagate/configs"
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
	// counted are the endpoints each call counts against (a transfer
	// moves one), extra the Call-IDs of every leg a call had, forgotten
	// with the call.
	counted map[*call][2]string
	extra   map[*call][]string
	// peers counts, by endpoint as the configuration of the time had it,
	// the live calls with a leg toward or from it; peersOf lists each
	// call's. A reload that removes an endpoint or moves its addresses
	// leaves its calls' dialogs reachable from the old addresses
	// (peerEndpoint) until they end.
	peers   map[*configs.Endpoint]int
	peersOf map[*call][]*configs.Endpoint
	// peerList is peers' keys, rebuilt when one comes or goes (once per
	// endpoint per configuration), so that the edge asks about every
	// stranger's packet without taking the lock calls are admitted under.
	peerList atomic.Pointer[[]*configs.Endpoint]

	started atomic.Uint64
	ended   atomic.Uint64
}

type callRef struct {
	call *call
	leg  *leg
}

func newRegistry() *registry {
	return &registry{byCallID: make(map[string]callRef), perEP: make(map[string]int), bySource: make(map[string]int),
		counted: make(map[*call][2]string), extra: make(map[*call][]string),
		peers: make(map[*configs.Endpoint]int), peersOf: make(map[*call][]*configs.Endpoint)}
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
	r.countLocked(c.aEndpoint)
	r.countLocked(c.bEndpoint) // none yet for a call wagate answers itself
	r.counted[c] = [2]string{c.aEndpoint, c.bEndpoint}
	r.extra[c] = []string{c.a.callID, c.b.callID}
	r.bySource[c.aSource]++
	r.usePeerLocked(c, c.a.ep)
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
	if r.forgetLocked(c) {
		r.ended.Add(1)
	}
}

// withdraw undoes the admission of a call refused before it started: it
// counts neither as started nor as ended.
func (r *registry) withdraw(c *call) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.forgetLocked(c) {
		r.started.Add(^uint64(0))
	}
}

func (r *registry) forgetLocked(c *call) bool {
	if _, ok := r.counted[c]; !ok {
		return false
	}
	for _, id := range r.extra[c] {
		if ref, ok := r.byCallID[id]; ok && ref.call == c {
			delete(r.byCallID, id)
		}
	}
	delete(r.extra, c)
	for _, ep := range r.counted[c] {
		r.uncountLocked(ep)
	}
	delete(r.counted, c)
	if r.bySource[c.aSource]--; r.bySource[c.aSource] <= 0 {
		delete(r.bySource, c.aSource)
	}
	gone := false
	for _, ep := range r.peersOf[c] {
		if r.peers[ep]--; r.peers[ep] <= 0 {
			delete(r.peers, ep)
			gone = true
		}
	}
	delete(r.peersOf, c)
	if gone {
		r.publishPeersLocked()
	}
	r.live--
	return true
}

func (r *registry) countLocked(ep string) {
	if ep != "" {
		r.perEP[ep]++
	}
}

func (r *registry) uncountLocked(ep string) {
	if ep == "" {
		return
	}
	if r.perEP[ep]--; r.perEP[ep] <= 0 {
		delete(r.perEP, ep)
	}
}

// addLeg makes a leg c placed after its first two findable by its
// Call-ID. It reports false, adding nothing, when c has ended (removed):
// an entry added then would never be forgotten.
func (r *registry) addLeg(c *call, l *leg) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, live := r.counted[c]; !live {
		return false
	}
	r.byCallID[l.callID] = callRef{call: c, leg: l}
	r.extra[c] = append(r.extra[c], l.callID)
	return true
}

// removeLeg forgets a leg addLeg added (one whose INVITE failed): a late
// 2xx for it is then a stray one, ACKed and hung up.
func (r *registry) removeLeg(c *call, l *leg) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ref, ok := r.byCallID[l.callID]; ok && ref.leg == l {
		delete(r.byCallID, l.callID)
	}
}

// moveEndpoint makes side s of live call c count against endpoint to
// instead of the one it counted against ("" for none). It refuses when
// to is at its cap max (0: none).
func (r *registry) moveEndpoint(c *call, s int, to string, max int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur, ok := r.counted[c]
	if !ok {
		return false
	}
	if cur[s] == to {
		return true
	}
	if to != "" && max > 0 && r.perEP[to] >= max {
		return false
	}
	r.uncountLocked(cur[s])
	if to != "" {
		r.perEP[to]++
	}
	cur[s] = to
	r.counted[c] = cur
	return true
}

// hasRoom reports whether endpoint ep may take one more call under its
// cap max (0: none).
func (r *registry) hasRoom(ep string, max int) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return max <= 0 || r.perEP[ep] < max
}

// rebindB moves c's B-leg to the Call-ID and endpoint of the attempt
// that answered its hunt; apply changes the call's own fields while the
// registry is locked, so that remove always finds what it registered.
func (r *registry) rebindB(c *call, callID, endpoint string, apply func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	oldID := c.b.callID
	cur, registered := r.counted[c]
	apply()
	if !registered {
		return
	}
	if oldID != callID {
		if ref, ok := r.byCallID[oldID]; ok && ref.call == c {
			delete(r.byCallID, oldID)
		}
		r.byCallID[callID] = callRef{call: c, leg: c.b}
		r.extra[c] = append(r.extra[c], callID)
	}
	if cur[1] != endpoint {
		r.uncountLocked(cur[1])
		r.countLocked(endpoint)
		cur[1] = endpoint
		r.counted[c] = cur
	}
}

// usePeer notes that live call c has a leg toward or from endpoint ep (a
// B-leg INVITE about to leave); nothing for a call already forgotten.
func (r *registry) usePeer(c *call, ep *configs.Endpoint) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.counted[c]; ok {
		r.usePeerLocked(c, ep)
	}
}

func (r *registry) usePeerLocked(c *call, ep *configs.Endpoint) {
	if ep == nil {
		return
	}
	for _, e := range r.peersOf[c] {
		if e == ep {
			return
		}
	}
	r.peersOf[c] = append(r.peersOf[c], ep)
	if r.peers[ep]++; r.peers[ep] == 1 {
		r.publishPeersLocked()
	}
}

func (r *registry) publishPeersLocked() {
	list := make([]*configs.Endpoint, 0, len(r.peers))
	for ep := range r.peers {
		list = append(list, ep)
	}
	r.peerList.Store(&list)
}

// peerEndpoint returns an endpoint a live call has a leg with whose
// source prefixes hold ip, or nil. The list holds one entry per endpoint
// per configuration still in use by a call: a handful.
func (r *registry) peerEndpoint(ip netip.Addr) *configs.Endpoint {
	list := r.peerList.Load()
	if list == nil {
		return nil
	}
	for _, ep := range *list {
		if ep.HasSource(ip) {
			return ep
		}
	}
	return nil
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
	for c := range r.counted {
		out = append(out, c)
	}
	return out
}
