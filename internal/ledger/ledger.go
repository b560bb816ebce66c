// Package ledger records every deploy and each of its steps in SQLite at
// <root>/state.db.
//
// The database runs in WAL mode with synchronous=FULL, so each call that
// writes commits durably before it returns: a row a caller was told about
// survives kill -9 and power loss. Several processes (the agent, a manual
// `slipway deploy`, `slipway history`) may open the same file at once;
// writers wait for each other up to the busy timeout.
package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite" // the "sqlite" database/sql driver; *sqlite.Error has result codes
	sqlite3 "modernc.org/sqlite/lib"
)

// ErrNotFound is returned when the asked-for deploy or commit is not in the
// ledger.
var ErrNotFound = errors.New("not found")

// busyTimeout is how long a writer waits for another writer (this process or
// another) before it gives up with SQLITE_BUSY.
const busyTimeout = 5 * time.Second

// DB is an open ledger. It is safe for concurrent use.
type DB struct {
	sql *sql.DB
}

// Open opens the ledger at path, creating it if needed, and brings its schema
// up to date. Every pooled connection runs with WAL, synchronous=FULL,
// foreign keys on and a busy timeout; write transactions begin IMMEDIATE so
// that concurrent writers queue instead of deadlocking.
func Open(path string) (*DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("ledger: open %s: %w", path, err)
	}
	sqldb, err := sql.Open("sqlite", dsn(abs))
	if err != nil {
		return nil, fmt.Errorf("ledger: open %s: %w", abs, err)
	}
	db := &DB{sql: sqldb}
	ctx := context.Background()
	err = retryBusy(ctx, func() error {
		if err := db.checkJournalMode(ctx); err != nil {
			return err
		}
		_, err := migrate(ctx, sqldb, migrations)
		return err
	})
	if err != nil {
		_ = sqldb.Close()
		return nil, fmt.Errorf("ledger: open %s: %w", abs, err)
	}
	return db, nil
}

// retryBusy runs f until it does not fail with SQLITE_BUSY, for up to the
// busy timeout. Only Open needs it: while two processes create the same
// ledger, the switch to WAL can report SQLITE_BUSY at once, without waiting
// in the busy handler. Once the file is in WAL mode, the busy timeout alone
// covers waiting for other writers.
func retryBusy(ctx context.Context, f func() error) error {
	deadline := time.Now().Add(busyTimeout)
	for {
		err := f()
		if err == nil || !isBusy(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func isBusy(err error) bool {
	var serr *sqlite.Error
	return errors.As(err, &serr) && serr.Code()&0xff == sqlite3.SQLITE_BUSY
}

// Close closes the ledger.
func (db *DB) Close() error {
	if err := db.sql.Close(); err != nil {
		return fmt.Errorf("ledger: close: %w", err)
	}
	return nil
}

// dsn builds the driver's connection string for an absolute path. The path
// goes into a file: URI, escaped, so that names holding '?', '#' or '%' still
// open the right file; the _pragma parameters are applied by the driver to
// every connection the pool opens.
func dsn(abs string) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	u := url.URL{Scheme: "file", Path: abs, RawQuery: q.Encode()}
	return u.String()
}

// checkJournalMode fails when SQLite silently kept a rollback journal, which
// it does on file systems without the shared memory WAL needs.
func (db *DB) checkJournalMode(ctx context.Context) error {
	var mode string
	if err := db.sql.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read journal mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %q, not wal: put the slipway root on a local file system", mode)
	}
	return nil
}

// timeFormat is RFC 3339 in UTC with a fixed nine-digit fraction, so stored
// times round-trip to the nanosecond and sort as text.
const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

func formatTime(t time.Time) string { return t.UTC().Format(timeFormat) }

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse time %q: %w", s, err)
	}
	return t.UTC(), nil
}

// noLimit turns a non-positive limit into SQLite's "no limit".
func noLimit(limit int) int {
	if limit <= 0 {
		return -1
	}
	return limit
}
