package events

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"time"

	"github.com/wagate/wagate/configs"
)

// Type is an event type.
type Type string

// The event types. Their spellings are configs' (events.subscribers[].types).
const (
	// CallStarted: an INVITE was accepted for routing (data: Call).
	CallStarted Type = configs.EventCallStarted
	// CallRinging: the B-leg rings (18x; data: Call).
	CallRinging Type = configs.EventCallRinging
	// CallAnswered: the call is connected (data: Call).
	CallAnswered Type = configs.EventCallAnswered
	// CallEnded: the call is over (data: its CDR).
	CallEnded Type = configs.EventCallEnded
	// CallRefused: wagate refused an INVITE itself (data: its CDR).
	CallRefused Type = configs.EventCallRefused
	// CallTransferred: a transfer of an answered call ended, connected
	// or failed (data: Transfer).
	CallTransferred Type = configs.EventCallTransferred
	// CallProgress: a step of a click-to-call before the user's leg
	// rings: the agent rings, the agent answered (data: Call with Step).
	CallProgress Type = configs.EventCallProgress
	// PermissionChanged: a call permission was granted, revoked or
	// expired (data: PermissionChange).
	PermissionChanged Type = configs.EventPermissionChanged
	// RecordingReady: a call's recording is complete (data: Recording).
	RecordingReady Type = configs.EventRecordingReady
	// MetaSettingsChanged: Meta reported a number's calling settings
	// (data: MetaSettings).
	MetaSettingsChanged Type = configs.EventMetaSettingsChanged
)

// Types lists every event type.
func Types() []Type {
	ts := configs.EventTypes()
	out := make([]Type, len(ts))
	for i, t := range ts {
		out[i] = Type(t)
	}
	return out
}

// Envelope is the JSON body of every event as subscribers receive it.
type Envelope struct {
	// ID is unique per event (a UUIDv7, so it sorts by creation time);
	// a redelivery carries the same id.
	ID   string `json:"id"`
	Type Type   `json:"type"`
	// Timestamp is when the event happened (when the Sink was told).
	Timestamp time.Time `json:"timestamp"`
	NodeID    string    `json:"node_id"`
	// CallID is wagate's call id for events about a call.
	CallID string `json:"call_id,omitempty"`
	// Data is a Call, CDR, PermissionChange or Recording, by Type.
	Data any `json:"data"`
}

// Call describes a call in progress: the data of call.started,
// call.ringing and call.answered. Fields not known yet are empty.
type Call struct {
	CallID         string    `json:"call_id"`
	Direction      Direction `json:"direction"`
	WACallID       string    `json:"wa_call_id"`
	BusinessNumber string    `json:"business_number"`
	PhoneNumberID  string    `json:"phone_number_id"`
	User           string    `json:"user"`
	A              Leg       `json:"a"`
	B              Leg       `json:"b"`
	// SIPCode is the response that caused the event: 180/183 for
	// call.ringing, 200 for call.answered; 0 for call.started.
	SIPCode      int    `json:"sip_code,omitempty"`
	CampaignID   string `json:"campaign_id"`
	CallbackData string `json:"callback_data"`
	// Origin is "click_to_call" for a call started through POST
	// /v1/calls (its A leg is the agent wagate called), empty otherwise.
	Origin string `json:"origin,omitempty"`
	// Step names the step of a call.progress event: "agent_ringing",
	// "agent_answered".
	Step string `json:"step,omitempty"`
}

// PermissionChange is the data of permission.changed.
type PermissionChange struct {
	PhoneNumberID string `json:"phone_number_id"`
	User          string `json:"user"`
	// Status is the new status: "no_permission", "temporary" or
	// "permanent"; Previous the one before (empty when unknown).
	Status   string `json:"status"`
	Previous string `json:"previous_status,omitempty"`
	// ExpiresAt is when a temporary permission lapses.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Source says who changed it ("api", "webhook:user_action", "uic",
	// "unanswered_streak", "expired", …).
	Source string `json:"source"`
}

// Recording is the data of recording.ready.
type Recording struct {
	// RecordingID is the CDR's recording_id (today the WAV's path).
	RecordingID string `json:"recording_id"`
	// CallID is wagate's call id (the CDR's call_id).
	CallID string `json:"call_id"`
	// SIPCallID is the SIP Call-ID the file is named after, the key of
	// GET /v1/recordings/{call-id}.
	SIPCallID string `json:"sip_call_id"`
	// File is the WAV's path under the recordings directory.
	File  string `json:"file"`
	Bytes int64  `json:"bytes"`
	// DurationMS is the length of the audio in the file.
	DurationMS int64 `json:"duration_ms"`
	// StartedAt and EndedAt: the recording began at the answer and ended
	// with the call.
	StartedAt time.Time `json:"started_at,omitzero"`
	EndedAt   time.Time `json:"ended_at,omitzero"`
	// Error is set when the recording stopped early (disk full, …).
	Error string `json:"error,omitempty"`
	// Kind is "voicemail" for a message a caller left in a call flow (a
	// record action; started_at and ended_at are the message's, and the
	// file's right channel is silent); absent for a call's recording.
	Kind string `json:"kind,omitempty"`
}

// MetaSettings is the data of meta.settings_changed: a number's calling
// settings as Meta's account_settings_update webhook reported them, and
// whether they disagree with wagate's configuration.
type MetaSettings struct {
	PhoneNumberID string `json:"phone_number_id"`
	// SRTPKeyExchange is Meta's srtp_key_exchange_protocol, as wagate
	// spells media_encryption ("dtls", "sdes"; empty when not reported).
	SRTPKeyExchange string `json:"srtp_key_exchange,omitempty"`
	// SIPStatus is Meta's sip.status ("ENABLED", "DISABLED"; empty when
	// not reported).
	SIPStatus string `json:"sip_status,omitempty"`
	// Configured is the number's media_encryption in wagate's config
	// (empty for a number wagate does not serve).
	Configured string `json:"configured_media_encryption,omitempty"`
	// Mismatch is true when Meta's keying differs from Configured: calls
	// of the number will fail to key until one side is changed.
	Mismatch bool `json:"mismatch"`
	// ReportedAt is Meta's time of the change.
	ReportedAt time.Time `json:"reported_at,omitzero"`
}

// newEventID returns a UUIDv7 (RFC 9562): 48 bits of Unix milliseconds,
// then random bits, so ids are unique across nodes and sort by time.
func newEventID(now time.Time) string {
	var u [16]byte
	_, _ = rand.Read(u[6:]) // crypto/rand.Read never fails
	ms := uint64(now.UnixMilli())
	binary.BigEndian.PutUint64(u[0:8], ms<<16|uint64(binary.BigEndian.Uint16(u[6:8])))
	u[6] = 0x70 | u[6]&0x0f // version 7
	u[8] = 0x80 | u[8]&0x3f // variant 10
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], u[10:16])
	return string(b[:])
}
