package test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Helpers for the CDR and events tests (cdr_e2e_test.go,
// events_e2e_test.go): a webhook receiver that checks every delivery's
// signature with its own HMAC, the CDR and event shapes as docs/events.md
// describes them, and GET /v1/cdrs.

// rxSecret keys the subscriber's signatures.
const rxSecret = "whsec-e2e-5b1d0c7a"

// deliveryLimit bounds every wait for events to arrive.
const deliveryLimit = 15 * time.Second

// eventsYAML is the top-level config of a wagate that posts every event to
// rx, retrying fast (backoff 50–250 ms) so that a receiver coming back is
// served at once.
func eventsYAML(rx *receiver) string {
	return fmt.Sprintf(`node_id: e2e-node
events:
  subscribers:
    - {name: rx, url: %q, secret: {value: %q}, timeout: 5s}
  backoff_base: 50ms
  backoff_max: 250ms
`, rx.url, rxSecret)
}

// tokenAPI is the APIExtra that sets the bearer token.
const tokenAPI = `, token: {value: "` + apiToken + `"}`

// rxEvent is one delivery as the receiver got it.
type rxEvent struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Timestamp time.Time       `json:"timestamp"`
	NodeID    string          `json:"node_id"`
	CallID    string          `json:"call_id"`
	Data      json.RawMessage `json:"data"`

	attempt int
	body    []byte
}

// rxMode is how the receiver answers.
type rxMode int

const (
	rxTake   rxMode = iota // 204: the event is taken
	rxRefuse               // 503: a failed attempt
	rxHold                 // hold the request until released, then 204
)

// receiver is a subscriber's webhook endpoint on a fixed loopback address
// of the test's /24 (127.0.N.7), so that it can go down and come back
// where wagate posts.
type receiver struct {
	t    *testing.T
	addr string
	url  string

	mu       sync.Mutex
	srv      *httptest.Server
	mode     rxMode
	release  chan struct{} // closed to let held requests go
	holding  int           // requests held now
	got      []rxEvent     // taken deliveries, in arrival order
	refused  int           // deliveries answered 503
	problems []string      // signature or header faults
	poke     chan struct{}
}

// newReceiver starts a receiver (taking events); it is closed on cleanup.
func newReceiver(t *testing.T, e *env) *receiver {
	t.Helper()
	rx := &receiver{t: t, poke: make(chan struct{}, 1), release: make(chan struct{})}
	ln, err := net.Listen("tcp4", net.JoinHostPort(e.ip(7), "0"))
	if err != nil {
		t.Fatalf("receiver: %v", err)
	}
	rx.addr = ln.Addr().String()
	rx.url = "http://" + rx.addr + "/wagate/events"
	rx.serveOn(ln)
	t.Cleanup(func() {
		rx.setMode(rxTake)
		rx.down()
		if t.Failed() {
			t.Logf("receiver got %d deliveries (%d refused):\n%s", len(rx.all()), rx.refusedCount(), rx.summary())
		}
	})
	return rx
}

// up starts listening (again) at the receiver's address.
func (rx *receiver) up() {
	rx.t.Helper()
	ln, err := net.Listen("tcp4", rx.addr)
	if err != nil {
		rx.t.Fatalf("receiver: listen %s: %v", rx.addr, err)
	}
	rx.serveOn(ln)
}

func (rx *receiver) serveOn(ln net.Listener) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(rx.serve))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	rx.mu.Lock()
	rx.srv = srv
	rx.mu.Unlock()
}

// down stops listening: wagate's connections are refused until up.
func (rx *receiver) down() {
	rx.mu.Lock()
	srv := rx.srv
	rx.srv = nil
	rx.mu.Unlock()
	if srv != nil {
		srv.CloseClientConnections()
		srv.Close()
	}
}

// setMode changes how deliveries are answered; leaving rxHold releases the
// requests held.
func (rx *receiver) setMode(m rxMode) {
	rx.mu.Lock()
	defer rx.mu.Unlock()
	if rx.mode == rxHold && m != rxHold {
		close(rx.release)
		rx.release = make(chan struct{})
	}
	rx.mode = m
}

func (rx *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	problem := ""
	if err != nil {
		problem = "reading body: " + err.Error()
	} else {
		problem = checkDelivery(r, body)
	}
	var ev rxEvent
	if err := json.Unmarshal(body, &ev); err != nil && problem == "" {
		problem = "body is not an event: " + err.Error()
	}
	ev.attempt, _ = strconv.Atoi(r.Header.Get("X-Wagate-Delivery-Attempt"))
	ev.body = body

	rx.mu.Lock()
	if problem != "" {
		rx.problems = append(rx.problems, problem+": "+string(body))
	}
	mode, release := rx.mode, rx.release
	if mode == rxHold {
		rx.holding++
	}
	rx.mu.Unlock()
	if mode == rxHold {
		<-release
		rx.mu.Lock()
		rx.holding--
		rx.mu.Unlock()
	}
	rx.mu.Lock()
	if mode == rxRefuse {
		rx.refused++
	} else {
		rx.got = append(rx.got, ev)
	}
	rx.mu.Unlock()
	select {
	case rx.poke <- struct{}{}:
	default:
	}
	if mode == rxRefuse {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// checkDelivery checks a delivery the way docs/events.md tells receivers
// to, with an HMAC computed here: method, content type, the event id and
// type headers against the body, and X-Wagate-Signature (t within 5
// minutes, v1 = hex HMAC-SHA256(secret, t "." body)). It returns what is
// wrong, or "".
func checkDelivery(r *http.Request, body []byte) string {
	if r.Method != http.MethodPost {
		return "method " + r.Method
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		return "Content-Type " + ct
	}
	var head struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return "body: " + err.Error()
	}
	if r.Header.Get("X-Wagate-Event-Id") != head.ID || r.Header.Get("X-Wagate-Event-Type") != head.Type {
		return fmt.Sprintf("headers name event %q (%q), body %q (%q)",
			r.Header.Get("X-Wagate-Event-Id"), r.Header.Get("X-Wagate-Event-Type"), head.ID, head.Type)
	}
	if n, err := strconv.Atoi(r.Header.Get("X-Wagate-Delivery-Attempt")); err != nil || n < 1 {
		return "X-Wagate-Delivery-Attempt " + r.Header.Get("X-Wagate-Delivery-Attempt")
	}
	sig := r.Header.Get("X-Wagate-Signature")
	var ts string
	var v1s []string
	for _, part := range strings.Split(sig, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			v1s = append(v1s, v)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(v1s) == 0 {
		return "malformed X-Wagate-Signature " + sig
	}
	if d := time.Since(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return "signature time " + ts + " outside 5 minutes"
	}
	m := hmac.New(sha256.New, []byte(rxSecret))
	m.Write([]byte(ts + "."))
	m.Write(body)
	want := m.Sum(nil)
	for _, v := range v1s {
		if got, err := hex.DecodeString(v); err == nil && hmac.Equal(got, want) {
			return ""
		}
	}
	return "signature " + sig + " does not match the body"
}

// all returns the deliveries taken so far, in arrival order.
func (rx *receiver) all() []rxEvent {
	rx.mu.Lock()
	defer rx.mu.Unlock()
	return append([]rxEvent(nil), rx.got...)
}

func (rx *receiver) refusedCount() int {
	rx.mu.Lock()
	defer rx.mu.Unlock()
	return rx.refused
}

func (rx *receiver) holdingCount() int {
	rx.mu.Lock()
	defer rx.mu.Unlock()
	return rx.holding
}

// checkSigned fails the test for every delivery whose signature or
// headers were wrong.
func (rx *receiver) checkSigned(t *testing.T) {
	t.Helper()
	rx.mu.Lock()
	defer rx.mu.Unlock()
	for _, p := range rx.problems {
		t.Errorf("receiver: bad delivery: %s", p)
	}
}

func (rx *receiver) summary() string {
	var b strings.Builder
	for _, ev := range rx.all() {
		fmt.Fprintf(&b, "  %s %-18s call=%s attempt=%d\n", ev.ID, ev.Type, ev.CallID, ev.attempt)
	}
	return b.String()
}

// waitUntil waits until cond holds for the deliveries taken (in arrival
// order), failing the test after deliveryLimit.
func (rx *receiver) waitUntil(t *testing.T, what string, cond func([]rxEvent) bool) []rxEvent {
	t.Helper()
	deadline := time.After(deliveryLimit)
	for {
		got := rx.all()
		if cond(got) {
			return got
		}
		select {
		case <-rx.poke:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("receiver: %s not within %v; got %d deliveries:\n%s", what, deliveryLimit, len(got), rx.summary())
			return nil
		}
	}
}

// unique drops redeliveries (same id), keeping first arrivals in order.
func unique(evs []rxEvent) []rxEvent {
	seen := map[string]bool{}
	var out []rxEvent
	for _, ev := range evs {
		if !seen[ev.ID] {
			seen[ev.ID] = true
			out = append(out, ev)
		}
	}
	return out
}

// ofCall returns the distinct events of one call (first arrivals, in order).
func ofCall(evs []rxEvent, callID string) []rxEvent {
	var out []rxEvent
	for _, ev := range unique(evs) {
		if ev.CallID == callID {
			out = append(out, ev)
		}
	}
	return out
}

// ofType returns the distinct events of a type.
func ofType(evs []rxEvent, typ string) []rxEvent {
	var out []rxEvent
	for _, ev := range unique(evs) {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

func types(evs []rxEvent) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.Type
	}
	return out
}

// eventRank is a call event's place in its call (docs/events.md,
// "Per-call order").
var eventRank = map[string]int{
	"call.started": 0, "call.progress": 1, "call.ringing": 1, "call.answered": 2, "call.ended": 3, "call.refused": 3, "recording.ready": 4,
}

// checkCallOrder fails the test when a call's event arrived before an
// earlier event of the same call had arrived: going through every
// delivery in arrival order, a new event never ranks below one already
// taken for its call (a redelivery of an event already taken may).
func checkCallOrder(t *testing.T, evs []rxEvent) {
	t.Helper()
	seen := map[string]bool{}
	top := map[string]int{}
	last := map[string]string{}
	for _, ev := range evs {
		if ev.CallID == "" {
			continue
		}
		if seen[ev.ID] {
			continue
		}
		seen[ev.ID] = true
		r, ok := eventRank[ev.Type]
		if !ok {
			t.Errorf("event %s of call %s has unknown type %q", ev.ID, ev.CallID, ev.Type)
			continue
		}
		if prev, ok := top[ev.CallID]; ok && r < prev {
			t.Errorf("call %s: %s (%s) arrived after %s", ev.CallID, ev.Type, ev.ID, last[ev.CallID])
		}
		if r >= top[ev.CallID] {
			top[ev.CallID], last[ev.CallID] = r, ev.Type
		}
	}
}

// ---------------------------------------------------------------------------
// CDRs as docs/events.md describes them

type cdrLeg struct {
	Endpoint   string `json:"endpoint"`
	SIPCallID  string `json:"sip_call_id"`
	Codec      string `json:"codec"`
	Encryption string `json:"encryption"`
}

type cdrMediaDir struct {
	Packets            uint64  `json:"packets"`
	Bytes              uint64  `json:"bytes"`
	Lost               uint64  `json:"lost"`
	JitterMS           float64 `json:"jitter_ms"`
	SRTPAuthFailures   uint64  `json:"srtp_auth_failures"`
	SRTPReplayFailures uint64  `json:"srtp_replay_failures"`
	ConcealedFrames    uint64  `json:"concealed_frames"`
	LateFrames         uint64  `json:"late_frames"`
	JitterBufferMS     float64 `json:"jitter_buffer_ms"`
}

type cdrDoc struct {
	CallID         string    `json:"call_id"`
	NodeID         string    `json:"node_id"`
	Direction      string    `json:"direction"`
	WACallID       string    `json:"wa_call_id"`
	BusinessNumber string    `json:"business_number"`
	PhoneNumberID  string    `json:"phone_number_id"`
	User           string    `json:"user"`
	A              cdrLeg    `json:"a"`
	B              cdrLeg    `json:"b"`
	CreatedAt      time.Time `json:"created_at"`
	RingingAt      time.Time `json:"ringing_at"`
	AnsweredAt     time.Time `json:"answered_at"`
	EndedAt        time.Time `json:"ended_at"`
	RingMS         int64     `json:"ring_ms"`
	TalkMS         int64     `json:"talk_ms"`
	SIPCode        int       `json:"sip_code"`
	SIPReason      string    `json:"sip_reason"`
	HangupBy       string    `json:"hangup_by"`
	Cause          string    `json:"cause"`
	Outcome        string    `json:"outcome"`
	Permission     string    `json:"permission"`
	WABAError      int       `json:"waba_error"`
	Media          struct {
		AtoB cdrMediaDir `json:"a_to_b"`
		BtoA cdrMediaDir `json:"b_to_a"`
	} `json:"media"`
	RecordingID  string `json:"recording_id"`
	CampaignID   string `json:"campaign_id"`
	CallbackData string `json:"callback_data"`

	raw json.RawMessage
}

// apiDo sends a request to wagate's API with the bearer token.
func apiDo(t *testing.T, e *env, method, path string, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.apiBase()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return res, b
}

// listCDRs reads every CDR through GET /v1/cdrs, following next_cursor.
func listCDRs(t *testing.T, e *env) []cdrDoc {
	t.Helper()
	var out []cdrDoc
	cursor := ""
	for range 100 {
		path := "/v1/cdrs?limit=2"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		res, body := apiDo(t, e, http.MethodGet, path, "")
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s: %s", path, res.Status, body)
		}
		var page struct {
			CDRs       []json.RawMessage `json:"cdrs"`
			NextCursor string            `json:"next_cursor"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, body)
		}
		for _, raw := range page.CDRs {
			var c cdrDoc
			if err := json.Unmarshal(raw, &c); err != nil {
				t.Fatalf("CDR %s: %v", raw, err)
			}
			c.raw = raw
			out = append(out, c)
		}
		if cursor = page.NextCursor; cursor == "" {
			return out
		}
	}
	t.Fatal("GET /v1/cdrs: more than 100 pages")
	return nil
}

// waitCDRs waits until GET /v1/cdrs lists n records (they are written off
// the call path, a moment after the call ends) and returns them.
func waitCDRs(t *testing.T, e *env, n int) []cdrDoc {
	t.Helper()
	deadline := time.Now().Add(deliveryLimit)
	for {
		cdrs := listCDRs(t, e)
		if len(cdrs) >= n || time.Now().After(deadline) {
			if len(cdrs) != n {
				t.Fatalf("GET /v1/cdrs lists %d records, want %d", len(cdrs), n)
			}
			return cdrs
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cdrOfA returns the one CDR whose A-leg had SIP Call-ID id; more than
// one, or none, fails the test.
func cdrOfA(t *testing.T, cdrs []cdrDoc, id string) cdrDoc {
	t.Helper()
	var found []cdrDoc
	for _, c := range cdrs {
		if c.A.SIPCallID == id {
			found = append(found, c)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d CDRs for A-leg Call-ID %q, want exactly 1", len(found), id)
	}
	return found[0]
}

// sippCallID is the Call-ID of the first INVITE a SIPp caller sent.
func sippCallID(t *testing.T, p *sippProc) string {
	t.Helper()
	inv, ok := findMsg(p.messages(), true, "INVITE ")
	if !ok {
		t.Fatalf("sipp %s sent no INVITE", p.spec.Name)
	}
	return inv.Header("Call-ID")
}

// cdrWant is what a test expects of a CDR; empty fields are not checked
// unless named in the check itself.
type cdrWant struct {
	direction, outcome, hangupBy, cause, permission string
	code, wabaError                                 int
	user, campaign, callback                        string
	aEndpoint, bEndpoint                            string
	routed                                          bool // got past routing: numbers known
	ringing, answered                               bool
}

// checkCDR checks a CDR against want and the invariants of every record:
// node, times in order, durations consistent with them.
func checkCDR(t *testing.T, what string, c cdrDoc, want cdrWant) {
	t.Helper()
	errf := func(format string, args ...any) {
		t.Helper()
		t.Errorf("%s: "+format+"\nCDR: %s", append([]any{what}, append(args, c.raw)...)...)
	}
	if c.CallID == "" || c.NodeID != "e2e-node" {
		errf("call_id %q node_id %q", c.CallID, c.NodeID)
	}
	if c.Direction != want.direction || c.Outcome != want.outcome || c.SIPCode != want.code || c.HangupBy != want.hangupBy {
		errf("direction/outcome/sip_code/hangup_by = %s/%s/%d/%s, want %s/%s/%d/%s",
			c.Direction, c.Outcome, c.SIPCode, c.HangupBy, want.direction, want.outcome, want.code, want.hangupBy)
	}
	if c.SIPReason == "" {
		errf("no sip_reason")
	}
	if want.cause != "" && c.Cause != want.cause {
		errf("cause %q, want %q", c.Cause, want.cause)
	}
	if c.Cause == "" {
		errf("no cause")
	}
	if c.WABAError != want.wabaError || c.Permission != want.permission {
		errf("waba_error %d permission %q, want %d %q", c.WABAError, c.Permission, want.wabaError, want.permission)
	}
	if want.routed {
		if c.BusinessNumber != businessNumber || c.PhoneNumberID != phoneNumberID || c.User != want.user {
			errf("numbers %s/%s user %s, want %s/%s %s", c.BusinessNumber, c.PhoneNumberID, c.User, businessNumber, phoneNumberID, want.user)
		}
	} else if c.BusinessNumber != "" || c.PhoneNumberID != "" {
		errf("numbers %s/%s for an INVITE refused before routing", c.BusinessNumber, c.PhoneNumberID)
	}
	if c.CampaignID != want.campaign || c.CallbackData != want.callback {
		errf("campaign %q callback %q, want %q %q", c.CampaignID, c.CallbackData, want.campaign, want.callback)
	}
	if c.A.Endpoint != want.aEndpoint || c.B.Endpoint != want.bEndpoint {
		errf("endpoints a=%q b=%q, want %q %q", c.A.Endpoint, c.B.Endpoint, want.aEndpoint, want.bEndpoint)
	}
	// Times: created ≤ ringing ≤ answered ≤ ended, each there when reached.
	// wagate stamps these on the wall clock and counts ring_ms and talk_ms
	// on the monotonic one: a step of the wall clock between two stamps
	// (CI's VM once stepped 24 s) moves them apart by that much.
	step := wallClockStep()
	if c.CreatedAt.IsZero() || c.EndedAt.IsZero() || c.EndedAt.Before(c.CreatedAt.Add(-step)) {
		errf("created_at %v ended_at %v", c.CreatedAt, c.EndedAt)
	}
	if time.Since(c.CreatedAt) > 5*time.Minute || time.Until(c.EndedAt) > time.Second+step {
		errf("times not of this test: created %v ended %v", c.CreatedAt, c.EndedAt)
	}
	if want.ringing != !c.RingingAt.IsZero() || want.answered != !c.AnsweredAt.IsZero() {
		errf("ringing_at %v answered_at %v, want ringing %v answered %v", c.RingingAt, c.AnsweredAt, want.ringing, want.answered)
	}
	prev := c.CreatedAt
	for _, tm := range []time.Time{c.RingingAt, c.AnsweredAt, c.EndedAt} {
		if tm.IsZero() {
			continue
		}
		if tm.Before(prev.Add(-step)) {
			errf("times out of order: created %v ringing %v answered %v ended %v", c.CreatedAt, c.RingingAt, c.AnsweredAt, c.EndedAt)
			break
		}
		prev = tm
	}
	if want.answered {
		if c.TalkMS <= 0 || absDur(time.Duration(c.TalkMS)*time.Millisecond-c.EndedAt.Sub(c.AnsweredAt)) > 2*time.Millisecond+step {
			errf("talk_ms %d, want > 0 and answered→ended (%v; wall clock stepped %v)", c.TalkMS, c.EndedAt.Sub(c.AnsweredAt), step)
		}
	} else if c.TalkMS != 0 {
		errf("talk_ms %d for a call never answered", c.TalkMS)
	}
	if want.ringing {
		end := c.EndedAt
		if want.answered {
			end = c.AnsweredAt
		}
		if absDur(time.Duration(c.RingMS)*time.Millisecond-end.Sub(c.RingingAt)) > 2*time.Millisecond+step {
			errf("ring_ms %d, want ringing→%v (%v)", c.RingMS, end, end.Sub(c.RingingAt))
		}
	}
}

// suiteStart is when this test binary started, read on both clocks.
var suiteStart = time.Now()

// wallClockStep is how far the wall clock has been stepped (by NTP, or the
// host of a VM that was paused) since the test binary started: the wall
// time elapsed less the monotonic time elapsed. It is zero but for a
// microsecond or so on a machine whose clock was not stepped (slewing
// moves both clocks alike), so a bound widened by it is not loosened
// there.
func wallClockStep() time.Duration {
	return absDur(time.Now().Round(0).Sub(suiteStart.Round(0)) - time.Since(suiteStart))
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// checkEndEvent checks that the receiver got exactly one event of typ
// (call.ended or call.refused) for the CDR's call, carrying the CDR as
// GET /v1/cdrs serves it.
func checkEndEvent(t *testing.T, what string, evs []rxEvent, c cdrDoc, typ string) {
	t.Helper()
	var found []rxEvent
	for _, ev := range ofCall(evs, c.CallID) {
		if ev.Type == "call.ended" || ev.Type == "call.refused" {
			found = append(found, ev)
		}
	}
	if len(found) != 1 || found[0].Type != typ {
		t.Errorf("%s: end events of call %s: %v, want one %s", what, c.CallID, types(found), typ)
		return
	}
	ev := found[0]
	var got, want any
	if err := json.Unmarshal(ev.Data, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(c.raw, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s: %s data differs from the CDR:\nevent %s\n  CDR %s", what, typ, ev.Data, c.raw)
	}
	if ev.NodeID != "e2e-node" {
		t.Errorf("%s: %s node_id %q", what, typ, ev.NodeID)
	}
}

// waitEnded waits until the receiver has the end event (call.ended or
// call.refused) of every call in cdrs.
func waitEnded(t *testing.T, rx *receiver, cdrs []cdrDoc) []rxEvent {
	t.Helper()
	return rx.waitUntil(t, fmt.Sprintf("the end events of %d calls", len(cdrs)), func(evs []rxEvent) bool {
		ended := map[string]bool{}
		for _, ev := range evs {
			if ev.Type == "call.ended" || ev.Type == "call.refused" {
				ended[ev.CallID] = true
			}
		}
		for _, c := range cdrs {
			if !ended[c.CallID] {
				return false
			}
		}
		return true
	})
}
