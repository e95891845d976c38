// Package events keeps wagate's call detail records and delivers its call
// events to webhook subscribers.
//
// It is told, it does not look: the call path (sip) calls the Sink's
// methods at each point of a call — CallStarted, CallRinging, CallAnswered,
// CallEnded with the CDR, CallRefused with the CDR of an INVITE refused
// locally — and permissions and recording report PermissionChanged and
// RecordingReady. None of those methods blocks or fails: each puts one
// record on a bounded in-memory queue and returns; when the queue is full
// the record is dropped and counted (Stats), never the call slowed.
//
// One writer goroutine drains the queue into one SQLite database (WAL,
// synchronous=FULL), batching records into transactions. A CDR, its
// call.ended event and the event's pending deliveries are committed in the
// same transaction, so after a crash either all of them exist or none.
//
// The events table is a durable outbox. Each subscriber has a scheduler
// goroutine that picks due deliveries, at most Concurrency attempts at a
// time, never an event of a call before the earlier events of the same call
// (per subscriber), and posts them signed (X-Wagate-Signature). A failed
// attempt is retried with exponential backoff and full jitter; after
// MaxAttempts it becomes a dead letter, listed and replayable. Attempt
// results go back through the writer, batched like the records.
//
// A sweeper deletes CDRs older than the CDR retention and delivered events
// and dead letters older than the event retention.
package events
