package callflow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/events"
	"github.com/wagate/wagate/internal/staleconn"
	"github.com/wagate/wagate/prompt"
)

// Every way the service can fail ends in the fallback: the caller hears
// the message and is connected to the fallback extension. A service that
// does not answer is waited for exactly one timeout (slowTimeout), every
// other failure is heard before any timeout (testTimeout) could pass.
func TestServiceFailuresFallBack(t *testing.T) {
	const slowTimeout = 3 * time.Second
	files := filesServer(t)
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	downURL := "http://" + closed.Addr().String() + "/flow"
	closed.Close()

	ok := func(flow string) func(Request, int) (int, string) {
		return func(Request, int) (int, string) { return 200, flow }
	}
	cases := []struct {
		name   string
		script func(Request, int) (int, string)
		url    string // instead of the service
		cause  string // in the summary's fallback
	}{
		{"down", nil, downURL, "connection refused"},
		{"slow", nil, "slow", "no answer within 3s"},
		{"500", func(Request, int) (int, string) { return 500, "oops" }, "", "500 Internal Server Error"},
		{"garbage", ok("<html>hello</html>"), "", "not JSON"},
		{"empty", ok(""), "", "empty answer"},
		{"unknown action", ok(`{"callflow":[{"action":"dance","params":{}}]}`), "", `unknown action "dance"`},
		{"wrong type", ok(`{"callflow":[{"action":"say","params":{"text":"hi","repetition":"2"}}]}`), "", "params.repetition: want a whole number, got a string"},
		{"out of range", ok(`{"callflow":[{"action":"say","params":{"text":"hi","speed":3}}]}`), "", "params.speed: 3 is outside 0.5–2"},
		{"digits bounds", ok(`{"callflow":[{"action":"sayAndCapture","params":{"promptMessage":"x","minDigits":5,"maxDigits":3}}]}`), "", "maxDigits: 3 is outside minDigits (5)–32"},
		{"oversized", ok(`{"callflow":[{"action":"say","params":{"text":"` + strings.Repeat("a", 70<<10) + `"}}]}`), "", "larger than 65536 bytes"},
		{"redirect to ftp", func(Request, int) (int, string) { return 0, "" }, "redirect", "only http and https are followed"},
		{"file not audio", ok(`{"callflow":[{"action":"playFile","params":{"fileUrl":"` + files.URL + `/page.wav"}}]}`), "", "unsupported_media"},
		{"file too large", ok(`{"callflow":[{"action":"playFile","params":{"fileUrl":"` + files.URL + `/huge.wav"}}]}`), "", "file_too_large"},
		{"file scheme", ok(`{"callflow":[{"action":"playFile","params":{"fileUrl":"file:///etc/passwd"}}]}`), "", "must be an http or https URL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			svc := newService(t, c.script)
			url := svc.URL + "/flow"
			timeout := testTimeout
			switch c.url {
			case "":
			case "slow":
				// It answers once the engine has given up, so that the
				// test does not wait for it.
				timeout = slowTimeout
				svc.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					// Reading the body lets the server notice the engine
					// hanging up, which ends r's context.
					io.Copy(io.Discard, r.Body)
					select {
					case <-r.Context().Done():
					case <-time.After(30 * time.Second):
					}
					io.WriteString(w, `{"callflow":[{"action":"hangup"}]}`)
				})
			case "redirect":
				mux := http.NewServeMux()
				mux.HandleFunc("/flow", func(w http.ResponseWriter, r *http.Request) {
					http.Redirect(w, r, "ftp://ivr.example.com/flow", http.StatusTemporaryRedirect)
				})
				svc.Config.Handler = mux
			default:
				url = c.url
			}
			e := newEngine(t, svc, func(o *Options) { o.URL = url; o.Timeout = timeout })
			call := newFakeCall(prompt.Rate8k)
			start := time.Now()
			sum := run(t, e, call)
			plays, connects, hangups := call.snapshot()
			if len(plays) == 0 {
				t.Fatal("the caller heard nothing")
			}
			msg := plays[len(plays)-1]
			if f := speechFrames(msg.audio); f < 20 {
				t.Fatalf("the last play is not the spoken message (%d speech frames)", f)
			}
			// A failure the engine can see is heard at once; a silent
			// service costs the caller one timeout, never two. The bounds
			// are the timeouts, not margins a loaded machine can outrun.
			silence := msg.at.Sub(start)
			switch {
			case c.url == "slow" && silence < timeout:
				t.Fatalf("the message started %v after the call, before the %v timeout", silence, timeout)
			case c.url == "slow" && silence >= 2*timeout:
				t.Fatalf("the message started %v after the call, after two %v timeouts", silence, timeout)
			case c.url != "slow" && silence >= timeout:
				t.Fatalf("the message started %v after the call, as if the %v timeout had passed", silence, timeout)
			}
			want := Target{Kind: TargetExtension, Endpoint: "pbx", Destination: "1000", Timeout: 30 * time.Second}
			if len(connects) != 1 || connects[0] != want || len(hangups) != 0 {
				t.Fatalf("connects %+v, hangups %v", connects, hangups)
			}
			if sum.Outcome != OutcomeFallback || !strings.Contains(sum.Fallback, c.cause) {
				t.Fatalf("outcome %s, fallback %q; want the cause to say %q", sum.Outcome, sum.Fallback, c.cause)
			}
		})
	}
}

// A failure in the answer to the digits falls back as well, after the
// caller heard the first flow.
func TestDigitsAnswerFailureFallsBack(t *testing.T) {
	svc := newService(t, flows(`{"callflow":[{"action":"sayAndCapture","params":{"promptMessage":"Press one"}}]}`, `{"callflow":`))
	call := newFakeCall(prompt.Rate8k)
	call.onPlay = func(n int, _ prompt.Audio) {
		if n == 0 {
			go func() { call.digits <- '1' }()
		}
	}
	sum := run(t, newEngine(t, svc, nil), call)
	if sum.Outcome != OutcomeFallback || !strings.Contains(sum.Fallback, "JSON cut short") || len(sum.Captures) != 1 {
		t.Fatalf("%+v", sum)
	}
}

// When the fallback extension cannot be reached either, wagate hangs up:
// the call is never left open and silent.
func TestFallbackFailureHangsUp(t *testing.T) {
	svc := newService(t, func(Request, int) (int, string) { return 503, "" })
	call := newFakeCall(prompt.Rate8k)
	call.connectErr = func(Target) error { return errors.New("480 Temporarily Unavailable") }
	sum := run(t, newEngine(t, svc, nil), call)
	_, connects, hangups := call.snapshot()
	if len(connects) != 1 || len(hangups) != 1 || sum.Outcome != OutcomeFailed {
		t.Fatalf("connects %v, hangups %v, outcome %s", connects, hangups, sum.Outcome)
	}
}

// With no fallback route and no message, a failure hangs up at once.
func TestNoFallbackHangsUp(t *testing.T) {
	svc := newService(t, func(Request, int) (int, string) { return 200, "{}" })
	call := newFakeCall(prompt.Rate8k)
	sum := run(t, newEngine(t, svc, func(o *Options) { o.Fallback = Target{}; o.Message = "" }), call)
	plays, connects, hangups := call.snapshot()
	if len(plays) != 0 || len(connects) != 0 || len(hangups) != 1 || sum.Outcome != OutcomeFailed {
		t.Fatalf("plays %d, connects %v, hangups %v, outcome %s", len(plays), connects, hangups, sum.Outcome)
	}
}

// A prompt that takes longer than the timeout to render is a failure too.
// The slow prompt is never ready, so only the timeout can end its wait.
type slowPrompts struct{ Prompts }

func (s slowPrompts) Speech(ctx context.Context, sp prompt.Speech, rate int) (prompt.Audio, error) {
	if sp.Text == "slow" {
		<-ctx.Done()
		return prompt.Audio{}, ctx.Err()
	}
	return s.Prompts.Speech(ctx, sp, rate)
}

func TestSlowPromptFallsBack(t *testing.T) {
	const timeout = time.Second
	svc := newService(t, flows(`{"callflow":[{"action":"say","params":{"text":"slow"}}]}`))
	call := newFakeCall(prompt.Rate8k)
	e := newEngine(t, svc, func(o *Options) { o.Prompts = slowPrompts{library(t)}; o.Timeout = timeout })
	sum := run(t, e, call)
	if sum.Outcome != OutcomeFallback || !strings.Contains(sum.Fallback, "prompt not ready within 1s") || len(sum.Actions) != 1 {
		t.Fatalf("%+v", sum)
	}
	// The say waited one timeout for its prompt: not less, not two.
	if d := time.Duration(sum.Actions[0].DurationMs) * time.Millisecond; d < timeout || d >= 2*timeout {
		t.Fatalf("the say waited %v for its prompt; the timeout is %v", d, timeout)
	}
}

// The signature a service checks is the events scheme: a receiver with
// the wrong secret, or a changed body, fails to verify.
func TestSignatureVerifiable(t *testing.T) {
	var header string
	var body []byte
	svc := newService(t, flows(`{"callflow":[{"action":"hangup"}]}`))
	inner := svc.Config.Handler
	svc.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		header = r.Header.Get(SignatureHeader)
		body = mustRead(r)
		r.Body = readCloser(body)
		inner.ServeHTTP(w, r)
	})
	run(t, newEngine(t, svc, nil), newFakeCall(prompt.Rate8k))
	now := time.Now()
	if err := events.VerifySignature([]byte(testSecret), header, body, now, time.Minute); err != nil {
		t.Fatalf("right secret: %v", err)
	}
	if err := events.VerifySignature([]byte("wrong"), header, body, now, time.Minute); !errors.Is(err, events.ErrSignatureMismatch) {
		t.Fatalf("wrong secret: %v", err)
	}
	changed := []byte(strings.Replace(string(body), "+16505551234", "+16505550000", 1))
	if err := events.VerifySignature([]byte(testSecret), header, changed, now, time.Minute); !errors.Is(err, events.ErrSignatureMismatch) {
		t.Fatalf("changed body: %v", err)
	}
	if !strings.HasPrefix(header, fmt.Sprintf("t=%d,v1=", now.Unix())) && !strings.HasPrefix(header, fmt.Sprintf("t=%d,v1=", now.Unix()-1)) {
		t.Fatalf("header %q", header)
	}
}

// A service that closes a kept-alive connection just as wagate sends the
// next request on it (a Node.js service closes idle connections after
// 5 s, a load balancer after its idle timeout) has not read it: the
// request is sent again on a new connection rather than taken as the
// service failing, and the caller stays in the flow.
func TestIdleConnectionClosedByServiceIsRetried(t *testing.T) {
	answers := []string{
		`{"clientActionId":"menu","callflow":[{"action":"sayAndCapture","params":{"promptMessage":"Press one"}}]}`,
		`{"clientActionId":"after","callflow":[{"action":"hangup"}]}`,
	}
	svc := staleconn.Start(t, func(n int) []byte {
		body := "{}"
		if n < len(answers) {
			body = answers[n]
		}
		return fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	})
	call := newFakeCall(prompt.Rate8k)
	call.onPlay = func(n int, _ prompt.Audio) {
		if n == 0 {
			go func() { call.digits <- '1' }()
		}
	}
	e := newEngine(t, newService(t, nil), func(o *Options) { o.URL = "http://" + svc.Addr + "/flow" })
	sum := run(t, e, call)
	served, dropped, keys := svc.Answered(), svc.Dropped(), svc.Keys()
	if sum.Outcome != OutcomeHangup || sum.Fallback != "" || sum.Requests != 2 {
		t.Fatalf("outcome %s, fallback %q, %d requests (%d served, %d dropped on a reused connection); want the digits request sent again and the next flow run",
			sum.Outcome, sum.Fallback, sum.Requests, served, dropped)
	}
	if dropped == 0 {
		t.Fatal("no request came on a kept-alive connection: the test tested nothing")
	}
	// start, digits (dropped), digits again, summary (dropped), summary.
	want := []string{call.info.CallID + "-start-1", call.info.CallID + "-digits-2", call.info.CallID + "-digits-2"}
	if len(keys) < 3 || !slices.Equal(keys[:3], want) {
		t.Fatalf("Idempotency-Key of the requests %q, want %q first: a request sent again keeps its key", keys, want)
	}
}

// A service whose server moves the URL with 301 or 302 (http to https, a
// missing trailing slash) gets the request again as it was — a signed
// POST with its body — at the new place, as after 307 and 308: not a GET
// without the request (what Go's client, like browsers, does by
// default), which the service cannot answer and whose signature does
// not match.
func TestMovedServiceGetsThePOST(t *testing.T) {
	for _, code := range []int{http.StatusMovedPermanently, http.StatusFound} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			svc := newService(t, flows(`{"callflow":[{"action":"hangup"}]}`))
			inner := svc.Config.Handler
			var methods []string
			svc.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				methods = append(methods, r.Method+" "+r.URL.Path)
				switch {
				case r.URL.Path == "/old":
					http.Redirect(w, r, "/flow", code)
				case r.Method != http.MethodPost:
					http.Error(w, "POST only", http.StatusMethodNotAllowed)
				default:
					inner.ServeHTTP(w, r)
				}
			})
			e := newEngine(t, svc, func(o *Options) { o.URL = svc.URL + "/old" })
			sum := run(t, e, newFakeCall(prompt.Rate8k))
			if sum.Outcome != OutcomeHangup || sum.Fallback != "" {
				t.Fatalf("outcome %s, fallback %q, requests %v; want the flow of the service at its new place", sum.Outcome, sum.Fallback, methods)
			}
			if reqs := svc.got(); len(reqs) != 1 || reqs[0].Event != EventStart {
				t.Fatalf("the service got %+v at its new place, want the start request", reqs)
			}
		})
	}
}
