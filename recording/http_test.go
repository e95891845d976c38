package recording

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/configs"
)

func TestHTTP(t *testing.T) {
	clk := newFakeClock(t0)
	m, _ := newTestManager(t, configs.Recording{}, clk)
	r1 := record(t, m, clk, Meta{CallID: "call-1@pbx", UserNumber: "+447700900001"}, 50)
	r2 := record(t, m, clk, Meta{CallID: "../../etc/passwd", StartTime: t0.Add(24 * time.Hour)}, 10)
	live, err := m.Start(Meta{CallID: "live"})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Finish(EndInfo{})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()

	get := func(path string, hdr ...string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultTransport.RoundTrip(req) // no redirects followed
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	list := func(q string) []Entry {
		t.Helper()
		resp, b := get("/v1/recordings" + q)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("list %s: %d %s", q, resp.StatusCode, b)
		}
		var v struct {
			Recordings []Entry `json:"recordings"`
			Count      int     `json:"count"`
		}
		if err := json.Unmarshal(b, &v); err != nil || v.Count != len(v.Recordings) {
			t.Fatalf("list %s: %v %s", q, err, b)
		}
		return v.Recordings
	}

	if es := list(""); len(es) != 3 || es[0].CallID != "../../etc/passwd" {
		t.Errorf("list all: %+v", es)
	}
	if es := list("?date=2025-03-04"); len(es) != 2 {
		t.Errorf("list by date: %d", len(es))
	}
	if es := list("?date=2025-03-04&limit=1"); len(es) != 1 {
		t.Errorf("limit: %d", len(es))
	}
	es := list("?call_id=" + url.QueryEscape("call-1@pbx"))
	if len(es) != 1 || es[0].UserNumber != "+447700900001" || es[0].File != "2025/03/04/call-1@pbx.wav" {
		t.Errorf("list by call id: %+v", es)
	}
	if es := list("?call_id=nothing"); len(es) != 0 {
		t.Errorf("list unknown: %+v", es)
	}
	for _, q := range []string{"?date=2025-3-4", "?date=../..", "?limit=x", "?limit=0"} {
		if resp, b := get("/v1/recordings" + q); resp.StatusCode != 400 || !bytes.Contains(b, []byte(`"error"`)) {
			t.Errorf("%s: %d %s", q, resp.StatusCode, b)
		}
	}

	want1, _ := os.ReadFile(r1.Path())
	resp, b := get("/v1/recordings/" + url.PathEscape("call-1@pbx"))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "audio/wav" || !bytes.Equal(b, want1) {
		t.Fatalf("get: %d %s, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(b))
	}
	if cd := resp.Header.Get("Content-Disposition"); cd != `attachment; filename=call-1@pbx.wav` && cd != `attachment; filename="call-1@pbx.wav"` {
		t.Errorf("Content-Disposition %q", cd)
	}
	resp, b = get("/v1/recordings/call-1@pbx", "Range", "bytes=0-43")
	if resp.StatusCode != 206 || !bytes.Equal(b, want1[:44]) {
		t.Errorf("range: %d, %d bytes", resp.StatusCode, len(b))
	}

	// The traversal Call-ID is an ordinary, confined recording.
	want2, _ := os.ReadFile(r2.Path())
	resp, b = get("/v1/recordings/" + url.PathEscape("../../etc/passwd"))
	if resp.StatusCode != 200 || !bytes.Equal(b, want2) {
		t.Errorf("escaped traversal id: %d", resp.StatusCode)
	}
	resp, b = get("/v1/recordings/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd")
	if resp.StatusCode != 200 || !bytes.Equal(b, want2) {
		t.Errorf("fully encoded traversal id: %d", resp.StatusCode)
	}
	// An id made of dot segments, encoded.
	r3 := record(t, m, clk, Meta{CallID: ".."}, 2)
	want3, _ := os.ReadFile(r3.Path())
	resp, b = get("/v1/recordings/%2E%2E")
	if resp.StatusCode != 200 || !bytes.Equal(b, want3) {
		t.Errorf("id \"..\": %d", resp.StatusCode)
	}
	// Raw dot segments are cleaned away by the mux (a redirect), never
	// reaching the file system.
	resp, b = get("/v1/recordings/../../../etc/passwd")
	if resp.StatusCode == 200 && strings.Contains(string(b), "root:") {
		t.Fatal("served /etc/passwd")
	}

	resp, b = get("/v1/recordings/nothing-here")
	if resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/json" || !bytes.Contains(b, []byte("not found")) {
		t.Errorf("404: %d %s", resp.StatusCode, b)
	}
	resp, b = get("/v1/recordings/live")
	if resp.StatusCode != 409 {
		t.Errorf("in progress: %d %s", resp.StatusCode, b)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/v1/recordings/call-1@pbx", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 405 {
		t.Errorf("POST: %v %v", resp.StatusCode, err)
	}
}
