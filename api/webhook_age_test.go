package api

import (
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

// TestWebhookLateFirstDeliveryApplied: Meta retries a delivery for up to
// 7 days; the last retry is still applied (its id would be remembered if
// it had been applied before).
func TestWebhookLateFirstDeliveryApplied(t *testing.T) {
	f := newFixture(t, nil)
	f.clock.Advance(7 * 24 * time.Hour)
	if r := f.deliver(t, replyPayload("wamid.late", "16505551234", "accept", true, 0)); r.code != 200 {
		t.Fatal(r.code)
	}
	if e, _ := f.cache.Get(kerry); e.Status != permissions.StatusPermanent {
		t.Fatalf("a 7-day-old first delivery was not applied: %+v", e)
	}
	// A replay of it afterwards does not undo a revocation.
	if err := f.cache.Revoke(kerry, "api"); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(12 * time.Hour)
	if r := f.deliver(t, replyPayload("wamid.late", "16505551234", "accept", true, 0)); r.code != 200 {
		t.Fatal(r.code)
	}
	if e, _ := f.cache.Get(kerry); e.Status != permissions.StatusNone {
		t.Fatalf("the replay re-granted a revoked pair: %+v", e)
	}
}
