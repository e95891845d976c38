package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/permissions"
)

const userPath = "/v1/permissions/" + testNumberID + "/+16505551234"

func TestPermissionLifecycle(t *testing.T) {
	f := newFixture(t, nil)

	if r := f.api(t, "GET", userPath, ""); r.code != 404 || r.errorText(t) == "" {
		t.Fatalf("unknown pair: %d %q", r.code, r.body)
	}

	r := f.api(t, "PUT", userPath, `{"status":"temporary"}`)
	var e entryDoc
	r.json(t, &e)
	if r.code != 200 || e.Status != "temporary" || !e.ExpiresAt.Equal(epoch.Add(168*time.Hour)) || e.Source != "api" || e.User != "+16505551234" {
		t.Fatalf("PUT temporary: %d %+v", r.code, e)
	}

	exp := epoch.Add(5 * time.Hour).Format(time.RFC3339)
	r = f.api(t, "PUT", "/v1/permissions/"+testNumberID+"/16505551234", `{"status":"temporary","expires_at":"`+exp+`"}`)
	r.json(t, &e)
	if r.code != 200 || e.ExpiresAt.Format(time.RFC3339) != exp || e.User != "+16505551234" {
		t.Fatalf("PUT with expires_at (user without +): %d %+v", r.code, e)
	}

	r = f.api(t, "PUT", userPath, `{"status":"permanent"}`)
	e = entryDoc{}
	r.json(t, &e)
	if r.code != 200 || e.Status != "permanent" || !e.ExpiresAt.IsZero() || strings.Contains(r.body, "expires_at") {
		t.Fatalf("PUT permanent: %d %s", r.code, r.body)
	}

	r = f.api(t, "GET", userPath, "")
	r.json(t, &e)
	if r.code != 200 || e.Status != "permanent" || e.PhoneNumberID != testNumberID {
		t.Fatalf("GET: %d %s", r.code, r.body)
	}

	r = f.api(t, "DELETE", userPath, "")
	r.json(t, &e)
	if r.code != 200 || e.Status != "no_permission" {
		t.Fatalf("DELETE: %d %s", r.code, r.body)
	}
	if r := f.api(t, "DELETE", userPath, ""); r.code != 404 {
		t.Errorf("second DELETE: %d %s", r.code, r.body)
	}
	if d, _ := f.cache.Admit(permissions.Key{PhoneNumberID: testNumberID, User: "+16505551234"}); d.Verdict != permissions.NoPermission {
		t.Errorf("admit after DELETE: %v", d.Verdict)
	}
}

func TestPermissionBadInput(t *testing.T) {
	f := newFixture(t, nil)
	past := epoch.Add(-time.Hour).Format(time.RFC3339)
	tests := []struct {
		name, method, path, body string
		want                     int
	}{
		{"bad phone number id", "GET", "/v1/permissions/abc/+16505551234", "", 400},
		{"bad user", "GET", "/v1/permissions/1/+123", "", 400},
		{"bad user on PUT", "PUT", "/v1/permissions/1/hello", `{"status":"permanent"}`, 400},
		{"no body", "PUT", userPath, "", 400},
		{"not JSON", "PUT", userPath, `status=permanent`, 400},
		{"unknown status", "PUT", userPath, `{"status":"forever"}`, 400},
		{"no_permission via PUT", "PUT", userPath, `{"status":"no_permission"}`, 400},
		{"unknown field", "PUT", userPath, `{"status":"permanent","note":"x"}`, 400},
		{"trailing data", "PUT", userPath, `{"status":"permanent"}{}`, 400},
		{"expiry on permanent", "PUT", userPath, `{"status":"permanent","expires_at":"2030-01-01T00:00:00Z"}`, 400},
		{"expiry in the past", "PUT", userPath, `{"status":"temporary","expires_at":"` + past + `"}`, 400},
		{"expiry not RFC 3339", "PUT", userPath, `{"status":"temporary","expires_at":"tomorrow"}`, 400},
		{"oversized body", "PUT", userPath, `{"status":"permanent","x":"` + strings.Repeat("a", 8<<10) + `"}`, 413},
		{"list bad number", "GET", "/v1/permissions?phone_number_id=x1", "", 400},
		{"list bad status", "GET", "/v1/permissions?status=maybe", "", 400},
		{"list limit 0", "GET", "/v1/permissions?limit=0", "", 400},
		{"list limit too big", "GET", "/v1/permissions?limit=1001", "", 400},
		{"list negative offset", "GET", "/v1/permissions?offset=-1", "", 400},
		{"list offset not a number", "GET", "/v1/permissions?offset=ten", "", 400},
		{"method", "PATCH", userPath, `{}`, 405},
		{"method on list", "POST", "/v1/permissions", `{}`, 405},
		{"method on requests", "GET", userPath + "/requests", ``, 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.api(t, tt.method, tt.path, tt.body)
			if r.code != tt.want || r.errorText(t) == "" {
				t.Fatalf("%s %s: %d %q, want %d with a JSON error", tt.method, tt.path, r.code, r.body, tt.want)
			}
		})
	}
	if n := f.cache.Len(); n != 0 {
		t.Errorf("bad input created %d pairs", n)
	}
}

func TestPermissionList(t *testing.T) {
	f := newFixture(t, nil)
	for i := 0; i < 5; i++ {
		k := permissions.Key{PhoneNumberID: testNumberID, User: fmt.Sprintf("+1650555000%d", i)}
		if err := f.cache.Grant(k, i < 2, time.Time{}, "test"); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.cache.Grant(permissions.Key{PhoneNumberID: "42", User: "US.13491208655302741918"}, true, time.Time{}, "test"); err != nil {
		t.Fatal(err)
	}
	var l listDoc
	r := f.api(t, "GET", "/v1/permissions", "")
	r.json(t, &l)
	if r.code != 200 || len(l.Permissions) != 6 || l.NextOffset != nil || l.Limit != 100 {
		t.Fatalf("list all: %d %s", r.code, r.body)
	}
	r = f.api(t, "GET", "/v1/permissions?phone_number_id="+testNumberID+"&limit=2&offset=1", "")
	l = listDoc{}
	r.json(t, &l)
	if len(l.Permissions) != 2 || l.Permissions[0].User != "+16505550001" || l.NextOffset == nil || *l.NextOffset != 3 {
		t.Fatalf("page: %s", r.body)
	}
	r = f.api(t, "GET", "/v1/permissions?phone_number_id="+testNumberID+"&status=temporary", "")
	l = listDoc{}
	r.json(t, &l)
	if len(l.Permissions) != 3 {
		t.Fatalf("temporary: %s", r.body)
	}
	r = f.api(t, "GET", "/v1/permissions?phone_number_id=999", "")
	if r.code != 200 || !strings.Contains(r.body, `"permissions":[]`) {
		t.Fatalf("unknown number: %d %s", r.code, r.body)
	}
}

func TestPermissionRequests(t *testing.T) {
	f := newFixture(t, nil)
	r := f.api(t, "POST", userPath+"/requests", "")
	if r.code != 200 || !strings.Contains(r.body, `"allowed":true`) {
		t.Fatalf("first request: %d %s", r.code, r.body)
	}
	r = f.api(t, "POST", userPath+"/requests", "")
	var rq requestDoc
	r.json(t, &rq)
	if r.code != 429 || r.header.Get("Retry-After") != "86400" || rq.Error == "" || rq.ErrorCode != 138009 {
		t.Fatalf("second request: %d %v %s", r.code, r.header, r.body)
	}
	// A user whose permission is permanent is not asked (Meta's 138017).
	perm := "/v1/permissions/" + testNumberID + "/+16505550042"
	f.api(t, "PUT", perm, `{"status":"permanent"}`)
	r = f.api(t, "POST", perm+"/requests", "")
	rq = requestDoc{}
	r.json(t, &rq)
	if r.code != 409 || rq.ErrorCode != 138017 {
		t.Errorf("request for a permanent pair: %d %s", r.code, r.body)
	}
	var e entryDoc
	f.api(t, "GET", userPath, "").json(t, &e)
	if e.Requests24h != 1 || e.Requests7d != 1 || e.Status != "no_permission" {
		t.Errorf("counters: %+v", e)
	}
}

func TestPermissionsDisabled(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		var nilCache *permissions.Cache
		o.Permissions = nilCache // a typed nil must count as "off"
	})
	for _, m := range []string{"GET /v1/permissions", "GET " + userPath, "PUT " + userPath, "DELETE " + userPath} {
		method, path, _ := strings.Cut(m, " ")
		if r := f.api(t, method, path, `{"status":"permanent"}`); r.code != 404 || !strings.Contains(r.errorText(t), "not enabled") {
			t.Errorf("%s: %d %s", m, r.code, r.body)
		}
	}
}

// failingStore fails every write, as a full or broken disk would.
type failingStore struct{ PermissionStore }

var errDisk = errors.New("disk on fire")

func (failingStore) Grant(permissions.Key, bool, time.Time, string) error { return errDisk }
func (failingStore) Revoke(permissions.Key, string) error                 { return errDisk }

func TestStoreFailureIs500(t *testing.T) {
	var f *fixture
	f = newFixture(t, func(o *Options) { o.Permissions = failingStore{o.Permissions} })
	r := f.api(t, "PUT", userPath, `{"status":"permanent"}`)
	if r.code != 500 || strings.Contains(r.body, "fire") {
		t.Errorf("failed grant: %d %s (the cause belongs in the log, not the answer)", r.code, r.body)
	}
}

// downStore is a store that cannot be reached (Redis down).
type downStore struct{ PermissionStore }

func (downStore) Lookup(permissions.Key) (permissions.Entry, bool, error) {
	return permissions.Entry{}, false, fmt.Errorf("lookup: %w", permissions.ErrUnavailable)
}
func (downStore) Grant(permissions.Key, bool, time.Time, string) error {
	return fmt.Errorf("grant: %w", permissions.ErrUnavailable)
}

func TestStoreUnavailableIs503(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Permissions = downStore{o.Permissions} })
	for _, m := range []string{"GET", "PUT"} {
		r := f.api(t, m, userPath, `{"status":"permanent"}`)
		if r.code != 503 || r.header.Get("Retry-After") == "" {
			t.Errorf("%s with the store down: %d %v %s", m, r.code, r.header, r.body)
		}
	}
}

// blipStore grants, then cannot be read (Redis gone right after it
// acknowledged the grant).
type blipStore struct{ PermissionStore }

func (b blipStore) Lookup(permissions.Key) (permissions.Entry, bool, error) {
	return permissions.Entry{}, false, fmt.Errorf("lookup: %w", permissions.ErrUnavailable)
}

// TestGrantAnswerWhenReadFails: a grant that was made but could not be
// read back answers what was granted, not "none": a CRM that shows the
// answer would tell the agent the customer has no permission (and may
// send a permission request the user already answered).
func TestGrantAnswerWhenReadFails(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Permissions = blipStore{o.Permissions} })
	r := f.api(t, "PUT", userPath, `{"status":"permanent"}`)
	var doc entryDoc
	r.json(t, &doc)
	if r.code != 200 || doc.Status != "permanent" {
		t.Errorf("permanent grant, read back failed: %d %s", r.code, r.body)
	}
	exp := epoch.Add(48 * time.Hour)
	r = f.api(t, "PUT", userPath, `{"status":"temporary","expires_at":"`+exp.Format(time.RFC3339)+`"}`)
	doc = entryDoc{}
	r.json(t, &doc)
	if r.code != 200 || doc.Status != "temporary" || !doc.ExpiresAt.Equal(exp) {
		t.Errorf("temporary grant, read back failed: %d %s", r.code, r.body)
	}
	if e, ok, err := f.cache.Lookup(permissions.Key{PhoneNumberID: testNumberID, User: "+16505551234"}); err != nil || !ok || e.Status != "temporary" {
		t.Errorf("the grant itself: %+v %v %v", e, ok, err)
	}
}

// FuzzPermissionAPI: whatever the method, user, query and body of a
// request to /v1/permissions…, the API answers JSON with a documented
// status, never panics, and a 200 to a PUT means the pair is granted as
// its normalised key.
func FuzzPermissionAPI(f *testing.F) {
	for _, seed := range []struct{ method, user, query, body string }{
		{"PUT", "+16505551234", "", `{"status":"permanent"}`},
		{"PUT", "16505551234", "", `{"status":"temporary","expires_at":"2099-01-01T00:00:00Z"}`},
		{"PUT", "US.123456", "", `{"status":"temporary","expires_at":"0001-01-01T00:00:00Z"}`},
		{"PUT", "%E2%82%AC1", "", `{"status":"permanent","x":1}`},
		{"GET", "", "limit=-1&offset=99999999999999999999", ""},
		{"GET", "", "status=permanent&phone_number_id=%00", ""},
		{"DELETE", "+16505551234", "", ""},
		{"POST", "+16505551234", "", ""},
	} {
		f.Add(seed.method, seed.user, seed.query, seed.body)
	}
	c, err := permissions.Open("", permissions.DefaultLimits(), nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { c.Close() })
	mux := newHandler(Options{Permissions: c, Token: testToken, Log: slog.New(slog.DiscardHandler)})
	f.Fuzz(func(t *testing.T, method, user, query, body string) {
		path := "/v1/permissions"
		switch method {
		case "PUT", "DELETE":
			path += "/" + testNumberID + "/" + user
		case "POST":
			path += "/" + testNumberID + "/" + user + "/requests"
		case "GET":
			if user != "" {
				path += "/" + testNumberID + "/" + user
			}
		default:
			return
		}
		if query != "" {
			path += "?" + query
		}
		req, err := http.NewRequest(method, "http://wagate"+path, strings.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		switch rec.Code {
		case 200, 204, 400, 403, 404, 405, 409, 413, 429:
		case 301, 307, 308:
			return // net/http's redirect to the cleaned path ("/./", "//")
		default:
			t.Fatalf("%s %s %q: %d %s", method, path, body, rec.Code, rec.Body.String())
		}
		var doc map[string]any
		if rec.Code != 204 && json.Unmarshal(rec.Body.Bytes(), &doc) != nil {
			t.Fatalf("%s %s: %d without JSON: %q", method, path, rec.Code, rec.Body.String())
		}
		if method == "PUT" && rec.Code == 200 {
			k, err := permissions.NormalizeKey(testNumberID, strings.TrimPrefix(req.URL.Path, "/v1/permissions/"+testNumberID+"/"))
			e, ok, lerr := c.Lookup(k)
			if err != nil || lerr != nil || !ok || (e.Status != permissions.StatusPermanent && e.Status != permissions.StatusTemporary) ||
				doc["user"] != k.User {
				t.Fatalf("PUT %s %q answered 200 %s; stored %+v %v %v (key %v, %v)", path, body, rec.Body.String(), e, ok, lerr, k, err)
			}
		}
	})
}

// slowListStore runs out of time listing, as Redis does over a million
// pairs; it records the deadline it was given.
type slowListStore struct {
	PermissionStore
	deadline *time.Time
}

func (s slowListStore) Entries(f permissions.Filter) ([]permissions.Entry, error) {
	*s.deadline = f.Deadline
	return nil, fmt.Errorf("list: %w", permissions.ErrListTooLong)
}

// TestPermissionListBounded: GET /v1/permissions gives the store a
// deadline within the server's 10 s to answer, and a page the store could
// not read by then is a 422 that says how to narrow it — not a listing
// read on for minutes after the client gave up.
func TestPermissionListBounded(t *testing.T) {
	var deadline time.Time
	f := newFixture(t, func(o *Options) { o.Permissions = slowListStore{o.Permissions, &deadline} })
	asked := time.Now()
	r := f.api(t, "GET", "/v1/permissions?status=temporary&offset=900000", "")
	if r.code != 422 || !strings.Contains(r.errorText(t), "narrow it") {
		t.Errorf("list past its time: %d %s", r.code, r.body)
	}
	if d := deadline.Sub(asked); d <= 0 || d >= 10*time.Second {
		t.Errorf("list deadline %v after the request, want within the server's 10 s", d)
	}
}
