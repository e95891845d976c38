package events

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"
)

// Page sizes of the queries.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// ErrBadCursor is returned by the cursor parsers.
var ErrBadCursor = errors.New("not a cursor this API handed out")

// Cursor is a position in a listing: the page after it starts past the
// last record of the page that handed it out. Its text form is opaque.
type Cursor struct{ after int64 }

// IsZero reports the start of a listing.
func (c Cursor) IsZero() bool { return c.after == 0 }

const (
	cdrCursor  = "cdr"
	deadCursor = "dead"
)

func (c Cursor) encode(kind string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(kind + ":" + strconv.FormatInt(c.after, 10)))
}

func parseCursor(kind, s string) (Cursor, error) {
	if s == "" {
		return Cursor{}, nil
	}
	if len(s) > 64 {
		return Cursor{}, ErrBadCursor
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, ErrBadCursor
	}
	k, n, ok := strings.Cut(string(b), ":")
	if !ok || k != kind {
		return Cursor{}, ErrBadCursor
	}
	v, err := strconv.ParseInt(n, 10, 64)
	if err != nil || v <= 0 || strconv.FormatInt(v, 10) != n {
		return Cursor{}, ErrBadCursor
	}
	// A cursor is the string a listing handed out, not another spelling
	// of it: base64 skips CR and LF and ignores a last character's
	// unused bits.
	if c := (Cursor{after: v}); c.encode(kind) == s {
		return c, nil
	}
	return Cursor{}, ErrBadCursor
}

// ParseCDRCursor reads the next_cursor of a CDR listing ("" is the start).
func ParseCDRCursor(s string) (Cursor, error) { return parseCursor(cdrCursor, s) }

// ParseDeadLetterCursor reads the next_cursor of a dead-letter listing.
func ParseDeadLetterCursor(s string) (Cursor, error) { return parseCursor(deadCursor, s) }

// CDRQuery selects CDRs; zero fields do not filter. CDRs are listed in the
// order they were recorded (at the end of their calls), oldest first.
type CDRQuery struct {
	// From and To bound the call's creation time: From ≤ created_at < To.
	From, To time.Time
	// Number is a business number (+E.164); User a WhatsApp user as
	// stored (+E.164 or business-scoped id).
	Number, User string
	Direction    Direction
	Outcome      Outcome
	// After continues a listing.
	After Cursor
	// Limit is the page size, 1–MaxLimit (0: DefaultLimit).
	Limit int
}

// CDRPage is one page of CDRs.
type CDRPage struct {
	CDRs []CDR
	// NextCursor continues the listing; "" when nothing more matched.
	NextCursor string
}

func pageSize(n int) int {
	switch {
	case n <= 0:
		return DefaultLimit
	case n > MaxLimit:
		return MaxLimit
	}
	return n
}

// CDRs lists CDRs matching q.
func (s *Sink) CDRs(ctx context.Context, q CDRQuery) (CDRPage, error) {
	limit := pageSize(q.Limit)
	var where []string
	var args []any
	add := func(cond string, v any) { where = append(where, cond); args = append(args, v) }
	// seqLo..seqHi is the range of seq the page walks: after the cursor,
	// within the records of the window. One lower bound, not two: SQLite
	// walks the primary key from only one of them.
	seqLo, seqHi := int64(0), int64(math.MaxInt64)
	if !q.After.IsZero() {
		seqLo = q.After.after + 1
	}
	if !q.From.IsZero() || !q.To.IsZero() {
		// The window is applied as +created_at, so that SQLite never
		// picks the created_at index for the page: that plan read,
		// joined with Meta's reports and sorted every record of the
		// window after the cursor for each page (1.4 s a page at
		// 200,000 CDRs with the window left open, and a walk through a
		// window cost its size squared). Instead the page walks the
		// records in seq order: a bound that excludes nothing stored
		// ("from=2020-01-01", "to=3000-01-01") needs nothing more, and
		// a bound that does ("yesterday") is turned into the range of
		// seq its records span, found on the created_at index alone.
		var lo, hi sql.NullInt64
		if err := s.rdb.QueryRowContext(ctx, `SELECT (SELECT MIN(created_at) FROM cdrs), (SELECT MAX(created_at) FROM cdrs)`).Scan(&lo, &hi); err != nil {
			return CDRPage{}, fmt.Errorf("events: query CDRs: %w", err)
		}
		var win []string
		var winArgs []any
		if !q.From.IsZero() {
			from := clampUnixNano(q.From)
			add("+c.created_at >= ?", from)
			if lo.Valid && from > lo.Int64 {
				win, winArgs = append(win, "created_at >= ?"), append(winArgs, from)
			}
		}
		if !q.To.IsZero() {
			to := clampUnixNano(q.To)
			add("+c.created_at < ?", to)
			if hi.Valid && to <= hi.Int64 {
				win, winArgs = append(win, "created_at < ?"), append(winArgs, to)
			}
		}
		if len(win) > 0 {
			var first, last sql.NullInt64
			if err := s.rdb.QueryRowContext(ctx, `SELECT MIN(seq), MAX(seq) FROM cdrs INDEXED BY cdrs_created WHERE `+strings.Join(win, " AND "), winArgs...).Scan(&first, &last); err != nil {
				return CDRPage{}, fmt.Errorf("events: query CDRs: %w", err)
			}
			if !first.Valid {
				return CDRPage{CDRs: []CDR{}}, nil
			}
			seqLo, seqHi = max(seqLo, first.Int64), last.Int64
		}
	}
	if seqLo > 0 {
		add("c.seq >= ?", seqLo)
	}
	if seqHi < math.MaxInt64 {
		add("c.seq <= ?", seqHi)
	}
	if q.Number != "" {
		add("business_number = ?", q.Number)
	}
	if q.User != "" {
		add("wa_user = ?", q.User)
	}
	if q.Direction != "" {
		add("direction = ?", string(q.Direction))
	}
	if q.Outcome != "" {
		add("outcome = ?", string(q.Outcome))
	}
	sqlText := cdrSelect
	if len(where) > 0 {
		sqlText += " WHERE " + strings.Join(where, " AND ")
	}
	sqlText += " ORDER BY c.seq LIMIT ?"
	args = append(args, limit+1)
	rows, err := s.rdb.QueryContext(ctx, sqlText, args...)
	if err != nil {
		return CDRPage{}, fmt.Errorf("events: query CDRs: %w", err)
	}
	defer rows.Close()
	page := CDRPage{CDRs: make([]CDR, 0, min(limit, 64))}
	var last int64
	fetched := 0
	for rows.Next() {
		if len(page.CDRs) == limit {
			page.NextCursor = Cursor{after: last}.encode(cdrCursor)
			break
		}
		fetched++
		seq, c, err := s.scanCDR(rows)
		if errors.Is(err, errUnreadableCDR) {
			// One record that cannot be read (a damaged row, one from a
			// newer wagate) must not make every page that holds it fail:
			// a listing could never get past it. Skipped, counted, logged.
			s.unreadableCDRs.Add(1)
			s.errs.log(s.log, slog.LevelError, "unreadable CDR", "CDR unreadable: left out of the listing", "seq", seq, "error", err)
			last = seq
			continue
		}
		if err != nil {
			return CDRPage{}, err
		}
		last = seq
		page.CDRs = append(page.CDRs, c)
	}
	if err := rows.Err(); err != nil {
		return CDRPage{}, fmt.Errorf("events: query CDRs: %w", err)
	}
	if page.NextCursor == "" && fetched > limit {
		// Rows were skipped: the extra row read to know whether more
		// match was taken into the page, so more may follow.
		page.NextCursor = Cursor{after: last}.encode(cdrCursor)
	}
	return page, nil
}

// clampUnixNano is t in Unix nanoseconds, saturated at the int64 range:
// time.UnixNano wraps around outside 1678–2262, so that an open-ended
// "to=3000-01-01T00:00:00Z" compared as a large negative number and
// matched nothing.
func clampUnixNano(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, math.MinInt64)):
		return math.MinInt64
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// errUnreadableCDR wraps a stored CDR whose body does not decode.
var errUnreadableCDR = errors.New("events: CDR unreadable")

// cdrSelect reads CDRs with Meta's report of the same WhatsApp call id
// beside each, in one query (the report arrives by webhook, before or
// after the CDR, so it is joined on reading, not copied on writing).
// CAST: a BLOB handed to json_extract would be taken for JSONB.
// CASE json_valid: json_extract of one malformed body failed the whole
// query (CASE, unlike AND, is evaluated in order).
const cdrSelect = `SELECT c.seq, c.body, m.body FROM cdrs c
	LEFT JOIN meta_calls m ON m.wa_call_id = CASE WHEN json_valid(CAST(c.body AS TEXT))
		THEN json_extract(CAST(c.body AS TEXT), '$.wa_call_id') END`

// scanCDR reads one row of cdrSelect. A Meta report that cannot be read
// leaves the CDR as it is (warned about, rate-limited).
func (s *Sink) scanCDR(rows interface{ Scan(...any) error }) (int64, CDR, error) {
	var seq int64
	var body, meta []byte
	if err := rows.Scan(&seq, &body, &meta); err != nil {
		return 0, CDR{}, fmt.Errorf("events: query CDRs: %w", err)
	}
	var c CDR
	if err := json.Unmarshal(body, &c); err != nil {
		return seq, CDR{}, fmt.Errorf("%w: CDR %d: %w", errUnreadableCDR, seq, err)
	}
	if meta != nil {
		var m MetaCall
		if err := json.Unmarshal(meta, &m); err != nil {
			s.errs.log(s.log, slog.LevelWarn, "meta report", "Meta call report not read", "wa_call_id", c.WACallID, "error", err)
		} else {
			c.MetaStatus, c.MetaDurationS, c.MetaEvent = m.Status, m.DurationS, m.Event
		}
	}
	return seq, c, nil
}

// CDR returns the CDR of a call, or ErrNotFound.
func (s *Sink) CDR(ctx context.Context, callID string) (CDR, error) {
	_, c, err := s.scanCDR(s.rdb.QueryRowContext(ctx, cdrSelect+` WHERE c.call_id = ?`, callID))
	if errors.Is(err, sql.ErrNoRows) {
		return CDR{}, ErrNotFound
	}
	if err != nil {
		return CDR{}, fmt.Errorf("events: read CDR %s: %w", callID, err)
	}
	return c, nil
}

// DeadLetter is an event a subscriber did not take after MaxAttempts.
type DeadLetter struct {
	EventID    string `json:"event_id"`
	Type       Type   `json:"type"`
	CallID     string `json:"call_id,omitempty"`
	Subscriber string `json:"subscriber"`
	Attempts   int    `json:"attempts"`
	// LastStatus is the HTTP status of the last attempt (0: no answer);
	// LastError says what went wrong.
	LastStatus int       `json:"last_status"`
	LastError  string    `json:"last_error"`
	CreatedAt  time.Time `json:"created_at"`
	FailedAt   time.Time `json:"failed_at"`
	// Event is the body as it is posted.
	Event json.RawMessage `json:"event"`
}

// DeadLetterQuery selects dead letters, oldest event first.
type DeadLetterQuery struct {
	// Subscriber filters by subscriber name ("" all).
	Subscriber string
	After      Cursor
	Limit      int
}

// DeadLetterPage is one page of dead letters.
type DeadLetterPage struct {
	DeadLetters []DeadLetter
	NextCursor  string
}

// DeadLetters lists dead letters.
func (s *Sink) DeadLetters(ctx context.Context, q DeadLetterQuery) (DeadLetterPage, error) {
	limit := pageSize(q.Limit)
	rows, err := s.rdb.QueryContext(ctx, `
		SELECT d.id, e.id, e.type, e.call_id, d.subscriber, d.attempts, d.last_status, d.last_error, e.created_at, d.updated_at, e.body
		FROM deliveries d JOIN events e ON e.seq = d.event_seq
		WHERE d.state = ? AND d.id > ? AND (? = '' OR d.subscriber = ?)
		ORDER BY d.id LIMIT ?`,
		stateDead, q.After.after, q.Subscriber, q.Subscriber, limit+1)
	if err != nil {
		return DeadLetterPage{}, fmt.Errorf("events: query dead letters: %w", err)
	}
	defer rows.Close()
	page := DeadLetterPage{DeadLetters: []DeadLetter{}}
	var last int64
	for rows.Next() {
		if len(page.DeadLetters) == limit {
			page.NextCursor = Cursor{after: last}.encode(deadCursor)
			break
		}
		var d DeadLetter
		var created, failed int64
		var body []byte
		if err := rows.Scan(&last, &d.EventID, &d.Type, &d.CallID, &d.Subscriber, &d.Attempts, &d.LastStatus, &d.LastError, &created, &failed, &body); err != nil {
			return DeadLetterPage{}, fmt.Errorf("events: query dead letters: %w", err)
		}
		d.CreatedAt, d.FailedAt, d.Event = time.Unix(0, created).UTC(), time.Unix(0, failed).UTC(), body
		page.DeadLetters = append(page.DeadLetters, d)
	}
	if err := rows.Err(); err != nil {
		return DeadLetterPage{}, fmt.Errorf("events: query dead letters: %w", err)
	}
	return page, nil
}

// ErrNothingToReplay says the event exists but has no delivery to re-queue.
var ErrNothingToReplay = errors.New("events: nothing to replay")

// RemovedSubscribersError is the ErrNothingToReplay of an event whose
// dead deliveries are all to subscribers no longer configured (removed
// from the config since): they stay listed as dead letters until
// retention, but cannot be re-queued to where they were going.
type RemovedSubscribersError struct {
	// Subscribers are the names, sorted.
	Subscribers []string
}

func (e *RemovedSubscribersError) Error() string {
	return "events: nothing to replay: dead deliveries only to subscribers no longer configured: " + strings.Join(e.Subscribers, ", ")
}

// Is makes it an ErrNothingToReplay.
func (e *RemovedSubscribersError) Is(target error) bool { return target == ErrNothingToReplay }

// Replay re-queues event eventID. With a subscriber, its delivery to that
// subscriber is made again whatever its state (dead, delivered, or never
// created because the subscriber did not take that type); already pending
// is ErrNothingToReplay. Without one, every dead delivery of the event to
// a configured subscriber is re-queued. The attempts start again from 0.
// It returns how many deliveries were re-queued.
func (s *Sink) Replay(ctx context.Context, eventID, subscriberName string) (int, error) {
	var sub *subscriber
	if subscriberName != "" {
		if sub = s.subByName[subscriberName]; sub == nil {
			return 0, fmt.Errorf("%w: %q", ErrUnknownSubscriber, subscriberName)
		}
	}
	now := s.now().UnixNano()
	var res sql.Result
	var requeued map[string]int64
	var err error
	if sub != nil {
		res, err = s.wdb.ExecContext(ctx, `
			INSERT INTO deliveries (event_seq, subscriber, call_id, state, attempts, next_at, updated_at)
			SELECT seq, ?1, call_id, ?2, 0, ?3, ?3 FROM events WHERE id = ?4
			ON CONFLICT (subscriber, event_seq) DO UPDATE SET
				state = ?2, attempts = 0, next_at = ?3, updated_at = ?3, last_status = 0, last_error = ''
			WHERE deliveries.state != ?2`,
			subscriberName, statePending, now, eventID)
	} else {
		args := []any{statePending, now, eventID, stateDead}
		marks := []string{"NULL"}
		for _, x := range s.subs {
			args = append(args, x.cfg.Name)
			marks = append(marks, "?"+strconv.Itoa(len(args)))
		}
		requeued, err = s.replayDead(ctx, `
			UPDATE deliveries SET state = ?1, attempts = 0, next_at = ?2, updated_at = ?2, last_status = 0, last_error = ''
			WHERE event_seq = (SELECT seq FROM events WHERE id = ?3) AND state = ?4 AND subscriber IN (`+strings.Join(marks, ", ")+`)
			RETURNING subscriber`,
			args...)
	}
	if err != nil {
		return 0, fmt.Errorf("events: replay %s: %w", eventID, err)
	}
	var n int64
	if res != nil {
		if n, _ = res.RowsAffected(); n > 0 {
			sub.pending.Add(n)
		}
	} else {
		for name, k := range requeued {
			s.subByName[name].pending.Add(k)
			n += k
		}
	}
	if n == 0 {
		var one int
		err := s.rdb.QueryRowContext(ctx, `SELECT 1 FROM events WHERE id = ?`, eventID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, ErrNotFound
		}
		if err != nil {
			return 0, fmt.Errorf("events: replay %s: %w", eventID, err)
		}
		if sub == nil {
			return 0, s.removedDead(ctx, eventID)
		}
		return 0, ErrNothingToReplay
	}
	s.log.Info("event re-queued", "event_id", eventID, "subscriber", subscriberName, "deliveries", n)
	if sub != nil {
		sub.poke()
	} else {
		for _, x := range s.subs {
			x.poke()
		}
	}
	return int(n), nil
}

// removedDead is the error of a replay of every dead delivery that found
// none to re-queue: a *RemovedSubscribersError when the event has dead
// deliveries to subscribers no longer configured, else ErrNothingToReplay.
func (s *Sink) removedDead(ctx context.Context, eventID string) error {
	rows, err := s.rdb.QueryContext(ctx, `
		SELECT DISTINCT d.subscriber FROM deliveries d JOIN events e ON e.seq = d.event_seq
		WHERE e.id = ? AND d.state = ? ORDER BY d.subscriber`, eventID, stateDead)
	if err != nil {
		return fmt.Errorf("events: replay %s: %w", eventID, err)
	}
	defer rows.Close()
	var gone []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return fmt.Errorf("events: replay %s: %w", eventID, err)
		}
		if s.subByName[name] == nil {
			gone = append(gone, name)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("events: replay %s: %w", eventID, err)
	}
	if len(gone) == 0 {
		return ErrNothingToReplay
	}
	return &RemovedSubscribersError{Subscribers: gone}
}

// replayDead runs the UPDATE … RETURNING subscriber of a replay and counts
// the deliveries re-queued per subscriber, for their pending counts.
func (s *Sink) replayDead(ctx context.Context, query string, args ...any) (map[string]int64, error) {
	rows, err := s.wdb.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		out[name]++
	}
	return out, rows.Err()
}
