package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wagate/wagate/events"
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
	// seen keeps two deliveries of one message from being applied at once
	// by this node; the store remembers applied ids across restarts and
	// nodes.
	seen *idSet
	// numberID maps a business number as Meta displays it (digits) to its
	// phone-number-id, for account_update, which names the number only.
	numberID func(display string) (string, bool)
	// unknownNumber counts replies for numbers wagate does not serve.
	unknownNumber atomic.Uint64
	// onSettings receives account_settings_update changes (nil: logged).
	onSettings func(MetaSettingsUpdate) error
	// metaCalls keeps the calls webhook's reports (nil: dropped).
	metaCalls MetaCallStore
	// settingsUpdates and callReports count what Meta sent of each.
	settingsUpdates, callReports atomic.Uint64
	// badSignature counts deliveries refused for their signature;
	// badSigLog logs them at most every badSigLogEvery.
	badSignature atomic.Uint64
	badSigLog    everyLog
	// tooOld counts messages refused for their age, per field (see
	// permissions.MaxMessageAge); now is the clock they are aged by.
	tooOld tooOldCounts
	now    func() time.Time
}

// tooOldCounts are the messages of each webhook field refused as older
// than permissions.MaxMessageAge.
type tooOldCounts struct {
	replies, restrictions, settings, calls atomic.Uint64
}

// byField is the counts by Meta's name of what each applies.
func (c *tooOldCounts) byField() map[string]uint64 {
	return map[string]uint64{
		"call_permission_reply":   c.replies.Load(),
		"account_update":          c.restrictions.Load(),
		"account_settings_update": c.settings.Load(),
		"calls":                   c.calls.Load(),
	}
}

// outdated reports whether a message Meta dated at is older than wagate can
// tell a replay from a first delivery: then it is logged, counted in n and
// must not be applied. Acknowledged all the same (the caller answers 200):
// Meta would retry a refusal, and the message will not get younger. An
// undated message (Meta dates all of them) is not refused here.
func (h *webhook) outdated(n *atomic.Uint64, field string, at time.Time, attrs ...any) bool {
	if at.IsZero() {
		return false
	}
	age := h.now().Sub(at)
	if age <= permissions.MaxMessageAge {
		return false
	}
	n.Add(1)
	h.log.Warn("webhook: message older than wagate can tell a replay from a first delivery; ignored",
		append([]any{"field", field, "sent_at", at.UTC(), "age", age.Round(time.Second).String(),
			"max_age", permissions.MaxMessageAge.String()}, attrs...)...)
	return true
}

// badSigLogEvery spaces the warnings about forged deliveries: the route is
// open to anyone, and one line per request would let anyone flood the log.
const badSigLogEvery = 10 * time.Second

// everyLog lets one line through per interval and counts the others.
type everyLog struct {
	mu         sync.Mutex
	last       time.Time
	suppressed uint64
}

// allow reports whether to log now and how many were held back since.
func (e *everyLog) allow(now time.Time, every time.Duration) (bool, uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.last.IsZero() && now.Sub(e.last) < every {
		e.suppressed++
		return false, 0
	}
	n := e.suppressed
	e.last, e.suppressed = now, 0
	return true, n
}

func newWebhook(appSecret, verifyToken string, store PermissionStore, known func(string) bool, numberID func(string) (string, bool), log *slog.Logger) *webhook {
	return &webhook{appSecret: []byte(appSecret), verifyToken: verifyToken, store: store, known: known, log: log, seen: newIDSet(recentIDs), numberID: numberID,
		now: time.Now}
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
		h.badSignature.Add(1)
		if ok, n := h.badSigLog.allow(time.Now(), badSigLogEvery); ok {
			h.log.Warn("webhook: bad or missing X-Hub-Signature-256", "remote", r.RemoteAddr, "suppressed_since_last", n)
		}
		writeError(w, http.StatusUnauthorized, "bad or missing X-Hub-Signature-256")
		return
	}
	replies, skipped := parseWebhook(body)
	for _, s := range skipped {
		h.log.Warn("webhook: call permission reply ignored", "reason", s)
	}
	failed := false
	for _, rep := range replies {
		if h.outdated(&h.tooOld.replies, "call_permission_reply", rep.At, "message_id", rep.MessageID, "key", rep.Key.String(), "accept", rep.Accept) {
			continue
		}
		if !h.apply(rep) {
			failed = true
		}
	}
	updates, skipped := parseAccountUpdates(body, h.numberID)
	for _, s := range skipped {
		h.log.Warn("webhook: account_update ignored", "reason", s)
	}
	for _, u := range updates {
		if h.outdated(&h.tooOld.restrictions, "account_update", u.At, "phone_number_id", u.PhoneNumberID, "until", u.Until) {
			continue
		}
		if !h.restrict(u) {
			failed = true
		}
	}
	settings, skipped := parseSettingsUpdates(body)
	for _, s := range skipped {
		h.log.Warn("webhook: account_settings_update ignored", "reason", s)
	}
	settings = slices.DeleteFunc(settings, func(u MetaSettingsUpdate) bool {
		return h.outdated(&h.tooOld.settings, "account_settings_update", u.At, "phone_number_id", u.PhoneNumberID,
			"srtp_key_exchange", u.SRTPKeyExchange, "sip_status", u.SIPStatus)
	})
	if !h.applySettings(settings) {
		failed = true
	}
	calls, skipped := parseMetaCalls(body)
	for _, s := range skipped {
		h.log.Warn("webhook: calls event ignored", "reason", s)
	}
	calls = slices.DeleteFunc(calls, func(m events.MetaCall) bool {
		return h.outdated(&h.tooOld.calls, "calls", m.ReportedAt, "wa_call_id", m.WACallID, "event", m.Event)
	})
	if !h.applyCalls(r.Context(), calls) {
		failed = true
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
	if rep.MessageID != "" {
		if !h.seen.claim(rep.MessageID) {
			h.log.Debug("webhook: duplicate delivery ignored", "message_id", rep.MessageID)
			return true
		}
		seen, err := h.store.MessageSeen(rep.MessageID)
		if err != nil {
			h.seen.release(rep.MessageID)
			h.log.Error("webhook: could not check the message id; asking Meta to deliver again", "message_id", rep.MessageID, "error", err)
			return false
		}
		if seen {
			// Replayed after a restart, or delivered to another node.
			h.log.Info("webhook: message already applied; ignored", "message_id", rep.MessageID, "key", rep.Key.String())
			return true
		}
	}
	applied, err := h.store.ApplyReply(permissions.Reply{Key: rep.Key, BSUID: rep.BSUID, Accept: rep.Accept, Permanent: rep.Permanent,
		Expires: rep.Expires, Source: rep.Source, At: rep.At})
	switch {
	case err == nil && applied:
		h.log.Info("webhook: call permission reply applied", "key", rep.Key.String(), "bsuid", rep.BSUID, "accept", rep.Accept,
			"permanent", rep.Permanent, "expires", rep.Expires, "source", rep.Source, "message_id", rep.MessageID)
	case err == nil:
		h.log.Warn("webhook: call permission reply older than the pair's last change; ignored", "key", rep.Key.String(),
			"accept", rep.Accept, "sent_at", rep.At, "message_id", rep.MessageID)
	case errors.Is(err, permissions.ErrNotFound):
	case errors.Is(err, permissions.ErrExpired), errors.Is(err, permissions.ErrInvalidKey):
		h.log.Warn("webhook: call permission reply ignored", "key", rep.Key.String(), "error", err)
	default:
		h.seen.release(rep.MessageID)
		h.log.Error("webhook: call permission reply not persisted", "key", rep.Key.String(), "error", err)
		return false
	}
	if err := h.store.MarkMessage(rep.MessageID); err != nil {
		// Applied; a redelivery would apply it again, which its time
		// makes harmless.
		h.log.Warn("webhook: message id not remembered", "message_id", rep.MessageID, "error", err)
	}
	return true
}

// restrict records Meta's pause of a number's business-initiated calls,
// or its lift; false when the store failed (worth a retry).
func (h *webhook) restrict(u accountUpdate) bool {
	if h.store == nil {
		h.log.Warn("webhook: business-initiated calling restricted, not recorded: permissions are disabled",
			"phone_number_id", u.PhoneNumberID, "until", u.Until, "reason", u.Reason)
		return true
	}
	res, err := h.store.RestrictFromMeta(u.PhoneNumberID, u.Until, u.At, u.Reason)
	if err != nil {
		h.log.Error("webhook: restriction not persisted", "phone_number_id", u.PhoneNumberID, "error", err)
		return false
	}
	// A pause or lift applied is logged by the store.
	switch res.Outcome {
	case permissions.MetaSuperseded:
		// Meta retries, and deliveries reach several nodes: updates
		// arrive out of order, and the one Meta sent last stands.
		h.log.Warn("webhook: account_update ignored: Meta sent it before the update in force (a late delivery)",
			"phone_number_id", u.PhoneNumberID, "sent_at", u.At, "until", u.Until, "in_force_sent_at", res.InForceSent)
	case permissions.MetaOperatorLifted:
		// account_update carries no message id: a redelivery or replay
		// is told by its expiration (and time) against the operator's
		// lift and the pause it lifted.
		h.log.Warn("webhook: account_update ignored: it is the pause an operator lifted (a redelivery or replay)",
			"phone_number_id", u.PhoneNumberID, "sent_at", u.At, "until", u.Until)
	}
	return true
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
