package callflow

import (
	"context"
	"errors"
	"time"

	"github.com/wagate/wagate/prompt"
)

// Call is one answered call as the engine drives it. The SIP/media layer
// implements it; every method may be called from the engine's goroutine
// only, except that Play and Digits are used concurrently (the caller may
// press keys while a prompt plays).
type Call interface {
	// Info describes the call; it does not change during the call.
	Info() Info
	// Play sends a to the caller at real-time pace through the call's one
	// media pacer and returns when its last frame has been sent (nil), or
	// soon (within a frame) after ctx is done (ctx.Err()), or when the
	// call has ended (ErrCallEnded). a is at Info().SampleRate. Audio of
	// consecutive Play calls follows without a gap when the next call
	// comes within a frame time; between calls the pacer sends silence.
	// a.Samples may be shared with other calls: read, never write.
	Play(ctx context.Context, a prompt.Audio) error
	// Digits delivers each key the caller presses ('0'–'9', '*', '#',
	// 'A'–'D'), from RFC 4733 events or in-band tones, once per press. The
	// channel is closed when the call ends. The implementation never
	// blocks on it: it buffers a few digits (at least 32) and drops more
	// while nobody reads.
	Digits() <-chan rune
	// Connect bridges the caller to t and returns nil once t answered —
	// the engine's work is then done and the call goes on without it — or
	// an error when t could not be reached (busy, no answer within
	// t.Timeout, refused, unknown). ctx ending abandons the attempt.
	Connect(ctx context.Context, t Target) error
	// Record records what the caller says until opts say stop, and
	// returns the stored recording (a playable WAV in the recordings
	// store).
	Record(ctx context.Context, opts RecordOptions) (Recording, error)
	// Hangup ends the call (BYE); reason goes to the call record's cause.
	// Hanging up a call that has already ended does nothing.
	Hangup(reason string)
}

// ErrCallEnded is what Play, Connect and Record return once the call is
// over (the caller hung up).
var ErrCallEnded = errors.New("callflow: call ended")

// Info is what the engine knows about a call. Its values go into the
// requests to the business's service and into the template values.
type Info struct {
	// CallID is wagate's own call id (X-WABA-Session, the CDR's call_id).
	CallID string
	// WACallID is WhatsApp's call id.
	WACallID string
	// Direction is "UIC" (the user called the business) or "BIC" (a flow
	// started by the click-to-call API).
	Direction string
	// BusinessNumber is the business number, +E.164; PhoneNumberID is
	// Meta's id for it.
	BusinessNumber string
	PhoneNumberID  string
	// User is the caller's +E.164 when Meta reveals it; UserID the
	// business-scoped user id when present.
	User   string
	UserID string
	// CallerName is the caller's profile name when known.
	CallerName string
	// Payload and PayloadSource carry a CTA or deep-link payload
	// ("cta" or "deeplink").
	Payload       string
	PayloadSource string
	// SampleRate is the rate Play takes: 8000 or 16000.
	SampleRate int
}

// Kinds of Target.
const (
	TargetExtension = "extension"
	TargetHuntList  = "huntList"
	TargetWhatsApp  = "whatsapp"
)

// Target is where Connect sends the caller.
type Target struct {
	// Kind is TargetExtension (a user at a pbx endpoint), TargetHuntList
	// (a hunt list by name) or TargetWhatsApp (a WhatsApp user, +E.164,
	// called through the permission gate; for flows started by the
	// click-to-call API).
	Kind string
	// Destination is the extension, hunt list name or +E.164 number.
	Destination string
	// Endpoint names the pbx endpoint of an extension; empty means the
	// number's usual one (the fallback route always names it).
	Endpoint string
	// Record turns call recording on for the connected call.
	Record bool
	// Timeout bounds the ringing.
	Timeout time.Duration
}

// RecordOptions say when a recording stops: whichever comes first.
type RecordOptions struct {
	// MaxDuration bounds the recording.
	MaxDuration time.Duration
	// SilenceTimeout stops after this much silence (0: never).
	SilenceTimeout time.Duration
	// FinishOnKey stops when the caller presses it (0: no key); the key
	// is not part of the recording.
	FinishOnKey rune
	// HashTail, when set, is until when a '#' is the caller finishing the
	// input before ("1234#" for four digits, typed out of habit): the
	// first such '#' does not stop the recording. Without a beep the
	// recording starts as the service answers, before that '#' arrives.
	HashTail time.Time
}

// Recording is a finished recording, as the recordings store keeps it.
type Recording struct {
	// ID is the recording's id (the recording.ready event's recording_id).
	ID string `json:"recordingId"`
	// File is the WAV's path under the recordings store.
	File string `json:"file"`
	// Duration of the recorded audio.
	Duration time.Duration `json:"-"`
	// DurationMs is Duration in milliseconds, for JSON.
	DurationMs int64 `json:"durationMs"`
	// Bytes is the file's size.
	Bytes int64 `json:"bytes"`
	// StoppedBy says why it stopped: "maxDuration", "silence", "key",
	// "hangup".
	StoppedBy string `json:"stoppedBy"`
}

// Prompts renders what the engine plays. *prompt.Library implements it.
type Prompts interface {
	Speech(ctx context.Context, s prompt.Speech, rate int) (prompt.Audio, error)
	File(ctx context.Context, url string, rate int) (prompt.Audio, error)
}

// Events receives what the engine reports outside the exchange with the
// service; the lead wires it to the events outbox. Methods must not block.
type Events interface {
	// Recorded reports a recording taken by a record action (voicemail).
	Recorded(info Info, rec Recording)
}
