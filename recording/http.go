package recording

import (
	"encoding/json"
	"errors"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"time"
)

// Handler serves the recordings over HTTP (no authentication: the api
// package puts its bearer-token check in front):
//
//	GET /v1/recordings?date=YYYY-MM-DD&call_id=…&limit=N
//	    → 200 {"recordings":[Entry…],"count":N}; 400 on a bad date or limit
//	GET /v1/recordings/{call-id}
//	    → 200 audio/wav (Range and HEAD supported, via http.ServeContent);
//	      404 {"error":…} when there is none, 409 while still recording.
//
// The Call-ID in the path is the exact Call-ID, percent-encoded. ServeMux
// cleans literal "." and ".." segments (and "//") out of a path before it
// routes it, so a Call-ID that contains them must have its dots and
// slashes encoded too (%2E, %2F): encoding every byte outside
// [A-Za-z0-9_~-] is always safe. Whatever arrives is only ever a lookup
// key: the file name comes from SafeName and the sidecar check.
func (m *Manager) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/recordings", m.serveList)
	mux.HandleFunc("GET /v1/recordings/{call_id...}", func(w http.ResponseWriter, r *http.Request) {
		m.serveFile(w, r, r.PathValue("call_id"))
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func (m *Manager) serveList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 0
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "limit must be a positive integer")
			return
		}
		limit = n
	}
	es, err := m.List(q.Get("date"), q.Get("call_id"), limit)
	if errors.Is(err, ErrBadDate) {
		writeError(w, http.StatusBadRequest, "date must be YYYY-MM-DD")
		return
	}
	if err != nil {
		m.log.Error("listing recordings", "error", err)
		writeError(w, http.StatusInternalServerError, "listing failed")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"recordings": es, "count": len(es)})
}

func (m *Manager) serveFile(w http.ResponseWriter, r *http.Request, callID string) {
	f, e, err := m.Open(callID)
	switch {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, "recording not found")
		return
	case errors.Is(err, ErrInProgress):
		writeError(w, http.StatusConflict, "recording in progress")
		return
	case err != nil:
		m.log.Error("opening recording", "call_id", callID, "error", err)
		writeError(w, http.StatusInternalServerError, "recording not readable")
		return
	}
	defer f.Close()
	var mod time.Time
	if st, ok := f.(interface{ Stat() (fs.FileInfo, error) }); ok {
		if fi, err := st.Stat(); err == nil {
			mod = fi.ModTime()
		}
	}
	if mod.IsZero() {
		mod = e.EndTime
	}
	h := w.Header()
	h.Set("Content-Type", "audio/wav")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": path.Base(e.File)}))
	h.Set("Cache-Control", "private, no-store")
	http.ServeContent(w, r, "", mod, f)
}
