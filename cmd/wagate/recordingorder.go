package main

import (
	"sync"

	"github.com/wagate/wagate/events"
)

// readyAfterEnd holds a recording.ready until its call's call.ended has
// gone to the sink. A call's recording finishes after its end, but a
// voicemail a call flow takes finishes while the call goes on (the flow
// thanks the caller, asks more): its recording.ready went out first, and
// a CRM that files recordings onto the record call.ended makes, as the
// per-call order in docs/events.md allows, dropped the voicemail.
//
// It observes every call after the sink (AddObserver order): at a call's
// end the sink has its call.ended when the held recordings go.
type readyAfterEnd struct {
	emit func(events.Recording)

	mu   sync.Mutex
	live map[string][]events.Recording // call id → recordings held
}

func newReadyAfterEnd(emit func(events.Recording)) *readyAfterEnd {
	return &readyAfterEnd{emit: emit, live: map[string][]events.Recording{}}
}

// ready emits r, or holds it while its call is up.
func (o *readyAfterEnd) ready(r events.Recording) {
	o.mu.Lock()
	if held, up := o.live[r.CallID]; up {
		o.live[r.CallID] = append(held, r)
		o.mu.Unlock()
		return
	}
	o.mu.Unlock()
	o.emit(r)
}

// CallStarted notes a call as up.
func (o *readyAfterEnd) CallStarted(c events.Call) {
	o.mu.Lock()
	if _, up := o.live[c.CallID]; !up {
		o.live[c.CallID] = nil
	}
	o.mu.Unlock()
}

// CallRinging is not needed.
func (o *readyAfterEnd) CallRinging(events.Call) {}

// CallAnswered is not needed.
func (o *readyAfterEnd) CallAnswered(events.Call) {}

// CallEnded sends the recordings held for the call.
func (o *readyAfterEnd) CallEnded(cdr events.CDR) { o.end(cdr.CallID) }

// CallRefused ends a call refused after it started.
func (o *readyAfterEnd) CallRefused(cdr events.CDR) { o.end(cdr.CallID) }

func (o *readyAfterEnd) end(callID string) {
	o.mu.Lock()
	held := o.live[callID]
	delete(o.live, callID)
	o.mu.Unlock()
	for _, r := range held {
		o.emit(r)
	}
}
