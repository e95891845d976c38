package permissions

import (
	"fmt"
	"time"
)

// Verdict is the answer to a business-initiated call or a permission request.
type Verdict int

const (
	// Allow: place the call (Admit) or send the request (RecordPermissionRequest).
	Allow Verdict = iota
	// NoPermission: the user has not approved calls, or a temporary
	// approval expired, or it was revoked.
	NoPermission
	// DailyCapHit: the user had the maximum connected calls in 24 hours.
	DailyCapHit
	// Busy: a call with this user is already up.
	Busy
	// NumberRateCap: the business number made its maximum new calls in 24 hours.
	NumberRateCap
	// NumberConcurrencyCap: the business number has its maximum calls up.
	NumberConcurrencyCap
	// RequestCapHit: the business asked this user for permission too often.
	RequestCapHit
	// Restricted: Meta paused business-initiated calling (and permission
	// requests) for the business number (account_update).
	Restricted
	// AlreadyPermanent: a permission request for a user whose permission
	// is already permanent.
	AlreadyPermanent
	// Unavailable: the store could not answer (Redis down, policy refuse).
	Unavailable
)

var verdictNames = [...]string{"allow", "no_permission", "daily_cap_hit", "busy", "number_rate_cap", "number_concurrency_cap", "request_cap_hit",
	"restricted", "already_permanent", "store_unavailable"}

func (v Verdict) String() string {
	if v >= 0 && int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return fmt.Sprintf("verdict(%d)", int(v))
}

// Decision is a Verdict with what sip needs to answer the dialer: the SIP
// status code and reason phrase, Meta's error code for X-WABA-Error, and
// Retry-After when the refusal lifts at a known time (DESIGN.md §4).
type Decision struct {
	Verdict    Verdict
	RetryAfter time.Duration
	Code       int
	Reason     string
	MetaError  int
}

// Allowed reports whether the verdict is Allow.
func (d Decision) Allowed() bool { return d.Verdict == Allow }

// RetryAfterSeconds is RetryAfter rounded up to whole seconds (the unit of
// the SIP and HTTP Retry-After headers); 0 when there is none.
func (d Decision) RetryAfterSeconds() int {
	if d.RetryAfter <= 0 {
		return 0
	}
	return int((d.RetryAfter + time.Second - 1) / time.Second)
}

// concurrencyRetryAfter is the Retry-After of a concurrency refusal: when a
// call will end is unknowable, and dialers need a hint that is short enough
// to keep agents busy and long enough not to hammer us.
const concurrencyRetryAfter = 5 * time.Second

// UnavailableReason is the reason phrase of the 503 that refuses a call
// because the permission store cannot answer (Redis down):
// deploy/kamailio/kamailio.cfg matches it.
const UnavailableReason = "Permission Store Unavailable"

// unavailableRetryAfter is the Retry-After of a refusal because the store
// could not answer.
const unavailableRetryAfter = 5 * time.Second

func decide(v Verdict, retry time.Duration) Decision {
	d := Decision{Verdict: v, RetryAfter: retry}
	switch v {
	case Allow:
		d.Code, d.Reason = 200, "OK"
	case NoPermission:
		d.Code, d.Reason, d.MetaError = 403, "No Approved Call Permission Found", 138006
	case DailyCapHit:
		d.Code, d.Reason, d.MetaError = 403, "Business Initiated Connected Call Per Day Limit Hit", 138012
	case Busy:
		d.Code, d.Reason, d.MetaError = 486, "Busy Here", 138003
	case NumberRateCap:
		d.Code, d.Reason, d.MetaError = 503, "Service Unavailable", 138005
	case NumberConcurrencyCap:
		d.Code, d.Reason, d.MetaError = 503, "Service Unavailable", 138002
	case RequestCapHit:
		// Not a SIP answer: the permission request is a message the
		// business sends through Meta's Graph API, so this is HTTP's
		// "slow down", with the code Meta itself answers.
		d.Code, d.Reason, d.MetaError = 429, "Call Permission Request Limit Hit", 138009
	case AlreadyPermanent:
		// HTTP too: nothing to ask, the user already said "always".
		d.Code, d.Reason, d.MetaError = 409, "Call Permission Already Permanent", 138017
	case Restricted:
		// Meta's code for "business-initiated calling unavailable"; the
		// same 403 answers a call (SIP) and a permission request (HTTP).
		d.Code, d.Reason, d.MetaError = 403, "Business Initiated Calling Restricted", 138013
	case Unavailable:
		// Our own trouble, not the user's: no Meta code, and a short
		// Retry-After so that the dialer comes back soon. The phrase is
		// UnavailableReason so that a dispatcher in front of several
		// nodes can tell this refusal (the store they share) from a
		// node's own trouble, and keep the node in.
		d.Code, d.Reason = 503, UnavailableReason
		if d.RetryAfter <= 0 {
			d.RetryAfter = unavailableRetryAfter
		}
	}
	return d
}
