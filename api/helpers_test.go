package api

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/permissions"
)

const (
	testToken       = "s3cret-token"
	testAppSecret   = "meta-app-secret"
	testVerifyToken = "verify-me"
	testNumberID    = "106540352242922"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

// epoch is shortly before the timestamps of the sample webhook.
var epoch = time.Unix(1749416000, 0).UTC()

type fixture struct {
	srv   *httptest.Server
	cache *permissions.Cache
	clock *fakeClock
	wh    *webhook // nil when the webhook is off
	opts  Options
}

// newFixture serves the API over a real permission cache on a temp file.
func newFixture(t *testing.T, mod func(*Options)) *fixture {
	t.Helper()
	clock := &fakeClock{t: epoch}
	c, err := permissions.Open(filepath.Join(t.TempDir(), "p.db"), permissions.DefaultLimits(), clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	opts := Options{
		Status:      func() any { return map[string]int{"calls": 3} },
		Token:       testToken,
		Permissions: c,
		AppSecret:   testAppSecret,
		VerifyToken: testVerifyToken,
		Log:         slog.New(slog.DiscardHandler),
		Now:         clock.Now,
	}
	if mod != nil {
		mod(&opts)
	}
	h, wh := buildHandler(opts)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, cache: c, clock: clock, wh: wh, opts: opts}
}

type response struct {
	code   int
	header http.Header
	body   string
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.body), v); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
}

// errorText is the "error" of a JSON error body ("" when none).
func (r response) errorText(t *testing.T) string {
	t.Helper()
	var e errorDoc
	r.json(t, &e)
	return e.Error
}

func (f *fixture) do(t *testing.T, method, path, token string, body []byte, hdr map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return response{code: res.StatusCode, header: res.Header, body: string(b)}
}

func (f *fixture) api(t *testing.T, method, path, body string) response {
	t.Helper()
	return f.do(t, method, path, testToken, []byte(body), nil)
}

func (f *fixture) deliver(t *testing.T, body []byte) response {
	t.Helper()
	return f.do(t, "POST", "/webhook/meta", "", body, map[string]string{
		"X-Hub-Signature-256": sign([]byte(testAppSecret), body),
		"Content-Type":        "application/json",
	})
}

// replyPayload is a Meta webhook carrying one call_permission_reply.
func replyPayload(id, from, response string, permanent bool, expires int64) []byte {
	s := `{"object":"whatsapp_business_account","entry":[{"id":"WABA_ID","changes":[{"field":"messages","value":{
"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001111","phone_number_id":"` + testNumberID + `"},
"contacts":[{"profile":{"name":"Kerry"},"wa_id":"` + strings.TrimPrefix(from, "+") + `"}],
"messages":[{"context":{"from":"15550001111","id":"wamid.ctx"},"from":"` + from + `","id":"` + id + `","timestamp":"1749416383",
"type":"interactive","interactive":{"type":"call_permission_reply","call_permission_reply":{"response":"` + response + `",
"is_permanent":` + map[bool]string{true: "true", false: "false"}[permanent] + `,"expiration_timestamp":` + itoa(expires) + `,"response_source":"user_action"}}}]}}]}]}`
	return []byte(s)
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }
