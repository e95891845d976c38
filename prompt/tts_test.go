package prompt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/internal/staleconn"
)

// speechFrames counts the 20 ms frames of a louder than -45 dBFS: speech,
// not the silence espeak-ng leaves around it.
func speechFrames(a Audio) int {
	n := 0
	for _, f := range a.Frames() {
		if dbfs(f) > -45 {
			n++
		}
	}
	return n
}

func TestEspeakSpeaks(t *testing.T) {
	e := needEspeak(t)
	ctx := context.Background()
	text := "Welcome to wagate. Please hold while we connect your call."
	for _, rate := range []int{Rate8k, Rate16k} {
		a, err := e.Render(ctx, Speech{Text: text}, rate)
		if err != nil {
			t.Fatal(err)
		}
		// About 10 words at 175 words per minute: 3–4 s.
		if a.Rate != rate || a.Duration() < 2*time.Second || a.Duration() > 6*time.Second {
			t.Fatalf("rate %d, %v of audio", a.Rate, a.Duration())
		}
		if sp := speechFrames(a); sp < 50 {
			t.Fatalf("%d frames of speech energy in %v", sp, a.Duration())
		}
	}
}

func TestEspeakSpeedChangesDuration(t *testing.T) {
	e := needEspeak(t)
	ctx := context.Background()
	text := "Your order number is one two three four five."
	slow, err := e.Render(ctx, Speech{Text: text, Speed: 0.5}, Rate8k)
	if err != nil {
		t.Fatal(err)
	}
	fast, err := e.Render(ctx, Speech{Text: text, Speed: 2}, Rate8k)
	if err != nil {
		t.Fatal(err)
	}
	if r := float64(slow.Duration()) / float64(fast.Duration()); r < 2.5 {
		t.Fatalf("speed 0.5 lasts %v, speed 2 %v: ratio %.2f, want about 4", slow.Duration(), fast.Duration(), r)
	}
	if _, err := e.Render(ctx, Speech{Text: text, Speed: 2.5}, Rate8k); err == nil {
		t.Fatal("speed 2.5 accepted")
	}
}

func TestEspeakVoices(t *testing.T) {
	e := needEspeak(t)
	for in, want := range map[string]string{
		"en-US":             "en-us",
		"en-US-JennyNeural": "en-us",
		"pt_BR":             "pt-br",
		"es":                "es",
		"xx-YY":             "en",
		"":                  "en",
	} {
		if got := e.Voice(in); got != want {
			t.Errorf("voice %q maps to %q, want %q", in, got, want)
		}
	}
	a, err := e.Render(context.Background(), Speech{Text: "Bonjour et bienvenue", Voice: "fr-FR"}, Rate8k)
	if err != nil || speechFrames(a) < 10 {
		t.Fatalf("French: %v, %d speech frames", err, speechFrames(a))
	}
}

// A text that looks like command-line options is spoken, not obeyed.
func TestEspeakTextIsNotAnOption(t *testing.T) {
	e := needEspeak(t)
	a, err := e.Render(context.Background(), Speech{Text: "--help -w /tmp/x.wav"}, Rate8k)
	if err != nil || speechFrames(a) < 10 {
		t.Fatalf("%v, %d speech frames", err, speechFrames(a))
	}
}

func TestEspeakStopsWithContext(t *testing.T) {
	e := needEspeak(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Render(ctx, Speech{Text: strings.Repeat("long text ", 300)}, Rate8k); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}

func TestHTTPTTS(t *testing.T) {
	var got httpTTSRequest
	var hdr string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr = r.Header.Get("Authorization")
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		switch got.Text {
		case "fail":
			http.Error(w, "engine down", 503)
		case "html":
			w.Write([]byte("<html>oops</html>"))
		case "huge":
			w.Write(make([]byte, 2<<20))
		default:
			// 22050 Hz stereo, as a cloud TTS might answer.
			w.Header().Set("Content-Type", "audio/wav")
			w.Write(makeWAV(t, wavSpec{code: wavPCM, channels: 2, rate: 22050, bits: 16}, []float64{800}, 22050))
		}
	}))
	defer srv.Close()
	h, err := NewHTTPTTS(HTTPTTSOptions{URL: srv.URL, Header: http.Header{"Authorization": {"Bearer k"}}, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	a, err := h.Render(context.Background(), Speech{Text: "hello", Voice: "en-GB", Speed: 1.5}, Rate16k)
	if err != nil {
		t.Fatal(err)
	}
	if got != (httpTTSRequest{Text: "hello", Voice: "en-GB", Speed: 1.5, SampleRate: 16000}) || hdr != "Bearer k" {
		t.Fatalf("service got %+v, Authorization %q", got, hdr)
	}
	if a.Rate != Rate16k || a.Duration() != time.Second || goertzel(middle(a.Samples), Rate16k, 800) < 0.95 {
		t.Fatalf("answer decoded to %d Hz, %v", a.Rate, a.Duration())
	}
	for text, want := range map[string]string{"fail": "503", "html": "RIFF/WAVE", "huge": "too large"} {
		if _, err := h.Render(context.Background(), Speech{Text: text}, Rate8k); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one saying %q", text, err, want)
		}
	}
	if _, err := NewHTTPTTS(HTTPTTSOptions{URL: "ftp://tts.example.com/"}); !errors.Is(err, ErrScheme) {
		t.Fatalf("ftp URL: %v", err)
	}
}

// A TTS service that closes a kept-alive connection just as the next
// render's POST goes out on it has not read it: the render is asked
// again on a new connection, not failed (a failed render is a caller
// sent to the call flow's fallback).
func TestHTTPTTSIdleConnectionClosedIsRetried(t *testing.T) {
	wav := makeWAV(t, wavSpec{code: wavPCM, channels: 1, rate: 8000, bits: 16}, []float64{800}, 8000)
	svc := staleconn.Start(t, func(int) []byte {
		return append(fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\nContent-Length: %d\r\n\r\n", len(wav)), wav...)
	})
	h, err := NewHTTPTTS(HTTPTTSOptions{URL: "http://" + svc.Addr + "/tts"})
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{"Welcome.", "Please hold."} {
		if _, err := h.Render(context.Background(), Speech{Text: text}, Rate8k); err != nil {
			t.Fatalf("render %q: %v", text, err)
		}
	}
	if svc.Dropped() == 0 {
		t.Fatal("no request came on a kept-alive connection: the test tested nothing")
	}
	if keys := svc.Keys(); len(keys) != 3 || keys[0] == "" || keys[1] != keys[2] || keys[0] == keys[1] {
		t.Fatalf("Idempotency-Key of the requests %q: want one per text, the same when sent again", keys)
	}
}

// TestHTTPTTSMovedServiceGetsThePOST: a text-to-speech service moved by
// 301 or 302 (http to https, a trailing slash) gets the POST with its JSON
// at its new place, as after 307 and 308. Go's client sends a GET without
// the text, which no TTS service can answer: every prompt of every call
// failed and callers went to the call flow's fallback.
func TestHTTPTTSMovedServiceGetsThePOST(t *testing.T) {
	wav := makeWAV(t, wavSpec{code: wavPCM, channels: 1, rate: 8000, bits: 16}, []float64{800}, 8000)
	for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			var mu sync.Mutex
			var got []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var req httpTTSRequest
				json.NewDecoder(r.Body).Decode(&req)
				mu.Lock()
				got = append(got, r.Method+" "+r.URL.Path+" "+req.Text+" "+r.Header.Get("Authorization")+" "+r.Header.Get("Content-Type"))
				mu.Unlock()
				switch {
				case r.URL.Path == "/old":
					http.Redirect(w, r, "/tts/", code)
				case r.Method != http.MethodPost || req.Text == "":
					http.Error(w, "POST a text", http.StatusMethodNotAllowed)
				default:
					w.Write(wav)
				}
			}))
			defer srv.Close()
			h, err := NewHTTPTTS(HTTPTTSOptions{URL: srv.URL + "/old", Header: http.Header{"Authorization": {"Bearer k"}}})
			if err != nil {
				t.Fatal(err)
			}
			_, err = h.Render(context.Background(), Speech{Text: "Welcome."}, Rate8k)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Fatalf("render: %v; the service got %q", err, got)
			}
			if len(got) != 2 || got[1] != "POST /tts/ Welcome. Bearer k application/json" {
				t.Fatalf("the service got %q; want the POST with its text and headers at the new place", got)
			}
		})
	}
}
