package callflow

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/events"
	"github.com/wagate/wagate/prompt"
)

// speedup makes the fake call play audio this many times faster than real
// time, so that the tests of long prompts take a fraction of their length;
// the audio delivered is still measured in samples.
const speedup = 10

// played is one Play call the fake received.
type played struct {
	at, end     time.Time
	audio       prompt.Audio
	interrupted bool
}

// fakeCall is the Call the engine drives in these tests: it keeps what it
// was asked to do and answers Connect and Record from functions.
type fakeCall struct {
	info   Info
	digits chan rune
	pace   int // audio plays pace times faster than real time (0: speedup)

	mu       sync.Mutex
	plays    []played
	connects []Target
	records  []RecordOptions
	hangups  []string
	onPlay   func(n int, a prompt.Audio) // called at the start of the n-th Play (0-based)

	connectErr func(Target) error
	record     func(RecordOptions) (Recording, error)
}

func newFakeCall(rate int) *fakeCall {
	return &fakeCall{
		info: Info{CallID: "5f0c9a1e2b7d4c3a8e6f1b2d", WACallID: "wacid.HBgLMTY1", Direction: "UIC",
			BusinessNumber: "+15550100001", PhoneNumberID: "100000000000001", User: "+16505551234",
			CallerName: "Ana", Payload: "order-42", PayloadSource: "cta", SampleRate: rate},
		digits: make(chan rune, 32),
	}
}

func (f *fakeCall) Info() Info          { return f.info }
func (f *fakeCall) Digits() <-chan rune { return f.digits }

func (f *fakeCall) Play(ctx context.Context, a prompt.Audio) error {
	if a.Rate != f.info.SampleRate {
		return fmt.Errorf("fake: audio at %d Hz on a %d Hz call", a.Rate, f.info.SampleRate)
	}
	f.mu.Lock()
	n := len(f.plays)
	f.plays = append(f.plays, played{at: time.Now(), audio: a})
	hook := f.onPlay
	f.mu.Unlock()
	if hook != nil {
		hook(n, a)
	}
	pace := f.pace
	if pace == 0 {
		pace = speedup
	}
	t := time.NewTimer(a.Duration() / time.Duration(pace))
	defer t.Stop()
	select {
	case <-t.C:
		f.mu.Lock()
		f.plays[n].end = time.Now()
		f.mu.Unlock()
		return nil
	case <-ctx.Done():
		f.mu.Lock()
		f.plays[n].interrupted = true
		f.mu.Unlock()
		return ctx.Err()
	}
}

func (f *fakeCall) Connect(ctx context.Context, t Target) error {
	f.mu.Lock()
	f.connects = append(f.connects, t)
	fn := f.connectErr
	f.mu.Unlock()
	if fn != nil {
		return fn(t)
	}
	return nil
}

func (f *fakeCall) Record(ctx context.Context, o RecordOptions) (Recording, error) {
	f.mu.Lock()
	f.records = append(f.records, o)
	fn := f.record
	f.mu.Unlock()
	if fn != nil {
		return fn(o)
	}
	return Recording{}, fmt.Errorf("fake: no recorder")
}

func (f *fakeCall) Hangup(reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hangups = append(f.hangups, reason)
}

func (f *fakeCall) snapshot() (plays []played, connects []Target, hangups []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]played(nil), f.plays...), append([]Target(nil), f.connects...), append([]string(nil), f.hangups...)
}

// service is the business's web service: it checks the signature of every
// request, keeps the requests and answers each with its script.
type service struct {
	*httptest.Server
	t      testing.TB
	secret []byte

	mu       sync.Mutex
	requests []Request
	raw      []recorded
	script   func(r Request, n int) (status int, body string)
}

// recorded is a request as received, for the template tests.
type recorded struct {
	method, url, contentType, event string
	body                            []byte
}

const testSecret = "callflow-test-secret"

func newService(t testing.TB, script func(r Request, n int) (int, string)) *service {
	t.Helper()
	s := &service{t: t, secret: []byte(testSecret), script: script}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *service) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	// Every request must verify exactly as a receiver of events verifies.
	if err := events.VerifySignature(s.secret, r.Header.Get(SignatureHeader), body, time.Now(), 5*time.Minute); err != nil {
		s.t.Errorf("request %s %s: signature: %v", r.Method, r.URL, err)
	}
	var req Request
	if len(body) > 0 && body[0] == '{' {
		if err := json.Unmarshal(body, &req); err != nil {
			s.t.Errorf("request body: %v", err)
		}
	}
	s.mu.Lock()
	n := len(s.requests)
	s.requests = append(s.requests, req)
	s.raw = append(s.raw, recorded{r.Method, r.URL.String(), r.Header.Get("Content-Type"), r.Header.Get(EventHeader), body})
	script := s.script
	s.mu.Unlock()
	if req.Event == EventSummary {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	status, out := script(req, n)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, out)
}

func (s *service) got() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// flows answers the n-th request with the n-th flow.
func flows(docs ...string) func(Request, int) (int, string) {
	return func(_ Request, n int) (int, string) {
		if n >= len(docs) {
			return 500, "no more flows"
		}
		return 200, docs[n]
	}
}

var (
	libOnce sync.Once
	lib     *prompt.Library
	libErr  error
)

// library is one espeak-ng-backed prompt library shared by the tests, as
// wagate shares one across calls.
// testAllow lets files come from 127.0.0.1, and only there on loopback.
var testAllow = prompt.Allow{Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}

func library(t testing.TB) *prompt.Library {
	t.Helper()
	if _, err := exec.LookPath("espeak-ng"); err != nil {
		t.Fatal("espeak-ng is not installed (Debian package espeak-ng; make deps-test installs it)")
	}
	libOnce.Do(func() {
		var tts *prompt.Espeak
		if tts, libErr = prompt.NewEspeak("", "en"); libErr == nil {
			// The tests' file servers are httptest servers on 127.0.0.1.
			lib, libErr = prompt.New(prompt.Options{TTS: tts, Files: prompt.FileOptions{Allow: testAllow}})
		}
	})
	if libErr != nil {
		t.Fatal(libErr)
	}
	return lib
}

// testTimeout is the engine's timeout in the tests that do not test the
// timeout itself. It is generous: under -race on a loaded 2-core machine
// espeak-ng and the pure-Go MP3 decoder take over a second to render a
// prompt (the MP3 of filesServer took up to 0.96 s to decode), and a prompt
// not ready within the timeout falls back, which is not what those tests
// are about. The tests of the timeout set a short one and wait it out.
const testTimeout = 10 * time.Second

// newEngine returns an engine for svc with testTimeout and a fallback to
// extension 1000, the message pre-rendered.
func newEngine(t *testing.T, svc *service, mod func(*Options)) *Engine {
	t.Helper()
	o := Options{URL: svc.URL + "/flow", Secret: []byte(testSecret), Timeout: testTimeout,
		Message: "Sorry, connecting you to an agent.", Prompts: library(t),
		Fallback: Target{Kind: TargetExtension, Endpoint: "pbx", Destination: "1000", Timeout: 30 * time.Second}}
	if mod != nil {
		mod(&o)
	}
	e, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, rate := range []int{prompt.Rate8k, prompt.Rate16k} {
		if err := e.Warm(context.Background(), rate); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// run runs the engine on call with a deadline.
func run(t *testing.T, e *Engine, call Call) *Summary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return e.Run(ctx, call)
}

// goertzel is the share of s's power at freq (rate Hz), over 50 ms windows
// averaged, so that a decoder's small frequency error does not matter.
func goertzel(s []int16, rate int, freq float64) float64 {
	win := rate / 20
	var sum float64
	n := 0
	for off := 0; off+win <= len(s); off += win {
		sum += goertzelWin(s[off:off+win], rate, freq)
		n++
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

func goertzelWin(s []int16, rate int, freq float64) float64 {
	coeff := 2 * math.Cos(2*math.Pi*freq/float64(rate))
	var s1, s2, total float64
	for _, v := range s {
		x := float64(v) / 32768
		total += x * x
		s0 := x + coeff*s1 - s2
		s2, s1 = s1, s0
	}
	if total == 0 {
		return 0
	}
	return (s1*s1 + s2*s2 - coeff*s1*s2) / (total * float64(len(s)) / 2)
}

// speechFrames counts 20 ms frames louder than -45 dBFS.
func speechFrames(a prompt.Audio) int {
	n := 0
	for _, f := range a.Frames() {
		var sum float64
		for _, v := range f {
			x := float64(v) / 32768
			sum += x * x
		}
		if 10*math.Log10(sum/float64(len(f))+1e-12) > -45 {
			n++
		}
	}
	return n
}

func mustRead(r *http.Request) []byte {
	b, _ := io.ReadAll(r.Body)
	return b
}

func readCloser(b []byte) io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }
