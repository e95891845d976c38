package api

import (
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wagate/wagate/permissions"
)

var kerry = permissions.Key{PhoneNumberID: testNumberID, User: "+16505551234"}

func TestWebhookHandshake(t *testing.T) {
	f := newFixture(t, nil)
	q := func(mode, token, challenge string) string {
		v := url.Values{"hub.mode": {mode}, "hub.verify_token": {token}, "hub.challenge": {challenge}}
		return "/webhook/meta?" + v.Encode()
	}
	r := f.do(t, "GET", q("subscribe", testVerifyToken, "1158201444"), "", nil, nil)
	if r.code != 200 || r.body != "1158201444" || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("handshake: %d %q %v", r.code, r.body, r.header)
	}
	for _, path := range []string{
		q("subscribe", "wrong", "1"),
		q("subscribe", "", "1"),
		q("unsubscribe", testVerifyToken, "1"),
		q("subscribe", testVerifyToken, ""),
		q("subscribe", testVerifyToken, strings.Repeat("9", maxChallenge+1)),
		"/webhook/meta",
	} {
		if r := f.do(t, "GET", path, "", nil, nil); r.code != 403 {
			t.Errorf("GET %s: %d", path, r.code)
		}
	}
	// No verify token configured: every handshake fails.
	g := newFixture(t, func(o *Options) { o.VerifyToken = "" })
	if r := g.do(t, "GET", q("subscribe", "", "1"), "", nil, nil); r.code != 403 {
		t.Errorf("handshake with no verify token configured: %d", r.code)
	}
}

func TestWebhookAppliesReplies(t *testing.T) {
	f := newFixture(t, nil)
	exp := epoch.Add(168 * time.Hour).Unix()
	if r := f.deliver(t, replyPayload("wamid.1", "16505551234", "accept", false, exp)); r.code != 200 {
		t.Fatalf("accept: %d %s", r.code, r.body)
	}
	e, ok := f.cache.Get(kerry)
	if !ok || e.Status != permissions.StatusTemporary || e.ExpiresAt.Unix() != exp || e.Source != "webhook:user_action" {
		t.Fatalf("after temporary accept: %+v %v", e, ok)
	}
	if d, tk := f.cache.Admit(kerry); !d.Allowed() {
		t.Fatalf("admit after accept: %v", d.Verdict)
	} else {
		tk.Finish(permissions.Cancelled)
	}

	f.deliver(t, replyPayload("wamid.2", "16505551234", "accept", true, 0))
	if e, _ := f.cache.Get(kerry); e.Status != permissions.StatusPermanent {
		t.Fatalf("after permanent accept: %+v", e)
	}

	f.deliver(t, replyPayload("wamid.3", "16505551234", "reject", false, 0))
	if e, _ := f.cache.Get(kerry); e.Status != permissions.StatusNone || e.Source != "webhook:reject:user_action" {
		t.Fatalf("after reject: %+v", e)
	}
	// A reject for a pair never granted is acknowledged and changes nothing.
	if r := f.deliver(t, replyPayload("wamid.4", "16505550000", "reject", false, 0)); r.code != 200 {
		t.Errorf("reject unknown: %d", r.code)
	}
	// An accept whose expiry already passed (a very late delivery) is ignored.
	if r := f.deliver(t, replyPayload("wamid.5", "16505550001", "accept", false, epoch.Add(-time.Hour).Unix())); r.code != 200 {
		t.Errorf("stale accept: %d", r.code)
	}
	if _, ok := f.cache.Get(permissions.Key{PhoneNumberID: testNumberID, User: "+16505550001"}); ok {
		t.Error("stale accept applied")
	}
}

func TestWebhookBSUIDOnly(t *testing.T) {
	f := newFixture(t, nil)
	body := []byte(strings.Replace(string(replyPayload("wamid.b", "", "accept", true, 0)),
		`"from":""`, `"from_user_id":"us.13491208655302741918"`, 1))
	if r := f.deliver(t, body); r.code != 200 {
		t.Fatal(r.code)
	}
	if e, ok := f.cache.Get(permissions.Key{PhoneNumberID: testNumberID, User: "US.13491208655302741918"}); !ok || e.Status != permissions.StatusPermanent {
		t.Fatalf("BSUID grant: %+v %v", e, ok)
	}
}

func TestWebhookBadSignatureChangesNothing(t *testing.T) {
	f := newFixture(t, nil)
	body := replyPayload("wamid.1", "16505551234", "accept", true, 0)
	good := sign([]byte(testAppSecret), body)
	for name, sig := range map[string]string{
		"missing":         "",
		"other secret":    sign([]byte("not-the-secret"), body),
		"no prefix":       strings.TrimPrefix(good, "sha256="),
		"sha1 prefix":     "sha1=" + strings.TrimPrefix(good, "sha256="),
		"not hex":         "sha256=zz" + good[9:],
		"truncated":       good[:len(good)-2],
		"of another body": sign([]byte(testAppSecret), append(body, ' ')),
	} {
		t.Run(name, func(t *testing.T) {
			hdr := map[string]string{}
			if sig != "" {
				hdr["X-Hub-Signature-256"] = sig
			}
			if r := f.do(t, "POST", "/webhook/meta", "", body, hdr); r.code != 401 {
				t.Fatalf("code %d", r.code)
			}
			if _, ok := f.cache.Get(kerry); ok {
				t.Fatal("unsigned delivery applied")
			}
		})
	}
}

func TestWebhookDuplicateDelivery(t *testing.T) {
	f := newFixture(t, nil)
	body := replyPayload("wamid.dup", "16505551234", "accept", true, 0)
	if r := f.deliver(t, body); r.code != 200 {
		t.Fatal(r.code)
	}
	first, _ := f.cache.Get(kerry)
	// The operator revokes; Meta then redelivers the old accept. Applied
	// once means it must not come back.
	if err := f.cache.Revoke(kerry, "api"); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute)
	if r := f.deliver(t, body); r.code != 200 {
		t.Fatal(r.code)
	}
	if e, _ := f.cache.Get(kerry); e.Status != permissions.StatusNone {
		t.Fatalf("redelivery applied again: %+v (first %+v)", e, first)
	}
	// The same grant under a new id is applied, and harmlessly so twice.
	for _, id := range []string{"wamid.a", "wamid.b"} {
		f.deliver(t, replyPayload(id, "16505551234", "accept", true, 0))
	}
	if e, _ := f.cache.Get(kerry); e.Status != permissions.StatusPermanent {
		t.Fatalf("new grant: %+v", e)
	}
}

func TestWebhookOversizedBody(t *testing.T) {
	f := newFixture(t, nil)
	pad := strings.Repeat(" ", maxWebhookBody)
	body := []byte(string(replyPayload("wamid.big", "16505551234", "accept", true, 0)) + pad)
	if r := f.deliver(t, body); r.code != 413 {
		t.Fatalf("oversized: %d", r.code)
	}
	if _, ok := f.cache.Get(kerry); ok {
		t.Fatal("oversized delivery applied")
	}
}

func TestWebhookIgnoresOtherContent(t *testing.T) {
	f := newFixture(t, nil)
	for name, body := range map[string]string{
		"text message":  `{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"1"},"messages":[{"from":"16505551234","id":"w1","type":"text","text":{"body":"hi"}}]}}]}]}`,
		"status update": `{"entry":[{"changes":[{"field":"messages","value":{"statuses":[{"id":"w2","status":"read"}]}}]}]}`,
		"calls field":   `{"entry":[{"changes":[{"field":"calls","value":{"calls":[{"id":"c1"}]}}]}]}`,
		"not JSON":      `<xml/>`,
		"bad response":  strings.Replace(string(replyPayload("w3", "16505551234", "accept", true, 0)), `"accept"`, `"maybe"`, 1),
		"bad user":      string(replyPayload("w4", "12", "accept", true, 0)),
		"empty":         ``,
	} {
		t.Run(name, func(t *testing.T) {
			if r := f.deliver(t, []byte(body)); r.code != 200 {
				t.Fatalf("code %d: a validly signed delivery is always acknowledged", r.code)
			}
		})
	}
	if n := f.cache.Len(); n != 0 {
		t.Errorf("%d pairs created", n)
	}
}

func TestWebhookOffWithoutAppSecret(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.AppSecret = "" })
	if r := f.deliver(t, replyPayload("w", "16505551234", "accept", true, 0)); r.code != 404 {
		t.Errorf("webhook without app secret: %d", r.code)
	}
}

// flakyStore fails the first Grant, then works: Meta's redelivery of the
// same message must be applied.
type flakyStore struct {
	PermissionStore
	fails atomic.Int32
}

func (s *flakyStore) Grant(k permissions.Key, p bool, e time.Time, src string) error {
	if s.fails.Add(1) == 1 {
		return errDisk
	}
	return s.PermissionStore.Grant(k, p, e, src)
}

func TestWebhookStoreFailureAsksForRedelivery(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Permissions = &flakyStore{PermissionStore: o.Permissions} })
	body := replyPayload("wamid.retry", "16505551234", "accept", true, 0)
	if r := f.deliver(t, body); r.code != 500 {
		t.Fatalf("failed persist: %d", r.code)
	}
	if r := f.deliver(t, body); r.code != 200 {
		t.Fatalf("redelivery: %d", r.code)
	}
	if e, ok := f.cache.Get(kerry); !ok || e.Status != permissions.StatusPermanent {
		t.Fatalf("redelivery not applied: %+v", e)
	}
}

func TestIDSetEvictsOldest(t *testing.T) {
	s := newIDSet(2)
	for _, id := range []string{"a", "b", "c"} {
		if !s.claim(id) {
			t.Fatalf("claim %s", id)
		}
	}
	if s.claim("b") || s.claim("c") {
		t.Error("recent ids claimed twice")
	}
	if !s.claim("a") {
		t.Error("evicted id not claimable")
	}
}

func TestParseWebhookFlexibleFields(t *testing.T) {
	body := strings.NewReplacer(`"is_permanent":false`, `"is_permanent":"true"`, `"expiration_timestamp":0`, `"expiration_timestamp":"1749427183"`).
		Replace(string(replyPayload("w", "+1 650 555 1234", "accept", false, 0)))
	reps, skipped := parseWebhook([]byte(body))
	if len(reps) != 1 || len(skipped) != 0 {
		t.Fatalf("replies %+v skipped %v", reps, skipped)
	}
	if r := reps[0]; !r.Permanent || !r.Expires.IsZero() || r.Key != kerry {
		t.Errorf("reply %+v", r)
	}
}

// FuzzParseWebhook: parsing never panics, and every reply it yields is
// safe to apply: a normalised key and a consistent grant.
func FuzzParseWebhook(f *testing.F) {
	f.Add(replyPayload("wamid.1", "16505551234", "accept", false, 1749427183))
	f.Add(replyPayload("wamid.2", "16505551234", "reject", true, 0))
	f.Add([]byte(`{"entry":[{"changes":[{"value":{"metadata":{"phone_number_id":"1"},"messages":[{"from_user_id":"us.1","interactive":{"type":"call_permission_reply","call_permission_reply":{"response":"accept","is_permanent":"true","expiration_timestamp":"9"}}}]}}]}]}`))
	f.Add([]byte(`{"entry":[{"changes":[{"value":{"messages":[1,"x",null,{}]}}]}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		reps, _ := parseWebhook(body)
		for _, r := range reps {
			k, err := r.Key.Normalize()
			if err != nil || k != r.Key {
				t.Fatalf("key %+v not normalised: %v", r.Key, err)
			}
			if !strings.HasPrefix(r.Source, "webhook") {
				t.Fatalf("source %q", r.Source)
			}
			if !r.Accept && (r.Permanent || !r.Expires.IsZero()) {
				t.Fatalf("reject carrying a grant: %+v", r)
			}
			if r.Permanent && !r.Expires.IsZero() {
				t.Fatalf("permanent with expiry: %+v", r)
			}
		}
	})
}
