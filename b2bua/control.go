package b2bua

import (
	"cmp"
	"errors"
	"net/netip"
	"slices"
	"time"

	"github.com/wagate/wagate/events"
	"github.com/wagate/wagate/media"
	sipedge "github.com/wagate/wagate/sip"
)

// ErrNoSuchCall is returned for a call id that no live call has (unknown,
// or the call has ended).
var ErrNoSuchCall = errors.New("b2bua: no such call")

// CauseAPI starts the cause of a call hung up through the control API
// (the CDR's cause: "api hangup" or "api hangup: <reason>").
const CauseAPI = "api hangup"

// maxReasonLen bounds the reason kept in a cause; the API refuses longer
// ones, this only guards other callers.
const maxReasonLen = 200

// CallInfo is a live call as the control API shows it.
type CallInfo struct {
	// ID is wagate's call id (X-WABA-Session, the CDR's call_id).
	ID        string
	Direction events.Direction
	// Origin is OriginClickToCall for a call POST /v1/calls started (A
	// is then the agent), empty otherwise.
	Origin string
	// State is "calling" (B-leg INVITE sent), "ringing" (B rang),
	// "answered" (200 sent to A, its ACK awaited), "confirmed", or
	// "ending" (hung up through the API before the answer, waiting for
	// B's final response).
	State          string
	BusinessNumber string
	PhoneNumberID  string
	User           string
	WACallID       string
	// CreatedAt is when A's INVITE was admitted; RingingAt and AnsweredAt
	// are zero until then.
	CreatedAt, RingingAt, AnsweredAt time.Time
	// A sent the INVITE; B is the leg wagate placed.
	A, B LegInfo
	// Ringing are the INVITEs wagate placed that have no final response
	// yet, in the order sent: every target a hunt rings (a parallel
	// list's all at once), a click-to-call's agents, a transfer's
	// targets. B (or A, for a click-to-call's agent) names one of them
	// until one answers.
	Ringing []RingingLeg
}

// RingingLeg is one INVITE of a live call waiting for its answer.
type RingingLeg struct {
	// Leg is "b" (the call's B-leg), "a" (a click-to-call's agent leg) or
	// "transfer" (a transfer's target).
	Leg       string
	Endpoint  string
	User      string
	SIPCallID string
	StartedAt time.Time
}

// LegInfo is one leg of a live call.
type LegInfo struct {
	Endpoint  string
	SIPCallID string
	// Codec ("opus", "PCMU", "PCMA") and Encryption ("sdes", "none") are
	// empty until negotiated.
	Codec, Encryption string
	// RemoteMedia is where wagate sends the leg's RTP (invalid before the
	// leg's SDP is known).
	RemoteMedia netip.AddrPort
	// Received is the media wagate received from the leg so far (see
	// media.Bridge.Live for how fresh).
	Received media.DirectionReport
}

// Calls lists the live calls, oldest first.
func (s *Engine) Calls() []CallInfo {
	calls := s.reg.snapshot()
	out := make([]CallInfo, 0, len(calls))
	for _, c := range calls {
		if info, ok := c.info(); ok {
			out = append(out, info)
		}
	}
	slices.SortFunc(out, func(x, y CallInfo) int {
		return cmp.Or(x.CreatedAt.Compare(y.CreatedAt), cmp.Compare(x.ID, y.ID))
	})
	return out
}

// Call returns the live call with wagate call id id.
func (s *Engine) Call(id string) (CallInfo, bool) {
	c := s.reg.find(id)
	if c == nil {
		return CallInfo{}, false
	}
	return c.info()
}

// Hangup ends the live call id on behalf of an operator. An answered
// call's legs both get a BYE at once. Before the answer, A gets 487
// Request Terminated and B a CANCEL (as soon as it has sent a
// provisional response), and the call ends with B's final response, as
// for a ring timeout. The CDR records hangup_by "api" and cause CauseAPI
// (with ": reason" when reason is not empty). Hangup returns the call as
// it was when asked; what it sends completes afterwards. Asking again
// while an unanswered call is being given up changes nothing.
func (s *Engine) Hangup(id, reason string) (CallInfo, error) {
	c := s.reg.find(id)
	if c == nil {
		return CallInfo{}, ErrNoSuchCall
	}
	info, ok := c.info()
	if !ok {
		return CallInfo{}, ErrNoSuchCall
	}
	cause := CauseAPI
	if reason != "" {
		cause += ": " + truncate(reason, maxReasonLen)
	}
	c.mu.Lock()
	switch c.state {
	case stateEnded:
		c.mu.Unlock()
		return CallInfo{}, ErrNoSuchCall
	case stateCalling:
		// The hunt (ring) owns the INVITE transactions until the answer:
		// it gives up on B (answerA checks apiCause under this lock, so
		// an answer that raced this ends the call too).
		if c.apiCause == "" {
			c.apiCause = cause
			if c.apiHangup == nil {
				c.apiHangup = make(chan struct{})
			}
			close(c.apiHangup)
		}
		c.mu.Unlock()
		c.log.Info("hangup requested through the API", "cause", cause)
		return info, nil
	}
	c.mu.Unlock()
	if !c.end(nil, events.HangupAPI, cause) {
		return CallInfo{}, ErrNoSuchCall
	}
	return info, nil
}

// hangupRequests is closed when the API asks to end the call before its
// answer.
func (c *call) hangupRequests() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.apiHangup == nil {
		c.apiHangup = make(chan struct{})
	}
	return c.apiHangup
}

// earlyEnd is A's final response when the call ends before its answer
// without B's say: 487 when the API hung it up (Log is the API's cause),
// else 503 (the call was ended from outside: drain, shutdown).
func (c *call) earlyEnd() *sipedge.Rejection {
	c.mu.Lock()
	cause := c.apiCause
	c.mu.Unlock()
	if cause != "" {
		return &sipedge.Rejection{Code: 487, Reason: "Request Terminated", Log: cause}
	}
	return &sipedge.Rejection{Code: 503, Reason: "Service Unavailable", Log: "call ended before answer"}
}

// info describes the call; false once it has ended.
func (c *call) info() (CallInfo, bool) {
	ci := c.callInfo()
	c.mu.Lock()
	state, ringingAt, answeredAt, br, ending := c.state, c.ringingAt, c.answeredAt, c.bridge, c.apiCause != ""
	ringing := make([]RingingLeg, 0, len(c.ringing))
	for _, r := range c.ringing {
		ringing = append(ringing, r.RingingLeg)
	}
	c.mu.Unlock()
	if state == stateEnded {
		return CallInfo{}, false
	}
	info := CallInfo{
		ID: c.id, Direction: ci.Direction, Origin: c.origin, State: state.String(),
		BusinessNumber: ci.BusinessNumber, PhoneNumberID: ci.PhoneNumberID, User: ci.User, WACallID: ci.WACallID,
		CreatedAt: c.created, RingingAt: ringingAt, AnsweredAt: answeredAt,
		A:       LegInfo{Endpoint: ci.A.Endpoint, SIPCallID: ci.A.SIPCallID},
		B:       LegInfo{Endpoint: ci.B.Endpoint, SIPCallID: ci.B.SIPCallID},
		Ringing: ringing,
	}
	switch {
	case ending:
		info.State = "ending"
	case state == stateCalling && !ringingAt.IsZero():
		info.State = "ringing"
	}
	if lb, ok := br.(interface{ Live() media.LiveReport }); ok {
		r := lb.Live()
		info.A.Codec, info.A.Encryption, info.A.RemoteMedia, info.A.Received = r.A.Codec, r.A.Encryption, r.A.Remote, r.AtoB
		info.B.Codec, info.B.Encryption, info.B.RemoteMedia, info.B.Received = r.B.Codec, r.B.Encryption, r.B.Remote, r.BtoA
	}
	return info, true
}

// find returns the live call whose wagate call id is id. The registry is
// keyed by SIP Call-ID; the API is not a hot path, so a scan (of the
// calls, not their legs) does.
func (r *registry) find(id string) *call {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for c := range r.counted {
		if c.id == id {
			return c
		}
	}
	return nil
}
