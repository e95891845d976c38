package callflow

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/wagate/wagate/events"
	"github.com/wagate/wagate/prompt"
)

// ErrService is wrapped by every failed exchange with the business's
// service: no answer in time, a refused connection, a non-2xx status, an
// oversized body, a redirect away from http(s).
var ErrService = errors.New("callflow: service failed")

// Headers of every request.
const (
	// SignatureHeader carries "t=<unix seconds>,v1=<hex HMAC-SHA256>" over
	// "<t>." + body, exactly as events are signed.
	SignatureHeader = events.SignatureHeader
	// EventHeader names the request's event (start, digits, summary).
	EventHeader = "X-Wagate-Callflow-Event"
	// CallIDHeader carries wagate's call id.
	CallIDHeader = "X-Wagate-Call-Id"
	// IdempotencyKeyHeader names one request ("<callId>-<event>-<n>"):
	// a request sent again carries the same key. It also lets the HTTP
	// client send a POST again on a new connection when the service
	// closed a kept-alive one as the request came, before answering
	// anything (an idle timeout racing the request): without it the
	// caller was taken to the fallback for a request the service never
	// read.
	IdempotencyKeyHeader = "Idempotency-Key"
)

const maxRedirects = 3

// newClient returns a copy of c (on prompt.KeptTransport when it has
// none) whose redirects stay on http and https and
// stop after three hops; a POST moved by 301 or 302 stays a POST
// (prompt.KeepPOST).
func newClient(c *http.Client) *http.Client {
	var cc http.Client
	if c != nil {
		cc = *c
	}
	if cc.Transport == nil {
		// Many calls ask the service at once: keep their connections.
		cc.Transport = prompt.KeptTransport()
	}
	cc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= maxRedirects {
			return fmt.Errorf("more than %d redirects", maxRedirects)
		}
		if s := req.URL.Scheme; s != "http" && s != "https" {
			return fmt.Errorf("redirected to %q: only http and https are followed", req.URL.Redacted())
		}
		return prompt.KeepPOST(req, via)
	}
	return &cc
}

// post sends one signed request and returns the answer's body (at most
// limit bytes). The whole exchange, body included, is bounded by timeout.
func (e *Engine) post(ctx context.Context, event, key, target string, body []byte, contentType string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, e.o.Timeout)
	defer cancel()
	method := e.o.Method
	var rd io.Reader
	if method == http.MethodGet {
		body = nil
	} else {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrService, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "wagate-callflow")
	req.Header.Set(EventHeader, event)
	req.Header.Set(IdempotencyKeyHeader, key)
	req.Header.Set(SignatureHeader, events.Sign(e.o.Secret, e.now(), body))
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrService, e.explain(ctx, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%w: answered %s", ErrService, resp.Status)
	}
	if resp.ContentLength > e.o.MaxResponseBytes {
		return nil, fmt.Errorf("%w: answer of %d bytes (at most %d)", ErrService, resp.ContentLength, e.o.MaxResponseBytes)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, e.o.MaxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the answer: %s", ErrService, e.explain(ctx, err))
	}
	if int64(len(data)) > e.o.MaxResponseBytes {
		return nil, fmt.Errorf("%w: answer larger than %d bytes", ErrService, e.o.MaxResponseBytes)
	}
	return data, nil
}

// explain names a transport error plainly; a timeout says the configured
// time.
func (e *Engine) explain(ctx context.Context, err error) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Sprintf("no answer within %s", e.o.Timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

// requestBody is the JSON request, or the configured body template
// expanded (form-encoded unless it looks like JSON).
func (e *Engine) requestBody(req *Request, vars map[string]string) ([]byte, string, error) {
	if !e.body.IsZero() {
		b := e.body.Expand(vars)
		ct := "application/x-www-form-urlencoded"
		if strings.HasPrefix(strings.TrimSpace(b), "{") {
			ct = "application/json"
		}
		return []byte(b), ct, nil
	}
	b, err := jsonMarshal(req)
	return b, "application/json", err
}

// now is the clock for signatures and logs.
func (e *Engine) now() time.Time { return e.clock() }
