package events

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"
)

// SQLite's primary result codes for a file that is not a readable
// database (the extended codes keep them in the low byte).
const (
	sqliteCorrupt = 11 // SQLITE_CORRUPT: "database disk image is malformed"
	sqliteNotADB  = 26 // SQLITE_NOTADB: "file is not a database"
)

// isCorrupt reports whether err says the database file is damaged (as
// opposed to missing permissions, a full disk or a newer schema).
func isCorrupt(err error) bool {
	var se interface{ Code() int }
	if !errors.As(err, &se) {
		return false
	}
	c := se.Code() & 0xff
	return c == sqliteCorrupt || c == sqliteNotADB
}

// quarantine moves a damaged database and its -wal and -shm files aside,
// to <path>.corrupt-<UTC time>, and returns the new name of the database.
// Nothing is deleted: what salvage cannot read stays there for sqlite3's
// .recover.
func quarantine(path string, now time.Time) (string, error) {
	moved := path + ".corrupt-" + now.UTC().Format("20060102T150405Z")
	if _, err := os.Stat(moved); err == nil {
		moved += fmt.Sprintf("-%d", now.UnixNano())
	}
	if err := os.Rename(path, moved); err != nil {
		return "", fmt.Errorf("move the damaged database aside: %w", err)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Rename(path+suffix, moved+suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("move the damaged database aside: %w", err)
		}
	}
	return moved, nil
}

// salvageTable names a table's columns, its key first: rows are read in
// key order.
type salvageTable struct {
	name    string
	key     string
	columns []string
	// insert is the INSERT for one row, with one ? per column; empty:
	// INSERT OR IGNORE of the columns as they are.
	insert string
}

var salvageTables = []salvageTable{
	// Events before their deliveries (which refer to them).
	{name: "events", key: "seq", columns: []string{"seq", "id", "type", "call_id", "created_at", "body"}},
	{name: "deliveries", key: "id",
		columns: []string{"id", "event_seq", "subscriber", "call_id", "state", "attempts", "next_at", "updated_at", "last_status", "last_error"},
		// A delivery whose event was not readable cannot be made.
		insert: `INSERT OR IGNORE INTO deliveries (id, event_seq, subscriber, call_id, state, attempts, next_at, updated_at, last_status, last_error)
			SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 WHERE EXISTS (SELECT 1 FROM events WHERE seq = ?2)`},
	{name: "cdrs", key: "seq", columns: []string{"seq", "call_id", "created_at", "direction", "business_number", "wa_user", "outcome", "body"}},
	{name: "meta_calls", key: "rowid", columns: []string{"rowid", "wa_call_id", "updated_at", "body"}},
}

// salvageBudget bounds the copy out of a damaged database at start.
const salvageBudget = 20 * time.Second

// salvageBatch rows are copied per transaction.
const salvageBatch = 1000

// salvage copies what can still be read of the damaged database at from
// into the new one (w, with its schema): each table is read in key order
// up to the first damaged page, then backwards from its end down to the
// next, so that one damaged region loses only the rows it held. It
// returns the rows copied per table.
func salvage(ctx context.Context, w *sql.DB, from string, now time.Time) (map[string]int, error) {
	// writable_schema: a file shorter than its header says (a partial
	// copy, a lost tail) is refused as corrupt without it; with it, SQLite
	// reads the pages that are there. query_only keeps it from writing.
	old, err := sql.Open("sqlite", from+"?_query_only=1&_pragma=writable_schema(1)")
	if err != nil {
		return nil, err
	}
	defer old.Close()
	old.SetMaxOpenConns(1)
	copied := map[string]int{}
	var errs []error
	for _, t := range salvageTables {
		n, err := salvageOne(ctx, old, w, t)
		copied[t.name] = n
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", t.name, err))
		}
	}
	// A later event of a call waits (blocked) for the delivery of an
	// earlier one; when that one was lost it would wait forever. This
	// runs even when the copy ran out of time.
	if _, err := w.ExecContext(context.WithoutCancel(ctx), `UPDATE deliveries SET next_at = ?1 WHERE state = ?2 AND next_at = ?3 AND NOT EXISTS (
		SELECT 1 FROM deliveries p WHERE p.subscriber = deliveries.subscriber AND p.call_id = deliveries.call_id
		AND p.state = ?2 AND p.event_seq < deliveries.event_seq)`, now.UnixNano(), statePending, int64(blocked)); err != nil {
		errs = append(errs, fmt.Errorf("release deliveries: %w", err))
	}
	return copied, errors.Join(errs...)
}

func salvageOne(ctx context.Context, old, w *sql.DB, t salvageTable) (int, error) {
	cols := strings.Join(t.columns, ", ")
	ins := t.insert
	if ins == "" {
		marks := strings.TrimSuffix(strings.Repeat("?, ", len(t.columns)), ", ")
		ins = "INSERT OR IGNORE INTO " + t.name + " (" + cols + ") VALUES (" + marks + ")"
	}
	if t.key == "rowid" {
		// rowid is not a column to insert: the key of meta_calls is
		// wa_call_id.
		ins = "INSERT OR IGNORE INTO " + t.name + " (" + strings.Join(t.columns[1:], ", ") + ") VALUES (" +
			strings.TrimSuffix(strings.Repeat("?, ", len(t.columns)-1), ", ") + ")"
	}
	copied := 0
	// Forward from the start, then backward from the end down to where the
	// forward scan stopped.
	last, n, ferr := salvageScan(ctx, old, w, t, ins, "SELECT "+cols+" FROM "+t.name+" WHERE "+t.key+" > ? ORDER BY "+t.key, minKey)
	copied += n
	if ferr == nil {
		return copied, nil
	}
	_, n, berr := salvageScan(ctx, old, w, t, ins, "SELECT "+cols+" FROM "+t.name+" WHERE "+t.key+" > ? ORDER BY "+t.key+" DESC", last)
	copied += n
	if berr != nil {
		return copied, errors.Join(ferr, berr)
	}
	return copied, ferr
}

// minKey is below every key of the tables.
const minKey = -1 << 63

// salvageScan runs query (taking one key bound) on old and inserts each
// row into w, committing every salvageBatch rows. It returns the key of
// the last row read, the rows copied and the error that stopped it.
func salvageScan(ctx context.Context, old, w *sql.DB, t salvageTable, ins, query string, bound int64) (int64, int, error) {
	rows, err := old.QueryContext(ctx, query, bound)
	if err != nil {
		return bound, 0, err
	}
	defer rows.Close()
	last, copied := bound, 0
	vals := make([]any, len(t.columns))
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var tx *sql.Tx
	commit := func() error {
		if tx == nil {
			return nil
		}
		err := tx.Commit()
		tx = nil
		return err
	}
	defer func() {
		if tx != nil {
			tx.Rollback()
		}
	}()
	pending, read := 0, 0
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return last, copied, err
		}
		if tx == nil {
			if tx, err = w.BeginTx(ctx, nil); err != nil {
				return last, copied, err
			}
		}
		args := vals
		if t.key == "rowid" {
			args = vals[1:]
		}
		res, err := tx.ExecContext(ctx, ins, args...)
		if err != nil {
			return last, copied, err
		}
		if k, ok := vals[0].(int64); ok {
			last = k
		}
		// Not counted: a row already copied, or a delivery whose event
		// was lost.
		if n, _ := res.RowsAffected(); n == 1 {
			pending++
		}
		if read++; read == salvageBatch {
			if err := commit(); err != nil {
				return last, copied, err
			}
			copied += pending
			pending, read = 0, 0
		}
	}
	if err := commit(); err != nil {
		return last, copied, err
	}
	copied += pending
	return last, copied, rows.Err()
}

// openOrRecover opens the database; when the file is damaged, it is moved
// aside, a new one is made, and what can be read of the old one is copied
// in. Calls need the events store to start: a damaged file must not keep
// wagate down.
func openOrRecover(ctx context.Context, path string, now time.Time, log *slog.Logger) (w, r *sql.DB, err error) {
	w, r, openErr := openDB(ctx, path)
	if openErr == nil || !isCorrupt(openErr) {
		return w, r, openErr
	}
	moved, err := quarantine(path, now)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (and %w)", openErr, err)
	}
	if w, r, err = openDB(ctx, path); err != nil {
		return nil, nil, err
	}
	// The copy may take at most half of what is left of the opening's
	// time: the rest of Open needs ctx, and calls wait for wagate to
	// start. What is not copied stays in the damaged file.
	budget := salvageBudget
	if dl, ok := ctx.Deadline(); ok {
		budget = min(budget, time.Until(dl)/2)
	}
	sctx, cancel := context.WithTimeout(ctx, budget)
	copied, serr := salvage(sctx, w, moved, now)
	cancel()
	args := []any{"file", path, "damaged_file", moved, "error", openErr, "cdrs_recovered", copied["cdrs"],
		"events_recovered", copied["events"], "deliveries_recovered", copied["deliveries"]}
	if serr != nil {
		args = append(args, "unreadable", serr.Error())
	}
	log.Error("events database damaged: moved aside and replaced by a new one holding what could be read; sqlite3 <damaged_file> .recover may find more", args...)
	return w, r, nil
}
