package api

import (
	"errors"
	"net/http"
	"strings"
)

// Transferer is what POST /v1/calls/{id}/transfer needs of the B2BUA. The
// CallControl given to the API implements it when wagate can transfer
// (cmd/wagate's does); otherwise the route answers 404.
type Transferer interface {
	// Transfer blind-transfers live call id's PBX or dialer leg to
	// target and returns the call as it was when asked. Errors wrap
	// ErrNoSuchCall, ErrTransferTarget or ErrTransferConflict.
	Transfer(id string, target TransferTarget) (LiveCall, error)
}

// TransferTarget is where a transfer goes: a user (extension) at a pbx
// endpoint of wagate's configuration, or a hunt list (Hunt instead).
type TransferTarget struct {
	Endpoint string
	User     string
	Hunt     string
}

var (
	// ErrTransferTarget: the target is not a user at a configured pbx
	// endpoint (400).
	ErrTransferTarget = errors.New("transfer target refused")
	// ErrTransferConflict: the call cannot be transferred now — not
	// answered yet, a transfer under way, joined to another call, or
	// transferred too often (409).
	ErrTransferConflict = errors.New("the call cannot be transferred now")
)

// transferBody is the body of POST /v1/calls/{id}/transfer.
type transferBody struct {
	Endpoint *string `json:"endpoint"`
	User     *string `json:"user"`
	Hunt     *string `json:"hunt"`
}

// transferDoc answers it: 202, wagate is calling the target.
type transferDoc struct {
	CallID string `json:"call_id"`
	Kind   string `json:"kind"`
	Target string `json:"target"`
	State  string `json:"state"`
}

// maxTransferBody bounds the JSON body of a transfer.
const maxTransferBody = 1 << 10

func (h *callHandlers) registerTransfer(mux router) {
	mux.HandleFunc("POST /v1/calls/{id}/transfer", h.transfer)
	mux.HandleFunc("/v1/calls/{id}/transfer", methodNotAllowed("POST"))
}

// transfer starts a blind transfer. It answers 202 once wagate is calling
// the target; the outcome is the call.transferred event and the CDR's
// transfers. The endpoint's transfer.allow does not apply: the API is the
// operator's, and any user of any pbx endpoint may be named.
func (h *callHandlers) transfer(w http.ResponseWriter, r *http.Request) {
	id, ok := callID(w, r)
	if !ok || !noParams(w, r.URL.Query()) {
		return
	}
	tr, ok := h.calls.(Transferer)
	if !ok {
		writeError(w, http.StatusNotFound, "transfers are not available")
		return
	}
	var body transferBody
	if !decodeBody(w, r, maxTransferBody, &body) {
		return
	}
	switch {
	case body.Hunt != nil && (body.Endpoint != nil || body.User != nil):
		writeError(w, http.StatusBadRequest, "hunt: give either hunt or endpoint and user, not both")
		return
	case body.Hunt != nil && !isName(*body.Hunt):
		writeError(w, http.StatusBadRequest, "hunt: "+quoteParam(*body.Hunt)+" is not a hunt list name")
		return
	case body.Hunt != nil:
	case body.Endpoint == nil || *body.Endpoint == "":
		writeError(w, http.StatusBadRequest, "endpoint: required (the name of a pbx endpoint; or give hunt, naming a hunt list)")
		return
	case !isName(*body.Endpoint):
		writeError(w, http.StatusBadRequest, "endpoint: "+quoteParam(*body.Endpoint)+" is not an endpoint name")
		return
	case body.User == nil || *body.User == "":
		writeError(w, http.StatusBadRequest, "user: required (the extension to call)")
		return
	case !isExtension(*body.User):
		writeError(w, http.StatusBadRequest, "user: "+quoteParam(*body.User)+" is not an extension (1–64 of A–Z a–z 0–9 + * # . _ ~ -)")
		return
	}
	var target TransferTarget
	t := ""
	if body.Hunt != nil {
		target.Hunt, t = *body.Hunt, "hunt "+*body.Hunt
	} else {
		target.Endpoint, target.User = *body.Endpoint, *body.User
		t = target.User + "@" + target.Endpoint
	}
	c, err := tr.Transfer(id, target)
	switch {
	case errors.Is(err, ErrNoSuchCall):
		writeError(w, http.StatusNotFound, noLiveCall(id))
		return
	case errors.Is(err, ErrTransferTarget):
		field := "endpoint: "
		if target.Hunt != "" {
			field = "hunt: "
		}
		writeError(w, http.StatusBadRequest, field+afterSentinel(err, ErrTransferTarget))
		return
	case errors.Is(err, ErrTransferConflict):
		writeError(w, http.StatusConflict, afterSentinel(err, ErrTransferConflict))
		return
	case err != nil:
		h.log.Error("transfer through the API failed", "call", id, "error", err)
		writeError(w, http.StatusInternalServerError, "transfer failed; see wagate's log")
		return
	}
	h.log.Info("call transfer asked through the API", "call", id, "target", t, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusAccepted, transferDoc{CallID: c.ID, Kind: "api", Target: t, State: c.State})
}

// isName: an endpoint or hunt list name as configs accepts it (letters,
// digits, '_' and '-').
func isName(s string) bool {
	if len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_", c)) {
			return false
		}
	}
	return true
}

// isExtension: what a transfer may dial as a user (as REFER's Refer-To).
func isExtension(s string) bool {
	if len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("+*#._~-", c)) {
			return false
		}
	}
	return true
}

// afterSentinel is err's message without sentinel's ("sentinel: why" →
// "why").
func afterSentinel(err, sentinel error) string {
	return strings.TrimPrefix(err.Error(), sentinel.Error()+": ")
}
