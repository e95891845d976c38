package callflow

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/prompt"
)

func TestStartRequestDescribesTheCall(t *testing.T) {
	svc := newService(t, flows(`{"clientActionId":"abc-1","callflow":[{"action":"hangup"}]}`))
	e := newEngine(t, svc, nil)
	call := newFakeCall(prompt.Rate8k)
	sum := run(t, e, call)
	reqs := svc.got()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	r := reqs[0]
	want := Request{Event: EventStart, CallID: call.info.CallID, WACallID: call.info.WACallID, Direction: "UIC",
		BusinessNumber: "+15550100001", PhoneNumberID: "100000000000001", User: "+16505551234",
		CallerName: "Ana", Payload: "order-42", PayloadSource: "cta"}
	r.Timestamp = time.Time{}
	if r != want {
		t.Fatalf("start request\n got %+v\nwant %+v", r, want)
	}
	if _, _, h := call.snapshot(); len(h) != 1 || sum.Outcome != OutcomeHangup || sum.ClientActionID != "abc-1" {
		t.Fatalf("hangups %v, summary %+v", h, sum)
	}
}

func TestSayIsHeard(t *testing.T) {
	for _, rate := range []int{prompt.Rate8k, prompt.Rate16k} {
		t.Run(fmt.Sprint(rate), func(t *testing.T) {
			svc := newService(t, flows(`{"callflow":[
				{"action":"say","params":{"text":"Welcome to wagate. Your call matters to us.","repetition":2,"voiceProfile":"en-US"}}]}`))
			call := newFakeCall(rate)
			sum := run(t, newEngine(t, svc, nil), call)
			plays, _, hangups := call.snapshot()
			if len(plays) != 2 {
				t.Fatalf("%d plays, want 2 (repetition 2)", len(plays))
			}
			for _, p := range plays {
				// Seven words at 175 words/min: about 2.5 s.
				if d := p.audio.Duration(); d < 1500*time.Millisecond || d > 5*time.Second {
					t.Fatalf("greeting lasts %v", d)
				}
				if f := speechFrames(p.audio); f < 40 {
					t.Fatalf("%d frames of speech energy", f)
				}
			}
			if len(hangups) != 1 || sum.Outcome != OutcomeFlowEnded || sum.Actions[0].Result != "done" {
				t.Fatalf("hangups %v, summary %+v", hangups, sum)
			}
		})
	}
}

// A slow speed makes the same text last longer.
func TestSaySpeed(t *testing.T) {
	svc := newService(t, flows(`{"callflow":[
		{"action":"say","params":{"text":"Press one for sales","speed":0.5}},
		{"action":"say","params":{"text":"Press one for sales","speed":2.0}}]}`))
	call := newFakeCall(prompt.Rate8k)
	run(t, newEngine(t, svc, nil), call)
	plays, _, _ := call.snapshot()
	if len(plays) != 2 || plays[0].audio.Duration() < 2*plays[1].audio.Duration() {
		t.Fatalf("speed 0.5 and 2.0 give %v and %v", plays[0].audio.Duration(), plays[1].audio.Duration())
	}
}

// filesServer serves a 1 kHz WAV (44.1 kHz stereo) and a 440 Hz MP3.
func filesServer(t *testing.T) *httptest.Server {
	t.Helper()
	mp3, err := os.ReadFile("testdata/tone440.mp3")
	if err != nil {
		t.Fatal(err)
	}
	tone := prompt.Tone(44100, 1000, 0.5, time.Second)
	stereo := make([]int16, 0, 2*len(tone.Samples))
	for _, v := range tone.Samples {
		stereo = append(stereo, v, v)
	}
	wav := prompt.EncodeWAV(prompt.Audio{Rate: 44100, Samples: tone.Samples})
	mux := http.NewServeMux()
	mux.HandleFunc("/tone.wav", func(w http.ResponseWriter, r *http.Request) { w.Write(wav) })
	mux.HandleFunc("/tone.mp3", func(w http.ResponseWriter, r *http.Request) { w.Write(mp3) })
	mux.HandleFunc("/page.wav", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("this file moved to another place")) })
	mux.HandleFunc("/huge.wav", func(w http.ResponseWriter, r *http.Request) {
		w.Write(wav[:44])
		for range 200 { // 6.4 MB
			if _, err := w.Write(make([]byte, 32<<10)); err != nil {
				return
			}
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestPlayFileArrivesAtItsFrequency(t *testing.T) {
	files := filesServer(t)
	for _, rate := range []int{prompt.Rate8k, prompt.Rate16k} {
		t.Run(fmt.Sprint(rate), func(t *testing.T) {
			svc := newService(t, flows(fmt.Sprintf(`{"callflow":[
				{"action":"playFile","params":{"fileUrl":"%s/tone.wav"}},
				{"action":"playFile","params":{"fileUrl":"%s/tone.mp3","repetition":2}}]}`, files.URL, files.URL)))
			call := newFakeCall(rate)
			run(t, newEngine(t, svc, nil), call)
			plays, _, _ := call.snapshot()
			if len(plays) != 3 {
				t.Fatalf("%d plays, want 3", len(plays))
			}
			for i, want := range []float64{1000, 440, 440} {
				a := plays[i].audio
				mid := a.Samples[len(a.Samples)/10 : len(a.Samples)*9/10]
				if p := goertzel(mid, rate, want); p < 0.9 {
					t.Errorf("play %d: power share at %g Hz %.3f", i, want, p)
				}
				if other := goertzel(mid, rate, 2*want+130); other > 0.05 {
					t.Errorf("play %d: power share away from %g Hz %.3f", i, want, other)
				}
			}
		})
	}
}

// runCapture runs a flow with one sayAndCapture, the caller pressing keys
// as press says when the n-th prompt starts, and a next flow that says
// "thank you" and hangs up. The prompts play in real time: at 10 times
// real time the first key, 30 ms in, raced the end of a 250 ms prompt,
// and a machine that stalled the test process that long made a barge-in
// look like a prompt played to its end.
func runCapture(t *testing.T, capture string, press map[int]string) (*service, *fakeCall, *Summary) {
	t.Helper()
	svc := newService(t, flows(
		`{"clientActionId":"menu","callflow":[{"action":"sayAndCapture","params":`+capture+`}]}`,
		`{"clientActionId":"after","callflow":[{"action":"say","params":{"text":"Thank you"}},{"action":"hangup"}]}`))
	call := newFakeCall(prompt.Rate8k)
	call.pace = 1
	call.onPlay = func(n int, a prompt.Audio) {
		if keys, ok := press[n]; ok {
			go func() {
				time.Sleep(30 * time.Millisecond)
				for _, k := range keys {
					call.digits <- k
					time.Sleep(20 * time.Millisecond)
				}
			}()
		}
	}
	sum := run(t, newEngine(t, svc, nil), call)
	return svc, call, sum
}

func TestSayAndCapture(t *testing.T) {
	t.Run("success, barge-in", func(t *testing.T) {
		svc, call, sum := runCapture(t, `{"promptMessage":"Please enter your four digit order number","minDigits":4,"maxDigits":4,"successMessage":"Got it"}`,
			map[int]string{0: "1234"})
		reqs := svc.got()
		if len(reqs) < 2 || reqs[1].Event != EventDigits || *reqs[1].Capture != (CaptureResult{Digits: "1234", Status: CaptureSuccess, Tries: 1}) {
			t.Fatalf("requests %+v", reqs)
		}
		if reqs[1].ClientActionID != "menu" {
			t.Fatalf("digits request echoes clientActionId %q", reqs[1].ClientActionID)
		}
		plays, _, hangups := call.snapshot()
		// prompt (cut short by the first key), "Got it", "Thank you".
		if len(plays) != 3 || !plays[0].interrupted || plays[1].interrupted {
			t.Fatalf("%d plays: %+v", len(plays), plays)
		}
		if len(hangups) != 1 || hangups[0] != "callflow: hangup action" || sum.Outcome != OutcomeHangup || sum.ClientActionID != "after" {
			t.Fatalf("the next flow did not run: hangups %v, %+v", hangups, sum)
		}
		if len(sum.Captures) != 1 || sum.Captures[0].Digits != "1234" {
			t.Fatalf("summary captures %+v", sum.Captures)
		}
	})
	t.Run("too few, then retry", func(t *testing.T) {
		svc, call, _ := runCapture(t, `{"promptMessage":"Enter your PIN then hash","failureMessage":"That is too short","minDigits":4,"maxDigits":8,"completeOnHash":true,"noOfTries":3}`,
			map[int]string{0: "12#", 2: "5678#"}) // plays: prompt, failure, prompt, …
		reqs := svc.got()
		if len(reqs) < 2 || *reqs[1].Capture != (CaptureResult{Digits: "5678", Status: CaptureSuccess, Tries: 2}) {
			t.Fatalf("digits request %+v", reqs[len(reqs)-1].Capture)
		}
		plays, _, _ := call.snapshot()
		if len(plays) != 4 { // prompt, failure, prompt, thank you
			t.Fatalf("%d plays, want 4", len(plays))
		}
	})
	t.Run("timeout", func(t *testing.T) {
		start := time.Now()
		svc, _, _ := runCapture(t, `{"promptMessage":"Enter a digit","minDigits":1,"maxDigits":1,"digitTimeout":1000,"noOfTries":1}`, nil)
		reqs := svc.got()
		if len(reqs) < 2 || *reqs[1].Capture != (CaptureResult{Digits: "", Status: CaptureTimeout, Tries: 1}) {
			t.Fatalf("digits request %+v", reqs)
		}
		if d := time.Since(start); d < time.Second {
			t.Fatalf("gave up after %v, before the 1 s digit timeout", d)
		}
	})
	t.Run("hash completes", func(t *testing.T) {
		svc, _, _ := runCapture(t, `{"promptMessage":"Enter your account number and hash","minDigits":1,"maxDigits":10,"completeOnHash":true,"digitTimeout":10000}`,
			map[int]string{0: "42#"})
		reqs := svc.got()
		if len(reqs) < 2 || *reqs[1].Capture != (CaptureResult{Digits: "42", Status: CaptureSuccess, Tries: 1}) {
			t.Fatalf("digits request %+v", reqs)
		}
	})
	t.Run("hash is a digit without completeOnHash", func(t *testing.T) {
		svc, _, _ := runCapture(t, `{"promptMessage":"Enter three keys","minDigits":3,"maxDigits":3}`, map[int]string{0: "1#2"})
		if reqs := svc.got(); len(reqs) < 2 || reqs[1].Capture.Digits != "1#2" {
			t.Fatalf("digits request %+v", reqs)
		}
	})
}

// A caller asked for four digits types "1234#"; the '#' comes as the
// service's next question (a PIN ended by '#') starts, and is the end of
// the number, not the PIN's empty answer: the PIN typed after it is.
func TestHashAfterFullNumberIsNotTheNextAnswer(t *testing.T) {
	svc := newService(t, flows(
		`{"clientActionId":"account","callflow":[{"action":"sayAndCapture","params":{"promptMessage":"Enter your account number","minDigits":4,"maxDigits":4}}]}`,
		`{"clientActionId":"pin","callflow":[{"action":"sayAndCapture","params":{"promptMessage":"Enter your PIN then hash","minDigits":4,"maxDigits":8,"completeOnHash":true,"digitTimeout":3000}}]}`,
		`{"callflow":[{"action":"hangup"}]}`))
	call := newFakeCall(prompt.Rate8k)
	call.pace = 1
	call.onPlay = func(n int, _ prompt.Audio) {
		switch n {
		case 0:
			for _, k := range "1234" {
				call.digits <- k
			}
		case 1: // the PIN question starts as the '#' after 1234 arrives
			call.digits <- '#'
			go func() {
				time.Sleep(300 * time.Millisecond)
				for _, k := range "9876#" {
					call.digits <- k
				}
			}()
		}
	}
	run(t, newEngine(t, svc, nil), call)
	reqs := svc.got()
	if len(reqs) < 3 || reqs[2].Capture == nil || *reqs[2].Capture != (CaptureResult{Digits: "9876", Status: CaptureSuccess, Tries: 1}) {
		var got []CaptureResult
		for _, r := range reqs {
			if r.Capture != nil {
				got = append(got, *r.Capture)
			}
		}
		t.Fatalf("captures %+v; want the PIN 9876, not the # typed after the account number", got)
	}
}

// '#' ends the input at once: the digits request comes long before the
// 10 s digit timeout would have ended it.
func TestHashDoesNotWaitForTimeout(t *testing.T) {
	start := time.Now()
	svc, _, _ := runCapture(t, `{"promptMessage":"Enter and hash","minDigits":1,"maxDigits":10,"completeOnHash":true,"digitTimeout":10000,"overallTimeout":20000}`,
		map[int]string{0: "7#"})
	if d := time.Since(start); d > 8*time.Second {
		t.Fatalf("took %v", d)
	}
	if reqs := svc.got(); len(reqs) < 2 || reqs[1].Capture.Digits != "7" {
		t.Fatalf("%+v", reqs)
	}
}

func TestConnect(t *testing.T) {
	svc := newService(t, flows(`{"callflow":[
		{"action":"makeCall","params":{"source":"+15550100001","destination":"1001","callRecording":true}},
		{"action":"say","params":{"text":"never said"}}]}`))
	call := newFakeCall(prompt.Rate8k)
	sum := run(t, newEngine(t, svc, nil), call)
	plays, connects, hangups := call.snapshot()
	want := Target{Kind: TargetExtension, Destination: "1001", Record: true, Timeout: 30 * time.Second}
	if len(connects) != 1 || connects[0] != want {
		t.Fatalf("connects %+v, want %+v", connects, want)
	}
	if len(plays) != 0 || len(hangups) != 0 || sum.Outcome != OutcomeConnected {
		t.Fatalf("after connecting: %d plays, hangups %v, outcome %s", len(plays), hangups, sum.Outcome)
	}
}

// A connect that fails lets the flow go on: "all agents are busy".
func TestConnectFailedFlowGoesOn(t *testing.T) {
	svc := newService(t, flows(`{"callflow":[
		{"action":"connect","params":{"destination":"sales","destinationType":"huntList","timeout":5000}},
		{"action":"say","params":{"text":"All our agents are busy"}},
		{"action":"hangup"}]}`))
	call := newFakeCall(prompt.Rate8k)
	call.connectErr = func(Target) error { return fmt.Errorf("486 Busy Here") }
	sum := run(t, newEngine(t, svc, nil), call)
	plays, connects, hangups := call.snapshot()
	if len(connects) != 1 || connects[0].Kind != TargetHuntList || connects[0].Timeout != 5*time.Second {
		t.Fatalf("connects %+v", connects)
	}
	if len(plays) != 1 || len(hangups) != 1 || sum.Outcome != OutcomeHangup || sum.Connects[0].Error != "486 Busy Here" {
		t.Fatalf("plays %d, hangups %v, summary %+v", len(plays), hangups, sum)
	}
}

type recordedEvents struct {
	got []Recording
}

func (r *recordedEvents) Recorded(_ Info, rec Recording) { r.got = append(r.got, rec) }

func TestRecordVoicemail(t *testing.T) {
	svc := newService(t, flows(`{"callflow":[
		{"action":"say","params":{"text":"Leave a message after the tone"}},
		{"action":"record","params":{"maxDuration":30000,"silenceTimeout":3000}},
		{"action":"say","params":{"text":"Thank you, goodbye"}},
		{"action":"hangup"}]}`))
	call := newFakeCall(prompt.Rate8k)
	call.record = func(o RecordOptions) (Recording, error) {
		return Recording{ID: "2026/12/02/x", File: "2026/12/02/x.wav", Duration: 4 * time.Second, Bytes: 64044, StoppedBy: "key"}, nil
	}
	ev := &recordedEvents{}
	sum := run(t, newEngine(t, svc, func(o *Options) { o.Events = ev }), call)
	plays, _, _ := call.snapshot()
	if len(call.records) != 1 || call.records[0] != (RecordOptions{MaxDuration: 30 * time.Second, SilenceTimeout: 3 * time.Second, FinishOnKey: '#'}) {
		t.Fatalf("record options %+v", call.records)
	}
	// greeting, beep, goodbye
	if len(plays) != 3 || goertzel(plays[1].audio.Samples, prompt.Rate8k, 1000) < 0.9 {
		t.Fatalf("%d plays; the second is not the 1 kHz beep", len(plays))
	}
	if len(ev.got) != 1 || ev.got[0].ID != "2026/12/02/x" || len(sum.Recordings) != 1 || sum.Recordings[0].DurationMs != 4000 {
		t.Fatalf("events %+v, summary %+v", ev.got, sum.Recordings)
	}
}

// Keys pressed before a recording starts — a "#" typed after the digits
// of an earlier capture, a key during the beep — are not the key that
// ends it: Record finds none waiting.
func TestRecordIgnoresKeysPressedBefore(t *testing.T) {
	svc := newService(t, flows(`{"callflow":[
		{"action":"record","params":{"maxDuration":30000}},
		{"action":"hangup"}]}`))
	call := newFakeCall(prompt.Rate8k)
	call.onPlay = func(n int, _ prompt.Audio) {
		if n == 0 { // the beep
			call.digits <- '#'
		}
	}
	waiting := -1
	call.record = func(RecordOptions) (Recording, error) {
		waiting = len(call.digits)
		return Recording{ID: "x", File: "x.wav", StoppedBy: "maxDuration"}, nil
	}
	call.digits <- '4'
	call.digits <- '#'
	run(t, newEngine(t, svc, nil), call)
	if waiting != 0 {
		t.Fatalf("%d keys pressed before the recording were waiting for it; a # among them ends the message at once", waiting)
	}
}

// A recording that fails is reported and the flow goes on.
func TestRecordFailureFlowGoesOn(t *testing.T) {
	svc := newService(t, flows(`{"callflow":[
		{"action":"record","params":{"beep":false,"finishOnKey":""}},
		{"action":"hangup"}]}`))
	call := newFakeCall(prompt.Rate8k)
	sum := run(t, newEngine(t, svc, nil), call)
	plays, _, hangups := call.snapshot()
	if len(plays) != 0 || call.records[0].FinishOnKey != 0 || len(hangups) != 1 || sum.Outcome != OutcomeHangup ||
		sum.Actions[0].Result != "failed" {
		t.Fatalf("plays %d, records %+v, hangups %v, summary %+v", len(plays), call.records, hangups, sum)
	}
}

func TestCallerHangsUpDuringPrompt(t *testing.T) {
	svc := newService(t, flows(`{"callflow":[{"action":"say","params":{"text":"This is a long announcement that the caller will not wait for, however important it may be."}}]}`))
	call := newFakeCall(prompt.Rate8k)
	ctx, cancel := context.WithCancel(context.Background())
	call.onPlay = func(int, prompt.Audio) { time.AfterFunc(50*time.Millisecond, cancel) }
	sum := newEngine(t, svc, nil).Run(ctx, call)
	_, connects, _ := call.snapshot()
	if sum.Outcome != OutcomeCallerHungUp || len(connects) != 0 || sum.Fallback != "" {
		t.Fatalf("summary %+v, connects %v", sum, connects)
	}
}

func TestSummaryPosted(t *testing.T) {
	svc := newService(t, flows(
		`{"clientActionId":"m","callflow":[{"action":"say","params":{"text":"Hi"}},{"action":"sayAndCapture","params":{"promptMessage":"Press a key"}}]}`,
		`{"callflow":[{"action":"hangup"}]}`))
	call := newFakeCall(prompt.Rate8k)
	call.onPlay = func(n int, _ prompt.Audio) {
		if n == 1 {
			go func() { call.digits <- '3' }()
		}
	}
	e := newEngine(t, svc, nil)
	sum := run(t, e, call)
	sum.CDR = map[string]any{"talk_ms": 1234}
	if err := e.PostSummary(context.Background(), sum); err != nil {
		t.Fatal(err)
	}
	svc.mu.Lock()
	last := svc.raw[len(svc.raw)-1]
	svc.mu.Unlock()
	if last.event != EventSummary {
		t.Fatalf("last request is %q", last.event)
	}
	for _, want := range []string{`"event":"summary"`, `"outcome":"hangup"`, `"action":"sayAndCapture"`, `"digits":"3"`,
		`"requests":2`, `"cdr":{"talk_ms":1234}`, `"callId":"5f0c9a1e2b7d4c3a8e6f1b2d"`} {
		if !strings.Contains(string(last.body), want) {
			t.Errorf("summary lacks %s:\n%s", want, last.body)
		}
	}
}

// The template values are URL-encoded wherever they go: a caller id that
// looks like more parameters stays one value.
func TestTemplates(t *testing.T) {
	svc := newService(t, flows(
		`{"callflow":[{"action":"sayAndCapture","params":{"promptMessage":"Press a key"}}]}`,
		`{"callflow":[{"action":"hangup"}]}`))
	call := newFakeCall(prompt.Rate8k)
	call.info.User = ""
	call.info.UserID = "US.x&admin=1#frag"
	call.onPlay = func(n int, _ prompt.Audio) {
		if n == 0 {
			go func() { call.digits <- '9' }()
		}
	}
	e := newEngine(t, svc, func(o *Options) {
		o.URL = svc.URL + "/ivr?from={caller}&key={keypress}&call={callId}&to={businessNumber}"
		o.Body = "from={caller}&key={keypress}"
	})
	run(t, e, call)
	svc.mu.Lock()
	raw := append([]recorded(nil), svc.raw...)
	svc.mu.Unlock()
	if len(raw) != 2 {
		t.Fatalf("%d requests", len(raw))
	}
	for i, wantKey := range []string{"", "9"} {
		r := raw[i]
		u, _ := http.NewRequest("GET", r.url, nil)
		q := u.URL.Query()
		if q.Get("from") != "US.x&admin=1#frag" || q.Has("admin") || q.Get("key") != wantKey ||
			q.Get("to") != "+15550100001" || q.Get("call") != call.info.CallID {
			t.Errorf("request %d URL %s decodes to %v", i, r.url, q)
		}
		if r.contentType != "application/x-www-form-urlencoded" || string(r.body) != "from=US.x%26admin%3D1%23frag&key="+wantKey {
			t.Errorf("request %d body %q (%s)", i, r.body, r.contentType)
		}
	}
}

func TestGETMethod(t *testing.T) {
	svc := newService(t, flows(`{"callflow":[{"action":"hangup"}]}`))
	e := newEngine(t, svc, func(o *Options) { o.Method = http.MethodGet; o.URL = svc.URL + "/flow.json?c={caller}" })
	run(t, e, newFakeCall(prompt.Rate8k))
	svc.mu.Lock()
	defer svc.mu.Unlock()
	if r := svc.raw[0]; r.method != "GET" || len(r.body) != 0 || !strings.HasSuffix(r.url, "c=%2B16505551234") {
		t.Fatalf("%+v", r)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	base := Options{URL: "https://ivr.example.com/", Prompts: library(t)}
	for name, mod := range map[string]func(*Options){
		"no prompts":     func(o *Options) { o.Prompts = nil },
		"ftp":            func(o *Options) { o.URL = "ftp://ivr.example.com/" },
		"value in host":  func(o *Options) { o.URL = "https://{caller}.example.com/" },
		"unknown value":  func(o *Options) { o.URL = "https://ivr.example.com/?x={digits}" },
		"body with GET":  func(o *Options) { o.Method = "GET"; o.Body = "a=b" },
		"method":         func(o *Options) { o.Method = "PUT" },
		"body bad value": func(o *Options) { o.Body = "a={nope}" },
	} {
		o := base
		mod(&o)
		if _, err := New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// timedPrompts notes when each text finished rendering.
type timedPrompts struct {
	Prompts
	mu   sync.Mutex
	done map[string]time.Time
}

func (p *timedPrompts) Speech(ctx context.Context, s prompt.Speech, rate int) (prompt.Audio, error) {
	a, err := p.Prompts.Speech(ctx, s, rate)
	p.mu.Lock()
	p.done[s.Text] = time.Now()
	p.mu.Unlock()
	return a, err
}

// Prompts are rendered ahead of their turn: each one is ready before the
// one before it has finished playing, so the player never waits between
// them. The first play does not end until the later prompts are rendered
// (or 10 s pass): rendering ahead gets them ready during it, rendering on
// each prompt's turn would not, whatever the machine's load. How much
// ahead they were ready is logged, not asserted.
func TestPromptsReadyBeforeTheirTurn(t *testing.T) {
	texts := []string{}
	for i := range 3 {
		texts = append(texts, fmt.Sprintf("Part %d, run %d.", i+1, time.Now().UnixNano()%100))
	}
	svc := newService(t, flows(fmt.Sprintf(`{"callflow":[
		{"action":"say","params":{"text":%q}},{"action":"say","params":{"text":%q}},{"action":"say","params":{"text":%q}}]}`,
		texts[0], texts[1], texts[2])))
	tp := &timedPrompts{Prompts: library(t), done: map[string]time.Time{}}
	call := newFakeCall(prompt.Rate8k)
	call.pace = 2
	call.onPlay = func(n int, _ prompt.Audio) {
		if n != 0 {
			return
		}
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			tp.mu.Lock()
			_, ok2 := tp.done[texts[1]]
			_, ok3 := tp.done[texts[2]]
			tp.mu.Unlock()
			if ok2 && ok3 {
				return
			}
		}
	}
	run(t, newEngine(t, svc, func(o *Options) { o.Prompts = tp }), call)
	plays, _, _ := call.snapshot()
	if len(plays) != 3 {
		t.Fatalf("%d plays", len(plays))
	}
	for i := 1; i < 3; i++ {
		tp.mu.Lock()
		ready := tp.done[texts[i]]
		tp.mu.Unlock()
		if !ready.Before(plays[i-1].end) {
			t.Errorf("prompt %d was ready %v after prompt %d ended", i+1, ready.Sub(plays[i-1].end), i)
		}
		t.Logf("gap before prompt %d: %v (ready %v before its turn)", i+1, plays[i].at.Sub(plays[i-1].end), plays[i-1].end.Sub(ready))
	}
}
