package api

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/permissions"
)

// TestWebhookTooOldIgnored: a signed delivery older than wagate remembers
// applied message ids (8 days after the user answered, say) is a replay
// wagate cannot recognise: applying it again could grant a user who has
// since said no. Each field the webhook applies refuses it, answers 200
// (Meta would otherwise retry it) and counts it; before, all four were
// applied as new.
func TestWebhookTooOldIgnored(t *testing.T) {
	settings, calls := &settingsRecorder{}, &callsRecorder{}
	f := newFixture(t, func(o *Options) {
		o.MetaSettings, o.MetaCalls = settings.apply, calls
		o.NumberID = func(d string) (string, bool) { return testNumberID, strings.TrimPrefix(d, "+") == "15550001111" }
	})
	// The samples are dated shortly after epoch: now they are 8 days old.
	f.clock.Advance(8 * 24 * time.Hour)
	until := epoch.Add(30 * 24 * time.Hour).Unix()
	for name, body := range map[string][]byte{
		"call_permission_reply": replyPayload("wamid.old", "16505551234", "accept", true, 0),
		"account_update": accountUpdatePayload(`{"phone_number":"15550001111","event":"ACCOUNT_RESTRICTION","restriction_info":[` +
			`{"restriction_type":"RESTRICTED_BUSINESS_INITIATED_CALLING","expiration":` + itoa(until) + `}]}`),
		"account_settings_update": settingsPayload("DTLS", "ENABLED"),
		"calls":                   callsPayload("wacid.old", "terminate", `,"status":"COMPLETED","duration":42`),
	} {
		if r := f.deliver(t, body); r.code != 200 {
			t.Errorf("%s: %d %s, want 200 (a refusal would be retried by Meta)", name, r.code, r.body)
		}
	}
	if e, ok := f.cache.Get(kerry); ok && e.Status != permissions.StatusNone {
		t.Errorf("an 8-day-old accept granted the pair: %+v", e)
	}
	if rs, _ := f.cache.Restrictions(); len(rs) != 0 {
		t.Errorf("an 8-day-old account_update paused the number: %+v", rs)
	}
	if len(settings.got) != 0 {
		t.Errorf("an 8-day-old settings update was handed on: %+v", settings.got)
	}
	if len(calls.got) != 0 {
		t.Errorf("an 8-day-old call report was stored: %+v", calls.got)
	}
	for field, n := range f.wh.tooOld.byField() {
		if n != 1 {
			t.Errorf("webhook_too_old[%s] = %d, want 1", field, n)
		}
	}
}

// TestWebhookLateFirstDeliveryApplied holds the two numbers docs/api.md
// gives, each on its own (the age rule is derived from the id memory in
// the code, so a test of one through the other cannot catch a change of
// both): a message up to 7.5 days old by its own time is applied as a
// first delivery (Meta retries for 7 days), one older is refused; and an
// applied message id is remembered for 8 days from when it was applied,
// so a replay of a message whose sender's clock ran 12 h ahead (the
// margin the 7.5 days leave) is still recognised at just under 8 days
// and does not undo what happened since.
func TestWebhookLateFirstDeliveryApplied(t *testing.T) {
	const (
		idMemory = 8 * 24 * time.Hour            // docs/api.md: "message ids after 8 days"
		maxAge   = 7*24*time.Hour + 12*time.Hour // docs/api.md: "more than **7.5 days** old"
	)
	sentAt := func(body []byte, at time.Time) []byte {
		return []byte(strings.Replace(string(body), `"timestamp":"1749416383"`, `"timestamp":"`+strconv.FormatInt(at.Unix(), 10)+`"`, 1))
	}
	// The age rule: a first delivery a minute inside 7.5 days is applied,
	// one a minute past it refused (a pair each, so one does not hide
	// the other).
	t.Run("age", func(t *testing.T) {
		f := newFixture(t, nil)
		now := f.clock.Now()
		if r := f.deliver(t, sentAt(replyPayload("wamid.old", "16505551235", "accept", true, 0), now.Add(-maxAge-time.Minute))); r.code != 200 {
			t.Fatal(r.code)
		}
		if e, ok := f.cache.Get(permissions.Key{PhoneNumberID: testNumberID, User: "+16505551235"}); ok && e.Status != permissions.StatusNone {
			t.Errorf("a first delivery 7.5 days and a minute old was applied: %+v", e)
		}
		if n := f.wh.tooOld.byField()["call_permission_reply"]; n != 1 {
			t.Errorf("webhook_too_old[call_permission_reply] = %d after a delivery 7.5 days and a minute old, want 1", n)
		}
		if r := f.deliver(t, sentAt(replyPayload("wamid.late", "16505551234", "accept", true, 0), now.Add(-maxAge+time.Minute))); r.code != 200 {
			t.Fatal(r.code)
		}
		if e, _ := f.cache.Get(kerry); e.Status != permissions.StatusPermanent {
			t.Errorf("a first delivery a minute short of 7.5 days old was not applied: %+v", e)
		}
	})
	// The id memory: applied now from a sender 12 h ahead, revoked, and
	// replayed a minute short of 8 days later (7.5 days less a minute
	// old by its own time: the age rule lets it through).
	t.Run("id memory", func(t *testing.T) {
		f := newFixture(t, nil)
		body := sentAt(replyPayload("wamid.ahead", "16505551234", "accept", true, 0), f.clock.Now().Add(12*time.Hour))
		if r := f.deliver(t, body); r.code != 200 {
			t.Fatal(r.code)
		}
		if e, _ := f.cache.Get(kerry); e.Status != permissions.StatusPermanent {
			t.Fatalf("the delivery was not applied: %+v", e)
		}
		if err := f.cache.Revoke(kerry, "api"); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(idMemory - time.Minute)
		if r := f.deliver(t, body); r.code != 200 {
			t.Fatal(r.code)
		}
		if e, _ := f.cache.Get(kerry); e.Status != permissions.StatusNone {
			t.Errorf("a replay 8 days less a minute after the delivery re-granted a revoked pair (its id forgotten): %+v", e)
		}
		if seen, err := f.cache.MessageSeen("wamid.ahead"); err != nil || !seen {
			t.Errorf("id forgotten 8 days less a minute after it was applied (seen %v, %v)", seen, err)
		}
		f.clock.Advance(2 * time.Minute)
		if seen, err := f.cache.MessageSeen("wamid.ahead"); err != nil || seen {
			t.Errorf("id still remembered 8 days and a minute after it was applied (seen %v, %v): docs/api.md says 8 days", seen, err)
		}
	})
}
