package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/wagate/wagate/permissions"
)

// PermissionStore is what the API and the webhook need of the permission
// store (permissions.Store: the embedded *permissions.Cache or the shared
// *permissions.Redis). Errors wrapping permissions.ErrUnavailable answer
// 503.
type PermissionStore interface {
	Lookup(permissions.Key) (permissions.Entry, bool, error)
	Entries(permissions.Filter) ([]permissions.Entry, error)
	Grant(k permissions.Key, permanent bool, expires time.Time, source string) error
	Revoke(k permissions.Key, source string) error
	RecordPermissionRequest(permissions.Key) permissions.Decision
	ClearConnectedCalls(permissions.Key) error
	ApplyReply(permissions.Reply) (applied bool, err error)
	MessageSeen(id string) (bool, error)
	MarkMessage(id string) error
	Restrict(phoneNumberID string, until time.Time, reason string) error
	RestrictFromMeta(phoneNumberID string, until, at time.Time, reason string) (permissions.MetaResult, error)
	Restrictions() ([]permissions.Restriction, error)
}

// SourceAPI marks changes made through this API.
const SourceAPI = "api"

// Bounds of the permission API's input.
const (
	maxPutBody = 4 << 10
	maxOffset  = 10_000_000
	// listTime bounds reading a page of GET /v1/permissions from a shared
	// store, below the server's WriteTimeout.
	listTime = 8 * time.Second
)

type permissionHandlers struct {
	store PermissionStore
	// known says whether a phone_number_id is configured (nil: all are).
	known func(string) bool
	log   *slog.Logger
}

// configured answers 404 for a pair whose phone_number_id no configured
// number has: a grant for it could never admit a call, and is most
// likely a typo or a number removed from the config.
func (p *permissionHandlers) configured(w http.ResponseWriter, k permissions.Key) bool {
	if p.known == nil || p.known(k.PhoneNumberID) {
		return true
	}
	writeError(w, http.StatusNotFound, "phone_number_id "+k.PhoneNumberID+" is not a configured business number (numbers[].phone_number_id)")
	return false
}

func (p *permissionHandlers) register(mux router) {
	const one = "/v1/permissions/{phone_number_id}/{user}"
	mux.HandleFunc("GET /v1/permissions", p.enabled(p.list))
	mux.HandleFunc("GET "+one, p.enabled(p.get))
	mux.HandleFunc("PUT "+one, p.enabled(p.put))
	mux.HandleFunc("DELETE "+one, p.enabled(p.delete))
	mux.HandleFunc("POST "+one+"/requests", p.enabled(p.request))
	mux.HandleFunc("DELETE "+one+"/connected_calls", p.enabled(p.clearCalls))
	mux.HandleFunc("GET /v1/restrictions", p.enabled(p.restrictions))
	mux.HandleFunc("DELETE /v1/restrictions/{phone_number_id}", p.enabled(p.lift))
	// The same paths with another method: a JSON 405 instead of the
	// mux's plain-text one.
	mux.HandleFunc("/v1/permissions", methodNotAllowed("GET"))
	mux.HandleFunc(one, methodNotAllowed("GET, PUT, DELETE"))
	mux.HandleFunc(one+"/requests", methodNotAllowed("POST"))
	mux.HandleFunc(one+"/connected_calls", methodNotAllowed("DELETE"))
}

func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed; use "+allow)
	}
}

func (p *permissionHandlers) enabled(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if p.store == nil {
			writeError(w, http.StatusNotFound, "call permissions are not enabled (permissions.enabled)")
			return
		}
		h(w, r)
	}
}

// entryDoc is an Entry as JSON.
type entryDoc struct {
	PhoneNumberID     string    `json:"phone_number_id"`
	User              string    `json:"user"`
	Status            string    `json:"status"`
	ExpiresAt         time.Time `json:"expires_at,omitzero"`
	GrantedAt         time.Time `json:"granted_at,omitzero"`
	UpdatedAt         time.Time `json:"updated_at,omitzero"`
	Source            string    `json:"source,omitempty"`
	ConnectedCalls24h int       `json:"connected_calls_24h"`
	UnansweredStreak  int       `json:"unanswered_streak"`
	Requests24h       int       `json:"permission_requests_24h"`
	Requests7d        int       `json:"permission_requests_7d"`
	ActiveCalls       int       `json:"active_calls"`
}

func docOf(e permissions.Entry) entryDoc {
	return entryDoc{
		PhoneNumberID:     e.Key.PhoneNumberID,
		User:              e.Key.User,
		Status:            string(e.Status),
		ExpiresAt:         e.ExpiresAt,
		GrantedAt:         e.GrantedAt,
		UpdatedAt:         e.UpdatedAt,
		Source:            e.Source,
		ConnectedCalls24h: e.ConnectedCalls24h,
		UnansweredStreak:  e.UnansweredStreak,
		Requests24h:       e.Requests24h,
		Requests7d:        e.Requests7d,
		ActiveCalls:       e.ActiveCalls,
	}
}

type listDoc struct {
	Permissions []entryDoc `json:"permissions"`
	Limit       int        `json:"limit"`
	Offset      int        `json:"offset"`
	// NextOffset is there when the page is full: more may follow.
	NextOffset *int `json:"next_offset,omitempty"`
}

func (p *permissionHandlers) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := permissions.Filter{Limit: permissions.DefaultListLimit}
	if v := q.Get("phone_number_id"); v != "" {
		id, err := permissions.NormalizePhoneNumberID(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		f.PhoneNumberID = id
	}
	if v := q.Get("status"); v != "" {
		st, err := permissions.ParseStatus(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		f.Status = st
	}
	var err error
	if f.Limit, err = intParam(q.Get("limit"), permissions.DefaultListLimit, 1, permissions.MaxListLimit); err != nil {
		writeError(w, http.StatusBadRequest, "limit: "+err.Error())
		return
	}
	if f.Offset, err = intParam(q.Get("offset"), 0, 0, maxOffset); err != nil {
		writeError(w, http.StatusBadRequest, "offset: "+err.Error())
		return
	}
	// Within the server's 10 s to answer: a page the shared store cannot
	// read by then is refused, not read on after the client gave up.
	f.Deadline = time.Now().Add(listTime)
	entries, err := p.store.Entries(f)
	if errors.Is(err, permissions.ErrListTooLong) {
		p.log.Warn("permission list too long to read", "phone_number_id", f.PhoneNumberID, "status", f.Status, "offset", f.Offset, "limit", f.Limit)
		writeError(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	if err != nil {
		p.fail(w, "list", permissions.Key{}, err)
		return
	}
	doc := listDoc{Permissions: make([]entryDoc, 0, len(entries)), Limit: f.Limit, Offset: f.Offset}
	for _, e := range entries {
		doc.Permissions = append(doc.Permissions, docOf(e))
	}
	if len(entries) == f.Limit {
		next := f.Offset + f.Limit
		doc.NextOffset = &next
	}
	writeJSON(w, http.StatusOK, doc)
}

func intParam(s string, def, lo, hi int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%q is not an integer from %d to %d", s, lo, hi)
	}
	return n, nil
}

// pathKey reads and normalises the pair named by the path.
func pathKey(w http.ResponseWriter, r *http.Request) (permissions.Key, bool) {
	k, err := permissions.NormalizeKey(r.PathValue("phone_number_id"), r.PathValue("user"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return permissions.Key{}, false
	}
	return k, true
}

func (p *permissionHandlers) get(w http.ResponseWriter, r *http.Request) {
	k, ok := pathKey(w, r)
	if !ok {
		return
	}
	e, ok, err := p.store.Lookup(k)
	if err != nil {
		p.fail(w, "get", k, err)
		return
	}
	if !ok {
		writeError(w, http.StatusNotFound, "no permission known for "+k.String())
		return
	}
	writeJSON(w, http.StatusOK, docOf(e))
}

// putDoc is the body of PUT: the grant to record.
type putDoc struct {
	Status    string     `json:"status"`
	ExpiresAt *time.Time `json:"expires_at"`
}

func (p *permissionHandlers) put(w http.ResponseWriter, r *http.Request) {
	k, ok := pathKey(w, r)
	if !ok || !p.configured(w, k) {
		return
	}
	var body putDoc
	if !decodeBody(w, r, maxPutBody, &body) {
		return
	}
	var permanent bool
	switch permissions.Status(body.Status) {
	case permissions.StatusPermanent:
		if body.ExpiresAt != nil {
			writeError(w, http.StatusBadRequest, "expires_at is only for a temporary permission")
			return
		}
		permanent = true
	case permissions.StatusTemporary:
	case permissions.StatusNone:
		writeError(w, http.StatusBadRequest, "to revoke a permission, DELETE it")
		return
	default:
		writeError(w, http.StatusBadRequest, `status must be "temporary" or "permanent"`)
		return
	}
	var exp time.Time
	if body.ExpiresAt != nil {
		exp = *body.ExpiresAt
	}
	if err := p.store.Grant(k, permanent, exp, SourceAPI); err != nil {
		p.fail(w, "grant", k, err)
		return
	}
	p.log.Info("call permission granted through the API", "key", k.String(), "status", body.Status)
	p.respondEntry(w, k, entryDoc{PhoneNumberID: k.PhoneNumberID, User: k.User, Status: body.Status, ExpiresAt: exp, Source: SourceAPI})
}

func (p *permissionHandlers) delete(w http.ResponseWriter, r *http.Request) {
	k, ok := pathKey(w, r)
	if !ok {
		return
	}
	if err := p.store.Revoke(k, SourceAPI); err != nil {
		p.fail(w, "revoke", k, err)
		return
	}
	p.log.Info("call permission revoked through the API", "key", k.String())
	p.respondEntry(w, k, entryDoc{PhoneNumberID: k.PhoneNumberID, User: k.User, Status: string(permissions.StatusNone), Source: SourceAPI})
}

// clearCalls forgets the user's connected calls of the last 24 hours, the
// daily cap's count (learned from Meta's 403 or counted here): for an
// operator whose user Meta no longer caps. It answers the pair.
func (p *permissionHandlers) clearCalls(w http.ResponseWriter, r *http.Request) {
	k, ok := pathKey(w, r)
	if !ok {
		return
	}
	if err := p.store.ClearConnectedCalls(k); err != nil {
		if errors.Is(err, permissions.ErrNotFound) {
			writeError(w, http.StatusNotFound, "no permission known for "+k.String())
			return
		}
		p.fail(w, "clear connected calls", k, err)
		return
	}
	p.log.Info("connected calls of the last 24 h cleared through the API", "key", k.String())
	p.respondEntry(w, k, entryDoc{PhoneNumberID: k.PhoneNumberID, User: k.User})
}

// requestDoc answers POST …/requests.
type requestDoc struct {
	Allowed bool   `json:"allowed"`
	Error   string `json:"error,omitempty"`
	// ErrorCode is Meta's error code for the same refusal (138009 request
	// limit, 138017 already permanent, 138013 calling restricted).
	ErrorCode         int `json:"error_code,omitempty"`
	RetryAfterSeconds int `json:"retry_after_seconds,omitempty"`
}

// request counts a call-permission request the business is about to send
// (Meta allows 1 per 24 h and 2 per 7 days per user): 200 when it may go;
// else 429 (138009, with Retry-After), 409 (138017: the permission is
// already permanent), 403 (138013: Meta paused the number) or 503 (the
// store cannot answer).
func (p *permissionHandlers) request(w http.ResponseWriter, r *http.Request) {
	k, ok := pathKey(w, r)
	if !ok || !p.configured(w, k) {
		return
	}
	d := p.store.RecordPermissionRequest(k)
	if d.Allowed() {
		writeJSON(w, http.StatusOK, requestDoc{Allowed: true})
		return
	}
	secs := d.RetryAfterSeconds()
	if secs > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	code := d.Code
	if code < 400 || code > 599 {
		code = http.StatusTooManyRequests
	}
	writeJSON(w, code, requestDoc{Error: d.Reason, ErrorCode: d.MetaError, RetryAfterSeconds: secs})
}

// restrictions lists the business numbers Meta paused for
// business-initiated calls (account_update webhook).
func (p *permissionHandlers) restrictions(w http.ResponseWriter, r *http.Request) {
	rs, err := p.store.Restrictions()
	if err != nil {
		p.fail(w, "restrictions", permissions.Key{}, err)
		return
	}
	if rs == nil {
		rs = []permissions.Restriction{}
	}
	writeJSON(w, http.StatusOK, struct {
		Restrictions []permissions.Restriction `json:"restrictions"`
	}{rs})
}

// lift ends a pause early (an operator who knows Meta lifted it).
func (p *permissionHandlers) lift(w http.ResponseWriter, r *http.Request) {
	id, err := permissions.NormalizePhoneNumberID(r.PathValue("phone_number_id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := p.store.Restrict(id, time.Time{}, ""); err != nil {
		p.fail(w, "lift restriction", permissions.Key{PhoneNumberID: id}, err)
		return
	}
	p.log.Info("business-initiated calling restriction lifted through the API", "phone_number_id", id)
	w.WriteHeader(http.StatusNoContent)
}

// respondEntry answers a change with the pair as the store now has it;
// when it cannot be read back (the store failed right after the change,
// or swept the pair), with made: what the change did, which stands.
func (p *permissionHandlers) respondEntry(w http.ResponseWriter, k permissions.Key, made entryDoc) {
	e, ok, err := p.store.Lookup(k)
	if err != nil || !ok {
		if err != nil {
			p.log.Warn("permission changed, but not read back; answering what was changed", "key", k.String(), "error", err)
		}
		writeJSON(w, http.StatusOK, made)
		return
	}
	writeJSON(w, http.StatusOK, docOf(e))
}

func (p *permissionHandlers) fail(w http.ResponseWriter, op string, k permissions.Key, err error) {
	switch {
	case errors.Is(err, permissions.ErrNotFound):
		writeError(w, http.StatusNotFound, "no permission to revoke for "+k.String())
	case errors.Is(err, permissions.ErrInvalidKey), errors.Is(err, permissions.ErrExpired):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, permissions.ErrUnavailable):
		p.log.Error("permission store unavailable", "op", op, "key", k.String(), "error", err)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, op+" failed: the permission store cannot be reached; try again")
	default:
		p.log.Error("permission store failed", "op", op, "key", k.String(), "error", err)
		writeError(w, http.StatusInternalServerError, op+" failed; see wagate's log")
	}
}

// decodeBody reads one JSON object of at most limit bytes into v, refusing
// unknown fields and trailing data.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.Decode(&struct{}{}) != io.EOF {
		err = errors.New("trailing data after the JSON object")
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", limit))
			return false
		}
		writeError(w, http.StatusBadRequest, "body: "+err.Error())
		return false
	}
	return true
}
