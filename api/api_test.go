package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestStatusIsPublic(t *testing.T) {
	f := newFixture(t, nil)
	r := f.do(t, "GET", "/v1/status", "", nil, nil)
	if r.code != 200 || strings.TrimSpace(r.body) != `{"calls":3}` || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("status: %d %q %v", r.code, r.body, r.header)
	}
}

func TestAuth(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		name, auth string
		want       int
	}{
		{"none", "", 401},
		{"wrong token", "Bearer nope", 401},
		{"prefix of the token", "Bearer " + testToken[:4], 401},
		{"basic scheme", "Basic " + testToken, 401},
		{"no scheme", testToken, 401},
		{"right", "Bearer " + testToken, 200},
		{"scheme case-insensitive", "bearer " + testToken, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tt.auth != "" {
				hdr["Authorization"] = tt.auth
			}
			r := f.do(t, "GET", "/v1/permissions", "", nil, hdr)
			if r.code != tt.want {
				t.Fatalf("code %d, want %d (%s)", r.code, tt.want, r.body)
			}
			if tt.want == 401 {
				if r.header.Get("WWW-Authenticate") == "" || r.errorText(t) == "" {
					t.Errorf("401 without challenge or JSON error: %v %q", r.header, r.body)
				}
			}
		})
	}
	// Unknown /v1 routes and other methods are behind the token too.
	for _, m := range []string{"GET /v1/nope", "POST /v1/status", "DELETE /v1/permissions/1/+16505551234"} {
		method, path, _ := strings.Cut(m, " ")
		if r := f.do(t, method, path, "", nil, nil); r.code != 401 {
			t.Errorf("%s without token: %d", m, r.code)
		}
	}
	if r := f.api(t, "GET", "/v1/nope", ""); r.code != 404 || r.errorText(t) == "" {
		t.Errorf("unknown route with token: %d %q", r.code, r.body)
	}
}

func TestNoTokenConfiguredRefusesAll(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Token = "" })
	if r := f.do(t, "GET", "/v1/permissions", "", nil, map[string]string{"Authorization": "Bearer "}); r.code != 401 {
		t.Errorf("empty token: %d", r.code)
	}
	if r := f.do(t, "GET", "/v1/status", "", nil, nil); r.code != 200 {
		t.Errorf("status: %d", r.code)
	}
}

// TestServeAndShutdown runs the listener the way cmd/wagate does, through
// both constructors.
func TestServeAndShutdown(t *testing.T) {
	for _, mk := range []func() (*Server, error){
		func() (*Server, error) {
			return New(Options{Addr: "127.0.0.1:0", Status: func() any { return "ok" }, Log: slog.New(slog.DiscardHandler)})
		},
		func() (*Server, error) {
			return New(Options{Addr: "127.0.0.1:0", Status: func() any { return "ok" }, Token: testToken})
		},
	} {
		s, err := mk()
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- s.Serve() }()
		res, err := http.Get("http://" + s.Addr().String() + "/v1/status")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var v string
		if json.Unmarshal(b, &v); v != "ok" {
			t.Errorf("status body %q", b)
		}
		res, err = http.Get("http://" + s.Addr().String() + "/v1/permissions")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 401 {
			t.Errorf("permissions without token: %d", res.StatusCode)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}
	if _, err := New(Options{Addr: "256.0.0.1:bad"}); err == nil {
		t.Error("bad address accepted")
	}
}

func TestRecordingsBehindToken(t *testing.T) {
	rec := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "recordings:"+r.URL.Path)
	})
	f := newFixture(t, func(o *Options) { o.Recordings = rec })
	if r := f.do(t, "GET", "/v1/recordings", "", nil, nil); r.code != 401 {
		t.Errorf("recordings without token: %d", r.code)
	}
	for _, p := range []string{"/v1/recordings", "/v1/recordings/abc%40host"} {
		if r := f.api(t, "GET", p, ""); r.code != 200 || !strings.HasPrefix(r.body, "recordings:/v1/recordings") {
			t.Errorf("GET %s: %d %q", p, r.code, r.body)
		}
	}
	g := newFixture(t, nil)
	if r := g.api(t, "GET", "/v1/recordings", ""); r.code != 404 {
		t.Errorf("recordings not configured: %d", r.code)
	}
}

// TestWrongMethodIs405: on every path of the OpenAPI document, a method
// the document does not list answers 405 with a JSON error and an Allow
// naming exactly the documented methods — public routes (/healthz,
// /metrics, the webhook) included, as docs/api.md promises.
func TestWrongMethodIs405(t *testing.T) {
	doc := loadOpenAPI(t)
	f := everything(t)
	fill := strings.NewReplacer("{phone_number_id}", testNumberID, "{user}", "+16505551234", "{call_id}", answeredID, "{event_id}", "ev-1")
	for path, item := range doc.Paths.Map() {
		ops := item.Operations()
		var want []string
		for m := range ops {
			want = append(want, m)
		}
		slices.Sort(want)
		for _, m := range []string{"GET", "POST", "PUT", "DELETE", "PATCH"} {
			if ops[m] != nil {
				continue
			}
			r := f.api(t, m, fill.Replace(path), "")
			allow := strings.Split(strings.ReplaceAll(r.header.Get("Allow"), " ", ""), ",")
			slices.Sort(allow)
			if r.code != 405 || !slices.Equal(allow, want) || r.errorText(t) == "" {
				t.Errorf("%s %s: %d Allow %q (documented: %v) %s", m, path, r.code, r.header.Get("Allow"), want, r.body)
			}
		}
	}
	// Methods other than GET on the public status stay behind the token.
	if r := f.do(t, "POST", "/v1/status", "", nil, nil); r.code != 401 {
		t.Errorf("POST /v1/status without the token: %d", r.code)
	}
}

// TestRecordingDownloadOutlastsWriteTimeout: a recording that takes
// longer to send than the server's write timeout reaches the client whole
// as long as it keeps reading; a client that stops reading is let go.
func TestRecordingDownloadOutlastsWriteTimeout(t *testing.T) {
	saved := limits
	t.Cleanup(func() { limits = saved })
	limits.write, limits.download = 300*time.Millisecond, 2*time.Second

	const chunk, chunks = 64 << 10, 12
	stalled := make(chan error, 1)
	rec := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("stall") {
			// Write until the client, which reads nothing, is given up.
			buf := make([]byte, chunk)
			for range 1 << 14 {
				if _, err := w.Write(buf); err != nil {
					stalled <- err
					return
				}
			}
			stalled <- nil
			return
		}
		w.Header().Set("Content-Type", "audio/wav")
		w.Header().Set("Content-Length", strconv.Itoa(chunk*chunks))
		buf := make([]byte, chunk)
		for range chunks {
			// A file read at the pace a slow link drains it: the whole
			// answer takes several write timeouts.
			time.Sleep(100 * time.Millisecond)
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	})
	s, err := New(Options{Addr: "127.0.75.1:0", Token: testToken, Recordings: rec, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Shutdown(context.Background()) })

	get := func(query string) *http.Response {
		req, _ := http.NewRequest("GET", "http://"+s.Addr().String()+"/v1/recordings/rec-1%40pbx"+query, nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := get("")
	n, err := io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if err != nil || n != chunk*chunks {
		t.Errorf("download: %d of %d bytes, %v", n, chunk*chunks, err)
	}

	res = get("?stall=1")
	defer res.Body.Close()
	select {
	case err := <-stalled:
		if err == nil {
			t.Error("the handler wrote 1 GiB to a client that reads nothing")
		}
	case <-time.After(30 * time.Second):
		t.Error("a client that stopped reading holds its download after 30 s")
	}
}

// TestRecordingListRefusesUnknownParameters: a misspelt filter on the
// recording list is refused, as on every other listing, rather than
// ignored: ?callid=X listed every call's recordings, newest first, and a
// CRM taking the first as call X's attached another customer's call.
func TestRecordingListRefusesUnknownParameters(t *testing.T) {
	rec := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"recordings":[],"count":0}`)
	})
	f := newFixture(t, func(o *Options) { o.Recordings = rec })
	for _, q := range []string{"callid=abc%40pbx", "date=2025-01-31&day=2025-01-31", "call_id=a&call_id=b"} {
		r := f.api(t, "GET", "/v1/recordings?"+q, "")
		if msg := r.errorText(t); r.code != 400 || msg == "" {
			t.Errorf("?%s: %d %s", q, r.code, r.body)
		}
	}
	for _, q := range []string{"", "?call_id=abc%40pbx&date=2025-01-31&limit=5"} {
		if r := f.api(t, "GET", "/v1/recordings"+q, ""); r.code != 200 {
			t.Errorf("%q: %d %s", q, r.code, r.body)
		}
	}
}

// TestConnectionCap: the listener holds at most limits.conns connections;
// one more is closed at once, so that a client opening connections
// without end cannot take the descriptors wagate's calls need, and the
// listener serves again as soon as one closes.
func TestConnectionCap(t *testing.T) {
	saved := limits
	t.Cleanup(func() { limits = saved })
	limits.conns, limits.readHeader = 4, time.Minute // the idle connections stay until closed
	s, err := New(Options{Addr: "127.0.75.2:0", Status: func() any { return "ok" }, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	addr := s.Addr().String()

	// get asks for /healthz on a connection of its own.
	get := func() error {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: wagate\r\nConnection: close\r\n\r\n"); err != nil {
			return err
		}
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			return fmt.Errorf("status %d", res.StatusCode)
		}
		return nil
	}
	if err := get(); err != nil {
		t.Fatalf("below the cap: %v", err)
	}
	// Idle connections (a slow client's) up to the cap.
	idle := make([]net.Conn, 0, 4)
	for range 4 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	t.Cleanup(func() {
		for _, c := range idle {
			c.Close()
		}
	})
	waitUntil(t, "the fifth connection refused", func() bool { return get() != nil })
	idle[0].Close()
	waitUntil(t, "a connection served again", func() bool { return get() == nil })
}

// panickyCalls is a CallControl whose listing panics (a bug behind the
// API).
type panickyCalls struct{ fakeCalls }

func (*panickyCalls) Calls() []LiveCall { panic("listing broke") }

// TestHandlerPanicLoggedAndAnswered: a panic behind a route is logged at
// error with the route, and the client gets the JSON 500 every other
// failure gets. Before, net/http recovered it and logged it through the
// server's ErrorLog, at debug: invisible at wagate's log level, and the
// client saw its connection dropped.
func TestHandlerPanicLoggedAndAnswered(t *testing.T) {
	var mu sync.Mutex
	var logged []string
	h := slog.NewJSONHandler(writerFunc(func(b []byte) (int, error) {
		mu.Lock()
		logged = append(logged, string(b))
		mu.Unlock()
		return len(b), nil
	}), &slog.HandlerOptions{Level: slog.LevelInfo})
	s, err := New(Options{Addr: "127.0.75.3:0", Token: testToken, Calls: &panickyCalls{}, Log: slog.New(h)})
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	req, _ := http.NewRequest("GET", "http://"+s.Addr().String()+"/v1/calls", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /v1/calls: %v", err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var e errorDoc
	if res.StatusCode != 500 || json.Unmarshal(b, &e) != nil || e.Error == "" {
		t.Errorf("answer: %d %s", res.StatusCode, b)
	}
	mu.Lock()
	defer mu.Unlock()
	found := false
	for _, l := range logged {
		if strings.Contains(l, `"level":"ERROR"`) && strings.Contains(l, "listing broke") && strings.Contains(l, "/v1/calls") {
			found = true
		}
	}
	if !found {
		t.Errorf("no error logged for the panic: %q", logged)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// TestReadToken: api.read_token reads — the permissions, calls and
// records a wallboard or BI tool shows — and does nothing else: a grant,
// a revocation or a hangup with it is 403 and changes nothing, and it
// cannot list or download recordings (the customers' voices). The full
// token still does everything.
func TestReadToken(t *testing.T) {
	const readToken = "read-only-token-4711"
	f := newFixture(t, func(o *Options) { o.ReadToken = readToken })
	grant := []byte(`{"status":"temporary"}`)
	const pair = "/v1/permissions/100000000000001/+16505551234"
	for _, tt := range []struct {
		method, path, token string
		body                []byte
		want                int
	}{
		{"GET", "/v1/permissions", readToken, nil, 200},
		{"HEAD", "/v1/permissions", readToken, nil, 200},
		{"PUT", pair, readToken, grant, 403},
		{"GET", pair, readToken, nil, 404}, // the refused grant made nothing
		{"DELETE", pair, readToken, nil, 403},
		{"GET", "/v1/recordings", readToken, nil, 403},
		{"GET", "/v1/recordings/2026/12/03/abc.wav", readToken, nil, 403},
		{"GET", "/v1/permissions", "read-only-token-4712", nil, 401},
		{"PUT", pair, testToken, grant, 200},
		{"GET", pair, readToken, nil, 200},
	} {
		r := f.do(t, tt.method, tt.path, tt.token, tt.body, nil)
		if r.code != tt.want {
			t.Errorf("%s %s with %q: %d %s, want %d", tt.method, tt.path, tt.token, r.code, r.body, tt.want)
			continue
		}
		if r.code == 403 && !strings.Contains(r.errorText(t), "read-only token") {
			t.Errorf("%s %s: 403 %q does not say the token only reads", tt.method, tt.path, r.body)
		}
	}
}
