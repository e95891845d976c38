package api

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/wagate/wagate/configs"
	"github.com/wagate/wagate/events"
	"github.com/wagate/wagate/recording"
)

// loadOpenAPI parses and validates the embedded document (kin-openapi
// validates OpenAPI 3.1 with JSON Schema 2020-12).
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openAPI)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if err := doc.Validate(loader.Context, openapi3.EnableExamplesValidation()); err != nil {
		t.Fatalf("the OpenAPI document is not valid: %v", err)
	}
	return doc
}

func TestOpenAPIDocumentValid(t *testing.T) {
	doc := loadOpenAPI(t)
	if doc.OpenAPI != "3.1.0" || !doc.IsOpenAPI31OrLater() {
		t.Errorf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
	// Every operation has an id, and every protected one documents 401.
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.OperationID == "" {
				t.Errorf("%s %s has no operationId", method, path)
			}
			public := op.Security != nil && len(*op.Security) == 0
			if !public && op.Responses.Status(401) == nil {
				t.Errorf("%s %s is behind the token but documents no 401", method, path)
			}
		}
	}
}

// TestOpenAPIDocsCopy: docs/openapi.json is the embedded document.
func TestOpenAPIDocsCopy(t *testing.T) {
	docs, err := os.ReadFile("../docs/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(docs, openAPI) {
		t.Fatal("docs/openapi.json differs from api/openapi.json: edit api/openapi.json and run go generate ./api")
	}
}

// everything serves every route: all the optional parts are on.
func everything(t *testing.T) *fixture {
	t.Helper()
	var deliver atomic.Bool
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !deliver.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(recv.Close)
	sink := openEvents(t, events.Subscriber{Name: "crm", URL: recv.URL, Secret: "k"})
	// Records as the B2BUA writes them.
	sink.CallEnded(events.CDR{
		CallID: "call-000", Direction: events.UIC, WACallID: "wacid.1", BusinessNumber: "+15550100001", PhoneNumberID: testNumberID,
		User: "+16505551234", CreatedAt: cdrEpoch, RingingAt: cdrEpoch.Add(time.Second), AnsweredAt: cdrEpoch.Add(3 * time.Second),
		EndedAt: cdrEpoch.Add(time.Minute), SIPCode: 200, SIPReason: "OK", HangupBy: events.HangupAPI, Cause: "api hangup",
		Outcome: events.Answered, A: events.Leg{Endpoint: "meta", SIPCallID: "a-0", Codec: "opus", Encryption: "sdes"},
		B:     events.Leg{Endpoint: "pbx", SIPCallID: "b-0@wagate", Codec: "PCMU", Encryption: "none"},
		Media: events.Media{AtoB: events.MediaStats{Packets: 2900, Bytes: 290000, Lost: 2, JitterMS: 1.5}},
	})
	sink.CallEnded(events.CDR{
		CallID: "call-001", Direction: events.BIC, BusinessNumber: "+15550100001", PhoneNumberID: testNumberID, User: "US.77",
		CreatedAt: cdrEpoch.Add(time.Minute), SIPCode: 486, SIPReason: "Busy Here", HangupBy: events.HangupB, Cause: "b-leg 486",
		Outcome: events.Busy, Permission: "allowed", A: events.Leg{Endpoint: "dialer", SIPCallID: "d-1"}, B: events.Leg{Endpoint: "meta", SIPCallID: "b-1@wagate"},
	})
	sink.CallRefused(events.CDR{CallID: "refused-1", Direction: events.BIC, SIPCode: 403, SIPReason: "Forbidden", Cause: "no permission",
		A: events.Leg{Endpoint: "dialer", SIPCallID: "d-2"}})
	waitUntil(t, "a dead letter", func() bool {
		page, err := sink.DeadLetters(context.Background(), events.DeadLetterQuery{Limit: 10})
		return err == nil && len(page.DeadLetters) > 0
	})

	rec, err := recording.New(configs.Recording{Enabled: true, Directory: t.TempDir(), SampleRate: 8000}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rec.Close() })
	r, err := rec.Start(recording.Meta{CallID: "rec-1@pbx", ACallID: "rec-1@pbx", StartTime: time.Now(), AnswerTime: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	r.PCM(recording.SideA, make([]int16, 1600))
	r.Finish(recording.EndInfo{HangupSide: "a", Cause: "BYE"})
	waitUntil(t, "the recording", func() bool {
		es, err := rec.List("", "rec-1@pbx", 1)
		return err == nil && len(es) == 1 && !es[0].InProgress
	})

	return newFixture(t, func(o *Options) {
		o.Status = func() any {
			return map[string]any{"calls": 2, "calls_started": 9, "calls_ended": 7, "ports_in_use": 8, "ports_bound": 12, "bridges": 2, "draining": false,
				"sip_edge": map[string]any{}, "api": Stats{WebhookUnknownNumber: 1}}
		}
		o.CDRs, o.Events = sink, sink
		o.Recordings = rec.Handler()
		o.Calls = sampleCalls()
		o.Originate = &fakeOriginator{}
		o.Metrics = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
			io.WriteString(w, "# TYPE wagate_calls gauge\nwagate_calls 2\n")
		})
		o.Ready = func() (bool, []string) { return true, nil }
	})
}

// pathParam matches a path parameter: ServeMux's {name} and {name...},
// OpenAPI's {name}.
var pathParam = regexp.MustCompile(`\{[^}]*\}`)

// TestOpenAPIRoutes: every route the server registers is in the document,
// with its method, and the document has no route the server lacks.
func TestOpenAPIRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	var documented []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+pathParam.ReplaceAllString(path, "{}"))
		}
	}
	f := everything(t)
	_, _, ops := build(f.opts)
	var served []string
	for _, op := range ops {
		served = append(served, pathParam.ReplaceAllString(op, "{}"))
	}
	slices.Sort(documented)
	slices.Sort(served)
	for _, op := range served {
		if !slices.Contains(documented, op) {
			t.Errorf("served but not in the OpenAPI document: %s", op)
		}
	}
	for _, op := range documented {
		if !slices.Contains(served, op) {
			t.Errorf("in the OpenAPI document but not served: %s", op)
		}
	}
	for _, op := range []string{"GET /metrics", "POST /webhook/meta", "GET /v1/recordings/{}", "GET /v1/cdrs/{}", "POST /v1/events/{}/replay", "DELETE /v1/calls/{}", "POST /v1/calls"} {
		if !slices.Contains(served, op) {
			t.Errorf("%s not served: the optional parts are not all on (%v)", op, served)
		}
	}
}

func TestOpenAPIServed(t *testing.T) {
	f := newFixture(t, nil)
	if r := f.do(t, "GET", "/v1/openapi.json", "", nil, nil); r.code != 401 {
		t.Errorf("without the token: %d", r.code)
	}
	r := f.api(t, "GET", "/v1/openapi.json", "")
	if r.code != 200 || r.body != string(openAPI) || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("GET /v1/openapi.json: %d %s, %d bytes", r.code, r.header.Get("Content-Type"), len(r.body))
	}
}

// TestOpenAPIResponses sends real requests to the handlers and checks
// each request (when it is meant to be valid) and each response against
// the document: status documented, headers and body matching their
// schemas. Every operation must have had a 2xx checked.
func TestOpenAPIResponses(t *testing.T) {
	doc := loadOpenAPI(t)
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	f := everything(t)
	h, _ := buildHandler(f.opts)
	const pnid = testNumberID
	payload := replyPayload("wamid.OA1", "16505551234", "accept", false, time.Now().Add(time.Hour).Unix())
	cases := []struct {
		method, target, body string
		hdr                  map[string]string
		noToken              bool
		want                 int
	}{
		{"GET", "/v1/status", "", nil, true, 200},
		{"GET", "/metrics", "", nil, true, 200},
		{"GET", "/healthz", "", nil, true, 200},
		{"GET", "/readyz", "", nil, true, 200},
		{"GET", "/v1/openapi.json", "", nil, false, 200},
		{"GET", "/v1/openapi.json", "", nil, true, 401},

		{"GET", "/v1/calls", "", nil, false, 200},
		{"GET", "/v1/calls?x=1", "", nil, false, 400},
		{"GET", "/v1/calls/" + answeredID, "", nil, false, 200},
		{"GET", "/v1/calls/" + unknownID, "", nil, false, 404},
		{"GET", "/v1/calls/XYZ", "", nil, false, 400},
		{"POST", "/v1/calls/" + ringingID + "/transfer", `{"endpoint":"pbx2","user":"2001"}`, map[string]string{"Content-Type": "application/json"}, false, 409},
		{"POST", "/v1/calls/" + unknownID + "/transfer", `{"endpoint":"pbx2","user":"2001"}`, map[string]string{"Content-Type": "application/json"}, false, 404},
		{"POST", "/v1/calls/" + ringingID + "/transfer", `{"endpoint":"pbx2"}`, map[string]string{"Content-Type": "application/json"}, false, 400},
		{"DELETE", "/v1/calls/" + ringingID + "?reason=test", "", nil, false, 202},
		{"POST", "/v1/calls/" + answeredID + "/transfer", `{"endpoint":"pbx2","user":"2001"}`, map[string]string{"Content-Type": "application/json"}, false, 202},
		{"DELETE", "/v1/calls/" + answeredID, `{"reason":"operator"}`, map[string]string{"Content-Type": "application/json"}, false, 202},
		{"DELETE", "/v1/calls/" + answeredID, "", nil, false, 404},
		{"DELETE", "/v1/calls/" + answeredID, `{"nope":1}`, nil, false, 400},
		{"DELETE", "/v1/calls/" + answeredID, "", nil, true, 401},
		{"POST", "/v1/calls", clickBodyOK, map[string]string{"Content-Type": "application/json", "Idempotency-Key": "k1"}, false, 202},
		{"POST", "/v1/calls", clickBodyOK, map[string]string{"Content-Type": "application/json", "Idempotency-Key": "k1"}, false, 202},
		{"POST", "/v1/calls", `{"business_number":"+15550100001","user":"+447700900123","agent":{"hunt":"sales"}}`, map[string]string{"Content-Type": "application/json"}, false, 202},
		{"POST", "/v1/calls", `{"user":"+447700900123"}`, nil, false, 400},
		{"POST", "/v1/calls", strings.Replace(clickBodyOK, "+447700900123", noPermissionUser, 1), nil, false, 403},
		{"POST", "/v1/calls", strings.Replace(clickBodyOK, "+447700900123", "+447700900998", 1), nil, false, 503},
		{"POST", "/v1/calls", strings.Replace(clickBodyOK, "1001", "1002", 1), map[string]string{"Idempotency-Key": "k1"}, false, 422},

		{"PUT", "/v1/permissions/" + pnid + "/+16505551234", `{"status":"temporary"}`, map[string]string{"Content-Type": "application/json"}, false, 200},
		{"PUT", "/v1/permissions/" + pnid + "/+16505551235", `{"status":"permanent"}`, map[string]string{"Content-Type": "application/json"}, false, 200},
		{"PUT", "/v1/permissions/" + pnid + "/+16505551234", `{"status":"forever"}`, nil, false, 400},
		{"PUT", "/v1/permissions/" + pnid + "/+16505551234", `{"status":"temporary","x":` + strings.Repeat("1", 5000) + `}`, nil, false, 413},
		{"GET", "/v1/permissions", "", nil, false, 200},
		{"GET", "/v1/permissions?phone_number_id=" + pnid + "&status=temporary&limit=1&offset=0", "", nil, false, 200},
		{"GET", "/v1/permissions?limit=0", "", nil, false, 400},
		{"GET", "/v1/permissions/" + pnid + "/+16505551234", "", nil, false, 200},
		{"GET", "/v1/permissions/" + pnid + "/+16505559999", "", nil, false, 404},
		{"POST", "/v1/permissions/" + pnid + "/+16505551234/requests", "", nil, false, 200},
		{"POST", "/v1/permissions/" + pnid + "/+16505551234/requests", "", nil, false, 429},
		{"POST", "/v1/permissions/" + pnid + "/+16505551235/requests", "", nil, false, 409},
		{"DELETE", "/v1/permissions/" + pnid + "/+16505551235/connected_calls", "", nil, false, 200},
		{"DELETE", "/v1/permissions/" + pnid + "/+16505559999/connected_calls", "", nil, false, 404},
		{"DELETE", "/v1/permissions/" + pnid + "/x/connected_calls", "", nil, false, 400},
		{"DELETE", "/v1/permissions/" + pnid + "/+16505551234", "", nil, false, 200},
		{"DELETE", "/v1/permissions/" + pnid + "/+16505559999", "", nil, false, 404},
		{"GET", "/v1/restrictions", "", nil, false, 200},
		{"DELETE", "/v1/restrictions/" + pnid, "", nil, false, 204},
		{"DELETE", "/v1/restrictions/abc", "", nil, false, 400},

		{"GET", "/v1/recordings", "", nil, false, 200},
		{"GET", "/v1/recordings?date=yesterday", "", nil, false, 400},
		{"GET", "/v1/recordings/" + url.PathEscape("rec-1@pbx"), "", nil, false, 200},
		{"GET", "/v1/recordings/" + url.PathEscape("rec-1@pbx"), "", map[string]string{"Range": "bytes=0-9"}, false, 206},
		{"GET", "/v1/recordings/nothing-here", "", nil, false, 404},

		{"GET", "/v1/cdrs", "", nil, false, 200},
		{"GET", "/v1/cdrs?limit=1&direction=UIC", "", nil, false, 200},
		{"GET", "/v1/cdrs?format=csv", "", nil, false, 200},
		{"GET", "/v1/cdrs?outcome=lost", "", nil, false, 400},
		{"GET", "/v1/cdrs/call-000", "", nil, false, 200},
		{"GET", "/v1/cdrs/none", "", nil, false, 404},

		{"GET", "/v1/events/dead", "", nil, false, 200},
		{"GET", "/v1/events/dead?subscriber=a%20b", "", nil, false, 400},
		{"POST", "/v1/events/nope/replay", "", nil, false, 404},

		{"GET", "/webhook/meta?hub.mode=subscribe&hub.verify_token=" + testVerifyToken + "&hub.challenge=42", "", nil, true, 200},
		{"GET", "/webhook/meta?hub.mode=subscribe&hub.verify_token=bad&hub.challenge=42", "", nil, true, 403},
		{"POST", "/webhook/meta", string(payload), map[string]string{"Content-Type": "application/json", "X-Hub-Signature-256": sign([]byte(testAppSecret), payload)}, true, 200},
		{"POST", "/webhook/meta", string(payload), map[string]string{"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=00"}, true, 401},
	}
	// The replay of the dead letter, whose id is only known now.
	page, err := f.opts.Events.DeadLetters(context.Background(), events.DeadLetterQuery{Limit: 1})
	if err != nil || len(page.DeadLetters) == 0 {
		t.Fatalf("dead letters: %v", err)
	}
	cases = append(cases, struct {
		method, target, body string
		hdr                  map[string]string
		noToken              bool
		want                 int
	}{"POST", "/v1/events/" + page.DeadLetters[0].EventID + "/replay?subscriber=crm", "", nil, false, 200})

	checked := map[*openapi3.Operation]bool{}
	for _, tc := range cases {
		name := tc.method + " " + tc.target
		req := httptest.NewRequest(tc.method, "http://127.0.0.1:8080"+tc.target, strings.NewReader(tc.body))
		if !tc.noToken {
			req.Header.Set("Authorization", "Bearer "+testToken)
		}
		for k, v := range tc.hdr {
			req.Header.Set(k, v)
		}
		route, params, err := router.FindRoute(req)
		if err != nil {
			t.Errorf("%s: not in the document: %v", name, err)
			continue
		}
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}}
		if tc.want < 300 {
			// A request meant to succeed must be one the document allows
			// (it reads the body: give it back to the handler after).
			if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
				t.Errorf("%s: request not valid per the document: %v", name, err)
			}
			req.Body = io.NopCloser(strings.NewReader(tc.body))
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		res := rec.Result()
		if res.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d: %s", name, res.StatusCode, tc.want, rec.Body.String())
			continue
		}
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: res.StatusCode, Header: res.Header,
			Options: in.Options}
		out.SetBodyBytes(rec.Body.Bytes())
		if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
			t.Errorf("%s: response %d does not match the document: %v\n%s", name, res.StatusCode, err, rec.Body.String())
		}
		if tc.want < 300 {
			checked[route.Operation] = true
		}
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if !checked[op] {
				t.Errorf("no successful response of %s %s was checked", method, path)
			}
		}
	}
}
