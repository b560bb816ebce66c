package main_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/slipway-dev/slipway/internal/lock"
	"github.com/slipway-dev/slipway/internal/testkit"
)

// withSnapshots adds a snapshot: section to the example's config.
func withSnapshots(section string) func(string) string {
	return func(cfg string) string { return cfg + "\nsnapshot:\n" + section }
}

// dumpDB returns every table's schema and rows, in order: two databases
// with the same dump hold the same data.
func dumpDB(t *testing.T, path string) string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	var ok string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("integrity_check of %s: %q %v", path, ok, err)
	}
	rows, err := db.Query("SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	var tables, out []string
	for rows.Next() {
		var name, schema string
		if err := rows.Scan(&name, &schema); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
		out = append(out, schema)
	}
	_ = rows.Close()
	for _, table := range tables {
		r, err := db.Query(fmt.Sprintf("SELECT * FROM %q", table))
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := r.Columns()
		var lines []string
		for r.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := r.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, fmt.Sprint(vals...))
		}
		_ = r.Close()
		sort.Strings(lines)
		out = append(out, table+": "+strings.Join(lines, " | "))
	}
	return strings.Join(out, "\n")
}

type snapshotRow struct {
	CommitID   string `json:"commitId"`
	Provider   string `json:"provider"`
	Label      string `json:"label"`
	Commit     string `json:"commit"`
	DeployID   int64  `json:"deployId"`
	Size       int64  `json:"size"`
	RestoredBy int64  `json:"restoredBy"`
	Restored   string `json:"restored"`
}

func (a *app) snapshots() []snapshotRow {
	a.t.Helper()
	r := a.slipway("snapshot", "list", "--json")
	if r.code != 0 {
		a.t.Fatalf("snapshot list: %s", r)
	}
	var ss []snapshotRow
	if err := json.Unmarshal([]byte(r.stdout), &ss); err != nil {
		a.t.Fatalf("snapshot list --json: %v\n%s", err, r.stdout)
	}
	return ss
}

// TestFailedMigrationRestoresData: a migration rewrites the app's SQLite
// database, then the next one fails. The rollback restores the pre-deploy
// data snapshot: the database is row-identical to before, the old release
// serves, and the ledger names the snapshot it restored.
func TestFailedMigrationRestoresData(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", withSnapshots("  data: [data]\n"))
	good := a.head()
	a.mustDeploy()
	db := filepath.Join(a.root, "shared", "data", "board.db")
	before := dumpDB(t, db)
	if !strings.Contains(before, "Snapshot the VM") {
		t.Fatalf("the first migration did not run:\n%s", before)
	}
	a.commit("rewrite, then fail", map[string]string{
		"backend/migrations/0002_rewrite.sql": "UPDATE tasks SET title = upper(title);\nDELETE FROM tasks WHERE done = 1;\nALTER TABLE tasks ADD COLUMN owner TEXT;\n",
		"backend/migrations/0003_broken.sql":  "INSERT INTO no_such_table VALUES (1);\n",
	})
	r := a.slipway("deploy")
	if r.code != 1 {
		t.Fatalf("deploy with a failing migration: want exit 1\n%s", r)
	}
	if !strings.Contains(r.stderr, "restored") {
		t.Errorf("the failure does not say the data was restored:\n%s", r)
	}
	if after := dumpDB(t, db); after != before {
		t.Fatalf("database after the rollback:\n%s\nwant, as before the deploy:\n%s", after, before)
	}
	a.assertServing(good)
	if a.safeCommit() != good {
		t.Fatalf("safe = %s", a.safeCommit())
	}
	d := a.lastDeploy()
	var pre *snapshotRow
	for _, s := range a.snapshots() {
		if s.DeployID == d.ID && s.Label == "pre-deploy" {
			pre = &s
		}
	}
	if pre == nil || pre.Provider != "data" || pre.RestoredBy != d.ID || pre.Size == 0 {
		t.Fatalf("ledger: pre-deploy snapshot of deploy %d: %+v", d.ID, pre)
	}
	logs := a.slipway("logs", fmt.Sprint(d.ID))
	if !strings.Contains(logs.stdout+logs.stderr, "restored data snapshot "+pre.CommitID) {
		t.Errorf("deploy log does not name the restored snapshot %s:\n%s", pre.CommitID, logs)
	}
}

// TestSnapshotCommandFailureRefusesDeploy: the VM snapshot command fails,
// so the deploy stops before anything changes.
func TestSnapshotCommandFailureRefusesDeploy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	script := filepath.Join(dir, "vm-snapshot")
	testkit.WriteFile(t, script, "#!/bin/sh\necho 'quota exceeded: 10 of 10 snapshots used' >&2\nexit 3\n", 0o755)
	a := newApp(t, "python-api", nil)
	good := a.head()
	a.mustDeploy()
	cfg := readFile(t, a.cfgPath) + "\nsnapshot:\n  create: " + script + " --vm {{.VMID}}\n  id_pattern: 'snap-[0-9]+'\n  vm_id: vm-7\n"
	testkit.WriteFile(t, a.cfgPath, cfg, 0o644)
	next := a.commit("next", map[string]string{"README": "next\n"})
	r := a.slipway("deploy")
	if r.code != 1 || !strings.Contains(r.stderr, "quota exceeded") || !strings.Contains(r.stderr, "snapshot") {
		t.Fatalf("deploy with a failing snapshot command: want exit 1 naming it\n%s", r)
	}
	a.assertServing(good)
	if a.safeCommit() != good || !strings.HasSuffix(a.current(), good[:12]) {
		t.Fatalf("something was switched: safe %s current %s", a.safeCommit(), a.current())
	}
	// The commit is not to blame: fixed, the same commit deploys.
	testkit.WriteFile(t, script, "#!/bin/sh\necho \"Creating snapshot of $2... done: snap-$$ is ready\"\n", 0o755)
	a.mustDeploy()
	a.assertServing(next)
	var cmdSnap *snapshotRow
	for _, s := range a.snapshots() {
		if s.Provider == "command" {
			cmdSnap = &s
		}
	}
	if cmdSnap == nil || !strings.HasPrefix(cmdSnap.CommitID, "snap-") || strings.Contains(cmdSnap.CommitID, " ") {
		t.Fatalf("command snapshot in the ledger: %+v", cmdSnap)
	}
}

// TestSnapshotCLI: create, list, restore and delete by hand, and retention.
func TestSnapshotCLI(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", withSnapshots("  data: [data]\n  keep: 2\n"))
	a.mustDeploy()
	data := filepath.Join(a.root, "shared", "data")
	testkit.WriteFile(t, filepath.Join(data, "notes.txt"), "v1\n", 0o644)
	r := a.slipway("snapshot", "create", "--label", "by-hand", "--tag", "before-cleanup")
	if r.code != 0 {
		t.Fatalf("snapshot create: %s", r)
	}
	id := strings.Fields(r.stdout)[0]
	// A snapshot of a few KiB says so: not "0.0 MB".
	if l := a.slipway("snapshot", "list"); !regexp.MustCompile(`\b[0-9.]+ (B|KiB)\b`).MatchString(l.stdout) || strings.Contains(l.stdout, "0.0 MB") {
		t.Fatalf("snapshot list must give the size in a unit that fits it:\n%s", l)
	}
	testkit.WriteFile(t, filepath.Join(data, "notes.txt"), "v2\n", 0o644)
	if r := a.slipway("snapshot", "restore", id); r.code != 0 || !strings.Contains(r.stdout, "healthy") {
		t.Fatalf("snapshot restore: %s", r)
	}
	if got := readFile(t, filepath.Join(data, "notes.txt")); got != "v1\n" {
		t.Fatalf("notes.txt after restore: %q", got)
	}
	a.assertServing(a.head())
	// A deploy holds the lock: restore refuses, exit 3, and changes nothing.
	held, err := lock.Acquire(context.Background(), filepath.Join(a.root, "run", "deploy.lock"), lock.NewHolder("test deploy", time.Now()), false, false)
	if err != nil {
		t.Fatal(err)
	}
	testkit.WriteFile(t, filepath.Join(data, "notes.txt"), "v3\n", 0o644)
	if r := a.slipway("snapshot", "restore", id); r.code != 3 || !strings.Contains(r.stderr, "test deploy") {
		t.Fatalf("restore while a deploy runs: want exit 3 naming the holder\n%s", r)
	}
	_ = held.Release()
	if got := readFile(t, filepath.Join(data, "notes.txt")); got != "v3\n" {
		t.Fatalf("a refused restore changed the data: %q", got)
	}
	// Retention: keep 2 per label; the safe commit's are kept anyway.
	for range 3 {
		if r := a.slipway("snapshot", "create", "--label", "by-hand"); r.code != 0 {
			t.Fatalf("snapshot create: %s", r)
		}
	}
	n := 0
	for _, s := range a.snapshots() {
		if s.Label == "by-hand" {
			n++
		}
	}
	if n < 2 {
		t.Fatalf("%d by-hand snapshots kept", n)
	}
	// Deleting takes the deploy lock: while it is held, exit 3.
	if r := a.slipway("lock", "acquire", "-m", "maintenance"); r.code != 0 {
		t.Fatalf("lock acquire: %s", r)
	}
	if r := a.slipway("snapshot", "delete", id); r.code != 3 || !strings.Contains(r.stderr, "maintenance") {
		t.Fatalf("snapshot delete under the lock: want exit 3\n%s", r)
	}
	if r := a.slipway("lock", "release"); r.code != 0 {
		t.Fatalf("lock release: %s", r)
	}
	if r := a.slipway("snapshot", "delete", id); r.code != 0 && r.code != 2 {
		t.Fatalf("snapshot delete: %s", r)
	}
	if r := a.slipway("snapshot", "restore", "no-such-id"); r.code != 2 {
		t.Fatalf("restore of an unknown id: want exit 2\n%s", r)
	}
}

// TestRollbackAfterAMigration: a deploy renamed a column and its code
// reads the new name. A plain rollback would serve the old code on the
// migrated data: its smoke checks fail, it goes back, and says how to
// restore the data. With --restore-data it restores the snapshot taken
// before the migration and proves itself.
func TestRollbackAfterAMigration(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", withSnapshots("  data: [data]\n"))
	good := a.head()
	a.mustDeploy()
	before := dumpDB(t, filepath.Join(a.root, "shared", "data", "board.db"))
	a.commit("rename title to name", map[string]string{
		"backend/migrations/0002_rename.sql": "ALTER TABLE tasks RENAME COLUMN title TO name;\n",
		"backend/app.py": strings.Replace(readFile(t, filepath.Join(a.src, "backend", "app.py")),
			`SELECT id, title, done, created_at FROM tasks ORDER BY id`, `SELECT id, name AS title, done, created_at FROM tasks ORDER BY id`, 1),
	})
	a.mustDeploy()

	r := a.slipway("rollback")
	if r.code != 1 || !strings.Contains(r.stderr, "smoke") || !strings.Contains(r.stderr, "--restore-data") {
		t.Fatalf("rollback over migrated data: want exit 1 at smoke, naming --restore-data\n%s", r)
	}
	if code, _ := a.get("/board/tasks", true); code != 200 {
		t.Fatalf("after the refused rollback /board/tasks answers %d, want the migrated release serving", code)
	}

	r = a.slipway("rollback", "--to", good[:7], "--restore-data")
	if r.code != 0 || !strings.Contains(r.stdout, "restored") {
		t.Fatalf("rollback --restore-data: %s", r)
	}
	a.assertServing(good)
	if code, body := a.get("/board/tasks", true); code != 200 || !strings.Contains(body, "Snapshot the VM") {
		t.Fatalf("/board/tasks after the rollback: %d %s", code, body)
	}
	if after := dumpDB(t, filepath.Join(a.root, "shared", "data", "board.db")); after != before {
		t.Fatalf("the data is not as before the migration:\n%s\nwant\n%s", after, before)
	}
}
