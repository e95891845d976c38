package callflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/wagate/wagate/configs"
	"github.com/wagate/wagate/prompt"
)

// Defaults of Options.
const (
	DefaultTimeout          = 3 * time.Second
	DefaultMaxResponseBytes = 64 << 10
)

// Options configure an Engine: one per call-flow route.
type Options struct {
	// URL is the service's URL, a template ({caller}, {callId},
	// {businessNumber}, {keypress}).
	URL string
	// Method is POST (default) or GET (no body: the values go in the URL).
	Method string
	// Body, when set, is a template sent instead of the JSON request
	// (form-encoded, or JSON when it starts with '{').
	Body string
	// Secret keys the X-Wagate-Signature of every request.
	Secret []byte
	// Timeout bounds each exchange with the service and the wait for each
	// prompt to be ready: the longest dead air the caller hears before the
	// fallback (default 3s).
	Timeout time.Duration
	// Message is said before the fallback route is taken ("" says nothing).
	Message string
	// Voice speaks Message.
	Voice string
	// Fallback is where the call goes when the service fails; a zero
	// Target hangs up after Message.
	Fallback Target
	// Prompts renders speech and files (required).
	Prompts Prompts
	// Events receives recordings; nil drops them (the summary still has
	// them).
	Events Events
	// Client carries the requests (its redirect policy is replaced).
	Client *http.Client
	// MaxResponseBytes caps an answer (default 64 KiB).
	MaxResponseBytes int64
	// Logger gets one line per fallback and per failed action.
	Logger *slog.Logger
	// Flow, when set, is the call's flow instead of the service's: no
	// request is sent (URL, Body and Secret are unused, nor is a summary
	// posted), and when the flow's actions are over without the call
	// connected or hung up, the fallback is taken. A queue route runs so.
	Flow func(Info) *Flow
}

// FromConfig returns the Options of a number's callflow route; Prompts,
// Events and Logger are the caller's to set.
func FromConfig(c *configs.CallFlow) Options {
	o := Options{URL: c.URL, Method: c.Method, Body: c.Body, Secret: []byte(c.Secret.Resolve()),
		Timeout: c.Timeout.D(), Message: c.Message, Voice: c.Voice}
	if c.Fallback.Endpoint != "" {
		o.Fallback = Target{Kind: TargetExtension, Endpoint: c.Fallback.Endpoint, Destination: c.Fallback.User,
			Timeout: 30 * time.Second}
	}
	return o
}

// Engine runs call flows for one route. It is safe for concurrent use: one
// Run per call.
type Engine struct {
	o      Options
	url    Template
	body   Template
	client *http.Client
	log    *slog.Logger
	clock  func() time.Time
}

// New checks o and returns an Engine.
func New(o Options) (*Engine, error) {
	if o.Prompts == nil {
		return nil, errors.New("callflow: no prompts")
	}
	var u, b Template
	if o.Flow == nil {
		var err error
		if u, err = ParseURLTemplate(o.URL); err != nil {
			return nil, err
		}
		if b, err = ParseTemplate(o.Body); err != nil {
			return nil, err
		}
	}
	switch o.Method {
	case "":
		o.Method = http.MethodPost
	case http.MethodPost, http.MethodGet:
	default:
		return nil, fmt.Errorf("callflow: method %q (POST or GET)", o.Method)
	}
	if o.Method == http.MethodGet && !b.IsZero() {
		return nil, errors.New("callflow: a body template needs method POST")
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Engine{o: o, url: u, body: b, client: newClient(o.Client), log: o.Logger, clock: time.Now}, nil
}

// Warm renders the fallback message at rate so that a failing service
// costs the caller no render time on top of the timeout. Call it once at
// start-up for each rate calls use.
func (e *Engine) Warm(ctx context.Context, rate int) error {
	if e.o.Message == "" {
		return nil
	}
	_, err := e.o.Prompts.Speech(ctx, prompt.Speech{Text: e.o.Message, Voice: e.o.Voice}, rate)
	return err
}

// Run drives c through the service's call flows until the engine's part is
// over: the call connected somewhere, hung up, or ended by the caller. ctx
// must end when the call does. Run always leaves the call connected or
// hung up, and returns the session summary for PostSummary.
func (e *Engine) Run(ctx context.Context, c Call) *Summary {
	s := newSession(e, c)
	var flow *Flow
	var err error
	if e.o.Flow != nil {
		if flow = e.o.Flow(s.info); flow == nil {
			err = errFlowOver
		}
	} else {
		flow, err = s.exchange(ctx, EventStart, nil)
	}
	for err == nil && flow != nil {
		flow, err = s.runFlow(ctx, flow)
	}
	switch {
	case err == nil:
	case errors.Is(err, ErrCallEnded) || ctx.Err() != nil:
		if s.sum.Outcome == "" {
			s.sum.Outcome = OutcomeCallerHungUp
		}
	default:
		s.fallback(ctx, err)
	}
	s.sum.EndedAt = e.now()
	return s.sum
}

// PostSummary sends s to the service (event summary), once, signed. The
// caller may set s.CDR first.
func (e *Engine) PostSummary(ctx context.Context, s *Summary) error {
	if e.o.Flow != nil {
		return nil // a built-in flow has no service to tell
	}
	s.Event = EventSummary
	s.Timestamp = e.now()
	s.Capture = nil
	vars := s.vars
	if vars == nil {
		vars = map[string]string{}
	}
	body, ct, err := e.summaryBody(s, vars)
	if err != nil {
		return err
	}
	_, err = e.post(ctx, EventSummary, s.CallID+"-"+EventSummary, e.url.Expand(vars), body, ct)
	return err
}

func (e *Engine) summaryBody(s *Summary, vars map[string]string) ([]byte, string, error) {
	if !e.body.IsZero() {
		return e.requestBody(&s.Request, vars)
	}
	b, err := jsonMarshal(s)
	return b, "application/json", err
}

func jsonMarshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("callflow: encode request: %w", err)
	}
	return b, nil
}
