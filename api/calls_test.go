package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeCalls is a B2BUA with a fixed set of live calls; Hangup removes
// one and remembers the reason.
type fakeCalls struct {
	mu      sync.Mutex
	calls   []LiveCall
	hangups []string // "id reason"
}

func (f *fakeCalls) Calls() []LiveCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeCalls) Call(id string) (LiveCall, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.calls {
		if c.ID == id {
			return c, true
		}
	}
	return LiveCall{}, false
}

func (f *fakeCalls) Hangup(id, reason string) (LiveCall, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, c := range f.calls {
		if c.ID == id {
			f.calls = slices.Delete(f.calls, i, i+1)
			f.hangups = append(f.hangups, id+" "+reason)
			return c, nil
		}
	}
	return LiveCall{}, fmt.Errorf("b2bua: %w", ErrNoSuchCall)
}

func (f *fakeCalls) hungUp() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.hangups)
}

const (
	answeredID = "0123456789abcdef01234567"
	ringingID  = "89abcdef0123456789abcdef"
	unknownID  = "ffffffffffffffffffffffff"
)

// sampleCalls is an answered UIC with media both ways and a BIC ringing.
func sampleCalls() *fakeCalls {
	created := time.Now().Add(-90 * time.Second).UTC()
	return &fakeCalls{calls: []LiveCall{
		{
			ID: answeredID, Direction: "UIC", State: "confirmed", BusinessNumber: "+15550100001", PhoneNumberID: "100000000000001",
			User: "+16505551234", WACallID: "wacid.ABC", CreatedAt: created, RingingAt: created.Add(time.Second), AnsweredAt: created.Add(5 * time.Second),
			A: LiveLeg{Endpoint: "meta", SIPCallID: "outgoing:wacid.ABC", Codec: "opus", Encryption: "sdes", RemoteMedia: "157.240.1.1:3480",
				Received: LiveMedia{Packets: 4200, Bytes: 400000, Forwarded: 4199, Lost: 3, JitterMS: 2.5}},
			B: LiveLeg{Endpoint: "pbx", SIPCallID: answeredID + "@wagate", Codec: "PCMU", Encryption: "none", RemoteMedia: "10.0.0.5:16384",
				Received: LiveMedia{Packets: 4190, Bytes: 720000, Forwarded: 4190}},
		},
		{
			ID: ringingID, Direction: "BIC", State: "ringing", BusinessNumber: "+15550100001", PhoneNumberID: "100000000000001",
			User: "+447700900123", CreatedAt: created.Add(80 * time.Second), RingingAt: created.Add(81 * time.Second),
			A: LiveLeg{Endpoint: "dialer", SIPCallID: "dialer-1", RemoteMedia: "10.0.0.9:4000"},
			B: LiveLeg{Endpoint: "meta", SIPCallID: ringingID + "@wagate"},
			Ringing: []RingingLeg{{Leg: "b", Endpoint: "meta", User: "+447700900123", SIPCallID: ringingID + "@wagate",
				StartedAt: created.Add(80 * time.Second)}},
		},
	}}
}

func TestCallsList(t *testing.T) {
	calls := sampleCalls()
	f := newFixture(t, func(o *Options) { o.Calls = calls })
	before := time.Now()
	r := f.api(t, "GET", "/v1/calls", "")
	after := time.Now()
	var doc callListDoc
	r.json(t, &doc)
	if r.code != 200 || doc.Count != 2 || len(doc.Calls) != 2 {
		t.Fatalf("list: %d %s", r.code, r.body)
	}
	c := doc.Calls[0]
	if c.ID != answeredID || c.State != "confirmed" || c.A.Codec != "opus" || c.B.Codec != "PCMU" || c.A.Received.Packets != 4200 ||
		c.A.Received.Lost != 3 || c.A.Received.JitterMS != 2.5 || c.B.RemoteMedia != "10.0.0.5:16384" || c.A.SIPCallID != "outgoing:wacid.ABC" {
		t.Errorf("first call: %+v", c)
	}
	// Ages are at the time of the response.
	src := calls.calls[0]
	if lo, hi := before.Sub(src.CreatedAt).Milliseconds(), after.Sub(src.CreatedAt).Milliseconds(); c.DurationMS < lo || c.DurationMS > hi {
		t.Errorf("duration_ms %d, want %d–%d", c.DurationMS, lo, hi)
	}
	if lo, hi := before.Sub(src.AnsweredAt).Milliseconds(), after.Sub(src.AnsweredAt).Milliseconds(); c.TalkMS < lo || c.TalkMS > hi {
		t.Errorf("talk_ms %d, want %d–%d", c.TalkMS, lo, hi)
	}
	if rc := doc.Calls[1]; rc.TalkMS != 0 || rc.State != "ringing" || !strings.Contains(r.body, `"ringing_at"`) {
		t.Errorf("ringing call: %+v", rc)
	}
	// The INVITEs waiting for an answer: only the ringing call has any.
	if rc := doc.Calls[1]; len(rc.Ringing) != 1 || rc.Ringing[0].SIPCallID != ringingID+"@wagate" || rc.Ringing[0].Leg != "b" ||
		strings.Count(r.body, `"ringing":[`) != 1 {
		t.Errorf("ringing INVITEs %+v in %s; want the BIC's one, and none for the answered call", rc.Ringing, r.body)
	}
	// Unanswered: no answered_at at all rather than year 1.
	if strings.Count(r.body, `"answered_at"`) != 1 {
		t.Errorf("answered_at written for the unanswered call: %s", r.body)
	}

	empty := newFixture(t, func(o *Options) { o.Calls = &fakeCalls{} })
	if r := empty.api(t, "GET", "/v1/calls", ""); r.code != 200 || strings.TrimSpace(r.body) != `{"calls":[],"count":0}` {
		t.Errorf("no calls: %d %s", r.code, r.body)
	}
	if r := f.api(t, "GET", "/v1/calls?state=ringing", ""); r.code != 400 || !strings.Contains(r.errorText(t), `"state"`) {
		t.Errorf("unknown parameter: %d %s", r.code, r.body)
	}
}

func TestCallsGet(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Calls = sampleCalls() })
	var c callDoc
	r := f.api(t, "GET", "/v1/calls/"+ringingID, "")
	r.json(t, &c)
	if r.code != 200 || c.ID != ringingID || c.A.Endpoint != "dialer" || c.B.SIPCallID != ringingID+"@wagate" {
		t.Errorf("get: %d %s", r.code, r.body)
	}
	r = f.api(t, "GET", "/v1/calls/"+unknownID, "")
	if r.code != 404 || !strings.Contains(r.errorText(t), unknownID) {
		t.Errorf("unknown id: %d %s", r.code, r.body)
	}
	for _, bad := range []string{"0123456789ABCDEF01234567", "0123", answeredID + "0", "0123456789abcdef0123456g", "%00" + answeredID[3:], "..%2F..%2Fetc"} {
		r := f.api(t, "GET", "/v1/calls/"+bad, "")
		if r.code != 400 || !strings.HasPrefix(r.errorText(t), "call id: ") {
			t.Errorf("GET /v1/calls/%s: %d %s", bad, r.code, r.body)
		}
	}
}

func TestCallsHangup(t *testing.T) {
	calls := sampleCalls()
	f := newFixture(t, func(o *Options) { o.Calls = calls })

	// Refused input changes nothing.
	bad := []struct {
		path, body, want string
		code             int
	}{
		{"/v1/calls/" + answeredID, `{"reasn":"x"}`, `unknown field "reasn"`, 400},
		{"/v1/calls/" + answeredID, `{"reason":5}`, `reason`, 400},
		{"/v1/calls/" + answeredID, `{"reason":"x"} {}`, "trailing data", 400},
		{"/v1/calls/" + answeredID, `[]`, "body:", 400},
		{"/v1/calls/" + answeredID + "?reason=a", `{"reason":"b"}`, "reason: given in both", 400},
		{"/v1/calls/" + answeredID + "?why=a", ``, `"why": unknown parameter`, 400},
		{"/v1/calls/" + answeredID + "?reason=a&reason=b", ``, "reason: given more than once", 400},
		{"/v1/calls/" + answeredID, `{"reason":"` + strings.Repeat("x", 129) + `"}`, "reason: must be at most 128", 400},
		{"/v1/calls/" + answeredID + "?reason=a%0Ab", ``, "reason: must be printable", 400},
		{"/v1/calls/" + answeredID, `{"reason":"` + strings.Repeat("x", 2000) + `"}`, "body larger than", 413},
		{"/v1/calls/ABC", ``, "call id: ", 400},
		{"/v1/calls/" + unknownID, ``, unknownID, 404},
	}
	for _, tt := range bad {
		r := f.api(t, "DELETE", tt.path, tt.body)
		if r.code != tt.code || !strings.Contains(r.errorText(t), tt.want) {
			t.Errorf("DELETE %s %s: %d %s, want %d with %q", tt.path, tt.body, r.code, r.body, tt.code, tt.want)
		}
	}
	if h := calls.hungUp(); len(h) != 0 {
		t.Fatalf("bad requests hung up %v", h)
	}

	var doc hangupDoc
	r := f.api(t, "DELETE", "/v1/calls/"+answeredID, `{"reason":"agent stuck"}`)
	r.json(t, &doc)
	if r.code != 202 || doc != (hangupDoc{CallID: answeredID, HangupBy: "api", Reason: "agent stuck", State: "confirmed", Sent: "bye"}) {
		t.Errorf("hangup: %d %s", r.code, r.body)
	}
	r = f.api(t, "DELETE", "/v1/calls/"+ringingID+"?reason=wrong+number", "")
	doc = hangupDoc{}
	r.json(t, &doc)
	if r.code != 202 || doc.Sent != "cancel" || doc.State != "ringing" || doc.Reason != "wrong number" {
		t.Errorf("hangup before the answer: %d %s", r.code, r.body)
	}
	if h := calls.hungUp(); !slices.Equal(h, []string{answeredID + " agent stuck", ringingID + " wrong number"}) {
		t.Errorf("hangups %q", h)
	}
	// The call is gone: a second DELETE is a 404 naming it.
	if r := f.api(t, "DELETE", "/v1/calls/"+answeredID, ""); r.code != 404 || !strings.Contains(r.errorText(t), answeredID) {
		t.Errorf("second DELETE: %d %s", r.code, r.body)
	}
}

func TestCallsAuthAndRoutes(t *testing.T) {
	calls := sampleCalls()
	f := newFixture(t, func(o *Options) { o.Calls = calls })
	for _, m := range []string{"GET /v1/calls", "GET /v1/calls/" + answeredID, "DELETE /v1/calls/" + answeredID} {
		method, path, _ := strings.Cut(m, " ")
		if r := f.do(t, method, path, "", nil, nil); r.code != 401 {
			t.Errorf("%s without token: %d", m, r.code)
		}
		if r := f.do(t, method, path, "wrong", nil, nil); r.code != 401 {
			t.Errorf("%s with a wrong token: %d", m, r.code)
		}
	}
	if len(calls.hungUp()) != 0 {
		t.Fatal("a DELETE without the token hung up")
	}
	for _, tt := range []struct{ m, allow string }{
		{"POST /v1/calls", "GET"}, {"PUT /v1/calls/" + answeredID, "GET, DELETE"}, {"GET /v1/calls/" + answeredID + "/transfer", "POST"}, {"POST /v1/calls/" + answeredID + "/park", ""},
	} {
		method, path, _ := strings.Cut(tt.m, " ")
		r := f.api(t, method, path, "")
		want := 405
		if tt.allow == "" {
			want = 404
		}
		if r.code != want || r.header.Get("Allow") != tt.allow || r.errorText(t) == "" {
			t.Errorf("%s: %d Allow %q %s", tt.m, r.code, r.header.Get("Allow"), r.body)
		}
	}
	off := newFixture(t, nil)
	if r := off.api(t, "GET", "/v1/calls", ""); r.code != 404 {
		t.Errorf("calls not configured: %d", r.code)
	}
}

// FuzzCallsHangup: whatever the id, query and body of a DELETE, the
// handler answers 202, 400, 404 or 413 with a JSON error naming what is
// wrong, never panics, and hangs up only a well-formed id with a reason
// of printable text within bounds.
func FuzzCallsHangup(f *testing.F) {
	for _, seed := range []struct{ id, query, body string }{
		{answeredID, "", ""}, {answeredID, "reason=x", ""}, {answeredID, "", `{"reason":"agent stuck"}`},
		{unknownID, "", `{"reason":null}`}, {"ABC", "", ""}, {answeredID, "reason=a&reason=b", ""},
		{answeredID, "", `{"reason":"\u0000"}`}, {answeredID, "why=1", "{}"}, {answeredID, "", `{"reason":"é🙂"} x`},
	} {
		f.Add(seed.id, seed.query, seed.body)
	}
	f.Fuzz(func(t *testing.T, id, query, body string) {
		calls := sampleCalls()
		mux := newHandler(Options{Calls: calls, Token: testToken, Log: slog.New(slog.DiscardHandler)})
		target := "/v1/calls/" + url.PathEscape(id)
		if query != "" {
			target += "?" + query
		}
		req, err := http.NewRequest("DELETE", "http://wagate"+target, strings.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		switch rec.Code {
		case 202:
			hung := calls.hungUp()
			if len(hung) != 1 {
				t.Fatalf("202 but %d hangups", len(hung))
			}
			reason := strings.TrimPrefix(hung[0], id+" ")
			if len(id) != 24 || !isLowerHex(id) || checkReason(reason) != nil {
				t.Errorf("hung up id %q with reason %q", id, reason)
			}
		case 400, 404, 413:
			if len(calls.hungUp()) != 0 {
				t.Errorf("%d, yet a call was hung up", rec.Code)
			}
			var e errorDoc
			if json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error == "" {
				t.Errorf("%d without a JSON error: %q", rec.Code, rec.Body.String())
			}
		case 301, 307, 308:
			// ServeMux cleans paths with dot segments by redirecting.
		default:
			t.Errorf("%s %q: %d %s", target, body, rec.Code, rec.Body.String())
		}
	})
}

// TestCallsHangupEmptyBody: the body of DELETE is optional, however the
// client sends "none": an empty chunked body (clients that stream) or
// only whitespace hang up like no body at all.
func TestCallsHangupEmptyBody(t *testing.T) {
	calls := sampleCalls()
	f := newFixture(t, func(o *Options) { o.Calls = calls })
	c, err := net.Dial("tcp", strings.TrimPrefix(f.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "DELETE /v1/calls/"+answeredID+" HTTP/1.1\r\nHost: wagate\r\nAuthorization: Bearer "+testToken+
		"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 202 {
		t.Errorf("DELETE with an empty chunked body: %d %s", res.StatusCode, b)
	}
	if r := f.api(t, "DELETE", "/v1/calls/"+ringingID, " \r\n"); r.code != 202 {
		t.Errorf("DELETE with a body of whitespace: %d %s", r.code, r.body)
	}
	if got := len(calls.hungUp()); got != 2 {
		t.Errorf("%d calls hung up, want 2", got)
	}
	// A body that is there is still read whole: too long is 413.
	if r := f.api(t, "DELETE", "/v1/calls/"+unknownID, `{"reason":"`+strings.Repeat("x", 2000)+`"}`); r.code != 413 || r.errorText(t) == "" {
		t.Errorf("DELETE with a 2 KB body: %d %s", r.code, r.body)
	}
}
