package ledger

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Snapshot is one restore point in the ledger (the API's /commits, docs/agent.md). CommitID
// is the snapshot's own id (a VM snapshot's id, say); Commit
// is the app's commit it belongs to.
type Snapshot struct {
	ID       int64     `json:"id"`
	CommitID string    `json:"commitId"`
	Provider string    `json:"provider"` // data, command, or external (recorded through the API)
	VMID     string    `json:"vmId"`
	Label    string    `json:"label"`
	Agent    string    `json:"agent"`
	Tags     []string  `json:"tags"`
	App      string    `json:"app"`
	Commit   string    `json:"commit"`
	DeployID int64     `json:"deployId,omitempty"`
	Size     int64     `json:"size"`
	Created  time.Time `json:"created"`
	// Restored is when the snapshot was last restored (zero: never), and
	// RestoredBy the deploy whose rollback restored it (0: by hand).
	Restored   time.Time `json:"restored,omitzero"`
	RestoredBy int64     `json:"restoredBy,omitempty"`
}

// ErrNoSnapshot is a snapshot id the ledger does not have.
var ErrNoSnapshot = errors.New("no such snapshot in the ledger")

// AddSnapshot records a restore point and returns its row id.
func (db *DB) AddSnapshot(ctx context.Context, s Snapshot) (int64, error) {
	if s.Created.IsZero() {
		s.Created = time.Now()
	}
	if s.Tags == nil {
		s.Tags = []string{}
	}
	if s.Provider == "" {
		s.Provider = "external"
	}
	tags, err := json.Marshal(s.Tags)
	if err != nil {
		return 0, fmt.Errorf("ledger: add snapshot: %w", err)
	}
	res, err := db.sql.ExecContext(ctx, `INSERT INTO snapshots
		(commit_id, vm_id, label, agent, tags, created, provider, app, commit_sha, deploy_id, size)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		s.CommitID, s.VMID, s.Label, s.Agent, string(tags), formatTime(s.Created),
		s.Provider, s.App, s.Commit, s.DeployID, s.Size)
	if err != nil {
		return 0, fmt.Errorf("ledger: add snapshot: %w", err)
	}
	return res.LastInsertId()
}

const snapshotColumns = `id, commit_id, vm_id, label, agent, tags, created, provider, app, commit_sha, deploy_id, size, restored, restored_by`

func scanSnapshot(row interface{ Scan(...any) error }) (Snapshot, error) {
	var s Snapshot
	var tags, created, restored string
	if err := row.Scan(&s.ID, &s.CommitID, &s.VMID, &s.Label, &s.Agent, &tags, &created,
		&s.Provider, &s.App, &s.Commit, &s.DeployID, &s.Size, &restored, &s.RestoredBy); err != nil {
		return s, err
	}
	if err := json.Unmarshal([]byte(tags), &s.Tags); err != nil {
		return s, fmt.Errorf("snapshot %d tags: %w", s.ID, err)
	}
	var err error
	if s.Created, err = parseTime(created); err != nil {
		return s, err
	}
	if restored != "" {
		if s.Restored, err = parseTime(restored); err != nil {
			return s, err
		}
	}
	return s, nil
}

// Snapshots returns restore points, newest first; limit <= 0 returns all.
func (db *DB) Snapshots(ctx context.Context, limit int) ([]Snapshot, error) {
	rows, err := db.sql.QueryContext(ctx, `SELECT `+snapshotColumns+` FROM snapshots ORDER BY id DESC LIMIT ?`, noLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("ledger: snapshots: %w", err)
	}
	defer func() { _ = rows.Close() }()
	out := []Snapshot{}
	for rows.Next() {
		s, err := scanSnapshot(rows)
		if err != nil {
			return nil, fmt.Errorf("ledger: snapshots: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// SnapshotByID returns the newest snapshot with the snapshot id commitID.
func (db *DB) SnapshotByID(ctx context.Context, commitID string) (Snapshot, error) {
	s, err := scanSnapshot(db.sql.QueryRowContext(ctx, `SELECT `+snapshotColumns+` FROM snapshots
		WHERE commit_id = ? ORDER BY id DESC LIMIT 1`, commitID))
	if errors.Is(err, sql.ErrNoRows) {
		return s, fmt.Errorf("snapshot %s: %w", commitID, ErrNoSnapshot)
	}
	if err != nil {
		return s, fmt.Errorf("ledger: snapshot %s: %w", commitID, err)
	}
	return s, nil
}

// DeploySnapshot returns the snapshot a deploy took with label.
func (db *DB) DeploySnapshot(ctx context.Context, deployID int64, label string) (Snapshot, error) {
	s, err := scanSnapshot(db.sql.QueryRowContext(ctx, `SELECT `+snapshotColumns+` FROM snapshots
		WHERE deploy_id = ? AND label = ? ORDER BY id DESC LIMIT 1`, deployID, label))
	if errors.Is(err, sql.ErrNoRows) {
		return s, fmt.Errorf("deploy %d took no %s snapshot: %w", deployID, label, ErrNoSnapshot)
	}
	if err != nil {
		return s, fmt.Errorf("ledger: snapshot of deploy %d: %w", deployID, err)
	}
	return s, nil
}

// MarkSnapshotRestored records that a snapshot was restored, by deployID's
// rollback (0: by hand).
func (db *DB) MarkSnapshotRestored(ctx context.Context, id, deployID int64, at time.Time) error {
	if _, err := db.sql.ExecContext(ctx, `UPDATE snapshots SET restored = ?, restored_by = ? WHERE id = ?`,
		formatTime(at), deployID, id); err != nil {
		return fmt.Errorf("ledger: mark snapshot %d restored: %w", id, err)
	}
	return nil
}

// DeleteSnapshot removes a snapshot's row.
func (db *DB) DeleteSnapshot(ctx context.Context, id int64) error {
	if _, err := db.sql.ExecContext(ctx, `DELETE FROM snapshots WHERE id = ?`, id); err != nil {
		return fmt.Errorf("ledger: delete snapshot %d: %w", id, err)
	}
	return nil
}
