package events

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// schemaVersion is stored in PRAGMA user_version; a file written by a newer
// wagate is refused rather than misread.
const schemaVersion = 1

// Times are stored as Unix nanoseconds. Delivery states:
const (
	statePending   = 0
	stateDelivered = 1
	stateDead      = 2
)

// blocked is the next_at of a pending delivery that waits for an earlier
// delivery of its call to the same subscriber: it is never due by time.
// When the earlier one is delivered or dead, the writer sets the next one's
// next_at to now. (The scheduler's query checks the order as well; blocked
// keeps a call's later events out of its scan of due deliveries.)
const blocked = math.MaxInt64

var schema = []string{
	`CREATE TABLE IF NOT EXISTS cdrs (
		seq INTEGER PRIMARY KEY AUTOINCREMENT,
		call_id TEXT NOT NULL UNIQUE,
		created_at INTEGER NOT NULL,
		direction TEXT NOT NULL,
		business_number TEXT NOT NULL,
		wa_user TEXT NOT NULL,
		outcome TEXT NOT NULL,
		body BLOB NOT NULL
	)`,
	`CREATE INDEX IF NOT EXISTS cdrs_created ON cdrs(created_at)`,
	`CREATE INDEX IF NOT EXISTS cdrs_number ON cdrs(business_number, seq)`,
	`CREATE INDEX IF NOT EXISTS cdrs_user ON cdrs(wa_user, seq)`,
	`CREATE TABLE IF NOT EXISTS events (
		seq INTEGER PRIMARY KEY AUTOINCREMENT,
		id TEXT NOT NULL UNIQUE,
		type TEXT NOT NULL,
		call_id TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		body BLOB NOT NULL
	)`,
	`CREATE INDEX IF NOT EXISTS events_created ON events(created_at)`,
	`CREATE TABLE IF NOT EXISTS deliveries (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		event_seq INTEGER NOT NULL REFERENCES events(seq) ON DELETE CASCADE,
		subscriber TEXT NOT NULL,
		call_id TEXT NOT NULL,
		state INTEGER NOT NULL,
		attempts INTEGER NOT NULL DEFAULT 0,
		next_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL,
		last_status INTEGER NOT NULL DEFAULT 0,
		last_error TEXT NOT NULL DEFAULT '',
		UNIQUE (subscriber, event_seq)
	)`,
	// The scheduler reads a subscriber's due deliveries in next_at order,
	// so that a long backlog waiting for its backoff (a receiver that is
	// down) costs nothing to skip, and asks, per call, whether an earlier
	// delivery is pending.
	`CREATE INDEX IF NOT EXISTS deliveries_next ON deliveries(subscriber, state, next_at)`,
	`CREATE INDEX IF NOT EXISTS deliveries_call ON deliveries(subscriber, call_id, state, event_seq)`,
	`CREATE INDEX IF NOT EXISTS deliveries_done ON deliveries(state, updated_at)`,
	`CREATE INDEX IF NOT EXISTS deliveries_event ON deliveries(event_seq)`,
	// Meta's reports of calls (the calls webhook), by WhatsApp call id;
	// joined to CDRs when they are read. Added without a schema version
	// change: an older wagate opening the file ignores the table.
	`CREATE TABLE IF NOT EXISTS meta_calls (
		wa_call_id TEXT PRIMARY KEY,
		updated_at INTEGER NOT NULL,
		body BLOB NOT NULL
	)`,
	`CREATE INDEX IF NOT EXISTS meta_calls_updated ON meta_calls(updated_at)`,
}

// openDB opens the database file for writing (one connection: SQLite has
// one writer, and the pool then serialises writers without SQLITE_BUSY)
// and for reading (a few connections; WAL lets them read while the writer
// writes), creating the file (mode 0640: it holds users' numbers) and the
// schema.
func openDB(ctx context.Context, path string) (w, r *sql.DB, err error) {
	if path == "" {
		return nil, nil, errors.New("events: no database path")
	}
	if strings.ContainsRune(path, '?') {
		// The driver would take what follows for DSN parameters.
		return nil, nil, fmt.Errorf("events: database path %q must not contain '?'", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, nil, fmt.Errorf("events: database directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("events: open %s: %w", path, err)
	}
	f.Close()

	const common = "_busy_timeout=10000&_foreign_keys=1"
	w, err = sql.Open("sqlite", path+"?"+common+"&_journal_mode=WAL&_synchronous=FULL&_txlock=immediate")
	if err != nil {
		return nil, nil, fmt.Errorf("events: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := initSchema(ctx, w); err != nil {
		w.Close()
		return nil, nil, fmt.Errorf("events: %s: %w", path, err)
	}
	r, err = sql.Open("sqlite", path+"?"+common+"&_query_only=1")
	if err != nil {
		w.Close()
		return nil, nil, fmt.Errorf("events: open %s: %w", path, err)
	}
	r.SetMaxOpenConns(4)
	r.SetMaxIdleConns(4)
	if err := r.PingContext(ctx); err != nil {
		w.Close()
		r.Close()
		return nil, nil, fmt.Errorf("events: open %s for reading: %w", path, err)
	}
	return w, r, nil
}

func initSchema(ctx context.Context, db *sql.DB) error {
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("not a usable SQLite database: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %q, not WAL", mode)
	}
	var v int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v > schemaVersion {
		return fmt.Errorf("written by a newer wagate (schema %d, this one knows %d)", v, schemaVersion)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	defer tx.Rollback()
	for _, stmt := range schema {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	return nil
}
