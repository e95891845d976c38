package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/wagate/wagate/events"
	"github.com/wagate/wagate/permissions"
)

// CDRStore is what the API needs of the call records (*events.Sink
// implements it).
type CDRStore interface {
	CDRs(ctx context.Context, q events.CDRQuery) (events.CDRPage, error)
	CDR(ctx context.Context, callID string) (events.CDR, error)
}

// maxIDLen bounds the ids taken from paths (call and event ids).
const maxIDLen = 128

type cdrHandlers struct {
	store CDRStore
	log   *slog.Logger
}

func (h *cdrHandlers) register(mux router) {
	mux.HandleFunc("GET /v1/cdrs", h.list)
	mux.HandleFunc("GET /v1/cdrs/{id}", h.get)
}

// cdrListDoc is the JSON answer of GET /v1/cdrs.
type cdrListDoc struct {
	CDRs []events.CDR `json:"cdrs"`
	// NextCursor is there when more records matched: pass it as cursor.
	NextCursor string `json:"next_cursor,omitempty"`
}

func (h *cdrHandlers) list(w http.ResponseWriter, r *http.Request) {
	q, out, err := parseCDRQuery(r.URL.Query(), r.Header.Get("Accept"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	page, err := h.store.CDRs(r.Context(), q)
	if err != nil {
		h.log.Error("CDR query failed", "error", err)
		writeError(w, http.StatusInternalServerError, "query failed; see wagate's log")
		return
	}
	if out.format == formatCSV {
		if page.NextCursor != "" {
			w.Header().Set("X-Next-Cursor", page.NextCursor)
		}
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="cdrs.csv"`)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if err := writeCDRsCSV(w, page.CDRs, out.bom); err != nil {
			h.log.Debug("CSV write failed", "error", err)
		}
		return
	}
	writeJSON(w, http.StatusOK, cdrListDoc{CDRs: page.CDRs, NextCursor: page.NextCursor})
}

func (h *cdrHandlers) get(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := checkID(id); err != nil {
		writeError(w, http.StatusBadRequest, "call id: "+err.Error())
		return
	}
	c, err := h.store.CDR(r.Context(), id)
	switch {
	case errors.Is(err, events.ErrNotFound):
		writeError(w, http.StatusNotFound, "no CDR for call "+strconv.Quote(id))
	case err != nil:
		h.log.Error("CDR read failed", "call_id", id, "error", err)
		writeError(w, http.StatusInternalServerError, "read failed; see wagate's log")
	default:
		writeJSON(w, http.StatusOK, c)
	}
}

// checkID accepts an id from a path: 1–128 printable ASCII characters.
func checkID(id string) error {
	if id == "" || len(id) > maxIDLen {
		return fmt.Errorf("must be 1 to %d characters", maxIDLen)
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] >= 0x7f {
			return errors.New("must be printable ASCII without spaces")
		}
	}
	return nil
}

// Output formats of GET /v1/cdrs.
const (
	formatJSON = "json"
	formatCSV  = "csv"
)

// cdrOutput is how GET /v1/cdrs answers: format, and for CSV whether it
// starts with a UTF-8 byte-order mark (bom=1). Excel on Windows reads a
// CSV without one in the machine's ANSI code page, garbling non-ASCII
// text; most other tools (and RFC 4180 readers) take the mark for part of
// the first column's name, so it is asked for, never the default.
type cdrOutput struct {
	format string
	bom    bool
}

// cdrParams are the query parameters GET /v1/cdrs takes; any other is
// refused, so that a misspelt filter cannot silently match everything.
var cdrParams = map[string]bool{"from": true, "to": true, "number": true, "user": true, "direction": true,
	"outcome": true, "cursor": true, "limit": true, "format": true, "bom": true}

// parseCDRQuery reads the filters of GET /v1/cdrs and the output format
// (format=csv|json, else CSV when accept asks for text/csv; bom=0|1 for
// CSV). Every error names the parameter it is about.
func parseCDRQuery(v url.Values, accept string) (events.CDRQuery, cdrOutput, error) {
	var q events.CDRQuery
	var out cdrOutput
	names := make([]string, 0, len(v))
	for k := range v {
		names = append(names, k)
	}
	sort.Strings(names) // report the same parameter first every time
	for _, k := range names {
		if !cdrParams[k] {
			return q, out, fmt.Errorf("%s: unknown parameter; use from, to, number, user, direction, outcome, cursor, limit, format or bom", quoteParam(k))
		}
		if len(v[k]) > 1 {
			return q, out, fmt.Errorf("%s: given more than once", k)
		}
	}
	var err error
	if q.From, err = timeParam(v, "from"); err != nil {
		return q, out, err
	}
	if q.To, err = timeParam(v, "to"); err != nil {
		return q, out, err
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.To.After(q.From) {
		return q, out, errors.New("to: must be after from")
	}
	// TrimSpace: an unencoded "+" in a query string reads as a space.
	if s := strings.TrimSpace(v.Get("number")); s != "" {
		if s[0] != '+' && (s[0] < '0' || s[0] > '9') {
			return q, out, fmt.Errorf("number: %q is not a business number in +E.164", s)
		}
		if q.Number, err = permissions.NormalizeUser(s); err != nil {
			return q, out, fmt.Errorf("number: %q is not a business number in +E.164", s)
		}
	}
	if s := v.Get("user"); s != "" {
		if q.User, err = permissions.NormalizeUser(s); err != nil {
			return q, out, fmt.Errorf("user: %q is neither +E.164 nor a business-scoped user id", s)
		}
	}
	switch s := strings.ToUpper(v.Get("direction")); s {
	case "":
	case string(events.UIC), string(events.BIC):
		q.Direction = events.Direction(s)
	default:
		return q, out, fmt.Errorf("direction: %s is not UIC or BIC", quoteParam(v.Get("direction")))
	}
	if s := v.Get("outcome"); s != "" {
		switch o := events.Outcome(strings.ToLower(s)); o {
		case events.Answered, events.Unanswered, events.Busy, events.Cancelled, events.Refused, events.Failed:
			q.Outcome = o
		default:
			return q, out, fmt.Errorf("outcome: %s is not one of answered, unanswered, busy, cancelled, refused, failed", quoteParam(s))
		}
	}
	if q.After, err = events.ParseCDRCursor(v.Get("cursor")); err != nil {
		return q, out, fmt.Errorf("cursor: %w; pass next_cursor as it was given", err)
	}
	if q.Limit, err = intParam(v.Get("limit"), events.DefaultLimit, 1, events.MaxLimit); err != nil {
		return q, out, fmt.Errorf("limit: %w", err)
	}
	out.format = formatJSON
	switch f := v.Get("format"); f {
	case formatJSON, formatCSV:
		out.format = f
	case "":
		if acceptsCSV(accept) {
			out.format = formatCSV
		}
	default:
		return q, out, fmt.Errorf("format: %s is not json or csv", quoteParam(f))
	}
	switch b := v.Get("bom"); b {
	case "", "0":
	case "1":
		if out.format != formatCSV {
			// JSON must not start with one (RFC 8259 §8.1).
			return q, out, errors.New("bom: only for CSV (format=csv, or Accept: text/csv)")
		}
		out.bom = true
	default:
		return q, out, fmt.Errorf("bom: %s is not 0 or 1", quoteParam(b))
	}
	return q, out, nil
}

// timeParam reads an RFC 3339 time, its T and Z in either case (RFC 3339
// §5.6). A space stands for '+': an offset's '+' left unencoded in a
// query string reads as one, and an RFC 3339 time has no space of its own.
func timeParam(v url.Values, name string) (time.Time, error) {
	s := v.Get(name)
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, strings.ToUpper(strings.Replace(s, " ", "+", 1)))
	if err != nil || t.Year() < 1970 || t.Year() > 9999 {
		return time.Time{}, fmt.Errorf("%s: %s is not an RFC 3339 time like 2025-06-01T00:00:00Z", name, quoteParam(s))
	}
	return t, nil
}

// acceptsCSV reports whether an Accept header prefers text/csv to JSON:
// text/csv is named with a non-zero quality at least that of the most
// specific range that takes JSON (application/json, application/*,
// */*), if any.
func acceptsCSV(accept string) bool {
	csvQ, jsonQ, jsonRank := 0.0, -1.0, 0
	for part := range strings.SplitSeq(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if s, ok := params["q"]; ok {
			if q, err = strconv.ParseFloat(s, 64); err != nil || q < 0 || q > 1 {
				continue
			}
		}
		rank := map[string]int{"application/json": 3, "application/*": 2, "*/*": 1}[mt]
		switch {
		case mt == "text/csv":
			csvQ = max(csvQ, q)
		case rank > jsonRank:
			jsonQ, jsonRank = q, rank
		}
	}
	return csvQ > 0 && csvQ >= jsonQ
}

// quoteParam quotes a value for an error message, cut to a readable length.
func quoteParam(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strconv.Quote(s)
}
