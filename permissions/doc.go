// Package permissions is wagate's call-permission cache (DESIGN.md §5): the
// state of each (business phone-number-id, WhatsApp user) pair, Meta's
// limits and counters, expiry of temporary grants, and persistence.
//
// The cache answers the question "may this business-initiated call be placed
// now?" (Admit) from memory, without I/O, so that the SIP hot path never
// waits for a disk. Grants and revocations are the only state that must
// survive a restart; they are written to a bbolt file and fsynced before the
// call that made them returns. Counters (connected calls per user, the
// unanswered streak, permission-request counts, per-number rate and
// concurrency) live in memory only: a restart forgets them, which can let a
// business exceed Meta's rolling 24-hour limits once after a restart; Meta
// still enforces its own limits, so the cost is a rejected call, not a
// violation (docs/api.md, "Permission rules").
//
// The package knows nothing about SIP: sip turns a Decision into a response
// and reports a call's outcome through the Ticket that Admit returns.
package permissions
