package ledger

import (
	"os"
	"path/filepath"
	"testing"
)

// openTest opens a fresh ledger in a temp dir, closed when the test ends.
func openTest(t testing.TB) *DB {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "state.db"))
}

func openAt(t testing.TB, path string) *DB {
	t.Helper()
	db, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

// Every connection in the pool, not just the first, must run with the
// durability settings: the DSN applies them per connection.
func TestOpenSetsPragmasOnEveryConnection(t *testing.T) {
	db := openTest(t)
	ctx := t.Context()

	const n = 3
	for i := range n {
		// Hold each connection so that the next one is a new one.
		conn, err := db.sql.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close() }()

		for _, tc := range []struct {
			pragma string
			want   string
		}{
			{"journal_mode", "wal"},
			{"synchronous", "2"}, // FULL
			{"busy_timeout", "5000"},
			{"foreign_keys", "1"},
		} {
			var got string
			if err := conn.QueryRowContext(ctx, "PRAGMA "+tc.pragma).Scan(&got); err != nil {
				t.Fatalf("conn %d: PRAGMA %s: %v", i, tc.pragma, err)
			}
			if got != tc.want {
				t.Errorf("conn %d: PRAGMA %s = %q, want %q", i, tc.pragma, got, tc.want)
			}
		}
	}
}

func TestOpenPaths(t *testing.T) {
	tests := []struct {
		name string
		dir  string
	}{
		{"plain", "root"},
		{"space", "my root"},
		{"uri characters", "a?b#c%41&d=e"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), tc.dir)
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "state.db")
			db, err := Open(path)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			id, err := db.StartDeploy(t.Context(), Deploy{Trigger: TriggerManual})
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			// The database is the file that was named, and it reopens.
			if _, err := os.Stat(path); err != nil {
				t.Fatalf("ledger not at %s: %v", path, err)
			}
			db = openAt(t, path)
			if _, err := db.Deploy(t.Context(), id); err != nil {
				t.Fatalf("after reopen: %v", err)
			}
		})
	}
}

func TestOpenFailsInMissingDir(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "missing", "state.db"))
	if err == nil {
		t.Fatal("Open in a missing directory succeeded")
	}
}
