package events

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
)

const (
	// maxResponseBody is what is read of a subscriber's answer; the rest
	// is discarded (the connection is closed rather than drained).
	maxResponseBody = 64 << 10
	// maxErrorText bounds the part of an answer kept as last_error.
	maxErrorText = 200
	// idlePoll is how long a scheduler with nothing due sleeps at most
	// before looking again (a safety net: commits and results wake it).
	idlePoll = time.Minute
	// writeTrouble pauses a subscriber whose results could not be written
	// (disk full), so that it does not resend the same events in a loop.
	writeTrouble = 5 * time.Second
	// breakerFailures consecutive failed attempts open a subscriber's
	// circuit breaker: its events stop being tried, one at a time after
	// a growing pause, until one gets through. Without it, a receiver
	// that is down got every pending event retried on its own schedule:
	// at 100 calls/s for 10 minutes that was 800 attempts/s and five
	// times the CPU of the calls themselves.
	breakerFailures = 5
)

// subscriber delivers to one receiver.
type subscriber struct {
	s      *Sink
	index  int
	cfg    Subscriber
	secret []byte
	client *http.Client
	wake   chan struct{}

	mu sync.Mutex
	// active counts the HTTP requests in flight (at most Concurrency).
	active int
	// inflight maps the event seq of each attempt in flight, or waiting
	// for its result to be written, to its call id; busyCalls counts them
	// per call. Neither is picked again until its result is written.
	inflight   map[int64]string
	busyCalls  map[string]int
	pauseUntil time.Time
	// gen counts finished attempts; recent maps the deliveries finished
	// while a scan may have been reading, to their gen. A scan that
	// started before a result was written may return that delivery as
	// still pending; recent keeps it from being sent again.
	gen    uint64
	recent map[int64]uint64
	// failures counts consecutive failed attempts; tripped is how many
	// times in a row the breaker opened (it sets the pause); probing: the
	// breaker is half open, one attempt at a time.
	failures int
	tripped  int
	probing  bool
	probeSeq int64 // the event seq of the probe in flight, 0: none

	delivered atomic.Uint64
	failed    atomic.Uint64
	dead      atomic.Uint64
	// pending counts its pending deliveries in the outbox (as committed);
	// backlogFull the events not queued because of Options.MaxPending.
	pending     atomic.Int64
	backlogFull atomic.Uint64
}

func newSubscriber(s *Sink, cfg Subscriber) *subscriber {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxConnsPerHost = cfg.Concurrency
	tr.MaxIdleConnsPerHost = cfg.Concurrency
	tr.ResponseHeaderTimeout = cfg.Timeout
	tr.DialContext = (&net.Dialer{Timeout: min(cfg.Timeout, 10*time.Second), KeepAlive: 30 * time.Second}).DialContext
	return &subscriber{
		s:      s,
		index:  len(s.subs),
		cfg:    cfg,
		secret: []byte(cfg.Secret),
		client: &http.Client{
			Transport: tr,
			Timeout:   cfg.Timeout,
			// A 3xx is a failed attempt: following it would post signed
			// events wherever the receiver (or whoever took its name)
			// points.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		wake:      make(chan struct{}, 1),
		inflight:  map[int64]string{},
		busyCalls: map[string]int{},
		recent:    map[int64]uint64{},
	}
}

// poke wakes the scheduler without blocking.
func (sub *subscriber) poke() {
	select {
	case sub.wake <- struct{}{}:
	default:
	}
}

func (sub *subscriber) stats() SubscriberStats {
	sub.mu.Lock()
	n := sub.active
	sub.mu.Unlock()
	return SubscriberStats{Name: sub.cfg.Name, InFlight: n, Delivered: sub.delivered.Load(), Failed: sub.failed.Load(), DeadLettered: sub.dead.Load(),
		Pending: sub.pending.Load(), BacklogFull: sub.backlogFull.Load()}
}

// scanStmts are the schedulers' queries, prepared once.
type scanStmts struct {
	due, next *sql.Stmt
}

func prepareScans(ctx context.Context, db *sql.DB) (*scanStmts, error) {
	due, err := db.PrepareContext(ctx, `
		SELECT d.event_seq, d.call_id, d.attempts, e.id, e.type, e.body
		FROM deliveries d INDEXED BY deliveries_next JOIN events e ON e.seq = d.event_seq
		WHERE d.subscriber = ?1 AND d.state = ?2 AND d.next_at <= ?3
		  AND (d.call_id = '' OR NOT EXISTS (
			SELECT 1 FROM deliveries p
			WHERE p.subscriber = ?1 AND p.call_id = d.call_id AND p.state = ?2 AND p.event_seq < d.event_seq))
		ORDER BY d.next_at, d.id LIMIT ?4`)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	next, err := db.PrepareContext(ctx, `SELECT MIN(next_at) FROM deliveries INDEXED BY deliveries_next
		WHERE subscriber = ? AND state = ? AND next_at > ?`)
	if err != nil {
		due.Close()
		return nil, fmt.Errorf("prepare: %w", err)
	}
	return &scanStmts{due: due, next: next}, nil
}

func (sc *scanStmts) close() {
	sc.due.Close()
	sc.next.Close()
}

// candidate is a delivery that may be attempted now.
type candidate struct {
	seq      int64
	callID   string
	attempts int
	id       string
	typ      string
	body     []byte
}

// run schedules attempts until schedCtx ends; attempts run under
// attemptCtx, which Close cancels only after waiting for them.
func (sub *subscriber) run(schedCtx, attemptCtx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-schedCtx.Done():
			return
		case <-sub.wake:
		case <-timer.C:
		}
		wait := sub.schedule(schedCtx, attemptCtx)
		timer.Stop()
		select {
		case <-timer.C:
		default:
		}
		timer.Reset(wait)
	}
}

// schedule starts what may start and says how long to sleep unless woken.
func (sub *subscriber) schedule(schedCtx, attemptCtx context.Context) time.Duration {
	now := sub.s.now()
	sub.mu.Lock()
	free := sub.cfg.Concurrency - sub.active
	busy := len(sub.inflight)
	pause := sub.pauseUntil.Sub(now)
	startGen := sub.gen
	sub.mu.Unlock()
	if pause > 0 {
		return pause
	}
	sub.mu.Lock()
	if sub.probing {
		free = min(free, 1-sub.active) // one probe at a time
	}
	sub.mu.Unlock()
	if free <= 0 {
		return idlePoll // a finished request wakes us
	}
	// Deliveries in flight or waiting for their result to be written are
	// still pending in the table and come back first in their calls, so
	// ask for that many more.
	cands, err := sub.due(schedCtx, now, free+busy)
	if err != nil {
		if schedCtx.Err() == nil {
			sub.s.errs.log(sub.s.log, slog.LevelError, "scan "+sub.cfg.Name, "events: cannot read the outbox", "subscriber", sub.cfg.Name, "error", err)
		}
		return writeTrouble
	}
	started := 0
	sub.mu.Lock()
	for _, c := range cands {
		if started == free {
			break
		}
		if _, ok := sub.inflight[c.seq]; ok {
			continue
		}
		if g, ok := sub.recent[c.seq]; ok && g > startGen {
			continue // finished after the scan began: maybe a stale row
		}
		if c.callID != "" && sub.busyCalls[c.callID] > 0 {
			continue // an earlier event of the call is in flight
		}
		sub.inflight[c.seq] = c.callID
		if sub.probing {
			sub.probeSeq = c.seq
		}
		if c.callID != "" {
			sub.busyCalls[c.callID]++
		}
		sub.active++
		started++
		sub.s.attempts.Add(1)
		go func() {
			defer sub.s.attempts.Done()
			sub.attempt(attemptCtx, c)
		}()
	}
	// What finished before this scan began is visible to every later one.
	for seq, g := range sub.recent {
		if g <= startGen {
			delete(sub.recent, seq)
		}
	}
	sub.mu.Unlock()
	if started == free || len(cands) == free+busy {
		return idlePoll // full, or more due: results wake us
	}
	return sub.untilNextDue(schedCtx, now)
}

// due lists up to limit pending deliveries that are due, longest due
// first, each the earliest pending event of its call (events without a
// call have no order). Order across calls does not matter; within a call
// only the earliest pending one is ever listed.
func (sub *subscriber) due(ctx context.Context, now time.Time, limit int) ([]candidate, error) {
	rows, err := sub.s.scans.due.QueryContext(ctx, sub.cfg.Name, statePending, now.UnixNano(), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []candidate
	for rows.Next() {
		var c candidate
		if err := rows.Scan(&c.seq, &c.callID, &c.attempts, &c.id, &c.typ, &c.body); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// untilNextDue returns the time until the earliest pending delivery that
// is not due yet, bounded by idlePoll.
func (sub *subscriber) untilNextDue(ctx context.Context, now time.Time) time.Duration {
	var next sql.NullInt64
	err := sub.s.scans.next.QueryRowContext(ctx, sub.cfg.Name, statePending, now.UnixNano()).Scan(&next)
	if err != nil || !next.Valid {
		return idlePoll
	}
	return min(max(time.Duration(next.Int64-now.UnixNano()), time.Millisecond), idlePoll)
}

// attempt posts one event and hands the result to the writer.
func (sub *subscriber) attempt(ctx context.Context, c candidate) {
	status, errText, retryAfter := sub.post(ctx, c)
	// The request is over: its slot is free, though the delivery (and its
	// call) stays taken until the result is written.
	sub.mu.Lock()
	sub.active--
	opened := time.Duration(0)
	held := time.Duration(0)
	if ctx.Err() == nil {
		opened = sub.breakerLocked(c.seq, errText == "")
		// A 429 or 503 with Retry-After speaks for the receiver, not for
		// one event: nothing is posted to it until then. Holding back
		// only the refused event sent the next ones straight into its
		// rate limit.
		if retryAfter > 0 && (status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable) {
			held = min(retryAfter, sub.s.opts.BackoffMax)
			if until := sub.s.now().Add(held); until.After(sub.pauseUntil) {
				sub.pauseUntil = until
			}
		}
	}
	sub.mu.Unlock()
	if held > 0 {
		sub.s.errs.log(sub.s.log, slog.LevelWarn, "retry-after "+sub.cfg.Name, "event subscriber asked to wait (Retry-After): pausing its deliveries",
			"subscriber", sub.cfg.Name, "status", status, "pause", held.String())
	}
	if opened > 0 {
		sub.s.errs.log(sub.s.log, slog.LevelWarn, "breaker "+sub.cfg.Name, "event subscriber failing: pausing its deliveries, then trying one event at a time",
			"subscriber", sub.cfg.Name, "consecutive_failures", breakerFailures, "pause", opened.String(), "error", errText)
	}
	sub.poke()
	if ctx.Err() != nil {
		// Abandoned at Close: not an attempt; the delivery stays as it
		// was and is made after the next Open.
		sub.finished(&result{seq: c.seq, callID: c.callID}, false)
		return
	}
	r := result{sub: sub, seq: c.seq, callID: c.callID, id: c.id, attempts: c.attempts + 1, status: status}
	if errText == "" {
		r.delivered = true
	} else {
		r.errText = errText
		r.dead = r.attempts >= sub.s.opts.MaxAttempts
		r.nextAt = sub.s.now().Add(sub.s.backoff(r.attempts, retryAfter))
	}
	select {
	case sub.s.results <- r:
	case <-sub.s.writerDone:
		sub.finished(&r, false)
	}
}

// breakerLocked counts an attempt's outcome for the circuit breaker and
// returns the pause when it opens (or reopens after a failed probe). It is
// told at once, not when the result is written: a receiver that refuses
// connections fails attempts far faster than results are written.
func (sub *subscriber) breakerLocked(seq int64, ok bool) time.Duration {
	probe := sub.probing && seq == sub.probeSeq
	if probe {
		sub.probeSeq = 0
	}
	if ok {
		sub.failures, sub.tripped, sub.probing = 0, 0, false
		return 0
	}
	sub.failures++
	if !(!sub.probing && sub.failures == breakerFailures) && !probe {
		return 0
	}
	sub.tripped++
	pause := sub.s.backoffCeil(sub.tripped)
	if until := sub.s.now().Add(pause); until.After(sub.pauseUntil) {
		sub.pauseUntil = until
	}
	sub.probing = true
	return pause
}

// post makes one HTTP attempt. errText is "" for a 2xx; retryAfter is the
// receiver's Retry-After, if it sent one.
func (sub *subscriber) post(ctx context.Context, c candidate) (status int, errText string, retryAfter time.Duration) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sub.cfg.URL, bytes.NewReader(c.body))
	if err != nil {
		return 0, "bad request: " + err.Error(), 0
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "wagate-events")
	h.Set("X-Wagate-Event-Id", c.id)
	// Idempotency-Key (the event id): the receiver may dedupe on a
	// standard header, and Go's transport then sends the request again
	// on a new connection when a reused keep-alive one was closed under
	// it without an answer — a race with the receiver's idle timeout that
	// was otherwise a failed attempt and a backoff.
	h.Set("Idempotency-Key", c.id)
	h.Set("X-Wagate-Event-Type", c.typ)
	h.Set("X-Wagate-Delivery-Attempt", strconv.Itoa(c.attempts+1))
	h.Set(SignatureHeader, Sign(sub.secret, sub.s.now(), c.body))
	resp, err := sub.client.Do(req)
	if err != nil {
		return 0, cleanError(err), 0
	}
	// Read a bounded part of the answer; closing the body unread drops
	// the connection instead of draining a receiver that sends megabytes.
	head := make([]byte, 0, 512)
	buf := bytes.NewBuffer(head)
	_, _ = io.Copy(buf, io.LimitReader(resp.Body, maxResponseBody))
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, "", 0
	}
	msg := "HTTP " + strconv.Itoa(resp.StatusCode)
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		msg += " (redirects are not followed)"
	}
	if snippet := printable(buf.Bytes(), maxErrorText); snippet != "" {
		msg += ": " + snippet
	}
	return resp.StatusCode, msg, parseRetryAfter(resp.Header.Get("Retry-After"), sub.s.now())
}

// maxRetryAfter bounds what is read of a Retry-After (BackoffMax bounds
// it again); it keeps the arithmetic far from overflowing.
const maxRetryAfter = 7 * 24 * time.Hour

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP
// date (RFC 9110 §10.2.3). It returns 0 for none, a bad value or a time
// already past, and at most maxRetryAfter.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if v[0] >= '0' && v[0] <= '9' {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				return maxRetryAfter
			}
			return 0
		}
		return min(time.Duration(min(n, uint64(maxRetryAfter/time.Second)))*time.Second, maxRetryAfter)
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	return min(max(t.Sub(now), 0), maxRetryAfter)
}

// cleanError shortens a client error: *url.Error repeats the method and
// the URL, which the dead letter shows anyway.
func cleanError(err error) string {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			err = inner
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout: " + err.Error()
	}
	return err.Error()
}

// printable returns the start of b as one line of printable text.
func printable(b []byte, n int) string {
	s := strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, string(b[:min(len(b), n*4)]))
	s = strings.TrimSpace(s)
	if len([]rune(s)) > n {
		s = string([]rune(s)[:n]) + "…"
	}
	return s
}

// backoff is the delay before the attempt after attempt n: full jitter
// over the exponential cap, at least the receiver's Retry-After (within
// BackoffMax).
func (s *Sink) backoff(n int, retryAfter time.Duration) time.Duration {
	ceil := s.backoffCeil(n)
	d := time.Duration(rand.Int64N(int64(ceil) + 1))
	return max(d, min(retryAfter, s.opts.BackoffMax))
}

// backoffCeil is BackoffBase doubled n-1 times, at most BackoffMax.
func (s *Sink) backoffCeil(n int) time.Duration {
	o := &s.opts
	ceil := o.BackoffBase
	for i := 1; i < n && ceil < o.BackoffMax && ceil <= math.MaxInt64/2; i++ {
		ceil *= 2
	}
	return min(ceil, o.BackoffMax)
}

// finished is told by the writer (or, when nothing is written, by the
// attempt) that an attempt is over: written says whether its result is in
// the table. It frees the slot and the call.
func (sub *subscriber) finished(r *result, written bool) {
	sub.mu.Lock()
	if call, ok := sub.inflight[r.seq]; ok {
		sub.gen++
		sub.recent[r.seq] = sub.gen
		delete(sub.inflight, r.seq)
		if call != "" {
			if sub.busyCalls[call]--; sub.busyCalls[call] <= 0 {
				delete(sub.busyCalls, call)
			}
		}
	}
	if r.sub != nil && !written {
		// max: a receiver's longer Retry-After still stands.
		if until := sub.s.now().Add(writeTrouble); until.After(sub.pauseUntil) {
			sub.pauseUntil = until
		}
	}
	sub.mu.Unlock()
	if r.sub != nil && written {
		switch {
		case r.delivered:
			sub.delivered.Add(1)
		case r.dead:
			sub.failed.Add(1)
			sub.dead.Add(1)
			sub.s.errs.log(sub.s.log, slog.LevelWarn, "dead "+sub.cfg.Name, "event became a dead letter; replay it with POST /v1/events/{id}/replay",
				"subscriber", sub.cfg.Name, "event_id", r.id, "call_id", r.callID, "attempts", r.attempts, "last_error", r.errText)
		default:
			sub.failed.Add(1)
			sub.s.errs.log(sub.s.log, slog.LevelWarn, "fail "+sub.cfg.Name, "event delivery failed; will retry",
				"subscriber", sub.cfg.Name, "event_id", r.id, "call_id", r.callID, "attempt", r.attempts, "error", r.errText)
		}
	}
	sub.poke()
}
