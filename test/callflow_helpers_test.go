package test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/prompt"
	"github.com/wagate/wagate/test/internal/audio"
	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/rtppeer"
)

// Helpers for the call-flow tests (callflow_e2e_test.go): the business's
// web service, which answers each request with the flow its test scripted
// and checks every request's signature with an HMAC of its own, and
// measurements of what the WhatsApp caller heard.

// flowSecret keys the service's signatures.
const flowSecret = "ivr-e2e-secret-6c1f"

// flowLimit bounds every wait for the service's requests.
const flowLimit = 20 * time.Second

// flowReq is one request the service got, decoded as docs/callflow.md
// describes it.
type flowReq struct {
	Event          string `json:"event"`
	CallID         string `json:"callId"`
	WACallID       string `json:"waCallId"`
	Direction      string `json:"direction"`
	BusinessNumber string `json:"businessNumber"`
	PhoneNumberID  string `json:"phoneNumberId"`
	User           string `json:"user"`
	ClientActionID string `json:"clientActionId"`
	Capture        *flowCapture
	// The summary's.
	Outcome  string        `json:"outcome"`
	Fallback string        `json:"fallback"`
	Requests int           `json:"requests"`
	Captures []flowCapture `json:"captures"`
	Actions  []struct {
		Action string `json:"action"`
		Result string `json:"result"`
		Error  string `json:"error"`
	} `json:"actions"`
	Connects []struct {
		DestinationType string `json:"destinationType"`
		Destination     string `json:"destination"`
		Answered        bool   `json:"answered"`
		Error           string `json:"error"`
		Fallback        bool   `json:"fallback"`
	} `json:"connects"`
	Recordings []struct {
		RecordingID string `json:"recordingId"`
		File        string `json:"file"`
		DurationMs  int64  `json:"durationMs"`
		Bytes       int64  `json:"bytes"`
		StoppedBy   string `json:"stoppedBy"`
	} `json:"recordings"`
	CDR *struct {
		CallID  string `json:"call_id"`
		Outcome string `json:"outcome"`
		B       struct {
			Endpoint  string `json:"endpoint"`
			User      string `json:"user"`
			SIPCallID string `json:"sip_call_id"`
		} `json:"b"`
		Attempts []struct {
			Endpoint  string `json:"endpoint"`
			User      string `json:"user"`
			SIPCallID string `json:"sip_call_id"`
			SIPCode   int    `json:"sip_code"`
			Result    string `json:"result"`
		} `json:"attempts"`
	} `json:"cdr"`

	at time.Time
}

type flowCapture struct {
	Digits string `json:"digits"`
	Status string `json:"status"`
	Tries  int    `json:"tries"`
}

// flowReply is the service's answer to one request.
type flowReply struct {
	Status int           // default 200
	Body   string        // a call flow (JSON) or anything
	Delay  time.Duration // before answering
}

// flowService is the business's web service.
type flowService struct {
	t    *testing.T
	addr string
	url  string
	srv  *httptest.Server

	mu       sync.Mutex
	script   func(flowReq) flowReply
	reqs     []flowReq
	problems []string
	files    map[string][]byte
	poke     chan struct{}
}

// flowServiceHost is the flow service's host number: 127.0.N.10, the one
// loopback address the generated config lets wagate fetch files from.
const flowServiceHost = 10

// newFlowService starts the service on 127.0.N.10 (closed on cleanup);
// script answers each POST to /flow.
func newFlowService(t *testing.T, e *env, script func(flowReq) flowReply) *flowService {
	t.Helper()
	ln, err := net.Listen("tcp4", net.JoinHostPort(e.ip(flowServiceHost), "0"))
	if err != nil {
		t.Fatalf("flow service: %v", err)
	}
	fs := &flowService{t: t, addr: ln.Addr().String(), script: script, files: map[string][]byte{}, poke: make(chan struct{}, 1)}
	fs.url = "http://" + fs.addr + "/flow"
	fs.srv = httptest.NewUnstartedServer(http.HandlerFunc(fs.serve))
	fs.srv.Listener.Close()
	fs.srv.Listener = ln
	fs.srv.Start()
	t.Cleanup(func() {
		fs.srv.CloseClientConnections()
		fs.srv.Close()
		if t.Failed() {
			t.Logf("flow service got %d requests:\n%s", len(fs.all()), fs.summary())
		}
	})
	return fs
}

// down closes the service: connections are refused from now on.
func (fs *flowService) down() {
	fs.srv.CloseClientConnections()
	fs.srv.Close()
}

// route is the number's route YAML with the service as its URL.
func (fs *flowService) route(timeout, message string) string {
	return fmt.Sprintf(`{callflow: {url: %q, secret: {value: %q}, timeout: %s, message: %q, voice: en-US, fallback: {endpoint: pbx, user: "1000"}}}`,
		fs.url, flowSecret, timeout, message)
}

// fileURL serves data at /files/name and returns its URL.
func (fs *flowService) fileURL(name string, data []byte) string {
	fs.mu.Lock()
	fs.files[name] = data
	fs.mu.Unlock()
	return "http://" + fs.addr + "/files/" + name
}

func (fs *flowService) serve(w http.ResponseWriter, r *http.Request) {
	if name, ok := strings.CutPrefix(r.URL.Path, "/files/"); ok && r.Method == http.MethodGet {
		fs.mu.Lock()
		data, found := fs.files[name]
		fs.mu.Unlock()
		if !found {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "audio/wav")
		w.Write(data)
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var req flowReq
	problem := ""
	if err := json.Unmarshal(body, &req); err != nil {
		problem = "body: " + err.Error()
	}
	if p := checkFlowSignature(r, body); p != "" {
		problem = p
	}
	if ev := r.Header.Get("X-Wagate-Callflow-Event"); ev != req.Event {
		problem = fmt.Sprintf("X-Wagate-Callflow-Event %q, body's event %q", ev, req.Event)
	}
	req.at = time.Now()
	fs.mu.Lock()
	if problem != "" {
		fs.problems = append(fs.problems, problem)
	}
	fs.reqs = append(fs.reqs, req)
	script := fs.script
	fs.mu.Unlock()
	select {
	case fs.poke <- struct{}{}:
	default:
	}
	rep := flowReply{Status: http.StatusOK, Body: "{}"}
	if script != nil && req.Event != "summary" {
		rep = script(req)
	}
	if rep.Delay > 0 {
		select {
		case <-time.After(rep.Delay):
		case <-r.Context().Done():
			return
		}
	}
	if rep.Status == 0 {
		rep.Status = http.StatusOK
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rep.Status)
	io.WriteString(w, rep.Body)
}

// checkFlowSignature verifies X-Wagate-Signature as docs/callflow.md
// tells services to: t within 5 minutes, v1 = hex HMAC-SHA256(secret,
// t "." body), compared in constant time. It returns what is wrong, or "".
func checkFlowSignature(r *http.Request, body []byte) string {
	sig := r.Header.Get("X-Wagate-Signature")
	var ts, v1 string
	for _, part := range strings.Split(sig, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			v1 = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || v1 == "" {
		return "malformed X-Wagate-Signature " + sig
	}
	if d := time.Since(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return "signature time " + ts + " outside 5 minutes"
	}
	m := hmac.New(sha256.New, []byte(flowSecret))
	m.Write([]byte(ts + "."))
	m.Write(body)
	got, err := hex.DecodeString(v1)
	if err != nil || !hmac.Equal(got, m.Sum(nil)) {
		return "signature " + sig + " does not match the body"
	}
	return ""
}

func (fs *flowService) all() []flowReq {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return append([]flowReq(nil), fs.reqs...)
}

func (fs *flowService) summary() string {
	var b strings.Builder
	for _, r := range fs.all() {
		fmt.Fprintf(&b, "  %s %-8s call=%s capture=%+v outcome=%s fallback=%q\n", r.at.Format("15:04:05.000"), r.Event, r.CallID, r.Capture, r.Outcome, r.Fallback)
	}
	return b.String()
}

// checkSigned fails the test for every request whose signature was wrong
// and reports how many were checked.
func (fs *flowService) checkSigned(t *testing.T) {
	t.Helper()
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, p := range fs.problems {
		t.Errorf("flow service: bad request: %s", p)
	}
	if len(fs.problems) == 0 {
		t.Logf("flow service: all %d requests verified (HMAC-SHA256 of t.body)", len(fs.reqs))
	}
}

// wait returns the n-th (1-based) request of event for call (any call
// when callID is ""), failing the test after flowLimit.
func (fs *flowService) wait(t *testing.T, event, callID string, n int) flowReq {
	t.Helper()
	deadline := time.After(flowLimit)
	for {
		k := 0
		for _, r := range fs.all() {
			if r.Event == event && (callID == "" || r.CallID == callID) {
				if k++; k == n {
					return r
				}
			}
		}
		select {
		case <-fs.poke:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("flow service: request %d of event %q not within %v; got:\n%s", n, event, flowLimit, fs.summary())
			return flowReq{}
		}
	}
}

// flowJSON is a call flow: actions are {"action": …, "params": …} maps.
func flowJSON(id string, actions ...map[string]any) string {
	b, err := json.Marshal(map[string]any{"clientActionId": id, "callflow": actions})
	if err != nil {
		panic(err)
	}
	return string(b)
}

func action(name string, params map[string]any) map[string]any {
	if params == nil {
		return map[string]any{"action": name}
	}
	return map[string]any{"action": name, "params": params}
}

// toneWAV is a WAV file (mono, 16-bit, rate) of a freq-Hz tone lasting d,
// written here from the format's definition.
func toneWAV(freq float64, rate int, d time.Duration) []byte {
	n := int(d.Seconds() * float64(rate))
	var b bytes.Buffer
	le := binary.LittleEndian
	b.WriteString("RIFF")
	binary.Write(&b, le, uint32(36+2*n))
	b.WriteString("WAVEfmt ")
	binary.Write(&b, le, uint32(16))
	binary.Write(&b, le, uint16(1))
	binary.Write(&b, le, uint16(1))
	binary.Write(&b, le, uint32(rate))
	binary.Write(&b, le, uint32(2*rate))
	binary.Write(&b, le, uint16(2))
	binary.Write(&b, le, uint16(16))
	b.WriteString("data")
	binary.Write(&b, le, uint32(2*n))
	for i := range n {
		binary.Write(&b, le, int16(0.3*32767*math.Sin(2*math.Pi*freq*float64(i)/float64(rate))))
	}
	return b.Bytes()
}

// speechDuration renders text with espeak-ng (as wagate does, through
// the prompt package) and returns how long it speaks, from its first to
// its last 20 ms frame above -45 dBFS.
func speechDuration(t *testing.T, text string) time.Duration {
	t.Helper()
	tts, err := prompt.NewEspeak("", "en")
	if err != nil {
		t.Fatalf("espeak-ng: %v (make test installs it)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := tts.Render(ctx, prompt.Speech{Text: text, Voice: "en-US"}, prompt.Rate8k)
	if err != nil {
		t.Fatalf("espeak-ng: %v", err)
	}
	first, last := -1, -1
	for i, off := 0, 0; off+160 <= len(a.Samples); i, off = i+1, off+160 {
		if audio.DBFS(a.Samples[off:off+160]) > speechDBFS {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		t.Fatalf("espeak-ng rendered %q silent", text)
	}
	return time.Duration(last-first+1) * 20 * time.Millisecond
}

// speechDBFS: a 20 ms frame louder than this counts as heard.
const speechDBFS = -45.0

// heard is what the caller received: a frame's arrival and level, and the
// decoded audio (48 kHz) of the whole call.
type heard struct {
	frames []rtppeer.Frame
	pcm    []int16
}

func hear(c *metapeer.Call) heard {
	return heard{frames: c.Media.Frames(), pcm: c.Media.Recording()}
}

// loudFrom returns the index of the first frame at or after from that is
// louder than speechDBFS, or -1.
func (h heard) loudFrom(from int) int {
	for i := max(from, 0); i < len(h.frames); i++ {
		if h.frames[i].DBFS > speechDBFS {
			return i
		}
	}
	return -1
}

// afterTime is the index of the first frame that arrived at or after at.
func (h heard) afterTime(at time.Time) int {
	for i, f := range h.frames {
		if !f.At.Before(at) {
			return i
		}
	}
	return len(h.frames)
}

// pcmOf returns the decoded audio of frames [from, to) (960 samples each:
// Opus at 48 kHz, 20 ms).
func (h heard) pcmOf(from, to int) []int16 {
	from, to = max(from, 0)*960, min(to, len(h.frames))*960
	to = min(to, len(h.pcm))
	if from >= to {
		return nil
	}
	return h.pcm[from:to]
}

// toneFrames returns the first run of at least minRun frames from from on
// whose audio is mostly freq (Goertzel purity ≥ 0.5) and loud: its first
// frame and the one after its last, or -1, -1.
func (h heard) toneFrames(from int, freq float64, minRun int) (int, int) {
	start, n := -1, 0
	for i := max(from, 0); i < len(h.frames) && (i+1)*960 <= len(h.pcm); i++ {
		f := h.pcm[i*960 : (i+1)*960]
		if audio.DBFS(f) > -30 && audio.Goertzel(f, 48000, freq) >= 0.5 {
			if n == 0 {
				start = i
			}
			n++
			continue
		}
		if n >= minRun {
			return start, i
		}
		n = 0
	}
	if n >= minRun {
		return start, start + n
	}
	return -1, -1
}

// gaps counts the holes in the frames' sequence numbers in [from, to).
func (h heard) gaps(from, to int) int {
	n := 0
	for i := max(from, 1); i < min(to, len(h.frames)); i++ {
		if h.frames[i].Seq != h.frames[i-1].Seq+1 {
			n++
		}
	}
	return n
}

// waitHeard polls what c heard until cond finds what it wants (true),
// failing the test after limit.
func waitHeard(t *testing.T, c *metapeer.Call, what string, limit time.Duration, cond func(heard) bool) heard {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		h := hear(c)
		if cond(h) {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("the caller did not hear %s within %v (%d frames; levels per 100 ms:\n%s)", what, limit, len(h.frames), levelProfile(h.pcm, 48000))
			return h
		}
		time.Sleep(50 * time.Millisecond)
	}
}
