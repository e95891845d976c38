// Package api is wagate's HTTP control plane: the public status endpoint,
// the token-protected permission API (/v1/permissions), live calls
// (/v1/calls), call records (/v1/cdrs), the event outbox's dead letters
// (/v1/events), Meta's webhook (/webhook/meta) and the OpenAPI document
// of all of it (/v1/openapi.json). It knows nothing of SIP; it reaches the
// rooms behind it through small interfaces (PermissionStore, CallControl,
// CDRStore, EventOutbox).
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"
)

// StatusFunc returns a JSON-encodable snapshot of wagate's state.
type StatusFunc func() any

// Options configure the server. Secrets are plain strings: the caller
// resolves them (configs.Secret.Resolve) so that this package never reads
// the environment.
type Options struct {
	// Addr is the host:port to listen on.
	Addr string
	// Status feeds GET /v1/status (public).
	Status StatusFunc
	// Token is the bearer token of every /v1/* route except /v1/status.
	// Empty: those routes refuse every request (401) — fail closed.
	Token string
	// ReadToken, when set, is a bearer token that may only read: GET and
	// HEAD of every /v1/* route but the recordings (customers' voices);
	// anything else with it is 403.
	ReadToken string
	// Permissions is the permission cache; nil turns /v1/permissions off
	// (404) and makes the webhook acknowledge without applying anything.
	Permissions PermissionStore
	// AppSecret verifies the webhook's X-Hub-Signature-256; empty turns
	// /webhook/meta off (404).
	AppSecret string
	// VerifyToken answers Meta's subscription handshake; empty refuses it.
	VerifyToken string
	// Recordings serves /v1/recordings and /v1/recordings/… behind the
	// token (recording.Manager.Handler); nil: 404.
	Recordings http.Handler
	// CDRs serves /v1/cdrs (*events.Sink); nil: 404.
	CDRs CDRStore
	// Calls serves /v1/calls: the live calls, and hanging one up; nil:
	// 404.
	Calls CallControl
	// Originate serves POST /v1/calls, click-to-call (with Calls); nil:
	// 405.
	Originate Originator
	// Idempotency, when set, shares click-to-call Idempotency-Keys with
	// the other nodes (permissions.Redis); nil: each node keeps its own.
	Idempotency SharedIdempotency
	// NodeID names this node in what a retry on another node is told.
	NodeID string
	// Events serves /v1/events/dead and /v1/events/{id}/replay
	// (*events.Sink); nil: 404.
	Events EventOutbox
	// Metrics serves GET /metrics (public, like /v1/status: keep the API
	// on a private address); nil: 404.
	Metrics http.Handler
	// Ready answers GET /readyz: whether wagate takes new calls, and if not
	// why (nil: always ready). GET /healthz answers 200 while the process
	// serves HTTP at all.
	Ready func() (ready bool, why []string)
	// KnownNumber reports whether a phone_number_id belongs to a
	// configured business number (it follows config reloads). Grants and
	// permission requests for other ids are refused (404), and Meta's
	// call_permission_reply for them is logged, counted and ignored. Nil:
	// every id is accepted.
	KnownNumber func(phoneNumberID string) bool
	// NumberID maps a business number as Meta writes it in account_update
	// (digits, with or without '+') to its phone-number-id; nil: such
	// updates must carry the phone-number-id themselves.
	NumberID func(display string) (phoneNumberID string, ok bool)
	// MetaSettings receives Meta's account_settings_update changes of a
	// number's calling settings (SRTP keying, SIP status); an error makes
	// the webhook answer 500 so that Meta delivers again. Nil: each is
	// logged at error and nothing follows.
	MetaSettings func(MetaSettingsUpdate) error
	// MetaCalls keeps Meta's calls webhook reports (call_created/connect,
	// terminate) for the CDRs (*events.Sink); nil: acknowledged, dropped.
	MetaCalls MetaCallStore
	// Log receives request errors and applied webhook changes.
	Log *slog.Logger
	// Now is the clock webhook messages are aged by (nil: time.Now); it
	// should be the permission store's.
	Now func() time.Time
}

// Stats counts what the API refused or ignored, for the status document.
type Stats struct {
	// WebhookUnknownNumber counts call_permission_reply messages for a
	// phone_number_id that no configured number has (acknowledged to
	// Meta, not applied).
	WebhookUnknownNumber uint64 `json:"webhook_unknown_number"`
	// WebhookSettingsUpdates counts account_settings_update changes of
	// calling settings; WebhookCallReports the calls webhook's
	// call_created/connect and terminate events.
	WebhookSettingsUpdates uint64 `json:"webhook_settings_updates"`
	WebhookCallReports     uint64 `json:"webhook_call_reports"`
	// WebhookBadSignature counts deliveries refused (401) for a missing
	// or wrong X-Hub-Signature-256.
	WebhookBadSignature uint64 `json:"webhook_bad_signature"`
	// WebhookTooOld counts webhook messages ignored as older than wagate
	// can tell a replay from a first delivery (7.5 days), by field:
	// call_permission_reply, account_update, account_settings_update,
	// calls.
	WebhookTooOld map[string]uint64 `json:"webhook_too_old,omitempty"`
}

// Server serves the HTTP API.
type Server struct {
	srv *http.Server
	ln  net.Listener
	log *slog.Logger
	// wh is the webhook receiver; nil when the webhook is off.
	wh *webhook
}

// listenerLimits bound how long a client may take (slow clients hold a
// connection and a goroutine each).
type listenerLimits struct {
	// readHeader: the request line and headers; read: the whole request;
	// write: the answer, from the end of the headers; idle: between two
	// requests of a kept-alive connection.
	readHeader, read, write, idle time.Duration
	// download replaces write for answers that stream a file
	// (recordings): each write must progress within it, however long the
	// whole download takes.
	download time.Duration
	// conns bounds the connections open at once; more are closed as
	// they come. Each costs a descriptor, which media ports and SIP
	// connections share.
	conns int
}

// limits are the listener's; tests shorten them.
var limits = listenerLimits{readHeader: 5 * time.Second, read: 10 * time.Second, write: 10 * time.Second,
	idle: 60 * time.Second, download: 30 * time.Second, conns: 1024}

// New binds opts.Addr and prepares the routes; Serve starts answering.
func New(opts Options) (*Server, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	h, wh := buildHandler(opts)
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("api: listen %s: %w", opts.Addr, err)
	}
	ln = &capListener{Listener: ln, slots: make(chan struct{}, limits.conns), log: opts.Log}
	return &Server{
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: limits.readHeader,
			ReadTimeout:       limits.read,
			WriteTimeout:      limits.write,
			IdleTimeout:       limits.idle,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          slog.NewLogLogger(opts.Log.Handler(), slog.LevelDebug),
		},
		ln:  ln,
		log: opts.Log,
		wh:  wh,
	}, nil
}

// Stats returns the API's counters.
func (s *Server) Stats() Stats {
	var st Stats
	if s.wh != nil {
		st.WebhookUnknownNumber = s.wh.unknownNumber.Load()
		st.WebhookSettingsUpdates = s.wh.settingsUpdates.Load()
		st.WebhookCallReports = s.wh.callReports.Load()
		st.WebhookBadSignature = s.wh.badSignature.Load()
		st.WebhookTooOld = s.wh.tooOld.byField()
	}
	return st
}

// router is where handlers register their routes: an *http.ServeMux,
// whose patterns routeMux also records.
type router interface {
	Handle(pattern string, h http.Handler)
	HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request))
}

// routeMux is a ServeMux that keeps the patterns registered with a
// method: the operations the OpenAPI document must describe. It also
// notes which paths have a pattern without a method, so that
// refuseOtherMethods can answer 405 on the others.
type routeMux struct {
	*http.ServeMux
	ops *[]string
	// methods are the methods of each path (wildcards unnamed, "{}"), in
	// the order registered; paths the first spelling of each; open the
	// paths a method-less pattern already answers.
	methods map[string][]string
	paths   map[string]string
	open    map[string]bool
	order   *[]string
}

func newRouteMux(ops *[]string) routeMux {
	return routeMux{ServeMux: http.NewServeMux(), ops: ops, methods: map[string][]string{}, paths: map[string]string{},
		open: map[string]bool{}, order: new([]string)}
}

func (m routeMux) Handle(pattern string, h http.Handler) {
	m.note(pattern)
	m.ServeMux.Handle(pattern, h)
}

func (m routeMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.note(pattern)
	m.ServeMux.HandleFunc(pattern, h)
}

// wildcard matches a path wildcard, {name} or {name...}.
var wildcard = regexp.MustCompile(`\{[^}]*\}`)

func (m routeMux) note(pattern string) {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		method, path = "", pattern
	}
	key := wildcard.ReplaceAllString(path, "{}")
	if method == "" {
		m.open[key] = true
		return
	}
	*m.ops = append(*m.ops, pattern)
	if _, seen := m.paths[key]; !seen {
		m.paths[key] = path
		*m.order = append(*m.order, key)
	}
	if !slices.Contains(m.methods[key], method) {
		m.methods[key] = append(m.methods[key], method)
	}
}

// refuseOtherMethods answers 405, with Allow, on every path registered
// with methods for the methods it lacks — unless a method-less pattern
// of the path already answers them, or skip says the path is left to
// another pattern. Without it ServeMux would send such a request to the
// catch-all "/" (404), since a method-less pattern matches it.
func (m routeMux) refuseOtherMethods(skip func(path string) bool) {
	for _, key := range *m.order {
		path := m.paths[key]
		if m.open[key] || (skip != nil && skip(path)) {
			continue
		}
		m.open[key] = true
		m.ServeMux.HandleFunc(path, methodNotAllowed(strings.Join(m.methods[key], ", ")))
	}
}

// newHandler builds the routes. Everything under /v1/ but the status goes
// through the token check first, so an unauthenticated caller learns
// nothing about which routes exist.
func newHandler(opts Options) http.Handler {
	h, _ := buildHandler(opts)
	return h
}

// buildHandler is newHandler that also returns the webhook receiver (nil
// when the webhook is off), whose counters Stats reads.
func buildHandler(opts Options) (http.Handler, *webhook) {
	h, wh, _ := build(opts)
	return h, wh
}

// build is buildHandler that also returns the operations served
// ("METHOD /path/{param}"), for the OpenAPI document's test.
func build(opts Options) (http.Handler, *webhook, []string) {
	var ops []string
	log := opts.Log
	if opts.Permissions != nil && isNilPointer(opts.Permissions) {
		opts.Permissions = nil
	}
	if opts.Token == "" && opts.Permissions != nil {
		log.Warn("api: no token configured; the permission API refuses every request")
	}

	protected := newRouteMux(&ops)
	p := &permissionHandlers{store: opts.Permissions, known: opts.KnownNumber, log: log}
	p.register(protected)
	if opts.Recordings != nil && !isNilPointer(opts.Recordings) {
		// The recording package's own handler, behind the token; the
		// routes are named here so that the OpenAPI document covers them.
		protected.Handle("GET /v1/recordings", onlyParams(opts.Recordings, "date", "call_id", "limit"))
		protected.Handle("GET /v1/recordings/{call_id...}", downloads(opts.Recordings))
	}
	if opts.CDRs != nil && !isNilPointer(opts.CDRs) {
		(&cdrHandlers{store: opts.CDRs, log: log}).register(protected)
	}
	if opts.Events != nil && !isNilPointer(opts.Events) {
		(&outboxHandlers{outbox: opts.Events, log: log}).register(protected)
	}
	if opts.Calls != nil && !isNilPointer(opts.Calls) {
		ch := &callHandlers{calls: opts.Calls, log: log, now: time.Now}
		if opts.Originate != nil && !isNilPointer(opts.Originate) {
			ch.orig = &originateHandlers{o: opts.Originate, calls: ch, idem: newIdempotency(time.Now)}
			if opts.Idempotency != nil {
				ch.orig.shared = &sharedIdem{store: opts.Idempotency, node: opts.NodeID, log: log}
			}
		}
		ch.register(protected)
	}
	protected.HandleFunc("GET /v1/openapi.json", serveOpenAPI)
	// Other methods on the public status are answered behind the token,
	// like every /v1/ route but its GET.
	protected.HandleFunc("/v1/status", methodNotAllowed("GET"))
	protected.refuseOtherMethods(nil)
	protected.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such route")
	})

	mux := newRouteMux(&ops)
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		var doc any
		if opts.Status != nil {
			doc = opts.Status()
		}
		if err := json.NewEncoder(w).Encode(doc); err != nil {
			log.Debug("status write failed", "error", err)
		}
	})
	mux.Handle("/v1/", requireToken(opts.Token, opts.ReadToken, protected))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"alive"}` + "\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ready, why := true, []string(nil)
		if opts.Ready != nil {
			ready, why = opts.Ready()
		}
		w.Header().Set("Content-Type", "application/json")
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(struct {
			Ready bool     `json:"ready"`
			Why   []string `json:"why,omitempty"`
		}{ready, why})
	})
	if opts.Metrics != nil {
		mux.Handle("GET /metrics", opts.Metrics)
	}
	var wh *webhook
	if opts.AppSecret != "" {
		wh = newWebhook(opts.AppSecret, opts.VerifyToken, opts.Permissions, opts.KnownNumber, opts.NumberID, log)
		wh.onSettings, wh.metaCalls = opts.MetaSettings, opts.MetaCalls
		if opts.Now != nil {
			wh.now = opts.Now
		}
		mux.HandleFunc("GET /webhook/meta", wh.handshake)
		mux.HandleFunc("POST /webhook/meta", wh.receive)
	}
	mux.refuseOtherMethods(func(path string) bool { return strings.HasPrefix(path, "/v1/") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such route")
	})
	return recoverPanics(log, mux), wh, ops
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve answers requests until Shutdown.
func (s *Server) Serve() error {
	s.log.Info("api listening", "address", s.ln.Addr().String())
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("api: serve: %w", err)
	}
	return nil
}

// Shutdown stops the server, waiting for requests in flight until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.srv.Shutdown(ctx)
}

// downloads lets an answer outlast the server's WriteTimeout while the
// client keeps reading it: a recording of an hour is tens of megabytes,
// which a CRM behind a slow link cannot fetch in 10 s, and the connection
// would be cut mid-file. The deadline moves forward before every write
// instead, so a client that stops reading is still let go.
func downloads(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pw := &progressWriter{ResponseWriter: w, rc: http.NewResponseController(w)}
		pw.extend()
		h.ServeHTTP(pw, r)
	})
}

// progressWriter moves the write deadline forward before each write.
type progressWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
}

func (p *progressWriter) extend() {
	// An error means the connection cannot take deadlines (a test's
	// recorder); the server's WriteTimeout then stands.
	_ = p.rc.SetWriteDeadline(time.Now().Add(limits.download))
}

func (p *progressWriter) Write(b []byte) (int, error) {
	p.extend()
	return p.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (p *progressWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }

// onlyParams refuses (400) a query parameter other than names, or one
// given twice, before h sees the request: a misspelt filter must not
// silently match everything.
func onlyParams(h http.Handler, names ...string) http.Handler {
	use := names[len(names)-1]
	if len(names) > 1 {
		use = strings.Join(names[:len(names)-1], ", ") + " or " + use
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		keys := slices.Sorted(maps.Keys(q))
		for _, k := range keys {
			switch {
			case !slices.Contains(names, k):
				writeError(w, http.StatusBadRequest, quoteParam(k)+": unknown parameter; use "+use)
				return
			case len(q[k]) > 1:
				writeError(w, http.StatusBadRequest, k+": given more than once")
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// capListener holds at most cap(slots) connections open: past that it
// closes each new one at once (logged at most every refusedLogEvery)
// rather than letting it queue, so that a flood of connections costs
// neither descriptors nor goroutines, and the listener serves again as
// soon as one closes.
type capListener struct {
	net.Listener
	slots chan struct{}
	log   *slog.Logger
	every everyLog
}

// refusedLogEvery spaces the warnings about refused connections.
const refusedLogEvery = 10 * time.Second

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &slotConn{Conn: c, free: func() { <-l.slots }}, nil
		default:
		}
		if ok, n := l.every.allow(time.Now(), refusedLogEvery); ok {
			l.log.Warn("api: connection refused: too many open", "remote", c.RemoteAddr().String(), "open", cap(l.slots),
				"refused_since_last", n)
		}
		c.Close()
	}
}

// slotConn gives its listener slot back when closed (once).
type slotConn struct {
	net.Conn
	once sync.Once
	free func()
}

func (c *slotConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.free)
	return err
}

// recoverPanics logs a panic behind a route at error, with the route and
// the stack, and answers the JSON 500 of any other failure when nothing
// was sent yet (else the connection is dropped, the answer being cut).
// net/http would recover it too, but log it through the server's
// ErrorLog, which is at debug: a bug would go unseen.
func recoverPanics(log *slog.Logger, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tw := &trackingWriter{ResponseWriter: w}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler { // net/http's own way to cut an answer: not a bug
				panic(v)
			}
			log.Error("api: request handler panicked", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr,
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if tw.wrote {
				panic(http.ErrAbortHandler)
			}
			writeError(w, http.StatusInternalServerError, "internal error; see wagate's log")
		}()
		h.ServeHTTP(tw, r)
	})
}

// trackingWriter notes whether the answer has started.
type trackingWriter struct {
	http.ResponseWriter
	wrote bool
}

func (t *trackingWriter) WriteHeader(code int) {
	if code >= 200 { // 1xx informational answers are not the answer
		t.wrote = true
	}
	t.ResponseWriter.WriteHeader(code)
}

func (t *trackingWriter) Write(b []byte) (int, error) {
	t.wrote = true
	return t.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (t *trackingWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }
