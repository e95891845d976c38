package api

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeOriginator plays the B2BUA behind POST /v1/calls: +447700900999
// has no permission, +15559999999 is not a business number; anything else
// starts a call.
type fakeOriginator struct {
	mu    sync.Mutex
	calls []ClickToCall
	delay time.Duration
	// refuse, when set, refuses every call with it (a limit of the
	// moment: the number's concurrency, Redis down, no ports).
	refuse *Refusal
}

const noPermissionUser = "+447700900999"

func (f *fakeOriginator) Originate(_ context.Context, r ClickToCall) (LiveCall, *Refusal, error) {
	time.Sleep(f.delay)
	f.mu.Lock()
	refuse := f.refuse
	f.mu.Unlock()
	switch {
	case refuse != nil:
		return LiveCall{}, refuse, nil
	case r.BusinessNumber == "+15559999999":
		return LiveCall{}, nil, &FieldError{"business_number", "is not a configured business number"}
	case r.User == noPermissionUser:
		return LiveCall{}, &Refusal{SIPCode: 403, SIPReason: "No Approved Call Permission Found", WABAError: 138006,
			Permission: "no_permission", Cause: "permission gate refused the call"}, nil
	case r.User == "+447700900998":
		return LiveCall{}, &Refusal{SIPCode: 503, SIPReason: "Service Unavailable", WABAError: 138005, RetryAfter: 1500 * time.Millisecond,
			Permission: "rate_limit", Cause: "permission gate refused the call"}, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, r)
	id := fmt.Sprintf("%024x", len(f.calls))
	return LiveCall{ID: id, Direction: "BIC", Origin: "click_to_call", State: "calling", BusinessNumber: r.BusinessNumber,
		PhoneNumberID: testNumberID, User: r.User, CreatedAt: time.Now().UTC(),
		A: LiveLeg{Endpoint: r.AgentEndpoint, SIPCallID: id + "-a@wagate"}, B: LiveLeg{Endpoint: "meta", SIPCallID: id + "@wagate"}}, nil, nil
}

func (f *fakeOriginator) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

const clickBodyOK = `{"business_number":"+15550100001","user":"+447700900123","agent":{"endpoint":"pbx","extension":"1001","ring_timeout":20}}`

func clickFixture(t *testing.T, o *fakeOriginator) *fixture {
	return newFixture(t, func(opts *Options) { opts.Calls, opts.Originate = sampleCalls(), o })
}

func TestClickToCallStarts(t *testing.T) {
	o := &fakeOriginator{}
	f := clickFixture(t, o)
	r := f.do(t, "POST", "/v1/calls", testToken, []byte(clickBodyOK), map[string]string{"Content-Type": "application/json"})
	var doc callDoc
	r.json(t, &doc)
	if r.code != 202 || doc.Origin != "click_to_call" || doc.State != "calling" || r.header.Get("Location") != "/v1/calls/"+doc.ID {
		t.Fatalf("POST: %d %v %s", r.code, r.header, r.body)
	}
	if got := o.calls[0]; got.AgentEndpoint != "pbx" || got.AgentExtension != "1001" || got.AgentRing != 20*time.Second || got.User != "+447700900123" {
		t.Errorf("asked the B2BUA for %+v", got)
	}
	if r := f.api(t, "POST", "/v1/calls", `{"business_number":"+15550100001","user":"+447700900123","agent":{"hunt":"sales"}}`); r.code != 202 || o.calls[1].AgentHunt != "sales" {
		t.Errorf("hunt: %d %s", r.code, r.body)
	}
	flow := `{"business_number":"+15550100001","callflow":true,"agent":{"endpoint":"pbx","extension":"1001"}}`
	if r := f.api(t, "POST", "/v1/calls", flow); r.code != 202 || !o.calls[2].Callflow || o.calls[2].User != "" {
		t.Errorf("callflow: %d %s, asked for %+v", r.code, r.body, o.calls[2])
	}
	if r := f.api(t, "PUT", "/v1/calls", ""); r.code != 405 || r.header.Get("Allow") != "GET, POST" {
		t.Errorf("PUT /v1/calls: %d Allow %q", r.code, r.header.Get("Allow"))
	}
}

// TestClickToCallBadBodies: every bad body is a 400 naming the field,
// and nothing is dialled.
func TestClickToCallBadBodies(t *testing.T) {
	o := &fakeOriginator{}
	f := clickFixture(t, o)
	for _, tc := range []struct{ body, want string }{
		{``, "body: EOF"},
		{`[]`, "body: cannot unmarshal array"},
		{`{"user":"+447700900123","agent":{"endpoint":"pbx","extension":"1001"}}`, "business_number: required"},
		{`{"business_number":"+15550100001","agent":{"endpoint":"pbx","extension":"1001"}}`, "user: required"},
		{`{"business_number":"+15550100001","user":"+447700900123"}`, "agent: required"},
		{`{"business_number":"+15550100001","user":"+447700900123","callflow":true,"agent":{"endpoint":"pbx","extension":"1001"}}`, "callflow: give either user or callflow"},
		{`{"business_number":"+15550100001","callflow":false,"agent":{"endpoint":"pbx","extension":"1001"}}`, "callflow: must be true"},
		{`{"business_number":"+15550100001","callflow":"https://evil.example/flow","agent":{"endpoint":"pbx","extension":"1001"}}`, "callflow: must be a JSON bool"},
		{`{"business_number":"+15550100001","user":"+447700900123","agent":{"extension":"1001"}}`, "agent.endpoint: required"},
		{`{"business_number":"+15550100001","user":"+447700900123","agent":{"endpoint":"pbx"}}`, "agent.extension: required"},
		{`{"business_number":"+15550100001","user":"+447700900123","agent":{"endpoint":"pbx","extension":"1001","ring_timeout":0}}`, "agent.ring_timeout: must be 1 to 300"},
		{`{"business_number":"+15550100001","user":"+447700900123","agent":{"endpoint":"pbx","extension":"1001","ring_timeout":"20s"}}`, "agent.ring_timeout: must be a JSON integer"},
		{`{"business_number":15550100001,"user":"+447700900123","agent":{"endpoint":"pbx","extension":"1001"}}`, "business_number: must be a JSON string"},
		{`{"business_number":"+15550100001","user":"+447700900123","agent":{"endpoint":"pbx","extension":"1001"},"x":1}`, `unknown field "x"`},
		{clickBodyOK + `{}`, "trailing data"},
		{`{"business_number":"+15550100001","user":"+447700900123","agent":{"hunt":"sales","endpoint":"pbx"}}`, "agent.hunt: give either"},
		{`{"business_number":"+15550100001","user":"+447700900123","agent":{"hunt":""}}`, "agent.hunt: must name"},
		{strings.Replace(clickBodyOK, "+15550100001", "+15559999999", 1), "business_number: is not a configured business number"},
	} {
		r := f.api(t, "POST", "/v1/calls", tc.body)
		if r.code != 400 || !strings.Contains(r.errorText(t), tc.want) {
			t.Errorf("%s: %d %s, want 400 with %q", tc.body, r.code, r.body, tc.want)
		}
	}
	if r := f.api(t, "POST", "/v1/calls", `{"business_number":"`+strings.Repeat("1", 5000)+`"}`); r.code != 413 {
		t.Errorf("large body: %d %s", r.code, r.body)
	}
	if r := f.api(t, "POST", "/v1/calls?x=1", clickBodyOK); r.code != 400 {
		t.Errorf("query parameter: %d %s", r.code, r.body)
	}
	if r := f.do(t, "POST", "/v1/calls", testToken, []byte(clickBodyOK), map[string]string{"Idempotency-Key": "a\tb"}); r.code != 400 || !strings.Contains(r.body, "Idempotency-Key") {
		t.Errorf("bad key: %d %s", r.code, r.body)
	}
	if r := f.do(t, "POST", "/v1/calls", "", []byte(clickBodyOK), nil); r.code != 401 {
		t.Errorf("no token: %d", r.code)
	}
	if n := o.count(); n != 0 {
		t.Errorf("%d calls started by bad requests", n)
	}
}

// TestClickToCallRefused: the gate's refusal comes back with its SIP code,
// reason and Meta's error code; a rate limit with Retry-After.
func TestClickToCallRefused(t *testing.T) {
	f := clickFixture(t, &fakeOriginator{})
	r := f.api(t, "POST", "/v1/calls", strings.Replace(clickBodyOK, "+447700900123", noPermissionUser, 1))
	var doc refusalDoc
	r.json(t, &doc)
	if r.code != 403 || doc.SIPCode != 403 || doc.WABAError != 138006 || doc.SIPReason != "No Approved Call Permission Found" || doc.Permission != "no_permission" {
		t.Errorf("no permission: %d %s", r.code, r.body)
	}
	r = f.api(t, "POST", "/v1/calls", strings.Replace(clickBodyOK, "+447700900123", "+447700900998", 1))
	if r.code != 503 || r.header.Get("Retry-After") != "2" || !strings.Contains(r.body, "138005") {
		t.Errorf("rate limit: %d Retry-After %q %s", r.code, r.header.Get("Retry-After"), r.body)
	}
}

// TestClickToCallIdempotent: the same key and body started one call,
// however often and however concurrently it was sent, and each got the
// first answer; the key with another body is a 422; another key is
// another call.
func TestClickToCallIdempotent(t *testing.T) {
	o := &fakeOriginator{delay: 50 * time.Millisecond}
	f := clickFixture(t, o)
	hdr := map[string]string{"Idempotency-Key": "crm-order-42"}
	var wg sync.WaitGroup
	res := make([]response, 5)
	for i := range res {
		wg.Go(func() { res[i] = f.do(t, "POST", "/v1/calls", testToken, []byte(clickBodyOK), hdr) })
	}
	wg.Wait()
	replayed := 0
	for i, r := range res {
		if r.code != 202 || r.body != res[0].body {
			t.Errorf("request %d: %d %s, want the first's %s", i, r.code, r.body, res[0].body)
		}
		if r.header.Get("Idempotent-Replayed") == "true" {
			replayed++
		}
	}
	if n := o.count(); n != 1 || replayed != 4 {
		t.Errorf("%d calls started, %d answers replayed; want 1 and 4", n, replayed)
	}
	later := f.do(t, "POST", "/v1/calls", testToken, []byte(clickBodyOK), hdr)
	if later.code != 202 || later.body != res[0].body || later.header.Get("Location") != res[0].header.Get("Location") {
		t.Errorf("retry: %d %s", later.code, later.body)
	}
	other := f.do(t, "POST", "/v1/calls", testToken, []byte(strings.Replace(clickBodyOK, "1001", "1002", 1)), hdr)
	if other.code != 422 {
		t.Errorf("same key, other body: %d %s", other.code, other.body)
	}
	if r := f.do(t, "POST", "/v1/calls", testToken, []byte(clickBodyOK), map[string]string{"Idempotency-Key": "crm-order-43"}); r.code != 202 || o.count() != 2 {
		t.Errorf("another key: %d, %d calls", r.code, o.count())
	}
}

// TestClickToCallIdempotentRetryAfterRefusal: a POST refused before
// anything was dialled (503 with Retry-After: the number's concurrency,
// Redis down) and retried with the same Idempotency-Key after Retry-After
// places the call; the key then keeps the call's answer. A dialer retries
// with the same key exactly so that a lost answer cannot call the user
// twice: replaying a refusal for 24 hours would mean the call is never
// placed.
func TestClickToCallIdempotentRetryAfterRefusal(t *testing.T) {
	o := &fakeOriginator{refuse: &Refusal{SIPCode: 503, SIPReason: "Service Unavailable", WABAError: 138002, RetryAfter: 5 * time.Second,
		Permission: "number_concurrency_cap", Cause: "permission gate refused the call"}}
	f := clickFixture(t, o)
	hdr := map[string]string{"Idempotency-Key": "crm-order-77"}
	r := f.do(t, "POST", "/v1/calls", testToken, []byte(clickBodyOK), hdr)
	if r.code != 503 || r.header.Get("Retry-After") != "5" {
		t.Fatalf("refused: %d Retry-After %q %s", r.code, r.header.Get("Retry-After"), r.body)
	}
	o.mu.Lock()
	o.refuse = nil // a call ended: the number is under its cap again
	o.mu.Unlock()
	r = f.do(t, "POST", "/v1/calls", testToken, []byte(clickBodyOK), hdr)
	if r.code != 202 || o.count() != 1 {
		t.Fatalf("retry after Retry-After: %d (replayed %q), %d calls started; want 202 and one call", r.code,
			r.header.Get("Idempotent-Replayed"), o.count())
	}
	again := f.do(t, "POST", "/v1/calls", testToken, []byte(clickBodyOK), hdr)
	if again.code != 202 || again.body != r.body || again.header.Get("Idempotent-Replayed") != "true" || o.count() != 1 {
		t.Errorf("retry after the call started: %d %s, %d calls", again.code, again.body, o.count())
	}
	// A 400 started nothing either: the same key with the body corrected
	// places the call.
	bad := f.do(t, "POST", "/v1/calls", testToken, []byte(`{"business_number":"+15550100001"}`), map[string]string{"Idempotency-Key": "crm-order-78"})
	if bad.code != 400 {
		t.Fatalf("bad body: %d %s", bad.code, bad.body)
	}
	if r := f.do(t, "POST", "/v1/calls", testToken, []byte(clickBodyOK), map[string]string{"Idempotency-Key": "crm-order-78"}); r.code != 202 || o.count() != 2 {
		t.Errorf("corrected body, same key: %d %s, %d calls", r.code, r.body, o.count())
	}
}

// TestIdempotencyExpiry: keys are forgotten after their time, and the
// oldest first when there are too many; one still running is kept.
func TestIdempotencyExpiry(t *testing.T) {
	now := time.Unix(1e9, 0)
	m := newIdempotency(func() time.Time { return now })
	m.max = 3
	var sum [32]byte
	e, first := m.claim("a", sum)
	if !first {
		t.Fatal("first claim not first")
	}
	if _, first := m.claim("a", sum); first {
		t.Fatal("second claim first")
	}
	now = now.Add(idemTTL + time.Second)
	if _, first := m.claim("b", sum); !first || m.keys["a"] == nil {
		t.Fatal("a running entry was dropped")
	}
	close(e.done)
	if _, first := m.claim("a", sum); !first {
		t.Error("an expired key was still known")
	}
	for _, k := range []string{"c", "d", "e"} {
		if _, first := m.claim(k, sum); first {
			close(m.keys[k].done)
		}
	}
	close(m.keys["b"].done)
	close(m.keys["a"].done)
	m.claim("f", sum)
	if len(m.keys) > 3 {
		t.Errorf("%d keys kept, max 3", len(m.keys))
	}
}

// FuzzClickToCall: whatever the body and Idempotency-Key of a POST
// /v1/calls, the handler answers 202, 400, 403, 413, 422 or 503 with
// JSON, never panics, and starts a call only for a body whose required
// fields are all there and well-formed — at most once per key.
func FuzzClickToCall(f *testing.F) {
	for _, seed := range []struct{ body, key string }{
		{clickBodyOK, ""}, {clickBodyOK, "k"}, {`{}`, ""}, {`{"agent":null}`, "k"}, {`{"agent":{"ring_timeout":-1}}`, ""},
		{strings.Replace(clickBodyOK, "+447700900123", noPermissionUser, 1), "x"}, {clickBodyOK + " []", ""}, {`"`, "\x00"},
		{`{"business_number":"+15550100001","user":"+447700900123","agent":{"hunt":"sales"}}`, "h"},
	} {
		f.Add(seed.body, seed.key)
	}
	f.Fuzz(func(t *testing.T, body, key string) {
		o := &fakeOriginator{}
		mux := newHandler(Options{Calls: sampleCalls(), Originate: o, Token: testToken, Log: slog.New(slog.DiscardHandler)})
		for range 2 {
			req, err := http.NewRequest("POST", "http://wagate/v1/calls", strings.NewReader(body))
			if err != nil {
				return
			}
			req.Header.Set("Authorization", "Bearer "+testToken)
			if key != "" {
				req.Header["Idempotency-Key"] = []string{key}
			}
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, req)
			switch rec.Code {
			case 202, 400, 403, 413, 422, 503:
			default:
				t.Fatalf("%d: %s", rec.Code, rec.Body.String())
			}
			var doc map[string]any
			if json.Unmarshal(rec.Body.Bytes(), &doc) != nil {
				t.Fatalf("%d without JSON: %q", rec.Code, rec.Body.String())
			}
			if rec.Code == 202 {
				var b clickBody
				err := json.Unmarshal([]byte(body), &b)
				byHunt := b.Agent != nil && b.Agent.Hunt != nil && *b.Agent.Hunt != "" && b.Agent.Endpoint == nil && b.Agent.Extension == nil
				byExt := b.Agent != nil && b.Agent.Hunt == nil && b.Agent.Endpoint != nil && b.Agent.Extension != nil
				if err != nil || b.BusinessNumber == nil || b.User == nil || !(byHunt || byExt) {
					t.Fatalf("202 for %q", body)
				}
			} else if doc["error"] == nil {
				t.Fatalf("%d without an error: %q", rec.Code, rec.Body.String())
			}
		}
		if n := o.count(); n > 2 || (key != "" && validIdemKey(key) && n > 1) {
			t.Fatalf("%d calls started for two POSTs with key %q", n, key)
		}
	})
}

// TestIdempotencyForgottenDoNotEvict: keys forgotten after a refusal
// neither count toward the limit nor push out the key of a call that
// started, whose retry would otherwise place a second call.
func TestIdempotencyForgottenDoNotEvict(t *testing.T) {
	now := time.Unix(1e9, 0)
	m := newIdempotency(func() time.Time { return now })
	m.max = 3
	var sum [32]byte
	started, _ := m.claim("started", sum)
	close(started.done)
	for i := range 10 {
		e, first := m.claim(fmt.Sprint("refused-", i), sum)
		if !first {
			t.Fatalf("refused-%d: not first", i)
		}
		close(e.done)
		m.forget(e)
	}
	if _, first := m.claim("started", sum); first {
		t.Error("the started call's key was pushed out by forgotten refusals: its retry would place a second call")
	}
}
