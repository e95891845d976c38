package events

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wagate/wagate/configs"
)

// Options configure a Sink. Zero values take the defaults of configs.
type Options struct {
	// Path is the database file (<data_dir>/events.db).
	Path string
	// NodeID goes into every CDR and event.
	NodeID string
	// StoreCDRs keeps a CDR per call (cdr.enabled). Without it CDRs only
	// travel inside call.ended and call.refused events.
	StoreCDRs bool
	// CDRRetention deletes CDRs older than this (0: keep forever).
	CDRRetention time.Duration
	// EventRetention deletes delivered events and dead letters this long
	// after their last attempt (0: keep forever).
	EventRetention time.Duration
	// QueueSize bounds the records waiting to be written.
	QueueSize int
	// MaxPending bounds each subscriber's undelivered events in the
	// outbox (0: configs' default; negative: no bound). Beyond it, new
	// events are not queued for that subscriber (counted, logged), so
	// that a receiver down for long cannot fill the disk the CDRs need.
	MaxPending int
	// Subscribers receive the events.
	Subscribers []Subscriber
	// MaxAttempts per event and subscriber before a dead letter.
	MaxAttempts int
	// BackoffBase and BackoffMax bound the delay between attempts: before
	// attempt n+1 it is drawn uniformly from [0, min(BackoffMax,
	// BackoffBase·2^(n-1))] (exponential backoff with full jitter).
	BackoffBase, BackoffMax time.Duration
	// Log receives write failures (rate-limited), dead letters and
	// delivery trouble.
	Log *slog.Logger

	// now, sweepEvery and noSweepLoop let tests move time and sweep on
	// demand.
	now         func() time.Time
	sweepEvery  time.Duration
	noSweepLoop bool
}

// Subscriber is one webhook receiver.
type Subscriber struct {
	// Name identifies it in the outbox, the logs and the API.
	Name string
	// URL receives a POST per event.
	URL string
	// Secret keys the signature.
	Secret string
	// Types lists the event types it receives; empty: all.
	Types []Type
	// Timeout bounds one attempt, reading the answer included.
	Timeout time.Duration
	// Concurrency bounds its attempts in flight.
	Concurrency int
}

// OptionsFrom builds Options from a loaded config, resolving the
// subscribers' secrets from the environment.
func OptionsFrom(c *configs.Config, log *slog.Logger) Options {
	days := func(n int) time.Duration { return time.Duration(n) * 24 * time.Hour }
	o := Options{
		Path:           c.EventsDB(),
		NodeID:         c.NodeID,
		StoreCDRs:      c.CDR.Enabled,
		CDRRetention:   days(c.CDR.RetentionDays),
		EventRetention: days(c.Events.RetentionDays),
		QueueSize:      c.Events.QueueSize,
		MaxPending:     c.Events.MaxPending,
		MaxAttempts:    c.Events.MaxAttempts,
		BackoffBase:    c.Events.BackoffBase.D(),
		BackoffMax:     c.Events.BackoffMax.D(),
		Log:            log,
	}
	if o.MaxPending == 0 {
		o.MaxPending = -1 // max_pending: 0 is no bound
	}
	for _, s := range c.Events.Subscribers {
		sub := Subscriber{Name: s.Name, URL: s.URL, Secret: s.Secret.Resolve(), Timeout: s.Timeout.D(), Concurrency: s.Concurrency}
		for _, t := range s.Types {
			sub.Types = append(sub.Types, Type(t))
		}
		o.Subscribers = append(o.Subscribers, sub)
	}
	return o
}

func (o *Options) fill() error {
	if o.NodeID == "" {
		o.NodeID = configs.DefaultNodeID()
	}
	if o.QueueSize <= 0 {
		o.QueueSize = configs.DefaultEventsQueueSize
	}
	if o.MaxPending == 0 {
		o.MaxPending = configs.DefaultEventsMaxPending
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = configs.DefaultEventsMaxAttempts
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = configs.DefaultEventsBackoffBase.D()
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = configs.DefaultEventsBackoffMax.D()
	}
	o.BackoffMax = max(o.BackoffMax, o.BackoffBase)
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.sweepEvery <= 0 {
		o.sweepEvery = time.Hour
	}
	names := map[string]bool{}
	for i := range o.Subscribers {
		s := &o.Subscribers[i]
		switch {
		case s.Name == "":
			return fmt.Errorf("events: subscriber %d has no name", i)
		case names[s.Name]:
			return fmt.Errorf("events: subscriber %q given twice", s.Name)
		case s.Secret == "":
			return fmt.Errorf("events: subscriber %q has no secret", s.Name)
		}
		if u, err := url.Parse(s.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("events: subscriber %q: URL %q is not http(s)://host/…", s.Name, s.URL)
		}
		names[s.Name] = true
		if s.Timeout <= 0 {
			s.Timeout = configs.DefaultSubscriberTimeout.D()
		}
		if s.Concurrency <= 0 {
			s.Concurrency = configs.DefaultSubscriberConcurrency
		}
	}
	return nil
}

// Errors of the Sink's queries.
var (
	ErrNotFound          = errors.New("events: not found")
	ErrUnknownSubscriber = errors.New("events: no such subscriber")
	ErrClosed            = errors.New("events: closed")
)

// item is one record on its way to the database.
type item struct {
	typ    Type
	id     string // event id; "" when no subscriber wants the event
	at     time.Time
	callID string
	data   any  // Call, PermissionChange or Recording
	cdr    *CDR // call.ended, call.refused
}

// Sink records CDRs and emits events. Its call-path methods (CallStarted
// … RecordingReady) never block and are safe on a nil *Sink, which does
// nothing; the rest is for the API and for wiring.
type Sink struct {
	opts  Options
	log   *slog.Logger
	now   func() time.Time
	wdb   *sql.DB // one connection: the writer, results, replays, sweeps
	stmts *writeStmts
	scans *scanStmts
	rdb   *sql.DB // readers: scheduler scans, the API

	// mu guards closed against sends on queue, so that Close knows
	// nothing is added after its final drain.
	mu      sync.RWMutex
	closed  bool
	queue   chan item
	results chan result

	subs      []*subscriber
	subByName map[string]*subscriber
	// typeSubs lists, per event type, the subscribers that receive it.
	typeSubs map[Type][]*subscriber

	errs rateLog

	stopWriter chan struct{}
	writerDone chan struct{}
	// schedCancel stops the schedulers and the sweeper; attemptCancel
	// abandons attempts in flight.
	schedCancel   context.CancelFunc
	attemptCancel context.CancelFunc
	loops         sync.WaitGroup // schedulers, sweeper
	attempts      sync.WaitGroup // attempts in flight
	closeOnce     sync.Once
	closeErr      error

	dropped       atomic.Uint64
	cdrsWritten   atomic.Uint64
	eventsWritten atomic.Uint64
	writeErrors   atomic.Uint64
	lost          atomic.Uint64
	duplicates    atomic.Uint64
	cdrsSwept     atomic.Uint64
	eventsPruned  atomic.Uint64
	// unreadableCDRs counts stored CDRs a listing skipped.
	unreadableCDRs atomic.Uint64
	// ended remembers the calls whose end was reported last, so that a
	// step of theirs reported after it is dropped (lateEvents).
	ended      endedCalls
	lateEvents atomic.Uint64
	// stored is told the call ids of the CDRs each commit made durable.
	stored atomic.Pointer[func(callIDs []string)]
}

// OnCDRStored has f told, after each commit, the call ids of the CDRs it
// wrote (or found already written): from then on a crash cannot lose
// them. The journal of live calls keeps each ended call's record until
// then (b2bua.Journal.Stored). f runs on the writer: it must be quick.
func (s *Sink) OnCDRStored(f func(callIDs []string)) {
	if s != nil {
		s.stored.Store(&f)
	}
}

// endedCallsKept bounds the calls remembered as ended: a late step comes
// within milliseconds of its call's end, and a few thousand calls are
// tens of seconds of a busy centre.
const endedCallsKept = 4096

// endedCalls is a bounded set of call ids, the oldest forgotten first.
type endedCalls struct {
	mu   sync.Mutex
	set  map[string]struct{}
	ring [endedCallsKept]string
	next int
}

func (e *endedCalls) add(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.set == nil {
		e.set = make(map[string]struct{}, endedCallsKept)
	}
	if _, ok := e.set[id]; ok {
		return
	}
	if old := e.ring[e.next]; old != "" {
		delete(e.set, old)
	}
	e.ring[e.next] = id
	e.next = (e.next + 1) % endedCallsKept
	e.set[id] = struct{}{}
}

func (e *endedCalls) has(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.set[id]
	return ok
}

// Open opens (creating it) the database at opts.Path and starts the writer,
// one delivery scheduler per subscriber and the retention sweeper. ctx
// bounds the opening only; the goroutines run until Close.
func Open(ctx context.Context, opts Options) (*Sink, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	wdb, rdb, err := openOrRecover(ctx, opts.Path, opts.now(), opts.Log.With("component", "events"))
	if err != nil {
		return nil, err
	}
	stmts, err := prepareWrites(ctx, wdb)
	if err != nil {
		wdb.Close()
		rdb.Close()
		return nil, fmt.Errorf("events: %s: %w", opts.Path, err)
	}
	scans, err := prepareScans(ctx, rdb)
	if err != nil {
		stmts.close()
		wdb.Close()
		rdb.Close()
		return nil, fmt.Errorf("events: %s: %w", opts.Path, err)
	}
	s := &Sink{
		opts:       opts,
		log:        opts.Log.With("component", "events"),
		now:        opts.now,
		wdb:        wdb,
		rdb:        rdb,
		stmts:      stmts,
		scans:      scans,
		queue:      make(chan item, opts.QueueSize),
		results:    make(chan result, 256),
		subByName:  map[string]*subscriber{},
		typeSubs:   map[Type][]*subscriber{},
		stopWriter: make(chan struct{}),
		writerDone: make(chan struct{}),
	}
	s.errs.every = 10 * time.Second
	for _, cfg := range opts.Subscribers {
		sub := newSubscriber(s, cfg)
		s.subs = append(s.subs, sub)
		s.subByName[cfg.Name] = sub
		types := cfg.Types
		if len(types) == 0 {
			types = Types()
		}
		for _, t := range types {
			s.typeSubs[t] = append(s.typeSubs[t], sub)
		}
	}
	s.warnOrphans(ctx)

	schedCtx, schedCancel := context.WithCancel(context.Background())
	attemptCtx, attemptCancel := context.WithCancel(context.Background())
	s.schedCancel, s.attemptCancel = schedCancel, attemptCancel
	go s.writeLoop()
	for _, sub := range s.subs {
		s.loops.Add(1)
		go func() {
			defer s.loops.Done()
			sub.run(schedCtx, attemptCtx)
		}()
	}
	s.loops.Add(1)
	go func() {
		defer s.loops.Done()
		s.sweepLoop(schedCtx)
	}()
	s.log.Info("events open", "file", opts.Path, "node_id", opts.NodeID, "cdrs", opts.StoreCDRs, "subscribers", len(s.subs))
	return s, nil
}

// warnOrphans counts each subscriber's pending deliveries and logs those
// of subscribers no longer configured: they wait for the subscriber to
// come back, and are pruned after the event retention.
func (s *Sink) warnOrphans(ctx context.Context) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT subscriber, COUNT(*) FROM deliveries WHERE state = ? GROUP BY subscriber`, statePending)
	if err != nil {
		s.log.Warn("events: cannot count pending deliveries", "error", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var n int
		if rows.Scan(&name, &n) != nil {
			continue
		}
		if sub := s.subByName[name]; sub != nil {
			sub.pending.Store(int64(n))
			if bound := s.opts.MaxPending; bound > 0 && n >= bound {
				s.log.Error("event subscriber's backlog is full: its new events are not queued until it takes some",
					"subscriber", name, "pending", n, "max_pending", bound)
			}
		} else {
			s.log.Warn("undelivered events for a subscriber that is no longer configured; they are kept until the event retention passes",
				"subscriber", name, "events", n)
		}
	}
}

// writerGrace is the least time Close gives the writer to write what is
// queued, whatever is left of its context.
const writerGrace = 5 * time.Second

// Close stops taking records, stops starting attempts, waits until ctx ends
// for attempts in flight (those still running are abandoned and retried
// after the next Open), writes every record already queued (given at
// least writerGrace for it) and closes the database. It is safe to call
// more than once.
func (s *Sink) Close(ctx context.Context) error {
	if s == nil {
		return nil
	}
	s.closeOnce.Do(func() { s.closeErr = s.close(ctx) })
	return s.closeErr
}

func (s *Sink) close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()

	s.schedCancel()
	s.loops.Wait()
	done := make(chan struct{})
	go func() { s.attempts.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.attemptCancel()
		<-done
	}
	s.attemptCancel()

	close(s.stopWriter)
	// The writer gets what is left of ctx, and at least writerGrace:
	// waiting for a hanging receiver's attempts may have used all of
	// ctx, and the records still queued (the last calls' CDRs) are worth
	// a moment more. Before, they were given up on at once.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writerGrace)
	defer cancel()
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > writerGrace {
		wctx = ctx
	}
	select {
	case <-s.writerDone:
	case <-wctx.Done():
		// The disk is stuck; the writer still holds the database, so it
		// cannot be closed under it.
		return fmt.Errorf("events: close: writer still busy: %w", wctx.Err())
	}
	for _, sub := range s.subs {
		sub.client.CloseIdleConnections()
	}
	s.stmts.close()
	s.scans.close()
	err := errors.Join(s.wdb.Close(), s.rdb.Close())
	if err != nil {
		return fmt.Errorf("events: close: %w", err)
	}
	s.log.Info("events closed")
	return nil
}

// CallStarted reports a call accepted for routing (call.started).
func (s *Sink) CallStarted(c Call) { s.emit(CallStarted, c.CallID, c, nil) }

// CallRinging reports the B-leg ringing (call.ringing); call it once per
// call, on the first 18x.
func (s *Sink) CallRinging(c Call) { s.emit(CallRinging, c.CallID, c, nil) }

// CallAnswered reports the call connected (call.answered).
func (s *Sink) CallAnswered(c Call) { s.emit(CallAnswered, c.CallID, c, nil) }

// CallProgress reports a step of a click-to-call (call.progress).
func (s *Sink) CallProgress(c Call) { s.emit(CallProgress, c.CallID, c, nil) }

// CallEnded records the CDR of a call that was routed and emits
// call.ended carrying it. Empty NodeID, CreatedAt, EndedAt and zero
// durations are filled in.
func (s *Sink) CallEnded(cdr CDR) { s.emit(CallEnded, cdr.CallID, nil, &cdr) }

// CallRefused records the CDR of an INVITE wagate refused itself (Outcome
// and HangupBy default to refused and wagate) and emits call.refused.
func (s *Sink) CallRefused(cdr CDR) {
	if cdr.Outcome == "" {
		cdr.Outcome = Refused
	}
	if cdr.HangupBy == "" {
		cdr.HangupBy = HangupWagate
	}
	s.emit(CallRefused, cdr.CallID, nil, &cdr)
}

// CallTransferred emits call.transferred.
func (s *Sink) CallTransferred(t Transfer) { s.emit(CallTransferred, t.CallID, t, nil) }

// PermissionChanged emits permission.changed.
func (s *Sink) PermissionChanged(p PermissionChange) { s.emit(PermissionChanged, "", p, nil) }

// MetaSettingsChanged emits meta.settings_changed.
func (s *Sink) MetaSettingsChanged(m MetaSettings) { s.emit(MetaSettingsChanged, "", m, nil) }

// RecordingReady emits recording.ready.
func (s *Sink) RecordingReady(r Recording) { s.emit(RecordingReady, r.CallID, r, nil) }

// emit queues one record without blocking; a full queue drops it.
func (s *Sink) emit(typ Type, callID string, data any, cdr *CDR) {
	if s == nil {
		return
	}
	wantEvent := len(s.typeSubs[typ]) > 0
	if !wantEvent && (cdr == nil || !s.opts.StoreCDRs) {
		return
	}
	if callID != "" {
		switch typ {
		case CallEnded, CallRefused:
			s.ended.add(callID)
		case CallStarted, CallRinging, CallAnswered, CallProgress:
			// Reported by a goroutine that lost a race with the call's
			// end: after call.ended it would tell a receiver the call
			// is still ringing or up.
			if s.ended.has(callID) {
				s.lateEvents.Add(1)
				s.errs.log(s.log, slog.LevelWarn, "late", "call event reported after the call ended: dropped",
					"type", typ, "call_id", callID)
				return
			}
		}
	}
	now := s.now()
	it := item{typ: typ, at: now, callID: callID, data: data, cdr: cdr}
	if wantEvent {
		it.id = newEventID(now)
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		s.dropped.Add(1)
		s.errs.log(s.log, slog.LevelError, "closed", "event dropped: the events sink is closed", "type", typ, "call_id", callID)
		return
	}
	select {
	case s.queue <- it:
		s.mu.RUnlock()
	default:
		s.mu.RUnlock()
		s.dropped.Add(1)
		s.errs.log(s.log, slog.LevelError, "queue full", "event queue full: record dropped (the database cannot keep up)",
			"type", typ, "call_id", callID, "queue_size", cap(s.queue))
	}
}

// Stats counts what the Sink did since Open, for metrics.
type Stats struct {
	QueueLength   int `json:"queue_length"`
	QueueCapacity int `json:"queue_capacity"`
	// Dropped records: queue full, or reported after Close.
	Dropped       uint64 `json:"dropped"`
	CDRsWritten   uint64 `json:"cdrs_written"`
	EventsWritten uint64 `json:"events_written"`
	// WriteErrors counts failed transactions; Lost the records (CDRs and
	// events) lost with them.
	WriteErrors uint64 `json:"write_errors"`
	Lost        uint64 `json:"lost"`
	// DuplicateCDRs were refused, with their events, because a CDR with
	// the same call id was already stored.
	DuplicateCDRs uint64 `json:"duplicate_cdrs"`
	CDRsSwept     uint64 `json:"cdrs_swept"`
	EventsPruned  uint64 `json:"events_pruned"`
	// UnreadableCDRs counts stored CDRs listings left out because they
	// did not decode (each time one was met).
	UnreadableCDRs uint64 `json:"unreadable_cdrs"`
	// LateEvents counts call.started, call.ringing, call.answered and
	// call.progress events dropped because their call had ended.
	LateEvents  uint64            `json:"late_events"`
	Subscribers []SubscriberStats `json:"subscribers"`
}

// SubscriberStats counts one subscriber's deliveries.
type SubscriberStats struct {
	Name     string `json:"name"`
	InFlight int    `json:"in_flight"`
	// Delivered events (2xx), failed attempts, and events that became
	// dead letters.
	Delivered    uint64 `json:"delivered"`
	Failed       uint64 `json:"failed_attempts"`
	DeadLettered uint64 `json:"dead_lettered"`
	// Pending events wait in the outbox; BacklogFull counts the events
	// not queued for it because MaxPending were waiting.
	Pending     int64  `json:"pending"`
	BacklogFull uint64 `json:"backlog_full"`
}

// Stats returns the counters (zero for a nil Sink).
func (s *Sink) Stats() Stats {
	if s == nil {
		return Stats{}
	}
	st := Stats{
		QueueLength:    len(s.queue),
		QueueCapacity:  cap(s.queue),
		Dropped:        s.dropped.Load(),
		CDRsWritten:    s.cdrsWritten.Load(),
		EventsWritten:  s.eventsWritten.Load(),
		WriteErrors:    s.writeErrors.Load(),
		Lost:           s.lost.Load(),
		DuplicateCDRs:  s.duplicates.Load(),
		CDRsSwept:      s.cdrsSwept.Load(),
		EventsPruned:   s.eventsPruned.Load(),
		UnreadableCDRs: s.unreadableCDRs.Load(),
		LateEvents:     s.lateEvents.Load(),
		Subscribers:    make([]SubscriberStats, 0, len(s.subs)),
	}
	for _, sub := range s.subs {
		st.Subscribers = append(st.Subscribers, sub.stats())
	}
	return st
}
