package events

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const testSecret = "whsec-test-1"

// openSink opens a Sink on a fresh file in t.TempDir() and closes it at the
// end of the test.
func openSink(t testing.TB, mod func(*Options)) *Sink {
	t.Helper()
	opts := Options{
		Path:        filepath.Join(t.TempDir(), "events.db"),
		NodeID:      "node-a",
		StoreCDRs:   true,
		MaxAttempts: 50,
		BackoffBase: 5 * time.Millisecond,
		BackoffMax:  50 * time.Millisecond,
	}
	if mod != nil {
		mod(&opts)
	}
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// waitFor polls cond until it holds, failing the test after 60 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// delivery is one request a receiver got.
type delivery struct {
	env       Envelope
	raw       []byte
	attempt   int
	signature string
	status    int // what the receiver answered
}

// receiver is a webhook subscriber on loopback. It checks every request's
// signature with its own HMAC code (not the package's), and that no event
// of a call arrives before the earlier events of that call were taken.
type receiver struct {
	t   testing.TB
	srv *httptest.Server

	mu sync.Mutex
	// answer decides the status of a request; nil: 200.
	answer func(d *delivery) int
	all    []delivery
	// taken holds, per call, the types answered 2xx, in order.
	takenTypes map[string][]Type
	takenIDs   map[string]int
	orderErrs  []string
	badSigs    int
	// noOrder turns the per-call order check off (dead letters let later
	// events of their call through, by design).
	noOrder bool
}

// callOrder is the order a call's events are emitted in by the tests.
var callOrder = map[Type]int{CallStarted: 0, CallRinging: 1, CallAnswered: 2, CallEnded: 3, RecordingReady: 4}

func newReceiver(t testing.TB) *receiver {
	r := &receiver{t: t, takenTypes: map[string][]Type{}, takenIDs: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) url() string { return r.srv.URL + "/hook" }

func (r *receiver) setAnswer(f func(d *delivery) int) {
	r.mu.Lock()
	r.answer = f
	r.mu.Unlock()
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		w.WriteHeader(400)
		return
	}
	d := delivery{raw: body, signature: req.Header.Get("X-Wagate-Signature")}
	d.attempt, _ = strconv.Atoi(req.Header.Get("X-Wagate-Delivery-Attempt"))
	if err := json.Unmarshal(body, &d.env); err != nil {
		r.t.Errorf("receiver: body is not an event: %v: %s", err, body)
	}
	sigOK := checkSignature(testSecret, d.signature, body)
	r.mu.Lock()
	answer := r.answer
	r.mu.Unlock()
	d.status = 200
	if answer != nil {
		d.status = answer(&d)
	}
	r.mu.Lock()
	if !sigOK {
		r.badSigs++
	}
	if req.Header.Get("X-Wagate-Event-Id") != d.env.ID || req.Header.Get("X-Wagate-Event-Type") != string(d.env.Type) {
		r.orderErrs = append(r.orderErrs, "headers do not match the body: "+d.env.ID)
	}
	if pos, ok := callOrder[d.env.Type]; ok && d.env.CallID != "" && !r.noOrder {
		got := r.takenTypes[d.env.CallID]
		if len(got) < pos {
			r.orderErrs = append(r.orderErrs, fmt.Sprintf("call %s: %s arrived after only %v were taken", d.env.CallID, d.env.Type, got))
		}
	}
	if d.status/100 == 2 {
		if r.takenIDs[d.env.ID] == 0 && d.env.CallID != "" {
			r.takenTypes[d.env.CallID] = append(r.takenTypes[d.env.CallID], d.env.Type)
		}
		r.takenIDs[d.env.ID]++
	}
	r.all = append(r.all, d)
	r.mu.Unlock()
	w.WriteHeader(d.status)
}

// checkSignature verifies "t=…,v1=…" independently of the package.
func checkSignature(secret, header string, body []byte) bool {
	var ts, v1 string
	for _, p := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(p, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			v1 = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		return false
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "."))
	m.Write(body)
	want := hex.EncodeToString(m.Sum(nil))
	return hmac.Equal([]byte(v1), []byte(want))
}

// distinct is the number of events taken (2xx) at least once.
func (r *receiver) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.takenIDs)
}

// taken is how often event id was answered 2xx.
func (r *receiver) taken(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.takenIDs[id]
}

func (r *receiver) requests() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.all...)
}

// checkClean fails the test on bad signatures or order violations, and
// checks that each call's taken events are in emission order.
func (r *receiver) checkClean(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.badSigs > 0 {
		t.Errorf("%d requests with a bad signature", r.badSigs)
	}
	for _, e := range r.orderErrs {
		t.Error(e)
	}
	if r.noOrder {
		return
	}
	for call, types := range r.takenTypes {
		for i := 1; i < len(types); i++ {
			if callOrder[types[i]] < callOrder[types[i-1]] {
				t.Errorf("call %s: taken out of order: %v", call, types)
				break
			}
		}
	}
}

// emitCall reports one whole call: started, ringing, answered, ended.
func emitCall(s *Sink, id string, created time.Time) {
	c := testCall(id)
	s.CallStarted(c)
	c.SIPCode = 180
	s.CallRinging(c)
	c.SIPCode = 200
	s.CallAnswered(c)
	s.CallEnded(testCDR(id, created))
}

func testCall(id string) Call {
	return Call{CallID: id, Direction: UIC, WACallID: "wacid." + id, BusinessNumber: "+15550100001", PhoneNumberID: "100000000000001",
		User: "+16505551234", A: Leg{Endpoint: "meta", SIPCallID: "a-" + id}, B: Leg{Endpoint: "pbx", SIPCallID: "b-" + id}}
}

func testCDR(id string, created time.Time) CDR {
	return CDR{
		CallID: id, Direction: UIC, WACallID: "wacid." + id,
		BusinessNumber: "+15550100001", PhoneNumberID: "100000000000001", User: "+16505551234",
		A:         Leg{Endpoint: "meta", SIPCallID: "a-" + id, Codec: "opus", Encryption: "sdes"},
		B:         Leg{Endpoint: "pbx", SIPCallID: "b-" + id, Codec: "PCMU", Encryption: "none"},
		CreatedAt: created, RingingAt: created.Add(time.Second), AnsweredAt: created.Add(5 * time.Second), EndedAt: created.Add(65 * time.Second),
		SIPCode: 200, SIPReason: "OK", HangupBy: HangupA, Cause: "BYE from a", Outcome: Answered,
		Media: Media{AtoB: MediaStats{Packets: 3000, Bytes: 240000, JitterMS: 1.5}, BtoA: MediaStats{Packets: 3000, Bytes: 480000}},
	}
}

// captureLog returns a logger writing into a buffer the test can read.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuf) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }
