package callflow

import (
	"context"
	"time"
)

// The engine's side of a CloudIVR-style queue (ACD). Not built yet: it
// needs hunt lists, which do not exist. The design, so that the hunt-list
// work can implement it without changing the engine's shape:
//
// A flow action "queue" (params: queue, priority, limitTime, musicUrl,
// announcePosition, announceEvery) makes the engine call Queue.Join. While
// the Ticket waits, the engine plays the music file in a loop through
// Call.Play and, every announceEvery, interrupts it to say the position and
// estimated wait from the latest Status ("You are number 2 in the queue;
// the expected wait is about 3 minutes"). The queue, not the engine,
// decides when an agent is free and connects the call itself (Result
// reports QueueConnected); after limitTime it gives up (QueueTimedOut) and
// the engine takes the fallback route, as for any failure. VIP callers are
// a higher Priority: the queue serves priorities high to low, first come
// first served within one. Until this exists ParseFlow refuses "queue" as
// an unknown action.

// Queue places calls in a named hunt list's waiting line.
type Queue interface {
	// Join puts call in line. The call is connected by the queue when an
	// agent of the hunt list is free.
	Join(ctx context.Context, call Call, r QueueRequest) (Ticket, error)
}

// QueueRequest is one call joining a queue.
type QueueRequest struct {
	// Queue names the hunt list.
	Queue string
	// Priority orders callers: higher first (VIP), then by arrival.
	Priority int
	// LimitTime bounds the wait; then Result reports QueueTimedOut.
	LimitTime time.Duration
}

// Ticket is a call's place in a queue.
type Ticket interface {
	// Status delivers the position (1 = next) and the estimated wait
	// whenever either changes; closed when the wait is over.
	Status() <-chan QueueStatus
	// Result delivers one QueueResult when the wait is over.
	Result() <-chan QueueResult
	// Leave takes the call out of line (the caller hung up, or the engine
	// gave up); Result then reports QueueLeft.
	Leave()
}

// QueueStatus is a waiting call's place.
type QueueStatus struct {
	Position int
	ETA      time.Duration
}

// QueueResult is how a wait ended.
type QueueResult struct {
	Outcome string // QueueConnected, QueueTimedOut, QueueLeft
	Err     error
}

// Outcomes of QueueResult.
const (
	QueueConnected = "connected"
	QueueTimedOut  = "timedOut"
	QueueLeft      = "left"
)
