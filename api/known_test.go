package api

import (
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/permissions"
)

// onlyTestNumber configures one business number: testNumberID.
func onlyTestNumber(o *Options) {
	o.KnownNumber = func(id string) bool { return id == testNumberID }
}

// TestGrantForUnknownNumber: a grant or a permission request for a
// phone_number_id no configured number has is refused with 404 naming the
// id, and nothing is stored; reads and revocations still work (a grant
// left from a number since removed can be cleaned up).
func TestGrantForUnknownNumber(t *testing.T) {
	f := newFixture(t, onlyTestNumber)
	const other = "999999999999999"
	key := permissions.Key{PhoneNumberID: other, User: "+16505551234"}

	r := f.api(t, "PUT", "/v1/permissions/"+other+"/+16505551234", `{"status":"permanent"}`)
	if r.code != 404 || !strings.Contains(r.errorText(t), "phone_number_id "+other+" is not a configured business number") {
		t.Fatalf("PUT for an unknown number: %d %s", r.code, r.body)
	}
	if _, ok := f.cache.Get(key); ok {
		t.Fatal("the refused grant was stored")
	}
	r = f.api(t, "POST", "/v1/permissions/"+other+"/+16505551234/requests", "")
	if r.code != 404 || !strings.Contains(r.errorText(t), other) {
		t.Fatalf("POST requests for an unknown number: %d %s", r.code, r.body)
	}

	// A grant stored before the number left the config can be revoked.
	if err := f.cache.Grant(key, true, time.Time{}, "test"); err != nil {
		t.Fatal(err)
	}
	if r := f.api(t, "GET", "/v1/permissions/"+other+"/+16505551234", ""); r.code != 200 {
		t.Errorf("GET for an unknown number: %d %s", r.code, r.body)
	}
	if r := f.api(t, "DELETE", "/v1/permissions/"+other+"/+16505551234", ""); r.code != 200 {
		t.Errorf("DELETE for an unknown number: %d %s", r.code, r.body)
	}

	// The configured number is unaffected.
	if r := f.api(t, "PUT", "/v1/permissions/"+testNumberID+"/+16505551234", `{"status":"permanent"}`); r.code != 200 {
		t.Errorf("PUT for the configured number: %d %s", r.code, r.body)
	}
	// (A user without a permanent permission: asking one who has it is 409, 138017.)
	if r := f.api(t, "POST", "/v1/permissions/"+testNumberID+"/+16505559999/requests", ""); r.code != 200 {
		t.Errorf("POST requests for the configured number: %d %s", r.code, r.body)
	}
}

// TestWebhookUnknownNumber: Meta's reply for a phone_number_id wagate does
// not serve is acknowledged (200, or Meta retries), not applied, and
// counted; replies for the configured number still apply.
func TestWebhookUnknownNumber(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.KnownNumber = func(id string) bool { return id == "111111111111111" }
	})
	exp := epoch.Add(168 * time.Hour).Unix()
	for i, id := range []string{"wamid.u1", "wamid.u2"} {
		if r := f.deliver(t, replyPayload(id, "16505551234", "accept", false, exp)); r.code != 200 {
			t.Fatalf("delivery %d: %d %s", i, r.code, r.body)
		}
	}
	if _, ok := f.cache.Get(kerry); ok {
		t.Fatal("a reply for an unconfigured number was applied")
	}
	if got := f.wh.unknownNumber.Load(); got != 2 {
		t.Errorf("unknown-number count = %d, want 2", got)
	}
	if st := (&Server{wh: f.wh}).Stats(); st.WebhookUnknownNumber != 2 {
		t.Errorf("Stats = %+v", st)
	}

	g := newFixture(t, onlyTestNumber)
	if r := g.deliver(t, replyPayload("wamid.k1", "16505551234", "accept", true, 0)); r.code != 200 {
		t.Fatalf("delivery for the configured number: %d %s", r.code, r.body)
	}
	if e, ok := g.cache.Get(kerry); !ok || e.Status != permissions.StatusPermanent {
		t.Errorf("reply for the configured number not applied: %+v %v", e, ok)
	}
	if got := g.wh.unknownNumber.Load(); got != 0 {
		t.Errorf("unknown-number count = %d, want 0", got)
	}
}
