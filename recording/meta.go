package recording

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// Side names a leg of the call as the media layer sees it: A is the leg
// whose INVITE came in, B the leg wagate placed.
type Side uint8

const (
	SideA Side = 0
	SideB Side = 1
)

// String returns "a" or "b".
func (s Side) String() string {
	if s == SideB {
		return "b"
	}
	return "a"
}

// other returns the opposite side.
func (s Side) other() Side { return 1 - s }

// Meta describes a call whose recording starts. Strings are taken as they
// are (they come from the network): CallID only ever reaches the file
// system through SafeName, and the rest only the JSON sidecar.
type Meta struct {
	// CallID names the file (untrusted). Empty: the Manager picks ACallID
	// or BCallID according to recording.name_by.
	CallID string
	// ACallID and BCallID are the SIP Call-IDs of the two legs.
	ACallID string
	BCallID string
	// WhatsAppCallID is Meta's call id (x-wa-meta-wacid), when known.
	WhatsAppCallID string
	// SessionID is wagate's own call id (X-WABA-Session).
	SessionID string
	// Direction is "UIC" or "BIC".
	Direction string
	// BusinessNumber and UserNumber are +E.164 (UserNumber may be empty or
	// a business-scoped user id when Meta hides the number).
	BusinessNumber string
	UserNumber     string
	// AEndpoint and BEndpoint are the configured endpoint names (or
	// addresses) of the two legs.
	AEndpoint string
	BEndpoint string
	// WhatsAppSide is the side that faces WhatsApp: its audio goes to the
	// left channel, the contact-centre side's to the right. SideA for a
	// UIC, SideB for a BIC.
	WhatsAppSide Side
	// StartTime is when the call began (the INVITE); it picks the day
	// directory (UTC). Zero: the Manager's clock at Start.
	StartTime time.Time
	// AnswerTime is when the call was answered. Zero: the clock at Start.
	AnswerTime time.Time
	// Kind is what is recorded: "" for the call, KindVoicemail for a
	// message the caller leaves (a call flow's record action: only the
	// WhatsApp side speaks, the other channel is silence).
	Kind string
}

// KindVoicemail is the Kind of a voicemail recording.
const KindVoicemail = "voicemail"

// EndInfo says how a recorded call ended.
type EndInfo struct {
	// Time of the hangup; zero: the recorder's clock at Finish.
	Time time.Time
	// HangupSide is who ended the call: "a", "b", "api" (an operator,
	// through the API) or "wagate" (timeouts, shutdown, errors).
	HangupSide string
	// Cause is a short reason: "BYE", "RTP timeout", "shutdown", a SIP
	// status, … (free text, stored as given).
	Cause string
}

// Entry is one recording as described by its JSON sidecar; List and Open
// return it and the HTTP API serves it as is.
type Entry struct {
	// CallID is the Call-ID the file is named after (NameBy says which leg's).
	CallID string `json:"call_id"`
	// CallIDBase64 carries CallID exactly when it is not valid UTF-8 (JSON
	// strings cannot: call_id then shows U+FFFD for the invalid bytes).
	CallIDBase64   string `json:"call_id_base64,omitempty"`
	NameBy         string `json:"name_by,omitempty"`
	ACallID        string `json:"a_call_id,omitempty"`
	BCallID        string `json:"b_call_id,omitempty"`
	WhatsAppCallID string `json:"whatsapp_call_id,omitempty"`
	SessionID      string `json:"session_id,omitempty"`
	Direction      string `json:"direction,omitempty"`
	BusinessNumber string `json:"business_number,omitempty"`
	UserNumber     string `json:"user_number,omitempty"`
	AEndpoint      string `json:"a_endpoint,omitempty"`
	BEndpoint      string `json:"b_endpoint,omitempty"`
	// WhatsAppSide is "a" or "b"; Channels says what each channel carries.
	WhatsAppSide string   `json:"whatsapp_side,omitempty"`
	Channels     []string `json:"channels,omitempty"`
	// Kind is "voicemail" for a message left in a call flow; absent for
	// a call's recording.
	Kind string `json:"kind,omitempty"`

	StartTime  time.Time `json:"start_time,omitzero"`
	AnswerTime time.Time `json:"answer_time,omitzero"`
	EndTime    time.Time `json:"end_time,omitzero"`
	// DurationSeconds is the length of the audio in the file.
	DurationSeconds float64 `json:"duration_seconds"`
	HangupSide      string  `json:"hangup_side,omitempty"`
	HangupCause     string  `json:"hangup_cause,omitempty"`

	SampleRate int `json:"sample_rate"`
	// File is the WAV file's path relative to the recordings directory,
	// with forward slashes: "2025/01/31/<safe name>.wav".
	File  string `json:"file"`
	Bytes int64  `json:"bytes"`

	// InProgress is true while the call is being recorded (and in the
	// sidecar of a recording that a crash interrupted, until the next
	// start-up repairs it).
	InProgress bool `json:"in_progress,omitempty"`
	// CutShort is true when the recording stopped before the call ended: a
	// write error, the size limit, or a crash; Error says which.
	CutShort bool   `json:"cut_short"`
	Error    string `json:"error,omitempty"`
	// Recovered marks a recording repaired at start-up after a crash.
	Recovered bool `json:"recovered,omitempty"`
	// DroppedChunks counts PCM chunks dropped because the writer could not
	// keep up (the gap is filled with silence to keep the channels aligned).
	DroppedChunks int64 `json:"dropped_chunks,omitempty"`
	// NodeID is the wagate node that recorded the call (node_id), when
	// the manager was given one.
	NodeID string `json:"node_id,omitempty"`
}

// channelNames is Entry.Channels: left is WhatsApp, right the contact centre.
var channelNames = []string{"whatsapp", "contact_centre"}

func marshalEntry(e *Entry) ([]byte, error) {
	e.CallIDBase64 = ""
	if !utf8.ValidString(e.CallID) {
		e.CallIDBase64 = base64.StdEncoding.EncodeToString([]byte(e.CallID))
	}
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func unmarshalEntry(b []byte, e *Entry) error {
	if err := json.Unmarshal(b, e); err != nil {
		return err
	}
	if e.CallIDBase64 != "" {
		id, err := base64.StdEncoding.DecodeString(e.CallIDBase64)
		if err != nil {
			return fmt.Errorf("call_id_base64: %w", err)
		}
		e.CallID = string(id)
	}
	return nil
}

// maxSidecarBytes bounds what is read of a sidecar (a real one is ~1 KB;
// Call-IDs and numbers are bounded by the SIP message size upstream, but
// never trust a file).
const maxSidecarBytes = 1 << 20
