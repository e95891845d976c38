package api

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
)

// Transfer makes fakeCalls a Transferer: the answered call may be
// transferred to pbx endpoints ("meta" is not one), the ringing one not
// yet.
func (f *fakeCalls) Transfer(id string, t TransferTarget) (LiveCall, error) {
	c, ok := f.Call(id)
	switch {
	case !ok:
		return LiveCall{}, fmt.Errorf("b2bua: %w", ErrNoSuchCall)
	case t.Endpoint == "meta":
		return LiveCall{}, fmt.Errorf("%w: %q is a whatsapp endpoint; transfers go to pbx endpoints", ErrTransferTarget, t.Endpoint)
	case c.State != "confirmed":
		return LiveCall{}, fmt.Errorf("%w: the call is not answered", ErrTransferConflict)
	}
	target := t.User + "@" + t.Endpoint
	if t.Hunt != "" {
		target = "hunt " + t.Hunt
	}
	f.mu.Lock()
	f.hangups = append(f.hangups, "transfer "+id+" "+target)
	f.mu.Unlock()
	return c, nil
}

func TestCallsTransfer(t *testing.T) {
	calls := sampleCalls()
	f := newFixture(t, func(o *Options) { o.Calls = calls })
	path := "/v1/calls/" + answeredID + "/transfer"
	r := f.api(t, "POST", path, `{"endpoint":"pbx2","user":"2001"}`)
	var doc transferDoc
	r.json(t, &doc)
	if r.code != 202 || doc.CallID != answeredID || doc.Kind != "api" || doc.Target != "2001@pbx2" || doc.State != "confirmed" {
		t.Errorf("transfer: %d %s", r.code, r.body)
	}
	if got := calls.hungUp(); len(got) != 1 || got[0] != "transfer "+answeredID+" 2001@pbx2" {
		t.Errorf("the B2BUA was asked %q", got)
	}
	for _, tc := range []struct {
		path, body string
		code       int
		names      string // what the error must name
	}{
		{path, `{"user":"2001"}`, 400, "endpoint: required"},
		{path, `{"endpoint":"pbx 2","user":"2001"}`, 400, `endpoint: "pbx 2"`},
		{path, `{"endpoint":"pbx2"}`, 400, "user: required"},
		{path, `{"endpoint":"pbx2","user":"20 01"}`, 400, `user: "20 01"`},
		{path, `{"endpoint":"pbx2","user":"` + strings.Repeat("1", 65) + `"}`, 400, "user:"},
		{path, `{"endpoint":"pbx2","user":"2001","to":"x"}`, 400, `unknown field "to"`},
		{path, `{"endpoint":"meta","user":"2001"}`, 400, `endpoint: "meta" is a whatsapp endpoint`},
		{path, `{"endpoint":"pbx2","user":"2001","x":"` + strings.Repeat("a", 2000) + `"}`, 413, "larger"},
		{path, `{"hunt":"team","endpoint":"pbx2"}`, 400, "hunt: give either"},
		{path, `{"hunt":"a b"}`, 400, `hunt: "a b"`},
		{path + "?now=1", `{"endpoint":"pbx2","user":"2001"}`, 400, `"now"`},
		{"/v1/calls/" + ringingID + "/transfer", `{"endpoint":"pbx2","user":"2001"}`, 409, "not answered"},
		{"/v1/calls/" + unknownID + "/transfer", `{"endpoint":"pbx2","user":"2001"}`, 404, unknownID},
		{"/v1/calls/XYZ/transfer", `{"endpoint":"pbx2","user":"2001"}`, 400, "call id"},
	} {
		r := f.api(t, "POST", tc.path, tc.body)
		if r.code != tc.code || !strings.Contains(r.errorText(t), tc.names) {
			t.Errorf("POST %s %.80s: %d %s, want %d naming %q", tc.path, tc.body, r.code, r.body, tc.code, tc.names)
		}
	}
	if r := f.api(t, "GET", path, ""); r.code != 405 || r.header.Get("Allow") != "POST" {
		t.Errorf("GET transfer: %d Allow %q", r.code, r.header.Get("Allow"))
	}
	if r := f.api(t, "POST", path, `{"hunt":"team"}`); r.code != 202 || !strings.Contains(r.body, `"target":"hunt team"`) {
		t.Errorf("transfer to a hunt list: %d %s", r.code, r.body)
	}
	if got := calls.hungUp(); len(got) != 2 || got[1] != "transfer "+answeredID+" hunt team" {
		t.Errorf("the B2BUA was asked %q; refused requests must not reach it", got)
	}
}

// FuzzTransfer: whatever the body of POST /v1/calls/{id}/transfer, the
// handler answers 202, 400, 409 or 413 with JSON, never panics, and asks
// the B2BUA only for a target whose names are well-formed.
func FuzzTransfer(f *testing.F) {
	for _, seed := range []string{`{"endpoint":"pbx2","user":"2001"}`, `{"hunt":"team"}`, `{}`, `{"endpoint":"pbx2","user":"2001","x":1}`,
		`{"endpoint":"pbx2","user":"` + strings.Repeat("1", 65) + `"}`, `{"hunt":"team","user":"1"}`, `[`, `{"endpoint":"p\u0000"}`, `null`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		calls := sampleCalls()
		mux := newHandler(Options{Calls: calls, Token: testToken, Log: slog.New(slog.DiscardHandler)})
		req := httptest.NewRequest("POST", "http://wagate/v1/calls/"+answeredID+"/transfer", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		var doc map[string]any
		if json.Unmarshal(rec.Body.Bytes(), &doc) != nil {
			t.Fatalf("%d without JSON: %q", rec.Code, rec.Body.String())
		}
		switch rec.Code {
		case 202:
			got := calls.hungUp()
			if len(got) != 1 {
				t.Fatalf("202, the B2BUA asked %q", got)
			}
			target := strings.TrimPrefix(got[0], "transfer "+answeredID+" ")
			if name, ok := strings.CutPrefix(target, "hunt "); ok {
				if !isName(name) {
					t.Fatalf("transfer to hunt list %q", name)
				}
			} else if user, ep, _ := strings.Cut(target, "@"); !isExtension(user) || !isName(ep) {
				t.Fatalf("transfer to %q", target)
			}
		case 400, 409, 413:
			if doc["error"] == nil || len(calls.hungUp()) != 0 {
				t.Fatalf("%d: %q, the B2BUA asked %q", rec.Code, rec.Body.String(), calls.hungUp())
			}
		default:
			t.Fatalf("%d: %s", rec.Code, rec.Body.String())
		}
	})
}
