package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Step is one step of a deploy (lock, resolve, build, ...) as it ended.
type Step struct {
	DeployID int64         `json:"deploy_id"`
	Name     string        `json:"name"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	Outcome  Outcome       `json:"outcome"` // succeeded, failed or skipped
	Detail   string        `json:"detail,omitempty"`
}

// AddStep appends s to its deploy's steps. It returns ErrNotFound when the
// deploy does not exist.
func (db *DB) AddStep(ctx context.Context, s Step) error {
	if !s.Outcome.Valid() {
		return fmt.Errorf("ledger: add step %q to deploy %d: unknown outcome %q", s.Name, s.DeployID, s.Outcome)
	}
	_, err := db.sql.ExecContext(ctx, `
		INSERT INTO steps (deploy_id, name, started, duration_ns, outcome, detail)
		VALUES (?, ?, ?, ?, ?, ?)`,
		s.DeployID, s.Name, formatTime(s.Started), int64(s.Duration), s.Outcome, s.Detail)
	var serr *sqlite.Error
	if errors.As(err, &serr) && serr.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY {
		return fmt.Errorf("ledger: add step %q to deploy %d: %w", s.Name, s.DeployID, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("ledger: add step %q to deploy %d: %w", s.Name, s.DeployID, err)
	}
	return nil
}

// Steps returns the steps of a deploy in the order they were added. A deploy
// without steps, or one that does not exist, has none.
func (db *DB) Steps(ctx context.Context, deployID int64) ([]Step, error) {
	rows, err := db.sql.QueryContext(ctx, `
		SELECT deploy_id, name, started, duration_ns, outcome, detail
		FROM steps WHERE deploy_id = ? ORDER BY id`, deployID)
	if err != nil {
		return nil, fmt.Errorf("ledger: steps of deploy %d: %w", deployID, err)
	}
	defer func() { _ = rows.Close() }()
	var steps []Step
	for rows.Next() {
		var (
			s                Step
			started, outcome string
			ns               int64
		)
		if err := rows.Scan(&s.DeployID, &s.Name, &started, &ns, &outcome, &s.Detail); err != nil {
			return nil, fmt.Errorf("ledger: steps of deploy %d: %w", deployID, err)
		}
		if s.Started, err = parseTime(started); err != nil {
			return nil, fmt.Errorf("ledger: steps of deploy %d: %q: %w", deployID, s.Name, err)
		}
		s.Duration = time.Duration(ns)
		s.Outcome = Outcome(outcome)
		steps = append(steps, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ledger: steps of deploy %d: %w", deployID, err)
	}
	return steps, nil
}
