package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/wagate/wagate/permissions"
)

// permissionReply is one call_permission_reply, checked and ready to apply.
type permissionReply struct {
	MessageID string
	Key       permissions.Key
	Accept    bool
	Permanent bool
	Expires   time.Time // zero: the cache's TemporaryTTL from now
	Source    string    // webhook:<response_source>, or webhook:reject:<…>
}

// The parts of Meta's webhook we read. Messages are kept raw and decoded
// one by one, so that one message of an unexpected shape costs only itself.
type webhookDoc struct {
	Entry []struct {
		Changes []struct {
			Field string `json:"field"`
			Value struct {
				Metadata struct {
					PhoneNumberID string `json:"phone_number_id"`
				} `json:"metadata"`
				Messages []json.RawMessage `json:"messages"`
			} `json:"value"`
		} `json:"changes"`
	} `json:"entry"`
}

type webhookMessage struct {
	ID          string `json:"id"`
	From        string `json:"from"`
	FromUserID  string `json:"from_user_id"`
	Type        string `json:"type"`
	Interactive *struct {
		Type                string `json:"type"`
		CallPermissionReply *struct {
			Response            string   `json:"response"`
			IsPermanent         flexBool `json:"is_permanent"`
			ExpirationTimestamp flexInt  `json:"expiration_timestamp"`
			ResponseSource      string   `json:"response_source"`
		} `json:"call_permission_reply"`
	} `json:"interactive"`
}

// parseWebhook extracts the call-permission replies of a delivery. Other
// messages and fields are ignored; replies that cannot be used are
// described in skipped (for the log).
func parseWebhook(body []byte) (replies []permissionReply, skipped []string) {
	var doc webhookDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, []string{"payload is not Meta's webhook JSON: " + err.Error()}
	}
	for _, e := range doc.Entry {
		for _, ch := range e.Changes {
			if ch.Field != "" && ch.Field != "messages" {
				continue
			}
			for _, raw := range ch.Value.Messages {
				rep, ok, why := parseMessage(ch.Value.Metadata.PhoneNumberID, raw)
				if why != "" {
					skipped = append(skipped, why)
				}
				if ok {
					replies = append(replies, rep)
				}
			}
		}
	}
	return replies, skipped
}

// parseMessage turns one message into a reply. ok is false for messages
// that are not call-permission replies (why empty) or unusable ones (why
// says what is wrong).
func parseMessage(phoneNumberID string, raw json.RawMessage) (rep permissionReply, ok bool, why string) {
	var m webhookMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return rep, false, "message is not JSON of the expected shape: " + err.Error()
	}
	if m.Interactive == nil || m.Interactive.Type != "call_permission_reply" {
		return rep, false, ""
	}
	cpr := m.Interactive.CallPermissionReply
	if cpr == nil {
		return rep, false, fmt.Sprintf("message %q: call_permission_reply missing", m.ID)
	}
	id, err := permissions.NormalizePhoneNumberID(phoneNumberID)
	if err != nil {
		return rep, false, fmt.Sprintf("message %q: metadata.phone_number_id: %v", m.ID, err)
	}
	// The phone number is what dialers call (BIC Request-URI); the BSUID
	// stands in when Meta withholds the number.
	user, err := permissions.NormalizeUser(m.From)
	if err != nil {
		var err2 error
		if user, err2 = permissions.NormalizeUser(m.FromUserID); err2 != nil {
			return rep, false, fmt.Sprintf("message %q: no usable user in from (%v) or from_user_id (%v)", m.ID, err, err2)
		}
	}
	src := "webhook"
	switch cpr.ResponseSource {
	case "user_action", "automatic":
		src += ":" + cpr.ResponseSource
	}
	rep = permissionReply{MessageID: m.ID, Key: permissions.Key{PhoneNumberID: id, User: user}}
	switch cpr.Response {
	case "accept":
		rep.Accept, rep.Permanent, rep.Source = true, bool(cpr.IsPermanent), src
		if ts := int64(cpr.ExpirationTimestamp); ts > 0 && !rep.Permanent {
			rep.Expires = time.Unix(ts, 0).UTC()
		}
	case "reject":
		rep.Source = "webhook:reject"
		if src != "webhook" {
			rep.Source += src[len("webhook"):]
		}
	default:
		return permissionReply{}, false, fmt.Sprintf("message %q: response %q is neither accept nor reject", m.ID, cpr.Response)
	}
	return rep, true, ""
}

// flexInt reads a JSON number or a string of digits: Meta writes some
// timestamps as strings.
type flexInt int64

func (f *flexInt) UnmarshalJSON(b []byte) error {
	b = bytes.Trim(b, `"`)
	if len(b) == 0 || string(b) == "null" {
		*f = 0
		return nil
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("not an integer: %s", b)
	}
	*f = flexInt(n)
	return nil
}

// flexBool reads true/false, bare or quoted.
type flexBool bool

func (f *flexBool) UnmarshalJSON(b []byte) error {
	switch string(bytes.Trim(b, `"`)) {
	case "true":
		*f = true
	case "false", "", "null":
		*f = false
	default:
		return fmt.Errorf("not a boolean: %s", b)
	}
	return nil
}
