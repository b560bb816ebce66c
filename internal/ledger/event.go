package ledger

import (
	"context"
	"fmt"
	"time"
)

// Kinds of event.
const (
	// EventRestart is a service brought back after it exited on a failure.
	EventRestart = "restart"
	// EventFreeze and EventUnfreeze are deploys frozen and unfrozen from
	// the dashboard or with `slipway lock acquire|release`; the detail
	// says by whom, and why.
	EventFreeze   = "freeze"
	EventUnfreeze = "unfreeze"
)

// Event is something that happened to the app outside a deploy.
type Event struct {
	ID      int64     `json:"id"`
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Service string    `json:"service,omitempty"`
	Detail  string    `json:"detail"`
}

// AddEvent records e and returns its id; a zero Time means now.
func (db *DB) AddEvent(ctx context.Context, e Event) (int64, error) {
	if e.Kind == "" {
		return 0, fmt.Errorf("ledger: add event: no kind")
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	res, err := db.sql.ExecContext(ctx, `INSERT INTO events (time, kind, service, detail) VALUES (?, ?, ?, ?)`,
		formatTime(e.Time), e.Kind, e.Service, e.Detail)
	if err != nil {
		return 0, fmt.Errorf("ledger: add event: %w", err)
	}
	return res.LastInsertId()
}

// Events returns up to limit events, newest first; limit <= 0 returns all.
func (db *DB) Events(ctx context.Context, limit int) ([]Event, error) {
	rows, err := db.sql.QueryContext(ctx, `SELECT id, time, kind, service, detail FROM events ORDER BY id DESC LIMIT ?`, noLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("ledger: events: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []Event
	for rows.Next() {
		var e Event
		var t string
		if err := rows.Scan(&e.ID, &t, &e.Kind, &e.Service, &e.Detail); err != nil {
			return nil, fmt.Errorf("ledger: events: %w", err)
		}
		if e.Time, err = parseTime(t); err != nil {
			return nil, fmt.Errorf("ledger: event %d: %w", e.ID, err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
