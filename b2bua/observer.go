package b2bua

import (
	"slices"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
	"github.com/wagate/wagate/events"
	"github.com/wagate/wagate/media"
	sipedge "github.com/wagate/wagate/sip"
)

// CallObserver is told about every call wagate routes or refuses: the
// events store (CDRs and webhooks) and the metrics implement it. The
// methods are called on the call path and must not block. For one call
// they are called in order (started, ringing, answered, then ended; or
// refused alone).
type CallObserver interface {
	CallStarted(events.Call)
	CallRinging(events.Call)
	CallAnswered(events.Call)
	CallEnded(events.CDR)
	CallRefused(events.CDR)
}

// RecoveredObserver is a CallObserver told of a record recovered from
// the journal (a call the previous run ended, and told its observers of,
// and died before the events store had its record) by CallRecovered
// instead of CallEnded. The events store takes it as any record (it keeps
// one per call); a count kept in memory (metrics) counted the call when
// it ended, and counting it again at the restart counts it twice.
type RecoveredObserver interface {
	CallRecovered(events.CDR)
}

// AddObserver adds o to the observers of every call. Call it before Run.
func (s *Engine) AddObserver(o CallObserver) { s.observers = append(s.observers, o) }

// callInfo is what is known of a call so far, for its events.
func (c *call) callInfo() events.Call {
	// A transfer replaces a leg (under c.mu); a hunt's answer rebinds
	// B's Call-ID (under b.mu); a flow's click-to-call gets its user's
	// route when its flow connects (under c.mu).
	c.mu.Lock()
	d := c.route
	a, b := c.a, c.b
	aEndpoint, bEndpoint, bUser := c.aEndpoint, c.bEndpoint, c.bUser
	c.mu.Unlock()
	b.mu.Lock()
	bCallID := b.callID
	b.mu.Unlock()
	if bEndpoint == "" {
		// A call wagate answered itself that no connect has reached yet:
		// its B is nobody (the Call-ID is the one the first attempt, if
		// any, used; attempts list it).
		bCallID = ""
	}
	ci := events.Call{
		CallID:         c.id,
		Direction:      events.Direction(d.Dir),
		WACallID:       d.UIC.WACallID,
		BusinessNumber: d.Number.Number,
		PhoneNumberID:  d.Number.PhoneNumberID,
		User:           d.User,
		A:              events.Leg{Endpoint: aEndpoint, SIPCallID: a.id()},
		B:              events.Leg{Endpoint: bEndpoint, SIPCallID: bCallID, User: bUser},
		Origin:         c.origin,
	}
	if d.BIC != nil {
		ci.CampaignID, ci.CallbackData = d.BIC.CampaignID, d.BIC.CallbackData
	}
	return ci
}

func (s *Engine) notifyStarted(c *call) {
	if len(s.observers) == 0 {
		return
	}
	ci := c.callInfo()
	for _, o := range s.observers {
		o.CallStarted(ci)
	}
}

// notifyRinging reports B's first ringing.
func (s *Engine) notifyRinging(c *call, code int) {
	c.mu.Lock()
	first := c.ringingAt.IsZero()
	if first {
		c.ringingAt = time.Now()
	}
	c.mu.Unlock()
	if !first {
		return
	}
	s.journalUp(c) // the record after a crash says it rang
	if len(s.observers) == 0 {
		return
	}
	ci := c.callInfo()
	ci.SIPCode = code
	for _, o := range s.observers {
		o.CallRinging(ci)
	}
}

func (s *Engine) notifyAnswered(c *call) {
	if len(s.observers) == 0 {
		return
	}
	ci := c.callInfo()
	ci.SIPCode = 200
	for _, o := range s.observers {
		o.CallAnswered(ci)
	}
}

// finalToA records the final response A got (or is about to get), for the
// call's record.
func (c *call) finalToA(r *sipedge.Rejection) {
	c.mu.Lock()
	if c.finalCode == 0 {
		c.finalCode, c.finalReason, c.wabaError = r.Code, r.Reason, r.MetaError
	}
	c.mu.Unlock()
}

// notifyEnded builds the call's record once it is over (its media
// closed) and hands it to the observers.
//
// It also records the call's end in the journal, with its record, before
// the observers have it: the journal keeps the record until the events
// store has it (Journal.Stored).
func (s *Engine) notifyEnded(c *call, by, cause string, outcome Outcome, connected bool) {
	if len(s.observers) == 0 && c.flow == nil {
		s.journalDown(c, nil)
		return
	}
	ci := c.callInfo()
	end := time.Now()
	c.mu.Lock()
	cdr := events.CDR{
		CallID: c.id, Direction: ci.Direction, WACallID: ci.WACallID,
		BusinessNumber: ci.BusinessNumber, PhoneNumberID: ci.PhoneNumberID, User: ci.User,
		A: ci.A, B: ci.B,
		CreatedAt: c.created, RingingAt: c.ringingAt, AnsweredAt: c.answeredAt, EndedAt: end,
		SIPCode: c.finalCode, SIPReason: c.finalReason, WABAError: c.wabaError,
		HangupBy: by, Cause: cause, Permission: c.permission,
		RecordingID: c.recordingID, CampaignID: ci.CampaignID, CallbackData: ci.CallbackData,
		Origin:     ci.Origin,
		AfterHours: c.route.AfterHours, Attempts: c.attempts.final(end), AttemptsOmitted: c.attempts.omitted,
		Transfers: slices.Clone(c.cc.transfers),
	}
	if c.route.Hunt != nil {
		cdr.Hunt = c.route.Hunt.Name
	}
	answered := !c.answeredAt.IsZero()
	c.mu.Unlock()
	if answered {
		cdr.SIPCode, cdr.SIPReason = 200, "OK"
	}
	if !answered && !connected && by == events.HangupWagate {
		// Before an answer the call was ended by whoever gave up on it:
		// A by cancelling, B by refusing (486, 480, …). wagate only ends
		// what timed out or failed.
		switch {
		case cause == causeCancelledByA:
			cdr.HangupBy = events.HangupA
		case isBLegFinal(cause):
			cdr.HangupBy = events.HangupB
		}
	}
	cdr.Outcome = cdrOutcome(answered || connected, cdr.SIPCode, cause, outcome)
	if c.origin != "" && !answered && !connected && by == events.HangupA && c.aAnsweredOnce() {
		// A click-to-call's agent hung up while the user's phone rang:
		// the caller gave up, and the user's INVITE was cancelled.
		cdr.SIPCode, cdr.SIPReason, cdr.Outcome = 487, "Request Terminated", events.Cancelled
	}
	if by == events.HangupAPI && cdr.Outcome != events.Answered {
		// An operator gave up on the call before it was answered.
		cdr.Outcome = events.Cancelled
	}
	if c.bridge != nil {
		if br, ok := c.bridge.(interface{ Report() media.Report }); ok {
			r := br.Report()
			cdr.A.Codec, cdr.A.Encryption = r.A.Codec, r.A.Encryption
			cdr.B.Codec, cdr.B.Encryption = r.B.Codec, r.B.Encryption
			cdr.Media = events.Media{AtoB: mediaDir(r.AtoB), BtoA: mediaDir(r.BtoA)}
		}
	}
	s.journalDown(c, &cdr)
	for _, o := range s.observers {
		o.CallEnded(cdr)
	}
	if c.flow != nil {
		c.flow.ended(cdr) // for the session summary
	}
}

func mediaDir(d media.DirectionReport) events.MediaStats {
	return events.MediaStats{
		Packets: d.Packets, Bytes: d.Bytes, Lost: d.Lost, JitterMS: d.JitterMS,
		SRTPAuthFailures: d.SRTPAuthFailures, SRTPReplayFailures: d.SRTPReplayFailures, LateFrames: d.Late,
		ConcealedFrames: d.Concealed, JitterBufferMS: d.JitterBufferMS,
	}
}

// cdrOutcome sums a call's end up for its record.
func cdrOutcome(connected bool, code int, cause string, o Outcome) events.Outcome {
	switch {
	case connected:
		return events.Answered
	case cause == causeCancelledByA:
		return events.Cancelled
	case code == 486 || code == 600 || code == 603:
		return events.Busy
	case code == 480 || code == 408 || o == OutcomeUnanswered:
		return events.Unanswered
	}
	return events.Failed
}

// causeCancelledByA is the cause of a call A cancelled.
const causeCancelledByA = "cancelled by a"

// causeAConnectionClosed is the cause of a call whose A-leg connection
// (TCP or TLS) closed before A had its answer.
const causeAConnectionClosed = "a-leg connection closed"

// isBLegFinal reports whether cause is B's final response ("b-leg 486").
func isBLegFinal(cause string) bool {
	code, ok := strings.CutPrefix(cause, "b-leg ")
	return ok && len(code) == 3 && code[0] >= '1' && code[0] <= '6' && code[1] >= '0' && code[1] <= '9' && code[2] >= '0' && code[2] <= '9'
}

// notifyRefused records an INVITE wagate refused before any call existed.
// dec is the routing decision when routing got that far (nil before).
func (s *Engine) notifyRefused(req *sip.Request, ep *configs.Endpoint, dec *sipedge.Decision, r *sipedge.Rejection, permission string) {
	if len(s.observers) == 0 {
		return
	}
	now := time.Now()
	cdr := events.CDR{
		CallID:    newCallID(),
		CreatedAt: now, EndedAt: now,
		A:       events.Leg{Endpoint: ep.Name, SIPCallID: callIDOf(req)},
		SIPCode: r.Code, SIPReason: r.Reason, WABAError: r.MetaError,
		Cause: r.Log, Permission: permission,
	}
	switch ep.Kind {
	case configs.KindWhatsApp:
		cdr.Direction = events.UIC
	default:
		cdr.Direction = events.BIC
	}
	if dec != nil {
		cdr.Direction = events.Direction(dec.Dir)
		cdr.BusinessNumber, cdr.PhoneNumberID, cdr.User = dec.Number.Number, dec.Number.PhoneNumberID, dec.User
		cdr.WACallID = dec.UIC.WACallID
		if dec.BEP != nil {
			// A caller refused before routing ended (blocklist, business
			// hours) has no B-leg.
			cdr.B.Endpoint, cdr.B.User = dec.BEP.Name, dec.Callees[0].User
		}
		if dec.Hunt != nil {
			cdr.Hunt = dec.Hunt.Name
		}
		cdr.AfterHours = dec.AfterHours
		if dec.BIC != nil {
			cdr.CampaignID, cdr.CallbackData = dec.BIC.CampaignID, dec.BIC.CallbackData
		}
	}
	for _, o := range s.observers {
		o.CallRefused(cdr)
	}
}

// permissionVerdict names the permission gate's answer for a CDR.
func permissionVerdict(a Admission) string {
	switch a.MetaError {
	case 0:
		if a.Code == 0 {
			return "allowed"
		}
		return "refused"
	case 138006:
		return "no_permission"
	case 138012:
		return "daily_limit"
	case 138003:
		return "user_busy"
	case 138005:
		return "rate_limit"
	case 138002:
		return "concurrency_limit"
	}
	return "refused"
}
