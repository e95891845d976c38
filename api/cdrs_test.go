package api

import (
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wagate/wagate/events"
)

// openEvents opens a real events store on a temp file.
func openEvents(t *testing.T, subs ...events.Subscriber) *events.Sink {
	t.Helper()
	s, err := events.Open(context.Background(), events.Options{
		Path: filepath.Join(t.TempDir(), "events.db"), NodeID: "node-a", StoreCDRs: true,
		MaxAttempts: 1, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond, Subscribers: subs,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var cdrEpoch = time.Date(2025, 6, 1, 8, 0, 0, 0, time.UTC)

// storeCDRs records n calls: even ones UIC answered on +15550100001, odd
// ones BIC busy on +15550100002 to user US.77, one minute apart.
func storeCDRs(t *testing.T, s *events.Sink, n int) {
	t.Helper()
	for i := range n {
		c := events.CDR{
			CallID: fmt.Sprintf("call-%03d", i), Direction: events.UIC, BusinessNumber: "+15550100001", PhoneNumberID: "100000000000001",
			User: "+16505551234", CreatedAt: cdrEpoch.Add(time.Duration(i) * time.Minute), Outcome: events.Answered, SIPCode: 200, SIPReason: "OK",
			A: events.Leg{Endpoint: "meta", SIPCallID: "a-" + fmt.Sprint(i), Codec: "opus", Encryption: "sdes"},
		}
		if i%2 == 1 {
			c.Direction, c.BusinessNumber, c.User, c.Outcome, c.SIPCode, c.SIPReason = events.BIC, "+15550100002", "US.77", events.Busy, 486, "Busy Here"
			c.CallbackData = "=HYPERLINK(\"http://evil.example\")"
			c.CampaignID = "-42"
		}
		s.CallEnded(c)
	}
	waitUntil(t, "CDRs written", func() bool { return s.Stats().CDRsWritten == uint64(n) })
}

func TestCDRList(t *testing.T) {
	s := openEvents(t)
	storeCDRs(t, s, 25)
	f := newFixture(t, func(o *Options) { o.CDRs = s })

	var doc cdrListDoc
	r := f.api(t, "GET", "/v1/cdrs", "")
	r.json(t, &doc)
	if r.code != 200 || len(doc.CDRs) != 25 || doc.NextCursor != "" || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("list: %d, %d CDRs, cursor %q", r.code, len(doc.CDRs), doc.NextCursor)
	}
	if c := doc.CDRs[0]; c.CallID != "call-000" || c.NodeID != "node-a" || c.A.Codec != "opus" || !c.CreatedAt.Equal(cdrEpoch) {
		t.Errorf("first CDR: %+v", c)
	}

	// Page through with next_cursor: every record once, in order.
	var ids []string
	path := "/v1/cdrs?limit=4"
	for pages := 0; ; pages++ {
		doc = cdrListDoc{}
		r := f.api(t, "GET", path, "")
		r.json(t, &doc)
		if r.code != 200 || pages > 10 {
			t.Fatalf("page %d: %d %s", pages, r.code, r.body)
		}
		for _, c := range doc.CDRs {
			ids = append(ids, c.CallID)
		}
		if doc.NextCursor == "" {
			break
		}
		path = "/v1/cdrs?limit=4&cursor=" + url.QueryEscape(doc.NextCursor)
	}
	if len(ids) != 25 || !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != 25 {
		t.Errorf("paged ids: %v", ids)
	}

	tests := []struct {
		query string
		want  int
	}{
		{"direction=BIC", 12},
		{"direction=uic", 13},
		{"outcome=busy", 12},
		{"outcome=answered&direction=BIC", 0},
		{"number=%2B15550100002", 12},
		{"number=15550100001", 13}, // + optional
		// An unencoded + arrives as a space (form encoding): still the
		// number, like user= takes it.
		{"number=+15550100002", 12},
		{"user=+16505551234", 13},
		{"user=US.77", 12},
		{"user=us.77", 12}, // BSUIDs are normalised like the permission API's
		{"user=%2B1%20650-555-1234", 13},
		{"from=2025-06-01T08:10:00Z", 15},
		{"to=2025-06-01T08:10:00Z", 10},
		{"from=2025-06-01T10:05:00%2B02:00&to=2025-06-01T08:07:30Z", 3}, // minutes 5, 6, 7
		// A CRM that leaves the offset's + unencoded (it reads as a
		// space) means the same window.
		{"from=2025-06-01T10:05:00+02:00&to=2025-06-01T08:07:30Z", 3},
		// RFC 3339 lets T and Z be lower case.
		{"from=2025-06-01t08:10:00z", 15},
		{"from=2025-06-02T00:00:00Z", 0},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			var doc cdrListDoc
			r := f.api(t, "GET", "/v1/cdrs?"+tt.query, "")
			r.json(t, &doc)
			if r.code != 200 || len(doc.CDRs) != tt.want {
				t.Errorf("%d, %d CDRs, want %d: %.300s", r.code, len(doc.CDRs), tt.want, r.body)
			}
		})
	}

	r = f.api(t, "GET", "/v1/cdrs/call-003", "")
	var one events.CDR
	r.json(t, &one)
	if r.code != 200 || one.CallID != "call-003" || one.Outcome != events.Busy || one.User != "US.77" {
		t.Errorf("one: %d %+v", r.code, one)
	}
	if r := f.api(t, "GET", "/v1/cdrs/call-999", ""); r.code != 404 || r.errorText(t) == "" {
		t.Errorf("unknown: %d %s", r.code, r.body)
	}
	if r := f.api(t, "DELETE", "/v1/cdrs/call-003", ""); r.code != 405 || r.header.Get("Allow") != "GET" {
		t.Errorf("DELETE: %d %v", r.code, r.header)
	}
	if r := f.do(t, "GET", "/v1/cdrs", "", nil, nil); r.code != 401 {
		t.Errorf("without token: %d", r.code)
	}
}

func TestCDRCSV(t *testing.T) {
	s := openEvents(t)
	storeCDRs(t, s, 5)
	f := newFixture(t, func(o *Options) { o.CDRs = s })

	for name, req := range map[string]struct {
		path   string
		accept string
	}{
		"format=csv":      {"/v1/cdrs?format=csv&limit=3", ""},
		"Accept text/csv": {"/v1/cdrs?limit=3", "application/json;q=0.5, text/csv"},
	} {
		t.Run(name, func(t *testing.T) {
			hdr := map[string]string{}
			if req.accept != "" {
				hdr["Accept"] = req.accept
			}
			r := f.do(t, "GET", req.path, testToken, nil, hdr)
			if r.code != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/csv") || r.header.Get("X-Next-Cursor") == "" {
				t.Fatalf("%d %v", r.code, r.header)
			}
			rows, err := csv.NewReader(strings.NewReader(r.body)).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != 4 {
				t.Fatalf("%d rows, want header + 3:\n%s", len(rows), r.body)
			}
			col := map[string]int{}
			for i, name := range rows[0] {
				col[name] = i
			}
			for _, name := range []string{"call_id", "node_id", "direction", "a.endpoint", "a.sip_call_id", "b.codec", "created_at",
				"answered_at", "ring_ms", "sip_code", "hangup_by", "outcome", "waba_error", "media.a_to_b.packets",
				"media.b_to_a.jitter_buffer_ms", "media.a_to_b.srtp_auth_failures", "recording_id", "campaign_id", "callback_data"} {
				if _, ok := col[name]; !ok {
					t.Errorf("no column %s in %v", name, rows[0])
				}
			}
			second := rows[2]
			if second[col["call_id"]] != "call-001" || second[col["user"]] != "US.77" || second[col["sip_code"]] != "486" ||
				second[col["created_at"]] != "2025-06-01T08:01:00Z" || second[col["answered_at"]] != "" {
				t.Errorf("row: %v", second)
			}
			// Formula-looking text is defused; numbers are not.
			if got := second[col["callback_data"]]; got != `'=HYPERLINK("http://evil.example")` {
				t.Errorf("callback_data cell %q", got)
			}
			if got := second[col["campaign_id"]]; got != "-42" {
				t.Errorf("numeric cell %q altered", got)
			}
			if got := rows[1][col["business_number"]]; got != "+15550100001" {
				t.Errorf("phone number cell %q altered", got)
			}
		})
	}
	// JSON wins when Accept does not ask for CSV or format says json.
	// So does an Accept that prefers JSON and takes CSV only as a
	// fallback.
	for _, tc := range []struct{ path, accept string }{{"/v1/cdrs", "text/html, */*"}, {"/v1/cdrs?format=json", "text/csv"}, {"/v1/cdrs", "text/csv;q=0"},
		{"/v1/cdrs", "application/json, text/csv;q=0.5"}, {"/v1/cdrs", "text/csv;q=0.2, */*;q=0.8"}, {"/v1/cdrs", "text/csv; q=0.5, application/*"}} {
		r := f.do(t, "GET", tc.path, testToken, nil, map[string]string{"Accept": tc.accept})
		if r.header.Get("Content-Type") != "application/json" {
			t.Errorf("%s with Accept %q: %s", tc.path, tc.accept, r.header.Get("Content-Type"))
		}
	}
}

// TestCDRCSVBOM: bom=1 starts the CSV with a UTF-8 byte-order mark, so
// that Excel on Windows reads non-ASCII text (a hunt list "Équipe Zürich",
// a PBX's reason phrase) as UTF-8 rather than in its ANSI code page; without it the export has no BOM (tools
// that read UTF-8 take the mark for part of the first column's name).
// JSON forbids a BOM: bom=1 with a JSON answer is refused, as is a value
// other than 0 or 1.
func TestCDRCSVBOM(t *testing.T) {
	s := openEvents(t)
	s.CallEnded(events.CDR{CallID: "call-n", Direction: events.UIC, User: "+16505551234", Hunt: "Équipe Zürich",
		SIPReason: "Très occupé", CreatedAt: cdrEpoch, Outcome: events.Busy, SIPCode: 486})
	waitUntil(t, "CDR written", func() bool { return s.Stats().CDRsWritten == 1 })
	f := newFixture(t, func(o *Options) { o.CDRs = s })
	const bom = "\xef\xbb\xbf"

	for _, tc := range []struct {
		path, accept string
		bom          bool
	}{
		{"/v1/cdrs?format=csv", "", false},
		{"/v1/cdrs?format=csv&bom=0", "", false},
		{"/v1/cdrs?format=csv&bom=1", "", true},
		{"/v1/cdrs?bom=1", "text/csv", true},
	} {
		hdr := map[string]string{}
		if tc.accept != "" {
			hdr["Accept"] = tc.accept
		}
		r := f.do(t, "GET", tc.path, testToken, nil, hdr)
		if r.code != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/csv; charset=utf-8") {
			t.Fatalf("%s: %d %v %s", tc.path, r.code, r.header, r.body)
		}
		if got := strings.HasPrefix(r.body, bom); got != tc.bom {
			t.Errorf("%s: starts with a BOM %v, want %v: %q", tc.path, got, tc.bom, r.body[:min(len(r.body), 12)])
		}
		rows, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(r.body, bom))).ReadAll()
		if err != nil || len(rows) != 2 || rows[0][0] != "call_id" {
			t.Fatalf("%s: %v %q", tc.path, err, rows)
		}
		if !slices.Contains(rows[1], "Équipe Zürich") || !slices.Contains(rows[1], "Très occupé") {
			t.Errorf("%s: the non-ASCII cells are not in the row as UTF-8: %q", tc.path, rows[1])
		}
	}
	for _, q := range []string{"bom=yes", "bom=2", "format=json&bom=1", "bom=1"} {
		r := f.api(t, "GET", "/v1/cdrs?"+q, "")
		if msg := r.errorText(t); r.code != 400 || !strings.HasPrefix(msg, "bom: ") {
			t.Errorf("%s: %d %q, want 400 naming bom", q, r.code, msg)
		}
	}
}

// TestCDRCSVMetaColumns: Meta's report of a call is in the CSV as it is in
// the JSON. meta_duration_s (a pointer: absent when Meta gave none) was
// always an empty cell.
func TestCDRCSVMetaColumns(t *testing.T) {
	s := openEvents(t)
	s.CallEnded(events.CDR{CallID: "call-m", Direction: events.UIC, WACallID: "wacid.M1", CreatedAt: cdrEpoch, Outcome: events.Answered})
	waitUntil(t, "CDR written", func() bool { return s.Stats().CDRsWritten == 1 })
	d := int64(42)
	if err := s.RecordMetaCall(context.Background(), events.MetaCall{WACallID: "wacid.M1", Event: "terminate", Status: "COMPLETED", DurationS: &d}); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *Options) { o.CDRs = s })
	r := f.do(t, "GET", "/v1/cdrs?format=csv", testToken, nil, nil)
	rows, err := csv.NewReader(strings.NewReader(r.body)).ReadAll()
	if r.code != 200 || err != nil || len(rows) != 2 {
		t.Fatalf("%d %v:\n%s", r.code, err, r.body)
	}
	got := map[string]string{}
	for i, name := range rows[0] {
		got[name] = rows[1][i]
	}
	if got["meta_status"] != "COMPLETED" || got["meta_event"] != "terminate" || got["meta_duration_s"] != "42" {
		t.Errorf("meta_status %q, meta_event %q, meta_duration_s %q; want COMPLETED, terminate, 42",
			got["meta_status"], got["meta_event"], got["meta_duration_s"])
	}
}

func TestCDRBadFilters(t *testing.T) {
	s := openEvents(t)
	f := newFixture(t, func(o *Options) { o.CDRs = s })
	tests := []struct{ query, param string }{
		{"from=yesterday", "from"},
		{"from=2025-06-01", "from"},
		{"to=2025-13-01T00:00:00Z", "to"},
		{"from=2025-06-02T00:00:00Z&to=2025-06-01T00:00:00Z", "to"},
		{"number=abc", "number"},
		{"number=US.77", "number"},
		{"number=%2B123", "number"},
		{"user=%2B12", "user"},
		{"user=%3Cscript%3E", "user"},
		{"direction=sideways", "direction"},
		{"outcome=maybe", "outcome"},
		{"cursor=abc", "cursor"},
		{"limit=0", "limit"},
		{"limit=1001", "limit"},
		{"limit=ten", "limit"},
		{"format=xml", "format"},
		{"numbr=%2B15550100001", `"numbr"`},
		{"limit=1&limit=2", "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			r := f.api(t, "GET", "/v1/cdrs?"+tt.query, "")
			if msg := r.errorText(t); r.code != 400 || !strings.HasPrefix(msg, tt.param+": ") {
				t.Errorf("%d %q, want 400 naming %s", r.code, msg, tt.param)
			}
		})
	}
	if r := f.api(t, "GET", "/v1/cdrs/"+strings.Repeat("x", 200), ""); r.code != 400 {
		t.Errorf("long id: %d", r.code)
	}
}

// TestEventRoutesAbsent: without the stores the routes do not exist.
func TestEventRoutesAbsent(t *testing.T) {
	f := newFixture(t, nil)
	for _, p := range []string{"GET /v1/cdrs", "GET /v1/cdrs/x", "GET /v1/events/dead", "POST /v1/events/x/replay"} {
		method, path, _ := strings.Cut(p, " ")
		if r := f.api(t, method, path, ""); r.code != 404 {
			t.Errorf("%s: %d", p, r.code)
		}
	}
}

func TestDeadLettersAndReplay(t *testing.T) {
	var ok atomic.Bool
	var taken atomic.Int64
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ok.Load() {
			http.Error(w, "try later", 503)
			return
		}
		taken.Add(1)
	}))
	t.Cleanup(recv.Close)
	s := openEvents(t, events.Subscriber{Name: "crm", URL: recv.URL, Secret: "k"})
	f := newFixture(t, func(o *Options) { o.Events = s })
	s.CallRefused(events.CDR{CallID: "r1", SIPCode: 403})
	s.CallRefused(events.CDR{CallID: "r2", SIPCode: 403})

	var doc deadListDoc
	waitUntil(t, "dead letters", func() bool {
		doc = deadListDoc{}
		f.api(t, "GET", "/v1/events/dead", "").json(t, &doc)
		return len(doc.DeadLetters) == 2
	})
	d := doc.DeadLetters[0]
	if d.Subscriber != "crm" || d.Type != events.CallRefused || d.CallID != "r1" || d.LastStatus != 503 || d.Attempts != 1 ||
		!strings.Contains(string(d.Event), `"call_id":"r1"`) {
		t.Errorf("dead letter: %+v", d)
	}
	var page deadListDoc
	f.api(t, "GET", "/v1/events/dead?limit=1&subscriber=crm", "").json(t, &page)
	if len(page.DeadLetters) != 1 || page.NextCursor == "" {
		t.Errorf("page of one: %+v", page)
	}
	var page2 deadListDoc
	f.api(t, "GET", "/v1/events/dead?limit=1&cursor="+url.QueryEscape(page.NextCursor), "").json(t, &page2)
	if len(page2.DeadLetters) != 1 || page2.DeadLetters[0].CallID != "r2" || page2.NextCursor != "" {
		t.Errorf("second page: %d letters, cursor %q", len(page2.DeadLetters), page2.NextCursor)
	}

	ok.Store(true)
	var rep replayDoc
	r := f.api(t, "POST", "/v1/events/"+d.EventID+"/replay", "")
	r.json(t, &rep)
	if r.code != 200 || rep.Requeued != 1 || rep.EventID != d.EventID {
		t.Fatalf("replay: %d %s", r.code, r.body)
	}
	waitUntil(t, "the replayed event", func() bool { return taken.Load() == 1 })
	waitUntil(t, "it to leave the dead letters", func() bool {
		doc = deadListDoc{}
		f.api(t, "GET", "/v1/events/dead", "").json(t, &doc)
		return len(doc.DeadLetters) == 1
	})
	if r := f.api(t, "POST", "/v1/events/"+d.EventID+"/replay", ""); r.code != 409 {
		t.Errorf("replaying a delivered event without a subscriber: %d %s", r.code, r.body)
	}
	// The resend is accepted once the delivery is recorded (the writer
	// commits results in groups); until then it is still queued (409).
	waitUntil(t, "a resend to crm", func() bool {
		return f.api(t, "POST", "/v1/events/"+d.EventID+"/replay?subscriber=crm", "").code == 200
	})
	waitUntil(t, "the resent event", func() bool { return taken.Load() == 2 })
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{"POST", "/v1/events/no-such-event/replay", 404},
		{"POST", "/v1/events/" + d.EventID + "/replay?subscriber=nobody", 400},
		{"POST", "/v1/events/" + d.EventID + "/replay?subscriber=a%20b", 400},
		{"POST", "/v1/events/" + d.EventID + "/replay?to=crm", 400},
		{"GET", "/v1/events/" + d.EventID + "/replay", 405},
		{"GET", "/v1/events/dead?limit=0", 400},
		{"GET", "/v1/events/dead?cursor=zzz", 400},
		{"GET", "/v1/events/dead?sub=crm", 400},
		{"DELETE", "/v1/events/dead", 405},
	} {
		if r := f.api(t, tc.method, tc.path, ""); r.code != tc.code || r.errorText(t) == "" {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, r.code, r.body, tc.code)
		}
	}
}

// FuzzCDRQuery: the /v1/cdrs query parser never panics, and what it
// accepts is within bounds: a valid direction and outcome, a limit of
// 1–1000, from before to, normalised number and user.
func FuzzCDRQuery(f *testing.F) {
	for _, seed := range []string{
		"", "limit=10", "from=2025-06-01T00:00:00Z&to=2025-06-02T00:00:00+02:00", "number=%2B15550100001&user=US.77",
		"direction=bic&outcome=Busy&format=csv", "cursor=Y2RyOjQy", "cursor=ZGVhZDox", "limit=1&limit=2", "from=0000-01-01T00:00:00Z",
		"user=%2B1%20(650)%20555-1234", "%zz", "a=b;c=d", "format=json&numbr=1", "format=csv&bom=1", "bom=1",
	} {
		f.Add(seed, "")
	}
	f.Add("", "text/csv;q=0.1")
	f.Add("limit=5", "text/csv;q=abc, application/json")
	f.Fuzz(func(t *testing.T, raw, accept string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, out, err := parseCDRQuery(v, accept)
		if err != nil {
			if msg := err.Error(); !strings.Contains(msg, ": ") {
				t.Errorf("error %q does not name the parameter", msg)
			}
			return
		}
		if q.Limit < 1 || q.Limit > events.MaxLimit {
			t.Errorf("limit %d accepted", q.Limit)
		}
		if !q.From.IsZero() && !q.To.IsZero() && !q.To.After(q.From) {
			t.Errorf("from %v not before to %v", q.From, q.To)
		}
		switch q.Direction {
		case "", events.UIC, events.BIC:
		default:
			t.Errorf("direction %q accepted", q.Direction)
		}
		switch q.Outcome {
		case "", events.Answered, events.Unanswered, events.Busy, events.Cancelled, events.Refused, events.Failed:
		default:
			t.Errorf("outcome %q accepted", q.Outcome)
		}
		if q.Number != "" && (q.Number[0] != '+' || strings.ContainsAny(q.Number, " -().")) {
			t.Errorf("number %q not normalised", q.Number)
		}
		if out.format != formatJSON && out.format != formatCSV {
			t.Errorf("format %q", out.format)
		}
		if out.bom && out.format != formatCSV {
			t.Errorf("a BOM for %s", out.format)
		}
	})
}

// TestReplayDeadLetterOfRemovedSubscriber: after a restart without the
// subscriber an event died for, its dead letter is still listed; a replay
// without a subscriber says why nothing can be re-queued (the subscriber
// is gone) instead of claiming there is no dead delivery, and naming a
// configured subscriber sends it there.
func TestReplayDeadLetterOfRemovedSubscriber(t *testing.T) {
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", 503) }))
	t.Cleanup(recv.Close)
	path := filepath.Join(t.TempDir(), "events.db")
	open := func(sub string) *events.Sink {
		s, err := events.Open(context.Background(), events.Options{Path: path, NodeID: "node-a", StoreCDRs: true,
			MaxAttempts: 1, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond,
			Subscribers: []events.Subscriber{{Name: sub, URL: recv.URL, Secret: "k"}}})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open("crm")
	s.CallRefused(events.CDR{CallID: "r1", SIPCode: 403})
	waitUntil(t, "a dead letter", func() bool {
		p, err := s.DeadLetters(context.Background(), events.DeadLetterQuery{})
		return err == nil && len(p.DeadLetters) == 1
	})
	s.Close(context.Background())

	s = open("billing") // crm removed from the config
	t.Cleanup(func() { s.Close(context.Background()) })
	f := newFixture(t, func(o *Options) { o.Events = s })
	var doc deadListDoc
	f.api(t, "GET", "/v1/events/dead", "").json(t, &doc)
	if len(doc.DeadLetters) != 1 || doc.DeadLetters[0].Subscriber != "crm" {
		t.Fatalf("dead letters: %+v", doc.DeadLetters)
	}
	replay := "/v1/events/" + doc.DeadLetters[0].EventID + "/replay"
	r := f.api(t, "POST", replay, "")
	if msg := r.errorText(t); r.code != 409 || !strings.Contains(msg, `"crm"`) || !strings.Contains(msg, "no longer configured") {
		t.Errorf("replay of a removed subscriber's dead letter: %d %s", r.code, r.body)
	}
	if r := f.api(t, "POST", replay+"?subscriber=crm", ""); r.code != 400 {
		t.Errorf("replay to the removed subscriber: %d %s", r.code, r.body)
	}
	if r := f.api(t, "POST", replay+"?subscriber=billing", ""); r.code != 200 {
		t.Errorf("replay to a configured subscriber: %d %s", r.code, r.body)
	}
}

// TestCSVDefuse: a text cell a spreadsheet would read as a formula gets
// a leading apostrophe; phone numbers and plain numbers are left alone.
// Go's ParseFloat takes forms no spreadsheet reads as a number (hex
// floats, digit separators), which Excel then runs as a formula (#NAME?).
func TestCSVDefuse(t *testing.T) {
	for in, want := range map[string]string{
		"+15550100001": "+15550100001", "-42": "-42", "-1.5": "-1.5", "+0.25": "+0.25", "US.77": "US.77", "": "",
		"=1+1": "'=1+1", "@SUM(A1)": "'@SUM(A1)", "\t=1": "'\t=1", "\r=1": "'\r=1",
		"+1 650-555": "'+1 650-555", "-1+1": "'-1+1", "+1e5": "'+1e5", "-Inf": "'-Inf", "+": "'+", "-.": "'-.", "+1.2.3": "'+1.2.3",
		"-0x1p-2": "'-0x1p-2", "+1_000": "'+1_000", "-0xA1p1": "'-0xA1p1",
	} {
		if got := defuse(in); got != want {
			t.Errorf("defuse(%q) = %q, want %q", in, got, want)
		}
	}
}
