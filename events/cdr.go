package events

import "time"

// Direction of a call (DESIGN.md §1).
type Direction string

// Call directions.
const (
	// UIC is a user-initiated call: WhatsApp user → business → PBX.
	UIC Direction = "UIC"
	// BIC is a business-initiated call: dialer → business → WhatsApp user.
	BIC Direction = "BIC"
)

// Outcome sums up how a call ended.
type Outcome string

// Call outcomes.
const (
	// Answered: the call was connected (whatever ended it later).
	Answered Outcome = "answered"
	// Unanswered: the callee did not answer (no answer, 480, ring timeout).
	Unanswered Outcome = "unanswered"
	// Busy: the callee answered 486/600.
	Busy Outcome = "busy"
	// Cancelled: the caller gave up before an answer (CANCEL).
	Cancelled Outcome = "cancelled"
	// Refused: wagate refused the INVITE itself (policy, permission,
	// limits, malformed X-WABA headers); no B-leg was placed.
	Refused Outcome = "refused"
	// Failed: the B-leg failed (4xx/5xx/6xx other than busy, transport
	// error, media setup failure).
	Failed Outcome = "failed"
)

// Who ended a call.
const (
	HangupA      = "a"      // the A-leg (the side that sent the INVITE)
	HangupB      = "b"      // the B-leg
	HangupWagate = "wagate" // wagate itself (refusal, timeout, shutdown)
	HangupAPI    = "api"    // an operator, through DELETE /v1/calls/{id}
)

// CDR is the call detail record of one call wagate saw, answered or not,
// including INVITEs it refused itself. Times are UTC; a zero time means the
// call never got there (and is left out of the JSON).
type CDR struct {
	// CallID is wagate's own id of the call (X-WABA-Session, the
	// recording key); it identifies the record.
	CallID string `json:"call_id"`
	// NodeID is the wagate node that handled the call (Options.NodeID
	// when the caller leaves it empty).
	NodeID    string    `json:"node_id"`
	Direction Direction `json:"direction"`
	// WACallID is WhatsApp's call id (X-WABA-Call-ID), when known.
	WACallID string `json:"wa_call_id"`
	// BusinessNumber (+E.164) and PhoneNumberID name the business number.
	BusinessNumber string `json:"business_number"`
	PhoneNumberID  string `json:"phone_number_id"`
	// User is the WhatsApp user: +E.164, or the business-scoped user id
	// when Meta withholds the number.
	User string `json:"user"`
	// A is the incoming leg, B the outgoing one (empty for a refused
	// INVITE).
	A Leg `json:"a"`
	B Leg `json:"b"`

	CreatedAt  time.Time `json:"created_at"`
	RingingAt  time.Time `json:"ringing_at,omitzero"`
	AnsweredAt time.Time `json:"answered_at,omitzero"`
	EndedAt    time.Time `json:"ended_at,omitzero"`
	// RingMS is from the first ringing to the answer (or the end when
	// unanswered); TalkMS from the answer to the end. The Sink fills them
	// from the times when they are 0.
	RingMS int64 `json:"ring_ms"`
	TalkMS int64 `json:"talk_ms"`

	// SIPCode and SIPReason are the final response of the call: the
	// answer's 200, or the failure or refusal sent to the A-leg.
	SIPCode   int    `json:"sip_code"`
	SIPReason string `json:"sip_reason"`
	// HangupBy is HangupA, HangupB, HangupWagate or HangupAPI.
	HangupBy string `json:"hangup_by"`
	// Cause says in words why the call ended ("BYE from b", "ring
	// timeout", "no approved call permission", …).
	Cause   string  `json:"cause"`
	Outcome Outcome `json:"outcome"`
	// Permission is the permission cache's verdict on a BIC ("allow",
	// "no_permission", …; empty when not checked).
	Permission string `json:"permission"`
	// WABAError is the X-WABA-Error code wagate or Meta gave (0: none).
	WABAError int `json:"waba_error"`

	// Media counts the media of each direction (zero for a call that had
	// none).
	Media Media `json:"media"`

	// RecordingID names the recording of the call, when recorded.
	RecordingID string `json:"recording_id"`
	// CampaignID and CallbackData are the dialer's X-WABA-Campaign-ID and
	// X-WABA-Callback-Data of a BIC.
	CampaignID   string `json:"campaign_id"`
	CallbackData string `json:"callback_data"`
	// Origin is "click_to_call" for a call started through POST
	// /v1/calls: its A leg is the agent wagate called first, its B leg
	// the business-initiated call to the user. Empty otherwise.
	Origin string `json:"origin,omitempty"`

	// MetaStatus, MetaDurationS and MetaEvent are Meta's view of the call
	// from its calls webhook (terminate: "COMPLETED", "FAILED", …; its
	// duration in seconds), matched by WACallID when the record is read;
	// empty when Meta sent nothing (webhook_delivery off).
	MetaStatus    string `json:"meta_status,omitempty"`
	MetaDurationS *int64 `json:"meta_duration_s,omitempty"`
	MetaEvent     string `json:"meta_event,omitempty"`
	// Hunt names the hunt list a UIC rang (empty: one extension).
	Hunt string `json:"hunt,omitempty"`
	// AfterHours is set when the number was outside its business hours
	// and the after-hours route was taken.
	AfterHours bool `json:"after_hours,omitempty"`
	// Attempts are the B-leg INVITEs wagate placed, in order: one per
	// callee rung (a hunt's targets, a redirect's new target), including
	// targets skipped because their endpoint was down. B names the one
	// that answered. JSON only: the CSV export leaves lists out. A call
	// that placed more than 60 (a queue ringing its agents) lists the
	// first 10 and the latest 50; AttemptsOmitted counts those between.
	Attempts        []Attempt `json:"attempts,omitempty"`
	AttemptsOmitted int       `json:"attempts_omitted,omitempty"`

	// Transfers are the call's transfers in order, connected or failed
	// (absent when it had none). A and B are the legs at the end: after
	// a transfer, the new agent's.
	Transfers []Transfer `json:"transfers,omitempty"`
}

// Transfer kinds.
const (
	// TransferBlind: a REFER to an extension; wagate called it.
	TransferBlind = "blind"
	// TransferAttended: a REFER with Replaces naming another call through
	// wagate; the two calls' other parties were joined.
	TransferAttended = "attended"
	// TransferAPI: the HTTP API asked (POST /v1/calls/{id}/transfer).
	TransferAPI = "api"
	// TransferFallback: a transfer failed after the transferring agent
	// hung up, and wagate called the number's fallback route.
	TransferFallback = "fallback"
)

// Transfer is one transfer of a call: the data of call.transferred and
// an entry of a CDR's transfers.
type Transfer struct {
	// CallID is wagate's id of the transferred call.
	CallID string `json:"call_id"`
	// Kind is TransferBlind, TransferAttended, TransferAPI or
	// TransferFallback.
	Kind string `json:"kind"`
	// By is the endpoint that asked (the REFER's), "api" or "wagate".
	By string `json:"by"`
	// From is the leg that left the call; To the leg that took its place
	// (blind, api, fallback: the target's, when it answered).
	From Leg `json:"from"`
	To   Leg `json:"to"`
	// Target is what was dialled: "user@endpoint" (blind, api,
	// fallback; of a hunt list, the target that answered, else the last
	// one rung). Hunt names the hunt list transferred to.
	Target string `json:"target,omitempty"`
	Hunt   string `json:"hunt,omitempty"`
	// JoinedCallID is the other call of an attended transfer, whose
	// other party this call's was joined to.
	JoinedCallID string `json:"joined_call_id,omitempty"`
	// Connected tells whether the transfer connected; SIPCode is the
	// target's final response (200, 486, 408, …; 0 when none came).
	Connected bool   `json:"connected"`
	SIPCode   int    `json:"sip_code"`
	Reason    string `json:"reason,omitempty"`
	// RequestedAt is when the transfer was asked for; LatencyMS from
	// then to the target's answer (or the failure).
	RequestedAt time.Time `json:"requested_at"`
	LatencyMS   int64     `json:"latency_ms"`
}

// Attempt is one B-leg INVITE of a call (or one callee skipped).
type Attempt struct {
	Endpoint string `json:"endpoint"`
	User     string `json:"user"`
	// SIPCallID is the attempt's own Call-ID: each has its dialog.
	SIPCallID string    `json:"sip_call_id"`
	StartedAt time.Time `json:"started_at,omitzero"`
	// EndedAt is when its result was known (not when its transaction
	// ended: a cancelled INVITE still waits for its 487).
	EndedAt time.Time `json:"ended_at,omitzero"`
	// SIPCode is the callee's final response (0: none).
	SIPCode int `json:"sip_code"`
	// Result is AttemptAnswered, AttemptBusy, … (see the constants).
	Result string `json:"result"`
}

// What became of an Attempt.
const (
	AttemptAnswered    = "answered"    // its 2xx won the call
	AttemptBusy        = "busy"        // 486 or 600
	AttemptDeclined    = "declined"    // another 6xx
	AttemptFailed      = "failed"      // another final error
	AttemptNoAnswer    = "no_answer"   // rang past its ring_timeout; cancelled
	AttemptUnreachable = "unreachable" // no response: transport error or timeout
	AttemptDown        = "down"        // not rung: its endpoint's probes say down
	AttemptRedirected  = "redirected"  // a 3xx that was followed (the next attempt)
	AttemptCancelled   = "cancelled"   // given up on: another answered, A left, or a queue's wait ended
	AttemptLate        = "late"        // answered after it was given up on: hung up
	AttemptRinging     = "ringing"     // no result yet (the call ended first)
)

// Leg is one side of a call.
type Leg struct {
	// Endpoint is the configured endpoint name of the peer.
	Endpoint string `json:"endpoint"`
	// SIPCallID is the SIP Call-ID of the leg's dialog.
	SIPCallID string `json:"sip_call_id"`
	// Codec is the negotiated codec ("opus", "PCMU", "PCMA").
	Codec string `json:"codec"`
	// Encryption is the media encryption: "sdes" or "none".
	Encryption string `json:"encryption"`
	// User is the Request-URI user of the B-leg: the extension that
	// answered a UIC (or was rung, unanswered: the first of a hunt), the
	// WhatsApp user of a BIC. Empty on A.
	User string `json:"user,omitempty"`
}

// Media holds the media statistics of both directions of a call.
type Media struct {
	// AtoB is what came from the A-leg and went toward the B-leg; BtoA
	// the other way.
	AtoB MediaStats `json:"a_to_b"`
	BtoA MediaStats `json:"b_to_a"`
}

// MediaStats counts one direction of a call's media.
type MediaStats struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
	// Lost packets (sequence gaps, or the peer's RTCP report).
	Lost uint64 `json:"lost"`
	// JitterMS is the interarrival jitter (RFC 3550) in milliseconds.
	JitterMS float64 `json:"jitter_ms"`
	// SRTPAuthFailures and SRTPReplayFailures count packets dropped by
	// the SRTP checks.
	SRTPAuthFailures   uint64 `json:"srtp_auth_failures"`
	SRTPReplayFailures uint64 `json:"srtp_replay_failures"`
	// ConcealedFrames were made up by packet-loss concealment; LateFrames
	// arrived too late for the jitter buffer.
	ConcealedFrames uint64 `json:"concealed_frames"`
	LateFrames      uint64 `json:"late_frames"`
	// JitterBufferMS is the jitter buffer's depth in milliseconds.
	JitterBufferMS float64 `json:"jitter_buffer_ms"`
}

// complete fills what the caller may leave out: the node, UTC times and
// the durations.
func (c *CDR) complete(node string, now time.Time) {
	if c.NodeID == "" {
		c.NodeID = node
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = now
	}
	if c.EndedAt.IsZero() {
		c.EndedAt = now
	}
	c.CreatedAt, c.EndedAt = c.CreatedAt.UTC(), c.EndedAt.UTC()
	if !c.RingingAt.IsZero() {
		c.RingingAt = c.RingingAt.UTC()
	}
	if !c.AnsweredAt.IsZero() {
		c.AnsweredAt = c.AnsweredAt.UTC()
	}
	if c.RingMS == 0 && !c.RingingAt.IsZero() {
		until := c.EndedAt
		if !c.AnsweredAt.IsZero() {
			until = c.AnsweredAt
		}
		c.RingMS = max(0, until.Sub(c.RingingAt).Milliseconds())
	}
	if c.TalkMS == 0 && !c.AnsweredAt.IsZero() {
		c.TalkMS = max(0, c.EndedAt.Sub(c.AnsweredAt).Milliseconds())
	}
}
