package b2bua

import (
	"strings"
	"time"
)

// Admission is a permission gate's answer to a business-initiated call.
// Code 0 means the call may be placed; any other Code is the final response
// the dialer gets, with Reason as its phrase, MetaError in X-WABA-Error
// (when not 0) and RetryAfter in Retry-After (when above 0).
type Admission struct {
	Code       int
	Reason     string
	MetaError  int
	RetryAfter time.Duration
}

// CallTicket is an admitted business-initiated call's reservation at the
// gate. wagate calls Connected when Meta answers (B-leg 2xx) and Finish
// exactly once when the call is over, whatever ended it: with
// OutcomeNotSent when no INVITE of the call ever left for Meta.
type CallTicket interface {
	Connected()
	Finish(outcome Outcome)
}

// Outcome is how a business-initiated call ended, as far as WhatsApp's
// permission rules care.
type Outcome int

const (
	// OutcomeAnswered: Meta answered (2xx).
	OutcomeAnswered Outcome = iota
	// OutcomeUnanswered: Meta answered 480 (the user did not pick up).
	// Counts toward revocation.
	OutcomeUnanswered
	// OutcomeRejected: Meta answered 486 (the user declined). Counts
	// toward revocation.
	OutcomeRejected
	// OutcomeFailed: any other failure (other codes, no answer at all,
	// transport errors, a challenge wagate could not answer).
	OutcomeFailed
	// OutcomeCancelled: wagate's side gave up before an answer: CANCEL
	// from the dialer, ring timeout, shutdown.
	OutcomeCancelled
	// OutcomeNoPermission: Meta answered 403 No Approved Call Permission
	// Found: the gate should learn that the pair has no permission.
	OutcomeNoPermission
	// OutcomeNotSent: the call ended before its INVITE left for Meta
	// (wagate refused it itself: no free ports, draining, its own call
	// limits, no connection to Meta). Meta never saw it, so it must not
	// count toward the number's calls of the day.
	OutcomeNotSent
	// OutcomeDailyCap: Meta answered 403 Business Initiated Connected
	// Call Per Day Limit Hit: the user's connected calls of 24 hours are
	// at Meta's cap; the gate should refuse the user's next calls itself.
	OutcomeDailyCap
)

var outcomeNames = [...]string{"answered", "unanswered", "rejected", "failed", "cancelled", "no_permission", "not_sent", "daily_cap"}

func (o Outcome) String() string {
	if o >= 0 && int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "outcome(" + itoa(int(o)) + ")"
}

// outcomeFor classifies Meta's final response to a business-initiated call.
// Only 480 (not answered) and 486 (declined) are the user's doing; Meta's
// 408 is an RTP timeout and, like 603 and the rest, counts for nothing.
func outcomeFor(code int, reason string) Outcome {
	switch {
	case code >= 200 && code < 300:
		return OutcomeAnswered
	case code == 480:
		return OutcomeUnanswered
	case code == 486:
		return OutcomeRejected
	case code == 403 && strings.Contains(strings.ToLower(reason), "no approved call permission"):
		return OutcomeNoPermission
	case code == 403 && strings.Contains(strings.ToLower(reason), "connected call per day limit"):
		// The per user (business–user pair) cap of connected calls, by
		// Meta's phrase; Meta's SIP answers name no number-wide limit
		// (its 503 is "generic internal error"), so nothing else is
		// learned (docs/api.md "What wagate learns from Meta's refusals").
		return OutcomeDailyCap
	}
	return OutcomeFailed
}

// PermissionGate decides business-initiated calls and learns from
// user-initiated ones (DESIGN.md §5). The permissions package implements it
// through an adapter in cmd/wagate; sip depends only on this interface.
type PermissionGate interface {
	// AdmitBIC decides a business-initiated call from the business number
	// with Meta's phoneNumberID to the WhatsApp user (+E.164). The ticket
	// is nil when the call is not allowed.
	AdmitBIC(phoneNumberID, user string) (Admission, CallTicket)
	// GrantFromUIC records that user called the business number, for
	// numbers with callback_permission.
	GrantFromUIC(phoneNumberID, user string)
}

// gateBox lets an interface value sit in an atomic.Pointer.
type gateBox struct{ g PermissionGate }

// SetPermissionGate installs the permission gate consulted for every new
// call; nil turns the checks off (permissions.enabled false). It may be
// called while the server runs; calls already admitted keep their ticket.
func (s *Engine) SetPermissionGate(g PermissionGate) {
	if g == nil {
		s.gate.Store(nil)
		return
	}
	s.gate.Store(&gateBox{g: g})
}

func (s *Engine) permissionGate() PermissionGate {
	if b := s.gate.Load(); b != nil {
		return b.g
	}
	return nil
}
