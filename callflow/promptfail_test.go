package callflow

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/wagate/wagate/prompt"
)

// syncBuffer is a log sink the engine's goroutines may write to at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestFileFailureToldAsReason: a file that is not played (here, URLs that
// lead into wagate's own network, and a file that is no audio) falls back
// with a stable reason in the summary's action and fallback, never the
// error itself (which names the address); the full error is logged once,
// with the call id.
func TestFileFailureToldAsReason(t *testing.T) {
	files := filesServer(t)
	for _, c := range []struct {
		name, action, url, reason, detail string
	}{
		{"metadata service", "playFile", "http://169.254.169.254/latest/meta-data/", prompt.ReasonDenied, "169.254.169.254 is a link-local address"},
		{"redis on loopback", "playFile", "http://127.0.0.2:6379/", prompt.ReasonDenied, "127.0.0.2 is a loopback address"},
		{"hold music on loopback", "queue", "http://[::1]:9090/v1/status", prompt.ReasonDenied, "::1 is a loopback address"},
		{"not audio", "playFile", files.URL + "/page.wav", prompt.ReasonUnsupported, "neither WAV nor MP3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			params := map[string]any{"fileUrl": c.url}
			if c.action == "queue" {
				params = map[string]any{"destination": "sales", "musicUrl": c.url}
			}
			doc, _ := json.Marshal(map[string]any{"callflow": []any{map[string]any{"action": c.action, "params": params}}})
			svc := newService(t, flows(string(doc)))
			var logs syncBuffer
			e := newEngine(t, svc, func(o *Options) { o.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
			call := newFakeCall(prompt.Rate8k)
			sum := run(t, e, call)
			if sum.Outcome != OutcomeFallback || sum.Fallback != c.reason {
				t.Fatalf("outcome %q, fallback %q; want the fallback with %q", sum.Outcome, sum.Fallback, c.reason)
			}
			if len(sum.Actions) != 1 || sum.Actions[0].Result != "failed" || sum.Actions[0].Error != c.reason {
				t.Fatalf("actions %+v; want one failed with %q", sum.Actions, c.reason)
			}
			if err := e.PostSummary(context.Background(), sum); err != nil {
				t.Fatal(err)
			}
			svc.mu.Lock()
			body := string(svc.raw[len(svc.raw)-1].body)
			svc.mu.Unlock()
			if strings.Contains(body, c.detail) || strings.Contains(body, "prompt:") {
				t.Fatalf("the summary sent to the service tells wagate's error:\n%s", body)
			}
			var full []string
			for line := range strings.SplitSeq(logs.String(), "\n") {
				if strings.Contains(line, c.detail) {
					full = append(full, line)
				}
			}
			if len(full) != 1 || !strings.Contains(full[0], `"call_id":"`+call.info.CallID+`"`) || !strings.Contains(full[0], `"reason":"`+c.reason+`"`) {
				t.Fatalf("want the full error logged once with the call id and reason; lines with it:\n%s\nall logs:\n%s", strings.Join(full, "\n"), logs.String())
			}
		})
	}
}
