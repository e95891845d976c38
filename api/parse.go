package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/wagate/wagate/permissions"
)

// permissionReply is one call_permission_reply, checked and ready to apply.
type permissionReply struct {
	MessageID string
	Key       permissions.Key
	// BSUID is from_user_id when the message also names the phone number:
	// the two are linked.
	BSUID     string
	Accept    bool
	Permanent bool
	Expires   time.Time // zero: the cache's TemporaryTTL from now
	Source    string    // webhook:<response_source>, or webhook:reject:<…>
	At        time.Time // the message's timestamp; zero when absent
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
	ID          string  `json:"id"`
	From        string  `json:"from"`
	FromUserID  string  `json:"from_user_id"`
	Timestamp   flexInt `json:"timestamp"`
	Type        string  `json:"type"`
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
	// A message naming both links them (permissions.Reply.BSUID), so that
	// a later message naming either changes the same user.
	user, err := permissions.NormalizeUser(m.From)
	fromID, errID := permissions.NormalizeUser(m.FromUserID)
	bsuid := ""
	switch {
	case err == nil && !permissions.IsBSUID(user):
		if errID == nil && permissions.IsBSUID(fromID) {
			bsuid = fromID
		}
	case errID == nil:
		user = fromID
	case err == nil: // from carries the BSUID itself
	default:
		return rep, false, fmt.Sprintf("message %q: no usable user in from (%v) or from_user_id (%v)", m.ID, err, errID)
	}
	src := "webhook"
	switch cpr.ResponseSource {
	case "user_action", "automatic":
		src += ":" + cpr.ResponseSource
	}
	rep = permissionReply{MessageID: m.ID, Key: permissions.Key{PhoneNumberID: id, User: user}, BSUID: bsuid}
	if ts := int64(m.Timestamp); ts > 0 && ts < maxUnixSeconds {
		rep.At = time.Unix(ts, 0).UTC()
	}
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

// maxUnixSeconds bounds the timestamps taken from Meta (year 9999).
const maxUnixSeconds = 253402300799

// accountUpdate is Meta's pause of a number's business-initiated calls.
type accountUpdate struct {
	PhoneNumberID string
	Until         time.Time
	Reason        string
	// At is when Meta sent it (entry.time; zero when absent).
	At time.Time
}

// restrictedCalling is the account_update event (and restriction type)
// that pauses business-initiated calls and permission requests.
const restrictedCalling = "RESTRICTED_BUSINESS_INITIATED_CALLING"

// restrictionDefault is how long Meta pauses business-initiated calling
// when an update gives no expiry (Meta: 7 days).
const restrictionDefault = 7 * 24 * time.Hour

type accountDoc struct {
	Entry []struct {
		Time    flexInt `json:"time"`
		Changes []struct {
			Field string          `json:"field"`
			Value json.RawMessage `json:"value"`
		} `json:"changes"`
	} `json:"entry"`
}

type accountValue struct {
	Event         string `json:"event"`
	PhoneNumber   string `json:"phone_number"`
	PhoneNumberID string `json:"phone_number_id"`
	Metadata      struct {
		PhoneNumberID string `json:"phone_number_id"`
		Display       string `json:"display_phone_number"`
	} `json:"metadata"`
	Expiration      flexTime `json:"expiration"`
	RestrictionInfo []struct {
		RestrictionType string   `json:"restriction_type"`
		Expiration      flexTime `json:"expiration"`
	} `json:"restriction_info"`
}

// parseAccountUpdates extracts the pauses of business-initiated calling
// from account_update changes. numberID maps a displayed business number
// to its phone-number-id (nil: only updates naming the id are used).
// LOW_BUSINESS_INITIATED_CALLING_QUALITY, Meta's warning before a pause,
// is reported in skipped so that it reaches the log.
func parseAccountUpdates(body []byte, numberID func(string) (string, bool)) (updates []accountUpdate, skipped []string) {
	var doc accountDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, nil // parseWebhook already said so
	}
	for _, e := range doc.Entry {
		for _, ch := range e.Changes {
			if ch.Field != "account_update" {
				continue
			}
			var v accountValue
			if err := json.Unmarshal(ch.Value, &v); err != nil {
				skipped = append(skipped, "account_update value of an unexpected shape: "+err.Error())
				continue
			}
			if strings.Contains(v.Event, "LOW_BUSINESS_INITIATED_CALLING_QUALITY") {
				skipped = append(skipped, "Meta warns of low business-initiated calling quality (a pause may follow) for number "+
					firstNonEmpty(v.PhoneNumberID, v.Metadata.PhoneNumberID, v.PhoneNumber, v.Metadata.Display))
				continue
			}
			until, found := time.Time{}, v.Event == restrictedCalling
			if found {
				until = v.Expiration.t
			}
			for _, ri := range v.RestrictionInfo {
				if ri.RestrictionType == restrictedCalling {
					found = true
					if !ri.Expiration.t.IsZero() {
						until = ri.Expiration.t
					}
				}
			}
			if !found {
				continue
			}
			var at time.Time
			if ts := int64(e.Time); ts > 0 && ts < maxUnixSeconds {
				at = time.Unix(ts, 0).UTC()
			}
			if until.IsZero() {
				from := time.Now()
				if !at.IsZero() {
					from = at
				}
				until = from.Add(restrictionDefault)
			}
			id := firstNonEmpty(v.PhoneNumberID, v.Metadata.PhoneNumberID)
			if id == "" && numberID != nil {
				for _, d := range []string{v.PhoneNumber, v.Metadata.Display} {
					if d == "" {
						continue
					}
					if got, ok := numberID(d); ok {
						id = got
						break
					}
				}
			}
			id, err := permissions.NormalizePhoneNumberID(id)
			if err != nil {
				skipped = append(skipped, fmt.Sprintf("%s for number %q: not a configured business number (%v)", restrictedCalling,
					firstNonEmpty(v.PhoneNumber, v.Metadata.Display), err))
				continue
			}
			updates = append(updates, accountUpdate{PhoneNumberID: id, Until: until.UTC(), Reason: restrictedCalling, At: at})
		}
	}
	return updates, skipped
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// flexTime reads Unix seconds (number or string) or an RFC 3339 time.
type flexTime struct{ t time.Time }

func (f *flexTime) UnmarshalJSON(b []byte) error {
	s := string(bytes.Trim(b, `"`))
	if s == "" || s == "null" {
		f.t = time.Time{}
		return nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n <= 0 || n >= maxUnixSeconds {
			return fmt.Errorf("timestamp %d out of range", n)
		}
		f.t = time.Unix(n, 0).UTC()
		return nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return fmt.Errorf("not a time: %s", b)
	}
	f.t = t.UTC()
	return nil
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
