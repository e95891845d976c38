package api

import (
	"bytes"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
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

// flakyStore fails the first reply, then works: Meta's redelivery of the
// same message must be applied.
type flakyStore struct {
	PermissionStore
	fails atomic.Int32
}

func (s *flakyStore) ApplyReply(r permissions.Reply) (bool, error) {
	if s.fails.Add(1) == 1 {
		return false, errDisk
	}
	return s.PermissionStore.ApplyReply(r)
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

// TestWebhookReplayAfterRestart: an applied message id survives a restart
// of wagate, so an old signed accept replayed later does not re-grant a
// pair revoked since (it was lost with the in-memory ids before).
func TestWebhookReplayAfterRestart(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: epoch.Add(time.Hour)}
	open := func() (*permissions.Cache, *fixture) {
		c, err := permissions.Open(dir+"/p.db", permissions.DefaultLimits(), clock, nil)
		if err != nil {
			t.Fatal(err)
		}
		f := newFixture(t, func(o *Options) { o.Permissions = c })
		return c, f
	}
	c, f := open()
	body := replyPayload("wamid.old", "16505551234", "accept", true, 0)
	if r := f.deliver(t, body); r.code != 200 {
		t.Fatal(r.code)
	}
	if err := c.Revoke(kerry, "api"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	c, f = open()
	defer c.Close()
	if r := f.deliver(t, body); r.code != 200 {
		t.Fatal(r.code)
	}
	if e, _ := c.Get(kerry); e.Status != permissions.StatusNone {
		t.Fatalf("replayed accept re-granted a revoked pair after a restart: %+v", e)
	}
	if s := c.Stats(); s.ReplayedMessages != 1 {
		t.Errorf("replayed_messages %d", s.ReplayedMessages)
	}
}

// TestWebhookStaleReplyIgnored: a reply older than the pair's last change,
// under a new id (Meta redelivers with the same id, but a reply can also
// overtake another), is ignored.
func TestWebhookStaleReplyIgnored(t *testing.T) {
	f := newFixture(t, nil)
	f.clock.Advance(time.Hour) // the sample's timestamps are now in the past
	reject := strings.Replace(string(replyPayload("wamid.r", "16505551234", "reject", false, 0)), `"timestamp":"1749416383"`, `"timestamp":"1749416400"`, 1)
	if r := f.deliver(t, []byte(reject)); r.code != 200 {
		t.Fatal(r.code)
	}
	// The accept was sent at …383, before the reject at …400.
	if r := f.deliver(t, replyPayload("wamid.a", "16505551234", "accept", true, 0)); r.code != 200 {
		t.Fatal(r.code)
	}
	if e, _ := f.cache.Get(kerry); e.Status != permissions.StatusNone {
		t.Fatalf("an older accept overrode a newer reject: %+v", e)
	}
}

// TestWebhookLinksBSUID: a message naming the phone number and the BSUID
// links them; a later reject naming only the BSUID revokes the phone
// number's grant.
func TestWebhookLinksBSUID(t *testing.T) {
	f := newFixture(t, nil)
	f.clock.Advance(time.Hour)
	both := strings.Replace(string(replyPayload("wamid.1", "16505551234", "accept", true, 0)),
		`"from":"16505551234"`, `"from":"16505551234","from_user_id":"US.13491208655302741918"`, 1)
	if r := f.deliver(t, []byte(both)); r.code != 200 {
		t.Fatal(r.code)
	}
	only := strings.NewReplacer(`"from":"16505551234"`, `"from_user_id":"US.13491208655302741918"`, `"timestamp":"1749416383"`, `"timestamp":"1749416400"`).
		Replace(string(replyPayload("wamid.2", "16505551234", "reject", false, 0)))
	if r := f.deliver(t, []byte(only)); r.code != 200 {
		t.Fatal(r.code)
	}
	if e, _ := f.cache.Get(kerry); e.Status != permissions.StatusNone {
		t.Fatalf("reject by BSUID left the phone number's grant: %+v", e)
	}
}

// accountUpdate is Meta's account_update pausing business-initiated calls.
func accountUpdatePayload(value string) []byte {
	return []byte(`{"object":"whatsapp_business_account","entry":[{"id":"WABA_ID","time":1749416383,"changes":[{"field":"account_update","value":` + value + `}]}]}`)
}

// TestWebhookAccountUpdateRestricts: RESTRICTED_BUSINESS_INITIATED_CALLING
// pauses the number's calls and permission requests until its expiry; the
// number may be named by its id or as displayed; the pause shows in
// /v1/restrictions and can be lifted there.
func TestWebhookAccountUpdateRestricts(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.NumberID = func(d string) (string, bool) { return testNumberID, strings.TrimPrefix(d, "+") == "15550001111" }
	})
	until := epoch.Add(7 * 24 * time.Hour).Unix()
	body := accountUpdatePayload(`{"phone_number":"15550001111","event":"ACCOUNT_RESTRICTION","restriction_info":[{"restriction_type":"RESTRICTED_BUSINESS_INITIATED_CALLING","expiration":` + itoa(until) + `}]}`)
	if r := f.deliver(t, body); r.code != 200 {
		t.Fatal(r.code)
	}
	if err := f.cache.Grant(kerry, true, time.Time{}, "api"); err != nil {
		t.Fatal(err)
	}
	d, _ := f.cache.Admit(kerry)
	if d.Verdict != permissions.Restricted || d.MetaError != 138013 || d.RetryAfterSeconds() != int(until-epoch.Unix()) {
		t.Fatalf("call from a restricted number: %+v", d)
	}
	r := f.api(t, "POST", userPath+"/requests", "")
	var rq requestDoc
	r.json(t, &rq)
	if r.code != 403 || rq.ErrorCode != 138013 {
		t.Errorf("request from a restricted number: %d %s", r.code, r.body)
	}
	r = f.api(t, "GET", "/v1/restrictions", "")
	if r.code != 200 || !strings.Contains(r.body, `"phone_number_id":"`+testNumberID+`"`) || !strings.Contains(r.body, "RESTRICTED_BUSINESS_INITIATED_CALLING") {
		t.Errorf("GET /v1/restrictions: %d %s", r.code, r.body)
	}
	if r := f.api(t, "DELETE", "/v1/restrictions/"+testNumberID, ""); r.code != 204 {
		t.Errorf("lift: %d %s", r.code, r.body)
	}
	if d, tk := f.cache.Admit(kerry); !d.Allowed() {
		t.Errorf("after the lift: %v", d.Verdict)
	} else {
		tk.Finish(permissions.Failed)
	}
	// An update for a number that is not ours changes nothing.
	other := accountUpdatePayload(`{"phone_number":"19990000000","event":"RESTRICTED_BUSINESS_INITIATED_CALLING"}`)
	if r := f.deliver(t, other); r.code != 200 {
		t.Fatal(r.code)
	}
	if rs, _ := f.cache.Restrictions(); len(rs) != 0 {
		t.Errorf("restriction of a foreign number recorded: %+v", rs)
	}
}

func TestParseAccountUpdates(t *testing.T) {
	for name, tc := range map[string]struct {
		value string
		until time.Time
		ok    bool
	}{
		"event with expiration":   {`{"phone_number_id":"1","event":"RESTRICTED_BUSINESS_INITIATED_CALLING","expiration":"2026-07-01T00:00:00Z"}`, time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC), true},
		"no expiration: 7 days":   {`{"phone_number_id":"1","event":"RESTRICTED_BUSINESS_INITIATED_CALLING"}`, time.Unix(1749416383, 0).Add(restrictionDefault).UTC(), true},
		"restriction_info string": {`{"metadata":{"phone_number_id":"1"},"restriction_info":[{"restriction_type":"RESTRICTED_BUSINESS_INITIATED_CALLING","expiration":"1782000000"}]}`, time.Unix(1782000000, 0).UTC(), true},
		"other restriction":       {`{"phone_number_id":"1","restriction_info":[{"restriction_type":"RESTRICTED_ADD_PHONE_NUMBER_ACTION","expiration":1782000000}]}`, time.Time{}, false},
		"quality warning":         {`{"phone_number_id":"1","event":"LOW_BUSINESS_INITIATED_CALLING_QUALITY"}`, time.Time{}, false},
		"garbage expiration":      {`{"phone_number_id":"1","event":"RESTRICTED_BUSINESS_INITIATED_CALLING","expiration":"soon"}`, time.Time{}, false},
	} {
		t.Run(name, func(t *testing.T) {
			us, _ := parseAccountUpdates(accountUpdatePayload(tc.value), nil)
			if !tc.ok {
				if len(us) != 0 {
					t.Fatalf("got %+v", us)
				}
				return
			}
			if len(us) != 1 || us[0].PhoneNumberID != "1" || !us[0].Until.Equal(tc.until) || us[0].Reason != restrictedCalling {
				t.Fatalf("got %+v, want until %v", us, tc.until)
			}
		})
	}
}

// FuzzParseAccountUpdates: never panics; every update names a valid
// phone-number-id and a time.
func FuzzParseAccountUpdates(f *testing.F) {
	f.Add(accountUpdatePayload(`{"phone_number_id":"1","event":"RESTRICTED_BUSINESS_INITIATED_CALLING","expiration":1782000000}`))
	f.Add(accountUpdatePayload(`{"restriction_info":[{"restriction_type":"RESTRICTED_BUSINESS_INITIATED_CALLING","expiration":"x"}]}`))
	f.Add([]byte(`{"entry":[{"changes":[{"field":"account_update","value":[1,2]}]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		us, _ := parseAccountUpdates(body, func(string) (string, bool) { return "123", true })
		for _, u := range us {
			if _, err := permissions.NormalizePhoneNumberID(u.PhoneNumberID); err != nil || u.Until.IsZero() {
				t.Fatalf("update %+v", u)
			}
		}
	})
}

// TestWebhookBadSignatureLoggedOnce: anyone can POST to /webhook/meta;
// each bad signature wrote a warning, so a flood of forged requests was a
// flood of log lines. Now one line per 10 s says how many were refused
// since, and /v1/status counts them all.
func TestWebhookBadSignatureLoggedOnce(t *testing.T) {
	var logs lockedBuf
	f := newFixture(t, func(o *Options) { o.Log = slog.New(slog.NewTextHandler(&logs, nil)) })
	body := replyPayload("wamid.1", "16505551234", "accept", true, 0)
	for range 50 {
		if r := f.do(t, "POST", "/webhook/meta", "", body, map[string]string{"X-Hub-Signature-256": "sha256=00"}); r.code != 401 {
			t.Fatalf("code %d", r.code)
		}
	}
	if n := strings.Count(logs.String(), "bad or missing X-Hub-Signature-256"); n != 1 {
		t.Errorf("%d log lines for 50 forged requests, want 1", n)
	}
	if n := f.wh.badSignature.Load(); n != 50 {
		t.Errorf("%d bad signatures counted, want 50", n)
	}
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestWebhookAccountUpdateReplayAfterLift: an operator lifts Meta's pause
// of a number (Meta support lifted it); Meta then redelivers the same
// account_update, or someone replays the signed delivery within the 7.5
// days wagate accepts. account_update has no message id, so before this
// the replay paused the number again and the business's calls were
// refused 138013 for another week. It is ignored now, after a restart too.
// A new pause Meta sends in the lift's second ends later than the lifted
// one and applies; it used to be ignored (its entry time, whole seconds,
// was not after the lift), and wagate went on placing calls Meta refuses.
func TestWebhookAccountUpdateReplayAfterLift(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	clock := &fakeClock{t: epoch}
	c, err := permissions.Open(path, permissions.DefaultLimits(), clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() }) // the one open at the end
	f := newFixture(t, func(o *Options) { o.Permissions = c; o.Now = clock.Now })
	f.cache, f.clock = c, clock
	if err := f.cache.Grant(kerry, true, time.Time{}, "api"); err != nil {
		t.Fatal(err)
	}
	sent := time.Unix(1749416383, 0) // accountUpdatePayload's entry time
	body := accountUpdatePayload(`{"phone_number_id":"` + testNumberID + `","event":"RESTRICTED_BUSINESS_INITIATED_CALLING","expiration":` +
		itoa(sent.Add(7*24*time.Hour).Unix()) + `}`)
	f.clock.Advance(sent.Sub(epoch) + time.Minute)
	if r := f.deliver(t, body); r.code != 200 {
		t.Fatal(r.code)
	}
	if d, _ := f.cache.Admit(kerry); d.Verdict != permissions.Restricted {
		t.Fatalf("after Meta's pause: %v, want restricted", d.Verdict)
	}
	f.clock.Advance(time.Hour)
	liftedAt := f.clock.Now()
	if r := f.api(t, "DELETE", "/v1/restrictions/"+testNumberID, ""); r.code != 204 {
		t.Fatalf("lift: %d %s", r.code, r.body)
	}
	admitted := func(when string) {
		t.Helper()
		d, tk := f.cache.Admit(kerry)
		if !d.Allowed() {
			t.Fatalf("%s: %v (%d %s), want the call admitted", when, d.Verdict, d.MetaError, d.Reason)
		}
		tk.Finish(permissions.Failed)
	}
	f.clock.Advance(2 * 24 * time.Hour)
	if r := f.deliver(t, body); r.code != 200 {
		t.Fatal(r.code)
	}
	admitted("the pause replayed 2 days after the lift")
	if rs, _ := f.cache.Restrictions(); len(rs) != 0 {
		t.Errorf("restrictions after the replay: %+v", rs)
	}
	// The same without a time: its expiry says it is the pause lifted.
	undated := strings.Replace(string(body), `"time":1749416383,`, "", 1)
	if r := f.deliver(t, []byte(undated)); r.code != 200 {
		t.Fatal(r.code)
	}
	admitted("the pause replayed without its time")

	// A restart remembers the lift.
	c.Close()
	c, err = permissions.Open(path, permissions.DefaultLimits(), clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.cache = c
	f.wh.store = c
	if r := f.deliver(t, body); r.code != 200 {
		t.Fatal(r.code)
	}
	admitted("the pause replayed after a restart")

	// Meta pauses the number again in the lift's second (its delivery
	// arrives now): a week from then, later than the pause lifted.
	again := liftedAt.Truncate(time.Second)
	later := accountUpdatePayload(`{"phone_number_id":"` + testNumberID + `","event":"RESTRICTED_BUSINESS_INITIATED_CALLING","expiration":` +
		itoa(again.Add(7*24*time.Hour).Unix()) + `}`)
	later = []byte(strings.Replace(string(later), `"time":1749416383,`, `"time":`+itoa(again.Unix())+`,`, 1))
	if r := f.deliver(t, later); r.code != 200 {
		t.Fatal(r.code)
	}
	if d, _ := f.cache.Admit(kerry); d.Verdict != permissions.Restricted {
		t.Errorf("Meta's new pause sent in the lift's second: %v, want restricted", d.Verdict)
	}
}

// TestWebhookAccountUpdateOutOfOrder: Meta's account_updates reach wagate
// out of order (Meta retries; several nodes). Before, the last delivered
// won: an older pause delivered after a newer one shortened it, and an
// older lift lifted it. They are ignored now, answered 200 and logged once
// each at warn with the number, and the newer pause stands.
func TestWebhookAccountUpdateOutOfOrder(t *testing.T) {
	var logs lockedBuf
	f := newFixture(t, func(o *Options) { o.Log = slog.New(slog.NewTextHandler(&logs, nil)) })
	if err := f.cache.Grant(kerry, true, time.Time{}, "api"); err != nil {
		t.Fatal(err)
	}
	update := func(sent, expiration time.Time) []byte {
		b := accountUpdatePayload(`{"phone_number_id":"` + testNumberID + `","event":"ACCOUNT_RESTRICTION","restriction_info":[{"restriction_type":"RESTRICTED_BUSINESS_INITIATED_CALLING","expiration":` +
			itoa(expiration.Unix()) + `}]}`)
		return []byte(strings.Replace(string(b), `"time":1749416383,`, `"time":`+itoa(sent.Unix())+`,`, 1))
	}
	newer := epoch.Add(-time.Hour)
	older := newer.Add(-time.Hour)
	for _, b := range [][]byte{
		update(newer, newer.Add(7*24*time.Hour)),
		update(older, older.Add(7*24*time.Hour)), // a shorter pause, sent before
		update(older, older),                     // Meta's lift (expired), sent before
	} {
		if r := f.deliver(t, b); r.code != 200 {
			t.Fatalf("%d %s", r.code, r.body)
		}
	}
	if d, _ := f.cache.Admit(kerry); d.Verdict != permissions.Restricted {
		t.Errorf("after the older updates: %v, want restricted", d.Verdict)
	}
	rs, err := f.cache.Restrictions()
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || !rs[0].Until.Equal(newer.Add(7*24*time.Hour)) {
		t.Errorf("restrictions %+v, want the newer pause's, until %v", rs, newer.Add(7*24*time.Hour))
	}
	const line = "account_update ignored: Meta sent it before the update in force"
	if n := strings.Count(logs.String(), line); n != 2 {
		t.Errorf("%d log lines %q, want 2:\n%s", n, line, logs.String())
	}
	if !strings.Contains(logs.String(), "phone_number_id="+testNumberID) {
		t.Errorf("log lines without the number:\n%s", logs.String())
	}
	if n := f.cache.Stats().StaleAccountUpdates; n != 2 {
		t.Errorf("%d stale account updates counted, want 2", n)
	}

	// A newer lift applies.
	if r := f.deliver(t, update(epoch, epoch.Add(-time.Second))); r.code != 200 {
		t.Fatal(r.code)
	}
	if d, tk := f.cache.Admit(kerry); !d.Allowed() {
		t.Errorf("after Meta's newer lift: %v, want the call admitted", d.Verdict)
	} else {
		tk.Finish(permissions.Failed)
	}
}
