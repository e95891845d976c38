package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// requireToken lets a request through only with "Authorization: Bearer
// <token>", or with the read-only token for a read (readOnly). An empty
// configured token refuses everything; an empty read token is none.
func requireToken(token, readToken string, next http.Handler) http.Handler {
	want, wantRead := sha256.Sum256([]byte(token)), sha256.Sum256([]byte(readToken))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		switch {
		case token != "" && bearerMatches(h, want):
		case readToken != "" && bearerMatches(h, wantRead):
			if !readOnly(r) {
				writeError(w, http.StatusForbidden, "the read-only token may not "+readOnlyRefusal(r))
				return
			}
		default:
			w.Header().Set("WWW-Authenticate", `Bearer realm="wagate"`)
			writeError(w, http.StatusUnauthorized, "missing or invalid bearer token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// readOnly reports whether the read-only token may make request r: a
// GET or HEAD, not of a recording (a wallboard or a BI tool needs the
// calls and their records, not the customers' voices).
func readOnly(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && !isRecordingsPath(r.URL.Path)
}

func readOnlyRefusal(r *http.Request) string {
	if isRecordingsPath(r.URL.Path) {
		return "list or download recordings: use api.token"
	}
	return r.Method + ": it only reads (GET); use api.token"
}

func isRecordingsPath(p string) bool {
	return p == "/v1/recordings" || strings.HasPrefix(p, "/v1/recordings/")
}

// bearerMatches compares the presented token with the configured one in
// constant time. Both sides are hashed first so that neither the length
// nor a common prefix of the token shows in the timing.
func bearerMatches(header string, want [sha256.Size]byte) bool {
	scheme, got, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
	return subtle.ConstantTimeCompare(sum[:], want[:]) == 1
}

// secretEqual compares two secrets in constant time (see bearerMatches).
func secretEqual(got, want string) bool {
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}
