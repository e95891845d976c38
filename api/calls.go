package api

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
)

// CallControl is what the API needs of the B2BUA: its live calls, and
// hanging one up (cmd/wagate adapts *b2bua.Engine).
type CallControl interface {
	// Calls lists the live calls, oldest first.
	Calls() []LiveCall
	// Call returns the live call with wagate call id id.
	Call(id string) (LiveCall, bool)
	// Hangup ends the live call id (BYE to both legs, or before the
	// answer 487 to A and CANCEL to B) and returns it as it was; an
	// error wrapping ErrNoSuchCall when no live call has that id.
	Hangup(id, reason string) (LiveCall, error)
}

// ErrNoSuchCall is what CallControl.Hangup returns for an id no live call
// has.
var ErrNoSuchCall = errors.New("no such live call")

// LiveCall is one live call as GET /v1/calls shows it.
type LiveCall struct {
	// ID is wagate's call id: the CDR's call_id, X-WABA-Session.
	ID        string `json:"call_id"`
	Direction string `json:"direction"`
	// Origin is "click_to_call" for a call POST /v1/calls started (A is
	// then the agent wagate called first); absent otherwise.
	Origin string `json:"origin,omitempty"`
	// State is calling, ringing, answered (A's ACK awaited), confirmed,
	// or ending (hung up before the answer, B's final response awaited).
	State          string    `json:"state"`
	BusinessNumber string    `json:"business_number"`
	PhoneNumberID  string    `json:"phone_number_id"`
	User           string    `json:"user"`
	WACallID       string    `json:"wa_call_id"`
	CreatedAt      time.Time `json:"created_at"`
	RingingAt      time.Time `json:"ringing_at,omitzero"`
	AnsweredAt     time.Time `json:"answered_at,omitzero"`
	// A sent the INVITE; B is the leg wagate placed.
	A LiveLeg `json:"a"`
	B LiveLeg `json:"b"`
	// Ringing are the INVITEs wagate placed for the call that have no
	// final response yet (every target of a parallel hunt); absent when
	// none.
	Ringing []RingingLeg `json:"ringing,omitempty"`
}

// RingingLeg is one INVITE of a live call waiting for its answer.
type RingingLeg struct {
	// Leg is "b" (the call's B-leg hunt), "a" (a click-to-call's agent)
	// or "transfer" (a transfer's target).
	Leg       string    `json:"leg"`
	Endpoint  string    `json:"endpoint"`
	User      string    `json:"user"`
	SIPCallID string    `json:"sip_call_id"`
	StartedAt time.Time `json:"started_at"`
}

// LiveLeg is one leg of a live call.
type LiveLeg struct {
	Endpoint  string `json:"endpoint"`
	SIPCallID string `json:"sip_call_id"`
	// Codec and Encryption are empty until the leg's media is
	// negotiated; RemoteMedia (host:port) until its SDP is known.
	Codec       string `json:"codec"`
	Encryption  string `json:"encryption"`
	RemoteMedia string `json:"remote_media"`
	// Received is the media wagate received from the leg so far.
	Received LiveMedia `json:"received"`
}

// LiveMedia counts the RTP one leg sent wagate so far (refreshed every
// 250 ms while packets arrive).
type LiveMedia struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
	// Forwarded counts the packets wagate sent on toward the other leg.
	Forwarded          uint64  `json:"forwarded"`
	Lost               uint64  `json:"lost"`
	JitterMS           float64 `json:"jitter_ms"`
	SRTPAuthFailures   uint64  `json:"srtp_auth_failures"`
	SRTPReplayFailures uint64  `json:"srtp_replay_failures"`
	Late               uint64  `json:"late"`
}

// maxReason bounds a hangup reason (it goes into the CDR's cause).
const maxReason = 128

type callHandlers struct {
	calls CallControl
	log   *slog.Logger
	now   func() time.Time
	// orig serves POST /v1/calls (nil: click-to-call is off).
	orig *originateHandlers
}

func (h *callHandlers) register(mux router) {
	mux.HandleFunc("GET /v1/calls", h.list)
	mux.HandleFunc("GET /v1/calls/{id}", h.get)
	mux.HandleFunc("DELETE /v1/calls/{id}", h.hangup)
	if h.orig != nil {
		mux.HandleFunc("POST /v1/calls", h.orig.originate)
	}
	h.registerTransfer(mux)
}

// callDoc is a live call with its ages at the time of the response.
type callDoc struct {
	LiveCall
	// DurationMS is the time since the INVITE, TalkMS since the answer
	// (0 before).
	DurationMS int64 `json:"duration_ms"`
	TalkMS     int64 `json:"talk_ms"`
}

func (h *callHandlers) doc(c LiveCall, now time.Time) callDoc {
	d := callDoc{LiveCall: c, DurationMS: max(0, now.Sub(c.CreatedAt).Milliseconds())}
	if !c.AnsweredAt.IsZero() {
		d.TalkMS = max(0, now.Sub(c.AnsweredAt).Milliseconds())
	}
	return d
}

type callListDoc struct {
	Calls []callDoc `json:"calls"`
	Count int       `json:"count"`
}

func (h *callHandlers) list(w http.ResponseWriter, r *http.Request) {
	if !noParams(w, r.URL.Query()) {
		return
	}
	calls := h.calls.Calls()
	now := h.now()
	doc := callListDoc{Calls: make([]callDoc, 0, len(calls)), Count: len(calls)}
	for _, c := range calls {
		doc.Calls = append(doc.Calls, h.doc(c, now))
	}
	writeJSON(w, http.StatusOK, doc)
}

func (h *callHandlers) get(w http.ResponseWriter, r *http.Request) {
	id, ok := callID(w, r)
	if !ok || !noParams(w, r.URL.Query()) {
		return
	}
	c, ok := h.calls.Call(id)
	if !ok {
		writeError(w, http.StatusNotFound, noLiveCall(id))
		return
	}
	writeJSON(w, http.StatusOK, h.doc(c, h.now()))
}

// hangupBody is the optional body of DELETE /v1/calls/{id}.
type hangupBody struct {
	Reason *string `json:"reason"`
}

// hangupDoc answers DELETE /v1/calls/{id}: 202, the hangup is under way.
type hangupDoc struct {
	CallID   string `json:"call_id"`
	HangupBy string `json:"hangup_by"`
	Reason   string `json:"reason,omitempty"`
	// State is the call's state when asked; Sent what wagate sends: "bye"
	// (both legs) or "cancel" (487 to A, CANCEL to B).
	State string `json:"state"`
	Sent  string `json:"sent"`
}

// maxHangupBody bounds the JSON body of DELETE.
const maxHangupBody = 1 << 10

// hangup ends a live call. It answers 202 Accepted: the BYEs (or the
// CANCEL) are on their way when it answers, and the CDR is written once
// the call has ended.
func (h *callHandlers) hangup(w http.ResponseWriter, r *http.Request) {
	id, ok := callID(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	for k, vals := range q {
		if k != "reason" {
			writeError(w, http.StatusBadRequest, quoteParam(k)+": unknown parameter; use reason")
			return
		}
		if len(vals) > 1 {
			writeError(w, http.StatusBadRequest, "reason: given more than once")
			return
		}
	}
	reason, inQuery := q.Get("reason"), q.Has("reason")
	raw, ok := readOptionalBody(w, r, maxHangupBody)
	if !ok {
		return
	}
	if raw != nil {
		var body hangupBody
		r.Body = io.NopCloser(bytes.NewReader(raw))
		if !decodeBody(w, r, maxHangupBody, &body) {
			return
		}
		if body.Reason != nil {
			if inQuery {
				writeError(w, http.StatusBadRequest, "reason: given in both the query and the body; use one")
				return
			}
			reason = *body.Reason
		}
	}
	if err := checkReason(reason); err != nil {
		writeError(w, http.StatusBadRequest, "reason: "+err.Error())
		return
	}
	c, err := h.calls.Hangup(id, reason)
	switch {
	case errors.Is(err, ErrNoSuchCall):
		writeError(w, http.StatusNotFound, noLiveCall(id))
		return
	case err != nil:
		h.log.Error("hangup through the API failed", "call", id, "error", err)
		writeError(w, http.StatusInternalServerError, "hangup failed; see wagate's log")
		return
	}
	sent := "bye"
	if c.AnsweredAt.IsZero() {
		sent = "cancel"
	}
	h.log.Info("call hung up through the API", "call", id, "state", c.State, "reason", reason, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusAccepted, hangupDoc{CallID: c.ID, HangupBy: "api", Reason: reason, State: c.State, Sent: sent})
}

// readOptionalBody reads a body that may be left out: nil when there is
// none, whether the client sent no body, an empty chunked one (clients
// that stream their bodies) or only whitespace. False when it answered
// (413 over limit bytes, 400 unreadable).
func readOptionalBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if tooBig := (*http.MaxBytesError)(nil); errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "body larger than "+strconv.FormatInt(limit, 10)+" bytes")
		} else {
			writeError(w, http.StatusBadRequest, "body: could not be read")
		}
		return nil, false
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, true
	}
	return b, true
}

// callID reads and checks the {id} of a calls route: wagate's call ids
// are 24 lowercase hex digits.
func callID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if len(id) != 24 || !isLowerHex(id) {
		writeError(w, http.StatusBadRequest, "call id: "+quoteParam(id)+" is not a wagate call id (24 lowercase hex digits, the call_id of GET /v1/calls)")
		return "", false
	}
	return id, true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func noLiveCall(id string) string {
	return "no live call " + strconv.Quote(id) + " (ended, or never here; see GET /v1/cdrs/" + id + ")"
}

// checkReason accepts up to maxReason characters of printable text.
func checkReason(s string) error {
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) > maxReason {
		return errors.New("must be at most " + strconv.Itoa(maxReason) + " characters of UTF-8 text")
	}
	for _, c := range s {
		if !unicode.IsPrint(c) {
			return errors.New("must be printable text (no control characters)")
		}
	}
	return nil
}

// noParams refuses any query parameter.
func noParams(w http.ResponseWriter, q url.Values) bool {
	for k := range q {
		writeError(w, http.StatusBadRequest, quoteParam(k)+": unknown parameter; this route takes none")
		return false
	}
	return true
}
