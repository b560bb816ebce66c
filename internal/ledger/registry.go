package ledger

import (
	"context"
	"fmt"
	"time"
)

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
	return db.UpsertVMs(ctx, []VM{vm})
}

// UpsertVMs records vms in one transaction (one fsync, however many).
func (db *DB) UpsertVMs(ctx context.Context, vms []VM) error {
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("ledger: upsert vms: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	for _, vm := range vms {
		if vm.Seen.IsZero() {
			vm.Seen = time.Now()
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO vms (name, address, app, current_commit, safe_commit, version, seen)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET address = excluded.address, app = excluded.app,
			current_commit = excluded.current_commit, safe_commit = excluded.safe_commit,
			version = excluded.version, seen = excluded.seen`,
			vm.Name, vm.Address, vm.App, vm.CurrentCommit, vm.SafeCommit, vm.Version, formatTime(vm.Seen)); err != nil {
			return fmt.Errorf("ledger: upsert vm %s: %w", vm.Name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("ledger: upsert vms: %w", err)
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
