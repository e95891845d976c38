package prompt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// HTTPTTS speaks through a business's own text-to-speech service: one POST
// per text with a JSON body
//
//	{"text": "...", "voice": "en-US", "speed": 1.0, "sampleRate": 8000}
//
// answered with a WAV file (any rate and channels ParseWAV takes; it is
// resampled to the rate asked for).
type HTTPTTS struct {
	url      string
	client   *http.Client
	timeout  time.Duration
	maxBytes int64
	header   http.Header
}

// HTTPTTSOptions configures an HTTPTTS.
type HTTPTTSOptions struct {
	// URL receives the POSTs (http or https).
	URL string
	// Header is added to every request (an Authorization, for example).
	Header http.Header
	// Timeout bounds one render, answer included (default 10s).
	Timeout time.Duration
	// MaxBytes bounds the WAV answer (default 10 MB, about 5 minutes at
	// 16 kHz 16-bit stereo).
	MaxBytes int64
	// Client carries the requests (default: a new one).
	Client *http.Client
}

// NewHTTPTTS checks o and returns the engine.
func NewHTTPTTS(o HTTPTTSOptions) (*HTTPTTS, error) {
	if _, err := CheckURL(o.URL); err != nil {
		return nil, err
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 10 << 20
	}
	return &HTTPTTS{url: o.URL, client: SafeClient(o.Client), timeout: o.Timeout, maxBytes: o.MaxBytes, header: o.Header.Clone()}, nil
}

// Name is "http" with the service's URL.
func (h *HTTPTTS) Name() string { return "http/" + h.url }

type httpTTSRequest struct {
	Text       string  `json:"text"`
	Voice      string  `json:"voice"`
	Speed      float64 `json:"speed"`
	SampleRate int     `json:"sampleRate"`
}

// Render POSTs s and decodes the WAV answer.
func (h *HTTPTTS) Render(ctx context.Context, s Speech, rate int) (Audio, error) {
	s, err := s.normalize()
	if err != nil {
		return Audio{}, err
	}
	if !validRate(rate) {
		return Audio{}, fmt.Errorf("prompt: rate %d (want %d or %d)", rate, Rate8k, Rate16k)
	}
	body, _ := json.Marshal(httpTTSRequest{Text: s.Text, Voice: s.Voice, Speed: s.Speed, SampleRate: rate})
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return Audio{}, fmt.Errorf("prompt: tts: %w", err)
	}
	for k, v := range h.header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "audio/wav")
	req.Header.Set("User-Agent", "wagate-prompt")
	// A render is idempotent, and saying so lets the client send it again
	// on a new connection when the service closes a kept-alive one as the
	// request comes (an idle timeout racing it), instead of failing the
	// render and sending the caller to the call flow's fallback.
	sum := sha256.Sum256(body)
	req.Header.Set("Idempotency-Key", hex.EncodeToString(sum[:16]))
	resp, err := h.client.Do(req)
	if err != nil {
		return Audio{}, fmt.Errorf("prompt: tts %s: %w", h.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return Audio{}, fmt.Errorf("prompt: tts %s: %s", h.url, resp.Status)
	}
	b, err := readBody(resp, h.maxBytes)
	if err != nil {
		return Audio{}, fmt.Errorf("prompt: tts %s: %w", h.url, err)
	}
	a, err := ParseWAV(b)
	if err != nil {
		return Audio{}, fmt.Errorf("prompt: tts %s answered: %w", h.url, err)
	}
	return Audio{Rate: rate, Samples: Resample(a.Samples, a.Rate, rate)}, nil
}
