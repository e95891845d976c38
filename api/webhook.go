package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/wagate/wagate/permissions"
)

// maxWebhookBody bounds a webhook delivery; Meta's batches are far smaller.
const maxWebhookBody = 1 << 20

// maxChallenge bounds the handshake challenge we echo.
const maxChallenge = 1024

// recentIDs is how many webhook message ids are remembered to drop
// redeliveries: Meta retries for hours, at a rate far below this many
// messages.
const recentIDs = 16384

type webhook struct {
	appSecret   []byte
	verifyToken string
	store       PermissionStore
	// known says whether a phone_number_id is configured (nil: all are).
	known func(string) bool
	log   *slog.Logger
	seen  *idSet
	// unknownNumber counts replies for numbers wagate does not serve.
	unknownNumber atomic.Uint64
}

func newWebhook(appSecret, verifyToken string, store PermissionStore, known func(string) bool, log *slog.Logger) *webhook {
	return &webhook{appSecret: []byte(appSecret), verifyToken: verifyToken, store: store, known: known, log: log, seen: newIDSet(recentIDs)}
}

// handshake answers Meta's subscription check: echo hub.challenge when
// hub.verify_token is ours.
func (h *webhook) handshake(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	challenge := q.Get("hub.challenge")
	if q.Get("hub.mode") != "subscribe" || h.verifyToken == "" || !secretEqual(q.Get("hub.verify_token"), h.verifyToken) ||
		challenge == "" || len(challenge) > maxChallenge {
		writeError(w, http.StatusForbidden, "verification failed")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, challenge)
}

// receive verifies and applies one delivery. After a valid signature it
// answers 200 whatever the content — Meta retries anything else, and a
// payload we cannot use will not improve — except when the store failed to
// persist a change: then 500, so that Meta delivers again and the change is
// not lost (applying it twice is harmless).
func (h *webhook) receive(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "body larger than 1 MiB")
			return
		}
		writeError(w, http.StatusBadRequest, "could not read body")
		return
	}
	if !validSignature(h.appSecret, body, r.Header.Get("X-Hub-Signature-256")) {
		h.log.Warn("webhook: bad or missing X-Hub-Signature-256", "remote", r.RemoteAddr)
		writeError(w, http.StatusUnauthorized, "bad or missing X-Hub-Signature-256")
		return
	}
	replies, skipped := parseWebhook(body)
	for _, s := range skipped {
		h.log.Warn("webhook: call permission reply ignored", "reason", s)
	}
	failed := false
	for _, rep := range replies {
		if !h.apply(rep) {
			failed = true
		}
	}
	if failed {
		writeError(w, http.StatusInternalServerError, "could not persist; deliver again")
		return
	}
	w.WriteHeader(http.StatusOK)
}

// apply records one reply; false when the store failed (worth a retry).
func (h *webhook) apply(rep permissionReply) bool {
	if h.known != nil && !h.known(rep.Key.PhoneNumberID) {
		// Acknowledged all the same: Meta would retry a refusal for
		// days, and the delivery will not become applicable. The app may
		// serve numbers another system handles, or a number was removed
		// from the config.
		h.unknownNumber.Add(1)
		h.log.Warn("webhook: call permission reply ignored: phone_number_id is not a configured business number",
			"phone_number_id", rep.Key.PhoneNumberID, "user", rep.Key.User, "message_id", rep.MessageID)
		return true
	}
	if h.store == nil {
		h.log.Info("webhook: call permission reply not applied: permissions are disabled", "key", rep.Key.String())
		return true
	}
	if rep.MessageID != "" && !h.seen.claim(rep.MessageID) {
		h.log.Debug("webhook: duplicate delivery ignored", "message_id", rep.MessageID)
		return true
	}
	var err error
	if rep.Accept {
		err = h.store.Grant(rep.Key, rep.Permanent, rep.Expires, rep.Source)
	} else {
		err = h.store.Revoke(rep.Key, rep.Source)
	}
	switch {
	case err == nil:
		h.log.Info("webhook: call permission reply applied", "key", rep.Key.String(), "accept", rep.Accept,
			"permanent", rep.Permanent, "expires", rep.Expires, "source", rep.Source, "message_id", rep.MessageID)
		return true
	case errors.Is(err, permissions.ErrNotFound):
		// A reject for a pair we never granted: nothing to undo.
		return true
	case errors.Is(err, permissions.ErrExpired), errors.Is(err, permissions.ErrInvalidKey):
		h.log.Warn("webhook: call permission reply ignored", "key", rep.Key.String(), "error", err)
		return true
	default:
		h.seen.release(rep.MessageID)
		h.log.Error("webhook: call permission reply not persisted", "key", rep.Key.String(), "error", err)
		return false
	}
}

// validSignature checks "sha256=<hex HMAC-SHA256(app secret, body)>" in
// constant time.
func validSignature(secret, body []byte, header string) bool {
	hexSig, ok := strings.CutPrefix(strings.TrimSpace(header), "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil || len(got) != sha256.Size {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

// sign is validSignature's counterpart, for tests and docs.
func sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}
