package ledger

import (
	"context"
	"database/sql"
	"fmt"
)

// migration is one step of the schema's history. Its version is its position
// in migrations, counted from 1, and is kept in PRAGMA user_version.
type migration struct {
	name string
	sql  string
}

// migrations is the schema's history, oldest first. Append only: a released
// migration is never edited, removed or reordered, since databases in the
// field record how far along this list they are.
var migrations = []migration{
	{
		name: "create deploys and steps",
		// AUTOINCREMENT: a deploy id is never reused, even after rows are
		// deleted, because logs/deploys/<id>.log is named after it.
		sql: `
CREATE TABLE deploys (
	id              INTEGER PRIMARY KEY AUTOINCREMENT,
	kind            TEXT    NOT NULL,
	trigger_type    TEXT    NOT NULL,
	actor           TEXT    NOT NULL,
	commit_sha      TEXT    NOT NULL,
	previous_commit TEXT    NOT NULL,
	release_name    TEXT    NOT NULL,
	started         TEXT    NOT NULL,
	finished        TEXT,
	outcome         TEXT    NOT NULL,
	error_msg       TEXT    NOT NULL,
	bad             INTEGER NOT NULL
);
CREATE TABLE steps (
	id          INTEGER PRIMARY KEY,
	deploy_id   INTEGER NOT NULL REFERENCES deploys(id) ON DELETE CASCADE,
	name        TEXT    NOT NULL,
	started     TEXT    NOT NULL,
	duration_ns INTEGER NOT NULL,
	outcome     TEXT    NOT NULL,
	detail      TEXT    NOT NULL
);
CREATE INDEX steps_by_deploy ON steps(deploy_id, id);
`,
	},
	{
		name: "index deploys for plan and recovery",
		// IsBad and ReleaseOf look deploys up by commit; Unfinished by outcome.
		sql: `
CREATE INDEX deploys_by_commit ON deploys(commit_sha, id);
CREATE INDEX deploys_by_outcome ON deploys(outcome, id);
`,
	},
	{
		name: "create snapshots and vms",
		// snapshots is the restore-point ledger, once kept by hand
		// (the API's /commits); vms the hosts an agent knows (/registry/vms).
		sql: `
CREATE TABLE snapshots (
	id        INTEGER PRIMARY KEY AUTOINCREMENT,
	commit_id TEXT NOT NULL,
	vm_id     TEXT NOT NULL,
	label     TEXT NOT NULL,
	agent     TEXT NOT NULL,
	tags      TEXT NOT NULL,
	created   TEXT NOT NULL
);
CREATE TABLE vms (
	name           TEXT PRIMARY KEY,
	address        TEXT NOT NULL,
	app            TEXT NOT NULL,
	current_commit TEXT NOT NULL,
	safe_commit    TEXT NOT NULL,
	version        TEXT NOT NULL,
	seen           TEXT NOT NULL
);
`,
	},
	{
		name: "snapshots: provider, app commit, deploy, size, restores",
		// Rows recorded before this (through POST /commits) were taken
		// outside slipway: provider "external".
		sql: `
ALTER TABLE snapshots ADD COLUMN provider TEXT NOT NULL DEFAULT 'external';
ALTER TABLE snapshots ADD COLUMN app TEXT NOT NULL DEFAULT '';
ALTER TABLE snapshots ADD COLUMN commit_sha TEXT NOT NULL DEFAULT '';
ALTER TABLE snapshots ADD COLUMN deploy_id INTEGER NOT NULL DEFAULT 0;
ALTER TABLE snapshots ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
ALTER TABLE snapshots ADD COLUMN restored TEXT NOT NULL DEFAULT '';
ALTER TABLE snapshots ADD COLUMN restored_by INTEGER NOT NULL DEFAULT 0;
CREATE INDEX snapshots_by_label ON snapshots(label, id);
`,
	},
	{
		name: "create events",
		// What happened outside a deploy: a service the process manager's
		// supervisor restarted, say.
		sql: `
CREATE TABLE events (
	id      INTEGER PRIMARY KEY AUTOINCREMENT,
	time    TEXT NOT NULL,
	kind    TEXT NOT NULL,
	service TEXT NOT NULL,
	detail  TEXT NOT NULL
);
`,
	},
	{
		name: "deploys: what a failure left live, and what to do next",
		sql: `
ALTER TABLE deploys ADD COLUMN state TEXT NOT NULL DEFAULT '';
ALTER TABLE deploys ADD COLUMN next_action TEXT NOT NULL DEFAULT '';
`,
	},
}

// migrate applies the migrations that db has not seen yet, all in one
// transaction, and returns how many it applied. A database already at the
// newest version is left untouched; one newer than this binary knows is an
// error, since writing to it could corrupt what a newer slipway expects.
func migrate(ctx context.Context, db *sql.DB, ms []migration) (applied int, err error) {
	// The transaction begins IMMEDIATE (see dsn): two processes opening a
	// fresh ledger at once take turns, and the second sees the first's work.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()

	var version int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return 0, fmt.Errorf("migrate: read schema version: %w", err)
	}
	switch {
	case version > len(ms):
		return 0, fmt.Errorf("migrate: schema version %d is newer than this slipway knows (%d): upgrade slipway", version, len(ms))
	case version == len(ms):
		return 0, tx.Rollback()
	}
	for i := version; i < len(ms); i++ {
		if _, err := tx.ExecContext(ctx, ms[i].sql); err != nil {
			return 0, fmt.Errorf("migrate: to version %d (%s): %w", i+1, ms[i].name, err)
		}
	}
	// PRAGMA takes no bound parameters; len(ms) is an int we control.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(ms))); err != nil {
		return 0, fmt.Errorf("migrate: set schema version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("migrate: commit: %w", err)
	}
	return len(ms) - version, nil
}
