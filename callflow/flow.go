package callflow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wagate/wagate/prompt"
)

// ErrBadFlow is wrapped by every error about an answer that is not a valid
// call flow.
var ErrBadFlow = errors.New("callflow: invalid call flow")

// Limits of a call flow document.
const (
	// MaxActions bounds the actions of one call flow.
	MaxActions = 50
	// MaxClientActionID bounds clientActionId.
	MaxClientActionID = 256
	maxURLLen         = 2048
)

// Flow is one call flow: the answer of the business's service.
type Flow struct {
	// ClientActionID is the service's own reference; it is echoed in the
	// next request and the session summary.
	ClientActionID string
	Actions        []Action
}

// Action is one step of a flow: *Say, *PlayFile, *SayAndCapture,
// *Connect, *Enqueue, *Record or *Hangup.
type Action interface {
	// Name is the action as written in the flow ("makeCall" and "connect"
	// are both *Connect).
	Name() string
}

// Say speaks text.
type Say struct {
	Text         string  `json:"text"`
	VoiceProfile string  `json:"voiceProfile"`
	Repetition   int     `json:"repetition"` // 1–3, default 1
	Speed        float64 `json:"speed"`      // 0.5–2.0, default 1
}

// PlayFile plays a WAV or MP3 from an http(s) URL.
type PlayFile struct {
	FileURL    string `json:"fileUrl"`
	Repetition int    `json:"repetition"`
}

// SayAndCapture speaks a prompt and collects digits; the digits are POSTed
// to the service and its answer is the next flow. Times are milliseconds.
type SayAndCapture struct {
	PromptMessage  string  `json:"promptMessage"`
	SuccessMessage string  `json:"successMessage"`
	FailureMessage string  `json:"failureMessage"`
	VoiceProfile   string  `json:"voiceProfile"`
	Speed          float64 `json:"speed"`
	Repetition     int     `json:"repetition"`
	MinDigits      int     `json:"minDigits"`      // 1–32, default 1
	MaxDigits      int     `json:"maxDigits"`      // minDigits–32, default minDigits
	CompleteOnHash bool    `json:"completeOnHash"` // '#' ends the input (and is not part of it)
	DigitTimeout   int     `json:"digitTimeout"`   // between digits, 1000–60000, default 5000
	OverallTimeout int     `json:"overallTimeout"` // whole input, 1000–300000, default 15000
	NoOfTries      int     `json:"noOfTries"`      // 1–10, default 1
}

// Connect bridges the caller to a destination (actions makeCall and
// connect).
type Connect struct {
	name string
	// Source is accepted for 8x8 compatibility and ignored: the caller id
	// is always the WhatsApp user's.
	Source          string `json:"source"`
	Destination     string `json:"destination"`
	DestinationType string `json:"destinationType"` // extension (default), huntList, whatsapp
	CallRecording   bool   `json:"callRecording"`
	Timeout         int    `json:"timeout"` // ringing, ms, 1000–120000, default 30000
}

// Record records the caller (voicemail); the recording is reported by
// event and in the session summary. Times are milliseconds.
type Record struct {
	MaxDuration    int     `json:"maxDuration"`    // 1000–600000, default 60000
	SilenceTimeout *int    `json:"silenceTimeout"` // 0 (off) or 1000–60000, default 5000
	FinishOnKey    *string `json:"finishOnKey"`    // one of 0-9 * #, or "" for none; default "#"
	Beep           *bool   `json:"beep"`           // a beep before recording, default true
}

// Hangup ends the call.
type Hangup struct{}

// Name implements Action.
func (*Say) Name() string           { return "say" }
func (*PlayFile) Name() string      { return "playFile" }
func (*SayAndCapture) Name() string { return "sayAndCapture" }
func (c *Connect) Name() string     { return c.name }
func (*Record) Name() string        { return "record" }
func (*Hangup) Name() string        { return "hangup" }

// Target is where the action connects the caller.
func (c *Connect) Target() Target {
	return Target{Kind: c.DestinationType, Destination: c.Destination, Record: c.CallRecording,
		Timeout: time.Duration(c.Timeout) * time.Millisecond}
}

// speech is the Speech of a text with the action's voice and speed.
func speech(text, voice string, speed float64) prompt.Speech {
	return prompt.Speech{Text: text, Voice: voice, Speed: speed}
}

// ParseFlow decodes and checks a service's answer. It is strict: unknown
// keys and actions, wrong types, values out of range, trailing data and
// actions after a sayAndCapture are errors (wrapping ErrBadFlow) naming
// the place, e.g. `callflow[1] (say): params.repetition: 5 is outside 1–3`.
func ParseFlow(data []byte) (*Flow, error) {
	// A byte order mark before the JSON (a PHP file saved with one, a
	// .NET writer) is not JSON, but RFC 8259 lets a parser ignore it, and
	// refusing it would send every caller to the fallback.
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var doc struct {
		ClientActionID *string           `json:"clientActionId"`
		Callflow       []json.RawMessage `json:"callflow"`
	}
	if err := strictDecode(data, &doc); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrBadFlow, describe("", err))
	}
	f := &Flow{}
	if doc.ClientActionID != nil {
		f.ClientActionID = *doc.ClientActionID
		if len(f.ClientActionID) > MaxClientActionID || hasControl(f.ClientActionID) {
			return nil, fmt.Errorf("%w: clientActionId: longer than %d bytes or holds control characters", ErrBadFlow, MaxClientActionID)
		}
	}
	switch {
	case doc.Callflow == nil:
		return nil, fmt.Errorf("%w: no \"callflow\" list", ErrBadFlow)
	case len(doc.Callflow) == 0:
		return nil, fmt.Errorf("%w: callflow: the list is empty", ErrBadFlow)
	case len(doc.Callflow) > MaxActions:
		return nil, fmt.Errorf("%w: callflow: %d actions (at most %d)", ErrBadFlow, len(doc.Callflow), MaxActions)
	}
	for i, raw := range doc.Callflow {
		a, err := parseAction(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: callflow[%d]%s", ErrBadFlow, i, err)
		}
		if i > 0 {
			if prev, ok := f.Actions[i-1].(*SayAndCapture); ok {
				return nil, fmt.Errorf("%w: callflow[%d] (%s): nothing may follow a %s: the answer to its digits is the next call flow",
					ErrBadFlow, i, a.Name(), prev.Name())
			}
		}
		f.Actions = append(f.Actions, a)
	}
	return f, nil
}

// parseAction returns an error starting with " (name): " or ": " (no
// name known yet) so that ParseFlow can put the index in front.
func parseAction(raw json.RawMessage) (Action, error) {
	var step struct {
		Action *string          `json:"action"`
		Params *json.RawMessage `json:"params"`
	}
	if err := strictDecode(raw, &step); err != nil {
		return nil, fmt.Errorf(": %s", describe("", err))
	}
	if step.Action == nil {
		return nil, errors.New(": no \"action\"")
	}
	name := *step.Action
	var a Action
	switch name {
	case "say":
		a = &Say{}
	case "playFile":
		a = &PlayFile{}
	case "sayAndCapture":
		a = &SayAndCapture{}
	case "makeCall", "connect":
		a = &Connect{name: name}
	case "record":
		a = &Record{}
	case "hangup":
		a = &Hangup{}
	case "queue":
		a = &Enqueue{}
	default:
		return nil, fmt.Errorf(": unknown action %q; use say, playFile, sayAndCapture, makeCall, connect, queue, record or hangup", clip(name))
	}
	params := []byte("{}")
	if step.Params != nil && string(*step.Params) != "null" {
		params = *step.Params
	} else if _, ok := a.(*Hangup); !ok {
		return nil, fmt.Errorf(" (%s): no \"params\"", name)
	}
	if err := strictDecode(params, a); err != nil {
		return nil, fmt.Errorf(" (%s): %s", name, describe("params", err))
	}
	if err := check(a); err != nil {
		return nil, fmt.Errorf(" (%s): params.%s", name, err)
	}
	return a, nil
}

// strictDecode decodes one JSON value into v, refusing unknown keys and
// anything after the value.
func strictDecode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

var unknownField = regexp.MustCompile(`^json: unknown field "(.*)"$`)

// describe turns encoding/json's errors into a sentence about the place.
func describe(prefix string, err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if prefix != "" && field != "" {
			field = prefix + "." + field
		} else if field == "" {
			field = prefix
		}
		if field == "" {
			return fmt.Sprintf("must be a JSON object, not a %s", te.Value)
		}
		return fmt.Sprintf("%s: want %s, got a %s", field, jsonKind(te.Type.Kind().String()), te.Value)
	case errors.As(err, &se):
		return fmt.Sprintf("not JSON (%v at byte %d)", se, se.Offset)
	case errors.Is(err, io.EOF):
		return "empty answer"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "JSON cut short"
	}
	if m := unknownField.FindStringSubmatch(err.Error()); m != nil {
		if prefix != "" {
			return fmt.Sprintf("%s: unknown key %q", prefix, clip(m[1]))
		}
		return fmt.Sprintf("unknown key %q", clip(m[1]))
	}
	return err.Error()
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "int":
		return "a whole number"
	case "float64":
		return "a number"
	case "bool":
		return "true or false"
	case "slice":
		return "a list"
	case "ptr", "struct", "map":
		return "an object"
	}
	return k
}

// clip bounds a value echoed in an error message.
func clip(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return s
}

var (
	digitKey  = regexp.MustCompile(`^[0-9*#]$`)
	extension = regexp.MustCompile(`^[A-Za-z0-9_.*#+-]{1,32}$`)
	huntList  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	e164      = regexp.MustCompile(`^\+[0-9]{8,15}$`)
	// bsuid is a business-scoped user id (CC.xxx), as Meta gives it.
	bsuid = regexp.MustCompile(`^[A-Za-z]{2}\.[A-Za-z0-9_-]{1,253}$`)
)

// check fills defaults and checks ranges; errors name the field without
// the "params." prefix.
func check(a Action) error {
	switch a := a.(type) {
	case *Say:
		if err := checkText("text", a.Text, true); err != nil {
			return err
		}
		return checkVoice(&a.Repetition, &a.Speed, a.VoiceProfile)
	case *PlayFile:
		if err := checkURL("fileUrl", a.FileURL); err != nil {
			return err
		}
		var speed float64
		return checkVoice(&a.Repetition, &speed, "")
	case *SayAndCapture:
		return checkCapture(a)
	case *Connect:
		return checkConnect(a)
	case *Record:
		return checkRecord(a)
	case *Enqueue:
		return checkEnqueue(a)
	}
	return nil
}

func checkText(field, s string, required bool) error {
	switch {
	case s == "" && required:
		return fmt.Errorf("%s: required", field)
	case len(s) > prompt.MaxTextBytes:
		return fmt.Errorf("%s: %d bytes (at most %d)", field, len(s), prompt.MaxTextBytes)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s: not UTF-8", field)
	}
	return nil
}

func checkVoice(rep *int, speed *float64, voice string) error {
	if *rep == 0 {
		*rep = 1
	}
	if *rep < 1 || *rep > 3 {
		return fmt.Errorf("repetition: %d is outside 1–3", *rep)
	}
	if *speed == 0 {
		*speed = 1
	}
	if *speed < prompt.MinSpeed || *speed > prompt.MaxSpeed {
		return fmt.Errorf("speed: %g is outside %g–%g", *speed, prompt.MinSpeed, prompt.MaxSpeed)
	}
	if len(voice) > 64 || hasControl(voice) {
		return errors.New("voiceProfile: longer than 64 bytes or holds control characters")
	}
	return nil
}

func checkURL(field, raw string) error {
	if raw == "" {
		return fmt.Errorf("%s: required", field)
	}
	if len(raw) > maxURLLen {
		return fmt.Errorf("%s: longer than %d bytes", field, maxURLLen)
	}
	if _, err := prompt.CheckURL(raw); err != nil {
		return fmt.Errorf("%s: %q must be an http or https URL with a host", field, clip(raw))
	}
	return nil
}

func rangeMs(field string, v *int, def, lo, hi int) error {
	if *v == 0 {
		*v = def
	}
	if *v < lo || *v > hi {
		return fmt.Errorf("%s: %d is outside %d–%d (milliseconds)", field, *v, lo, hi)
	}
	return nil
}

func checkCapture(a *SayAndCapture) error {
	if err := checkText("promptMessage", a.PromptMessage, true); err != nil {
		return err
	}
	if err := checkText("successMessage", a.SuccessMessage, false); err != nil {
		return err
	}
	if err := checkText("failureMessage", a.FailureMessage, false); err != nil {
		return err
	}
	if err := checkVoice(&a.Repetition, &a.Speed, a.VoiceProfile); err != nil {
		return err
	}
	if a.MinDigits == 0 {
		a.MinDigits = 1
	}
	if a.MinDigits < 1 || a.MinDigits > 32 {
		return fmt.Errorf("minDigits: %d is outside 1–32", a.MinDigits)
	}
	if a.MaxDigits == 0 {
		a.MaxDigits = a.MinDigits
	}
	if a.MaxDigits < a.MinDigits || a.MaxDigits > 32 {
		return fmt.Errorf("maxDigits: %d is outside minDigits (%d)–32", a.MaxDigits, a.MinDigits)
	}
	if err := rangeMs("digitTimeout", &a.DigitTimeout, 5000, 1000, 60000); err != nil {
		return err
	}
	if err := rangeMs("overallTimeout", &a.OverallTimeout, 15000, 1000, 300000); err != nil {
		return err
	}
	if a.NoOfTries == 0 {
		a.NoOfTries = 1
	}
	if a.NoOfTries < 1 || a.NoOfTries > 10 {
		return fmt.Errorf("noOfTries: %d is outside 1–10", a.NoOfTries)
	}
	return nil
}

func checkConnect(a *Connect) error {
	if a.DestinationType == "" {
		a.DestinationType = TargetExtension
	}
	var ok bool
	switch a.DestinationType {
	case TargetExtension:
		ok = extension.MatchString(a.Destination)
	case TargetHuntList:
		ok = huntList.MatchString(a.Destination)
	case TargetWhatsApp:
		ok = e164.MatchString(a.Destination) || bsuid.MatchString(a.Destination)
	default:
		return fmt.Errorf("destinationType: %q is not extension, huntList or whatsapp", clip(a.DestinationType))
	}
	switch {
	case a.Destination == "":
		return errors.New("destination: required")
	case !ok:
		return fmt.Errorf("destination: %q is not a valid %s", clip(a.Destination), a.DestinationType)
	case len(a.Source) > 64 || hasControl(a.Source):
		return errors.New("source: longer than 64 bytes or holds control characters")
	}
	return rangeMs("timeout", &a.Timeout, 30000, 1000, 120000)
}

func checkRecord(a *Record) error {
	if err := rangeMs("maxDuration", &a.MaxDuration, 60000, 1000, 600000); err != nil {
		return err
	}
	if a.SilenceTimeout == nil {
		d := 5000
		a.SilenceTimeout = &d
	}
	if s := *a.SilenceTimeout; s != 0 && (s < 1000 || s > 60000) {
		return fmt.Errorf("silenceTimeout: %d is outside 1000–60000 (milliseconds; 0 turns it off)", s)
	}
	if a.FinishOnKey == nil {
		k := "#"
		a.FinishOnKey = &k
	}
	if k := *a.FinishOnKey; k != "" && !digitKey.MatchString(k) {
		return fmt.Errorf("finishOnKey: %q is not one key of 0-9, * or #", clip(k))
	}
	if a.Beep == nil {
		b := true
		a.Beep = &b
	}
	return nil
}

// options turns a Record into the Call's options.
func (a *Record) options() RecordOptions {
	o := RecordOptions{MaxDuration: time.Duration(a.MaxDuration) * time.Millisecond,
		SilenceTimeout: time.Duration(*a.SilenceTimeout) * time.Millisecond}
	if k := *a.FinishOnKey; k != "" {
		o.FinishOnKey = rune(k[0])
	}
	return o
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f })
}
