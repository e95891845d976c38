package callflow

import "time"

// Events of the requests wagate sends to the service (the "event" field
// and the X-Wagate-Callflow-Event header).
const (
	EventStart   = "start"   // the call was answered: answer with the first flow
	EventDigits  = "digits"  // a sayAndCapture finished: answer with the next flow
	EventSummary = "summary" // the call is over: the answer is ignored
)

// Capture statuses.
const (
	CaptureSuccess = "success" // between minDigits and maxDigits were entered
	CaptureTimeout = "timeout" // fewer than minDigits before a timeout
	CaptureTooFew  = "tooFew"  // '#' ended the input before minDigits
)

// Request is the JSON body of every request to the service.
type Request struct {
	Event          string    `json:"event"`
	Timestamp      time.Time `json:"timestamp"`
	CallID         string    `json:"callId"`
	WACallID       string    `json:"waCallId"`
	Direction      string    `json:"direction"`
	BusinessNumber string    `json:"businessNumber"`
	PhoneNumberID  string    `json:"phoneNumberId"`
	User           string    `json:"user"`
	UserID         string    `json:"userId,omitempty"`
	CallerName     string    `json:"callerName,omitempty"`
	Payload        string    `json:"payload,omitempty"`
	PayloadSource  string    `json:"payloadSource,omitempty"`
	// ClientActionID echoes the last flow's clientActionId.
	ClientActionID string `json:"clientActionId,omitempty"`
	// Capture is the result of the sayAndCapture (event digits).
	Capture *CaptureResult `json:"capture,omitempty"`
}

// CaptureResult is what a sayAndCapture collected.
type CaptureResult struct {
	// Digits entered, without the '#' that ended them.
	Digits string `json:"digits"`
	// Status is CaptureSuccess, CaptureTimeout or CaptureTooFew (of the
	// last try).
	Status string `json:"status"`
	// Tries used.
	Tries int `json:"tries"`
}

// Summary is the session summary POSTed when the call ends (event
// summary): the call, what the engine did and how it ended.
type Summary struct {
	Request
	StartedAt time.Time `json:"startedAt"`
	EndedAt   time.Time `json:"endedAt"`
	// Requests counts the exchanges with the service (start and digits).
	Requests int `json:"requests"`
	// Actions run, in order.
	Actions []ActionLog `json:"actions"`
	// Captures are every sayAndCapture's results.
	Captures []CaptureResult `json:"captures"`
	// Connects are every connect attempt, the fallback's included.
	Connects []ConnectLog `json:"connects,omitempty"`
	// Recordings taken by record actions.
	Recordings []Recording `json:"recordings,omitempty"`
	// Fallback says why the fallback route was taken, when it was.
	Fallback string `json:"fallback,omitempty"`
	// Outcome is how the engine's part ended: "connected", "hangup" (a
	// hangup action), "flowEnded" (the last flow ran out: wagate hung up),
	// "fallback" (connected to the fallback route), "failed" (fallback
	// unreachable: wagate hung up) or "callerHungUp".
	Outcome string `json:"outcome"`
	// CDR is the call's record, when the caller of PostSummary has it.
	CDR any `json:"cdr,omitempty"`

	// vars are the template values at the end, for PostSummary's URL.
	vars map[string]string
}

// ActionLog is one action as run.
type ActionLog struct {
	Action     string    `json:"action"`
	StartedAt  time.Time `json:"startedAt"`
	DurationMs int64     `json:"durationMs"`
	// Result is "done", "failed" (Error says why) or "interrupted" (the
	// call ended during it).
	Result string `json:"result"`
	Error  string `json:"error,omitempty"`
}

// ConnectLog is one connect attempt.
type ConnectLog struct {
	DestinationType string `json:"destinationType"`
	Destination     string `json:"destination"`
	Answered        bool   `json:"answered"`
	Error           string `json:"error,omitempty"`
	Fallback        bool   `json:"fallback,omitempty"`
}

// Outcomes of Summary.
const (
	OutcomeConnected    = "connected"
	OutcomeHangup       = "hangup"
	OutcomeFlowEnded    = "flowEnded"
	OutcomeFallback     = "fallback"
	OutcomeFailed       = "failed"
	OutcomeCallerHungUp = "callerHungUp"
)
