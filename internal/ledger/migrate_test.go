package ledger

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
)

// rawDB opens path with the ledger's settings but without migrating it.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", dsn(abs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func userVersion(t *testing.T, db *sql.DB) int {
	t.Helper()
	var v int
	if err := db.QueryRowContext(t.Context(), "PRAGMA user_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func hasIndex(t *testing.T, db *sql.DB, name string) bool {
	t.Helper()
	var n int
	err := db.QueryRowContext(t.Context(),
		"SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name = ?", name).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// A ledger written by an older slipway is brought up to date at Open, keeps
// its rows, and a second Open changes nothing.
func TestOpenUpgradesOldSchema(t *testing.T) {
	for from := range len(migrations) + 1 {
		t.Run(versionName(from), func(t *testing.T) {
			ctx := t.Context()
			path := filepath.Join(t.TempDir(), "state.db")

			old := rawDB(t, path)
			if _, err := migrate(ctx, old, migrations[:from]); err != nil {
				t.Fatal(err)
			}
			if got := userVersion(t, old); got != from {
				t.Fatalf("old ledger at version %d, want %d", got, from)
			}
			if from >= 1 {
				// A bad deploy written with the version-1 schema.
				_, err := old.ExecContext(ctx, `INSERT INTO deploys
					(id, kind, trigger_type, actor, commit_sha, previous_commit, release_name,
					 started, finished, outcome, error_msg, bad)
					VALUES (41, 'deploy', 'poll', '', 'c1', 'c0', 'r1',
					 '2024-01-02T03:04:05.000000006Z', '2024-01-02T03:05:00.000000000Z', 'rolled-back', 'smoke failed', 1)`)
				if err != nil {
					t.Fatal(err)
				}
			}
			if err := old.Close(); err != nil {
				t.Fatal(err)
			}

			db, err := Open(path)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if got := userVersion(t, db.sql); got != len(migrations) {
				t.Fatalf("after Open, version %d, want %d", got, len(migrations))
			}
			for _, idx := range []string{"steps_by_deploy", "deploys_by_commit", "deploys_by_outcome"} {
				if !hasIndex(t, db.sql, idx) {
					t.Errorf("index %s missing after upgrade", idx)
				}
			}
			if from >= 1 {
				d, err := db.Deploy(ctx, 41)
				if err != nil {
					t.Fatalf("old row lost: %v", err)
				}
				if d.Commit != "c1" || d.Outcome != RolledBack || !d.Bad || d.Started.Nanosecond() != 6 {
					t.Errorf("old row changed: %+v", d)
				}
				if bad, err := db.IsBad(ctx, "c1"); err != nil || !bad {
					t.Errorf("IsBad(c1) on upgraded ledger = %v, %v; want true", bad, err)
				}
				// New ids continue after the old ones.
				id, err := db.StartDeploy(ctx, Deploy{Trigger: TriggerManual})
				if err != nil || id <= 41 {
					t.Errorf("new deploy id %d, %v; want > 41", id, err)
				}
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}

			// Re-Open: nothing to apply.
			db = openAt(t, path)
			n, err := migrate(ctx, db.sql, migrations)
			if err != nil || n != 0 {
				t.Fatalf("migrate on an up-to-date ledger applied %d, %v; want 0, nil", n, err)
			}
			if got := userVersion(t, db.sql); got != len(migrations) {
				t.Fatalf("after re-Open, version %d, want %d", got, len(migrations))
			}
		})
	}
}

func versionName(v int) string {
	if v == 0 {
		return "from empty"
	}
	return "from version " + strings.Repeat("I", v) // I, II, ...
}

// A migration that fails leaves the database exactly as it was: the
// migrations before it in the same run are rolled back too.
func TestMigrateFailureRollsBack(t *testing.T) {
	ctx := t.Context()
	db := rawDB(t, filepath.Join(t.TempDir(), "state.db"))
	ms := []migration{
		{name: "good", sql: "CREATE TABLE a (x INTEGER)"},
		{name: "broken", sql: "CREATE TABLE b (x INTEGER); INSERT INTO nowhere VALUES (1)"},
	}
	_, err := migrate(ctx, db, ms)
	if err == nil || !strings.Contains(err.Error(), "version 2 (broken)") {
		t.Fatalf("err = %v, want one naming version 2 (broken)", err)
	}
	if got := userVersion(t, db); got != 0 {
		t.Errorf("version after failed migration = %d, want 0", got)
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE name IN ('a', 'b')").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d tables of the failed run survived", n)
	}

	// With the broken one fixed, both apply.
	ms[1].sql = "CREATE TABLE b (x INTEGER)"
	if n, err := migrate(ctx, db, ms); err != nil || n != 2 {
		t.Fatalf("migrate = %d, %v; want 2, nil", n, err)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db := rawDB(t, path)
	if _, err := db.ExecContext(context.Background(), "PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path)
	if err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Open of a version-99 ledger: %v, want an error saying it is newer", err)
	}
}
