package ledger

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Snapshot is one restore point in the ledger (SPEC §6 /commits).
type Snapshot struct {
	ID       int64     `json:"id"`
	CommitID string    `json:"commitId"`
	VMID     string    `json:"vmId"`
	Label    string    `json:"label"`
	Agent    string    `json:"agent"`
	Tags     []string  `json:"tags"`
	Created  time.Time `json:"created"`
}

// AddSnapshot records a restore point and returns its row id.
func (db *DB) AddSnapshot(ctx context.Context, s Snapshot) (int64, error) {
	if s.Created.IsZero() {
		s.Created = time.Now()
	}
	if s.Tags == nil {
		s.Tags = []string{}
	}
	tags, err := json.Marshal(s.Tags)
	if err != nil {
		return 0, fmt.Errorf("ledger: add snapshot: %w", err)
	}
	res, err := db.sql.ExecContext(ctx, `INSERT INTO snapshots (commit_id, vm_id, label, agent, tags, created)
		VALUES (?, ?, ?, ?, ?, ?)`, s.CommitID, s.VMID, s.Label, s.Agent, string(tags), formatTime(s.Created))
	if err != nil {
		return 0, fmt.Errorf("ledger: add snapshot: %w", err)
	}
	return res.LastInsertId()
}

// Snapshots returns restore points, newest first; limit <= 0 returns all.
func (db *DB) Snapshots(ctx context.Context, limit int) ([]Snapshot, error) {
	rows, err := db.sql.QueryContext(ctx, `SELECT id, commit_id, vm_id, label, agent, tags, created
		FROM snapshots ORDER BY id DESC LIMIT ?`, noLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("ledger: snapshots: %w", err)
	}
	defer func() { _ = rows.Close() }()
	out := []Snapshot{}
	for rows.Next() {
		var s Snapshot
		var tags, created string
		if err := rows.Scan(&s.ID, &s.CommitID, &s.VMID, &s.Label, &s.Agent, &tags, &created); err != nil {
			return nil, fmt.Errorf("ledger: snapshots: %w", err)
		}
		if err := json.Unmarshal([]byte(tags), &s.Tags); err != nil {
			return nil, fmt.Errorf("ledger: snapshot %d tags: %w", s.ID, err)
		}
		if s.Created, err = parseTime(created); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// VM is a host an agent knows, with the versions it last reported.
type VM struct {
	Name          string    `json:"name"`
	Address       string    `json:"address"`
	App           string    `json:"app"`
	CurrentCommit string    `json:"current_commit"`
	SafeCommit    string    `json:"safe_commit"`
	Version       string    `json:"version"`
	Seen          time.Time `json:"seen"`
}

// UpsertVM records vm, replacing what was known of a host of that name.
func (db *DB) UpsertVM(ctx context.Context, vm VM) error {
	if vm.Seen.IsZero() {
		vm.Seen = time.Now()
	}
	_, err := db.sql.ExecContext(ctx, `INSERT INTO vms (name, address, app, current_commit, safe_commit, version, seen)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET address = excluded.address, app = excluded.app,
			current_commit = excluded.current_commit, safe_commit = excluded.safe_commit,
			version = excluded.version, seen = excluded.seen`,
		vm.Name, vm.Address, vm.App, vm.CurrentCommit, vm.SafeCommit, vm.Version, formatTime(vm.Seen))
	if err != nil {
		return fmt.Errorf("ledger: upsert vm %s: %w", vm.Name, err)
	}
	return nil
}

// VMs returns the known hosts by name.
func (db *DB) VMs(ctx context.Context) ([]VM, error) {
	rows, err := db.sql.QueryContext(ctx, `SELECT name, address, app, current_commit, safe_commit, version, seen
		FROM vms ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("ledger: vms: %w", err)
	}
	defer func() { _ = rows.Close() }()
	out := []VM{}
	for rows.Next() {
		var vm VM
		var seen string
		if err := rows.Scan(&vm.Name, &vm.Address, &vm.App, &vm.CurrentCommit, &vm.SafeCommit, &vm.Version, &seen); err != nil {
			return nil, fmt.Errorf("ledger: vms: %w", err)
		}
		if vm.Seen, err = parseTime(seen); err != nil {
			return nil, err
		}
		out = append(out, vm)
	}
	return out, rows.Err()
}
