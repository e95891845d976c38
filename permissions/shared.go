package permissions

import (
	"errors"
	"time"
)

// Store is the call-permission state wagate consults and changes, whatever
// keeps it: the embedded *Cache (memory authoritative, bbolt on disk, one
// node) or *Redis (shared by every node behind a dispatcher). Each method is
// one atomic step of the rules: N nodes on one Redis admit exactly what one
// node would.
//
// Changes (Grant, Revoke, ApplyReply, Restrict, MarkMessage) are durable
// when they return nil. Reads and admissions never fail silently: a store
// that cannot answer says so (ErrUnavailable, or a Decision with verdict
// Unavailable) and the caller refuses rather than guesses, unless the
// Redis store was configured to admit from its local cache.
type Store interface {
	// Reserve decides a business-initiated call and, when it is allowed,
	// reserves it; the Reservation is nil otherwise.
	Reserve(k Key) (Decision, Reservation)
	// Lookup returns a pair's state; false when nothing is known of it.
	Lookup(k Key) (Entry, bool, error)
	// Entries lists pairs (see Filter).
	Entries(f Filter) ([]Entry, error)

	Grant(k Key, permanent bool, expires time.Time, source string) error
	Revoke(k Key, source string) error
	// ApplyReply applies Meta's call_permission_reply: it links the
	// user's phone number and BSUID when the reply names both, and ignores
	// a reply older than the pair's last change (applied false).
	ApplyReply(r Reply) (applied bool, err error)
	// GrantFromUIC records the temporary permission a user-initiated call
	// grants (callback permission); errors are logged.
	GrantFromUIC(k Key)
	// UICConnected records that a user-initiated call with the user was
	// answered: like a connected business-initiated call it resets the
	// permission-request limits (Meta: "a connected call … will reset the
	// limits"). Errors are logged.
	UICConnected(k Key)
	// ClearConnectedCalls forgets the user's connected calls of the last
	// 24 hours (the daily cap's count, learned ones included): an
	// operator's override. ErrNotFound when nothing is known of the pair.
	ClearConnectedCalls(k Key) error
	// RecordPermissionRequest asks whether the business may send the user
	// a call-permission request now, and counts it when it may.
	RecordPermissionRequest(k Key) Decision

	// Restrict pauses business-initiated calls (and permission requests)
	// from a business number until the given time (Meta's account_update
	// RESTRICTED_BUSINESS_INITIATED_CALLING); a zero until lifts it.
	Restrict(phoneNumberID string, until time.Time, reason string) error
	// RestrictFromMeta records Meta's pause sent at the given time (zero:
	// unknown), or Meta's lift (an until already passed), and says what
	// became of it (MetaResult). Meta's updates are ordered by the time
	// it sent them: one sent before the update in force is ignored
	// (MetaSuperseded), so that a late delivery neither shortens nor
	// lifts a newer pause, nor undoes Meta's newer lift. A pause an
	// operator lifted — it ends no later than the one lifted, and was
	// sent before the lift — is ignored too (MetaOperatorLifted): a
	// replayed account_update, which carries no message id, does not
	// bring back a pause the operator lifted, and a new one, ending
	// later, applies whatever its time.
	RestrictFromMeta(phoneNumberID string, until, at time.Time, reason string) (MetaResult, error)
	// Restrictions lists the numbers paused now.
	Restrictions() ([]Restriction, error)

	// MessageSeen reports whether a webhook message id was applied before
	// (replay protection that survives restarts); MarkMessage records it
	// once it has been applied.
	MessageSeen(id string) (bool, error)
	MarkMessage(id string) error

	// SetLimits replaces the limits without forgetting any counter.
	SetLimits(l Limits)
	// Stats are the store's counters, for /v1/status and /metrics.
	Stats() Stats
	Close() error
}

// Reservation is an admitted call's hold on the shared state: the user
// marked busy, one slot of the number's concurrency, one of its 24-hour
// rate. Finish must be called exactly once whatever happens to the call.
// *Ticket is the embedded store's.
type Reservation interface {
	Key() Key
	// Connected records that Meta answered.
	Connected()
	// Finish ends the reservation with the call's outcome.
	Finish(o Outcome)
}

// Reply is one call_permission_reply from Meta's webhook.
type Reply struct {
	// Key names the business number and the user: the phone number when
	// Meta gives one, else the BSUID.
	Key Key
	// BSUID is the user's business-scoped id when Meta gives it beside
	// the phone number (both in one reply link them).
	BSUID     string
	Accept    bool
	Permanent bool
	Expires   time.Time // temporary accept; zero: the TTL from now
	Source    string
	// At is when the user answered (the message's timestamp); a reply
	// older than the pair's last change is ignored. Zero: now.
	At time.Time
}

// Restriction is a business number Meta paused for business-initiated
// calls.
type Restriction struct {
	PhoneNumberID string    `json:"phone_number_id"`
	Until         time.Time `json:"until"`
	Reason        string    `json:"reason"`
}

// Stats are a store's counters since start. They are cumulative (Prometheus
// counters) except where named otherwise.
type Stats struct {
	// Backend is "bbolt", "memory" or "redis".
	Backend string `json:"backend"`
	// Up is false while the store cannot be reached (Redis down).
	Up bool `json:"up"`
	// Errors counts operations the store failed (Redis unreachable, slow,
	// or answering garbage; a disk write that failed).
	Errors uint64 `json:"errors"`
	// RefusedUnavailable counts calls and requests refused because the
	// store could not answer (policy refuse).
	RefusedUnavailable uint64 `json:"refused_unavailable"`
	// AdmittedFromCache counts calls admitted from the local cache while
	// Redis was down (policy cache).
	AdmittedFromCache uint64 `json:"admitted_from_cache"`
	// LearnedNoPermission counts pairs revoked because Meta itself
	// answered 403 No Approved Call Permission Found.
	LearnedNoPermission uint64 `json:"learned_no_permission"`
	// LearnedDailyCap counts the times Meta answered 403 Business
	// Initiated Connected Call Per Day Limit Hit for a pair wagate had
	// below the cap (its window was filled up to the cap).
	LearnedDailyCap uint64 `json:"learned_daily_cap"`
	// StaleReplies counts webhook replies ignored as older than the pair's
	// last change; ReplayedMessages those ignored as already applied.
	StaleReplies     uint64 `json:"stale_replies"`
	ReplayedMessages uint64 `json:"replayed_messages"`
	// StaleAccountUpdates counts Meta's account_updates (pauses and
	// lifts of a number) ignored as sent before the one in force.
	StaleAccountUpdates uint64 `json:"stale_account_updates"`
	// RestrictedRefusals counts calls refused because Meta paused the
	// number's business-initiated calling.
	RestrictedRefusals uint64 `json:"restricted_refusals"`
	// PendingOutcomes is the number of call outcomes made while Redis was
	// down and not yet written back (a gauge).
	PendingOutcomes int `json:"pending_outcomes"`
	// DataLost counts the times this node found that Redis had lost its
	// data since it last looked (its epoch key was gone or new: a restart
	// without the append-only file, a failover to a replica without it,
	// a FLUSHALL): every grant and counter written before is gone.
	DataLost uint64 `json:"data_lost,omitempty"`
}

// ErrUnavailable is wrapped by every error of a store that cannot be
// reached.
var ErrUnavailable = errors.New("permission store unavailable")

// Reserve is Admit behind the Store interface.
func (c *Cache) Reserve(k Key) (Decision, Reservation) {
	d, t := c.Admit(k)
	if t == nil {
		return d, nil
	}
	return d, t
}

// Lookup is Get behind the Store interface; the embedded store cannot fail
// a read.
func (c *Cache) Lookup(k Key) (Entry, bool, error) {
	en, ok := c.Get(c.resolve(k))
	return en, ok, nil
}

// Entries is List behind the Store interface.
func (c *Cache) Entries(f Filter) ([]Entry, error) { return c.List(f), nil }

var _ Store = (*Cache)(nil)
