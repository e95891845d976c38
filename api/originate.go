package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Originator starts click-to-calls (cmd/wagate adapts *b2bua.Engine).
type Originator interface {
	// Originate calls the agent and then the user. It returns the live
	// call; or a refusal when the permission gate (or a limit) refused
	// it before anything was dialled; or an error, a *FieldError when the
	// request names something the configuration does not have.
	Originate(ctx context.Context, r ClickToCall) (LiveCall, *Refusal, error)
}

// ClickToCall is a checked POST /v1/calls body.
type ClickToCall struct {
	BusinessNumber string
	// User is the WhatsApp user to call; empty when Callflow is set.
	User string
	// Callflow runs the business number's call-flow route on the agent's
	// leg once the agent answers, instead of calling User: the flow's
	// connect to a WhatsApp user places the BIC (docs/api.md).
	Callflow       bool
	AgentEndpoint  string
	AgentExtension string
	// AgentHunt names a hunt list of agents instead.
	AgentHunt string
	// AgentRing is the agent's ring time (0: sip.ring_timeout).
	AgentRing time.Duration
	// CampaignID and CallbackData go into the call's events and record,
	// as a dialer's X-WABA-Campaign-ID and X-WABA-Callback-Data do.
	CampaignID, CallbackData string
}

// Refusal is a click-to-call refused before anything was dialled: the
// SIP final response a dialer's INVITE would have got for the same call,
// with Meta's error code (X-WABA-Error: 138006 no permission, 138012
// daily limit, …).
type Refusal struct {
	SIPCode    int
	SIPReason  string
	WABAError  int
	RetryAfter time.Duration
	Permission string
	Cause      string
}

// FieldError names the field of a request that is wrong.
type FieldError struct{ Field, Msg string }

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// clickBody is the JSON body of POST /v1/calls.
type clickBody struct {
	BusinessNumber *string    `json:"business_number"`
	User           *string    `json:"user"`
	Callflow       *bool      `json:"callflow"`
	Agent          *agentBody `json:"agent"`
	CampaignID     string     `json:"campaign_id"`
	CallbackData   string     `json:"callback_data"`
}

type agentBody struct {
	Hunt        *string `json:"hunt"`
	Endpoint    *string `json:"endpoint"`
	Extension   *string `json:"extension"`
	RingTimeout *int    `json:"ring_timeout"`
}

// refusalDoc answers a refused click-to-call.
type refusalDoc struct {
	Error      string `json:"error"`
	SIPCode    int    `json:"sip_code"`
	SIPReason  string `json:"sip_reason"`
	WABAError  int    `json:"waba_error,omitempty"`
	Permission string `json:"permission,omitempty"`
}

const (
	maxClickBody = 4 << 10
	// maxAgentRing bounds the agent's ring time a request may ask for.
	maxAgentRing = 300
)

type originateHandlers struct {
	o     Originator
	calls *callHandlers
	idem  *idempotency
	// shared, when set, shares the keys with the other nodes.
	shared *sharedIdem
}

// check validates a decoded body, naming the first wrong field.
func (b *clickBody) check() (ClickToCall, error) {
	var r ClickToCall
	switch {
	case b.BusinessNumber == nil || *b.BusinessNumber == "":
		return r, &FieldError{"business_number", "required: the business number calling, in E.164"}
	case b.Callflow != nil && !*b.Callflow:
		return r, &FieldError{"callflow", "must be true (run the business number's call-flow route) or absent"}
	case b.Callflow != nil && b.User != nil:
		return r, &FieldError{"callflow", "give either user or callflow, not both: the call flow names the WhatsApp user"}
	case b.Callflow == nil && (b.User == nil || *b.User == ""):
		return r, &FieldError{"user", "required: the WhatsApp user to call, in E.164 (or callflow: true)"}
	case b.Agent == nil:
		return r, &FieldError{"agent", "required: {\"endpoint\": <pbx endpoint>, \"extension\": <agent>} or {\"hunt\": <hunt list>}"}
	case b.Agent.Hunt != nil:
		if *b.Agent.Hunt == "" {
			return r, &FieldError{"agent.hunt", "must name a hunt list"}
		}
		if b.Agent.Endpoint != nil || b.Agent.Extension != nil || b.Agent.RingTimeout != nil {
			return r, &FieldError{"agent.hunt", "give either a hunt list or an endpoint and extension (with ring_timeout), not both"}
		}
		return ClickToCall{BusinessNumber: *b.BusinessNumber, User: deref(b.User), Callflow: b.Callflow != nil, AgentHunt: *b.Agent.Hunt,
			CampaignID: b.CampaignID, CallbackData: b.CallbackData}, nil
	case b.Agent.Endpoint == nil || *b.Agent.Endpoint == "":
		return r, &FieldError{"agent.endpoint", "required: a configured pbx endpoint"}
	case b.Agent.Extension == nil || *b.Agent.Extension == "":
		return r, &FieldError{"agent.extension", "required: the agent's extension on that endpoint"}
	}
	r = ClickToCall{BusinessNumber: *b.BusinessNumber, User: deref(b.User), Callflow: b.Callflow != nil, AgentEndpoint: *b.Agent.Endpoint, AgentExtension: *b.Agent.Extension,
		CampaignID: b.CampaignID, CallbackData: b.CallbackData}
	if rt := b.Agent.RingTimeout; rt != nil {
		if *rt < 1 || *rt > maxAgentRing {
			return r, &FieldError{"agent.ring_timeout", "must be 1 to " + strconv.Itoa(maxAgentRing) + " seconds"}
		}
		r.AgentRing = time.Duration(*rt) * time.Second
	}
	return r, nil
}

// originate is POST /v1/calls: 202 with the live call when it started,
// the refusal (403, 409, 429 or 503 with the SIP code and Meta's error)
// when the permission gate or a limit refused it, 400 naming the field of
// a bad body. With an Idempotency-Key, a retry gets the first answer
// again and starts nothing.
func (h *originateHandlers) originate(w http.ResponseWriter, r *http.Request) {
	if !noParams(w, r.URL.Query()) {
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if _, given := r.Header["Idempotency-Key"]; given && !validIdemKey(key) {
		writeError(w, http.StatusBadRequest, "Idempotency-Key: must be 1 to 255 printable ASCII characters")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxClickBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", maxClickBody))
			return
		}
		writeError(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	if key == "" {
		res := h.run(r.Context(), body)
		res.write(w)
		return
	}
	sum := sha256.Sum256(body)
	e, first := h.idem.claim(key, sum)
	if !first {
		if e.sum != sum {
			writeError(w, http.StatusUnprocessableEntity, "Idempotency-Key: already used with another body")
			return
		}
		select {
		case <-e.done:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Idempotent-Replayed", "true")
		e.res.write(w)
		return
	}
	// The call must not depend on this request: a client that goes away
	// and retries finds it under its key.
	func() {
		// Retries wait on done and eviction skips entries not done, so
		// it is closed even if run panics (the retries then get a 500).
		defer close(e.done)
		e.res = jsonResponse(http.StatusInternalServerError, errorDoc{Error: "click-to-call failed inside wagate; see its log"})
		var owned []byte
		if h.shared != nil {
			res, answered, claim := h.shared.claim(r.Context(), key, sum)
			if answered {
				e.res = res
				return
			}
			owned = claim
		}
		e.res = h.run(context.WithoutCancel(r.Context()), body)
		if owned != nil {
			h.shared.settle(r.Context(), key, sum, owned, e.res)
		}
	}()
	if !e.res.started() {
		// Nothing was dialled: the key must not pin this answer, or a
		// retry after Retry-After (or with the body corrected) would get
		// it again for a day and the call would never be placed.
		h.idem.forget(e)
	}
	e.res.write(w)
}

// keptResponse is an answer kept for idempotent retries.
type keptResponse struct {
	code   int
	header http.Header
	body   []byte
}

// started reports whether the answer may stand for a call placed: a 202,
// or a 500, after which wagate cannot say whether a call went out. A
// refusal (403, 409, 429, 503) or a 400 dialled nobody.
func (res keptResponse) started() bool {
	return res.code == http.StatusAccepted || res.code >= http.StatusInternalServerError && res.code != http.StatusServiceUnavailable
}

func (res keptResponse) write(w http.ResponseWriter) {
	for k, v := range res.header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(res.code)
	_, _ = w.Write(res.body)
}

func jsonResponse(code int, v any) keptResponse {
	var b bytes.Buffer
	_ = json.NewEncoder(&b).Encode(v)
	return keptResponse{code: code, header: http.Header{}, body: b.Bytes()}
}

// run decodes, checks and starts one click-to-call.
func (h *originateHandlers) run(ctx context.Context, body []byte) keptResponse {
	var b clickBody
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err := dec.Decode(&b)
	if err == nil && dec.Decode(&struct{}{}) != io.EOF {
		err = errors.New("trailing data after the JSON object")
	}
	if err != nil {
		return jsonResponse(http.StatusBadRequest, errorDoc{Error: "body: " + jsonProblem(err)})
	}
	req, err := b.check()
	if err != nil {
		return jsonResponse(http.StatusBadRequest, errorDoc{Error: err.Error()})
	}
	lc, ref, err := h.o.Originate(ctx, req)
	var fe *FieldError
	switch {
	case errors.As(err, &fe):
		return jsonResponse(http.StatusBadRequest, errorDoc{Error: fe.Error()})
	case err != nil:
		h.calls.log.Error("click-to-call failed", "error", err)
		return jsonResponse(http.StatusInternalServerError, errorDoc{Error: "click-to-call failed; see wagate's log"})
	case ref != nil:
		res := jsonResponse(refusalStatus(ref), refusalDoc{Error: "refused: " + ref.Cause, SIPCode: ref.SIPCode, SIPReason: ref.SIPReason,
			WABAError: ref.WABAError, Permission: ref.Permission})
		if ref.RetryAfter > 0 {
			res.header.Set("Retry-After", strconv.Itoa(int((ref.RetryAfter+time.Second-1)/time.Second)))
		}
		return res
	}
	res := jsonResponse(http.StatusAccepted, h.calls.doc(lc, h.calls.now()))
	res.header.Set("Location", "/v1/calls/"+lc.ID)
	return res
}

// refusalStatus is the HTTP status of a refusal: 403 for a permission
// refusal, 409 when the user is on a call already (SIP 486), 429 for a
// rate limit, 503 when wagate cannot take the call now.
func refusalStatus(r *Refusal) int {
	switch {
	case r.SIPCode == 486:
		return http.StatusConflict
	case r.SIPCode == 429:
		return http.StatusTooManyRequests
	case r.SIPCode == 403 || r.SIPCode == 404:
		return http.StatusForbidden
	case r.SIPCode >= 500:
		return http.StatusServiceUnavailable
	}
	return http.StatusForbidden
}

// jsonProblem rewords encoding/json's errors to name the field.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return te.Field + ": must be a JSON " + jsonKind(te.Type.Kind().String()) + ", not " + te.Value
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func jsonKind(k string) string {
	switch k {
	case "int":
		return "integer"
	case "ptr", "struct":
		return "object"
	}
	return k
}

// deref is *p, or "" for nil.
func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
