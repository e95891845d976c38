package api

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/wagate/wagate/events"
	"github.com/wagate/wagate/permissions"
)

// MetaSettingsUpdate is one account_settings_update about a number's
// calling settings, checked and ready to apply.
type MetaSettingsUpdate struct {
	PhoneNumberID string
	// SRTPKeyExchange is Meta's srtp_key_exchange_protocol as wagate
	// spells media_encryption: "dtls" or "sdes" ("" when not reported).
	SRTPKeyExchange string
	// SIPStatus is Meta's sip.status, upper case ("" when not reported).
	SIPStatus string
	// At is Meta's time of the change (zero when absent).
	At time.Time
}

// Limits on what is taken from the calls webhook.
const (
	maxWACallID    = 256
	maxMetaField   = 64
	maxMetaSeconds = 7 * 24 * 3600
)

type settingsValue struct {
	Timestamp     flexInt `json:"timestamp"`
	PhoneNumberID string  `json:"phone_number_id"`
	Metadata      struct {
		PhoneNumberID string `json:"phone_number_id"`
	} `json:"metadata"`
	Calling             *callingSettings `json:"calling"`
	PhoneNumberSettings *struct {
		PhoneNumberID string           `json:"phone_number_id"`
		Calling       *callingSettings `json:"calling"`
	} `json:"phone_number_settings"`
}

type callingSettings struct {
	SRTPKeyExchangeProtocol *string `json:"srtp_key_exchange_protocol"`
	SIP                     *struct {
		Status string `json:"status"`
	} `json:"sip"`
}

// keyingName maps Meta's srtp_key_exchange_protocol to media_encryption.
func keyingName(s string) (string, bool) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "DTLS", "DTLS-SRTP", "DTLS_SRTP":
		return "dtls", true
	case "SDES", "SDES-SRTP", "SDES_SRTP":
		return "sdes", true
	}
	return "", false
}

// parseSettingsUpdates extracts the calling settings of
// account_settings_update changes. Changes about other settings are
// ignored; unusable ones are described in skipped (for the log).
func parseSettingsUpdates(body []byte) (updates []MetaSettingsUpdate, skipped []string) {
	var doc accountDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, nil // parseWebhook already said so
	}
	for _, e := range doc.Entry {
		for _, ch := range e.Changes {
			if ch.Field != "account_settings_update" {
				continue
			}
			var v settingsValue
			if err := json.Unmarshal(ch.Value, &v); err != nil {
				skipped = append(skipped, "account_settings_update value of an unexpected shape: "+err.Error())
				continue
			}
			calling, id := v.Calling, firstNonEmpty(v.PhoneNumberID, v.Metadata.PhoneNumberID)
			if p := v.PhoneNumberSettings; p != nil {
				if p.Calling != nil {
					calling = p.Calling
				}
				id = firstNonEmpty(p.PhoneNumberID, id)
			}
			if calling == nil || (calling.SRTPKeyExchangeProtocol == nil && calling.SIP == nil) {
				continue // not about calling
			}
			u := MetaSettingsUpdate{}
			var err error
			if u.PhoneNumberID, err = permissions.NormalizePhoneNumberID(id); err != nil {
				skipped = append(skipped, fmt.Sprintf("account_settings_update: phone_number_id: %v", err))
				continue
			}
			if k := calling.SRTPKeyExchangeProtocol; k != nil {
				name, ok := keyingName(*k)
				if !ok {
					skipped = append(skipped, fmt.Sprintf("account_settings_update for %s: srtp_key_exchange_protocol %q is neither DTLS nor SDES",
						u.PhoneNumberID, truncate(*k, maxMetaField)))
					continue
				}
				u.SRTPKeyExchange = name
			}
			if calling.SIP != nil {
				st := strings.ToUpper(strings.TrimSpace(calling.SIP.Status))
				if !printable(st, maxMetaField) {
					skipped = append(skipped, fmt.Sprintf("account_settings_update for %s: sip.status is not a short word", u.PhoneNumberID))
					continue
				}
				u.SIPStatus = st
			}
			ts := int64(v.Timestamp)
			if ts <= 0 {
				ts = int64(e.Time)
			}
			if ts > 0 && ts < maxUnixSeconds {
				u.At = time.Unix(ts, 0).UTC()
			}
			updates = append(updates, u)
		}
	}
	return updates, skipped
}

type callsValue struct {
	Metadata struct {
		PhoneNumberID string `json:"phone_number_id"`
	} `json:"metadata"`
	Calls []json.RawMessage `json:"calls"`
}

type metaCallJSON struct {
	ID        string   `json:"id"`
	Event     string   `json:"event"`
	Direction string   `json:"direction"`
	Status    string   `json:"status"`
	Timestamp flexInt  `json:"timestamp"`
	StartTime flexTime `json:"start_time"`
	EndTime   flexTime `json:"end_time"`
	Duration  *flexInt `json:"duration"`
}

// parseMetaCalls extracts the call_created (connect) and terminate events
// of calls changes. Other events are ignored; unusable ones are described
// in skipped.
func parseMetaCalls(body []byte) (calls []events.MetaCall, skipped []string) {
	var doc accountDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, nil
	}
	for _, e := range doc.Entry {
		for _, ch := range e.Changes {
			if ch.Field != "calls" {
				continue
			}
			var v callsValue
			if err := json.Unmarshal(ch.Value, &v); err != nil {
				skipped = append(skipped, "calls value of an unexpected shape: "+err.Error())
				continue
			}
			for _, raw := range v.Calls {
				m, ok, why := parseMetaCall(v.Metadata.PhoneNumberID, raw)
				if why != "" {
					skipped = append(skipped, why)
				}
				if ok {
					calls = append(calls, m)
				}
			}
		}
	}
	return calls, skipped
}

func parseMetaCall(phoneNumberID string, raw json.RawMessage) (m events.MetaCall, ok bool, why string) {
	var c metaCallJSON
	if err := json.Unmarshal(raw, &c); err != nil {
		return m, false, "calls: call of an unexpected shape: " + err.Error()
	}
	ev := strings.ToLower(strings.TrimSpace(c.Event))
	switch ev {
	case "call_created", "connect", "terminate":
	default:
		return m, false, ""
	}
	if c.ID == "" || !printable(c.ID, maxWACallID) {
		return m, false, fmt.Sprintf("calls: %s without a usable call id", ev)
	}
	if !printable(c.Status, maxMetaField) || !printable(c.Direction, maxMetaField) {
		return m, false, fmt.Sprintf("calls: %s of %s: status or direction is not a short word", ev, c.ID)
	}
	m = events.MetaCall{WACallID: c.ID, Event: ev, Status: strings.ToUpper(c.Status), Direction: strings.ToUpper(c.Direction),
		StartedAt: c.StartTime.t, EndedAt: c.EndTime.t}
	if id, err := permissions.NormalizePhoneNumberID(phoneNumberID); err == nil {
		m.PhoneNumberID = id
	}
	if c.Duration != nil {
		d := int64(*c.Duration)
		if d < 0 || d > maxMetaSeconds {
			return events.MetaCall{}, false, fmt.Sprintf("calls: %s of %s: duration %d out of range", ev, c.ID, d)
		}
		m.DurationS = &d
	}
	if ts := int64(c.Timestamp); ts > 0 && ts < maxUnixSeconds {
		m.ReportedAt = time.Unix(ts, 0).UTC()
	}
	return m, true, ""
}

// printable reports whether s is at most max bytes of printable
// characters without spaces or quotes (empty is fine).
func printable(s string, max int) bool {
	if len(s) > max {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) || r == '"' {
			return false
		}
	}
	return true
}

// truncate cuts s to at most n bytes, for log lines quoting Meta.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
