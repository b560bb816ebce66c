package snapshot

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func newData(t *testing.T, paths ...string) *Data {
	t.Helper()
	root := t.TempDir()
	return &Data{Shared: filepath.Join(root, "shared"), Paths: paths, Dir: filepath.Join(root, "snapshots")}
}

func openDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func exec1(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatal(err)
	}
}

func count(t *testing.T, db *sql.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSQLiteUnderWrites snapshots a WAL database while another connection
// keeps writing: the copy is consistent (integrity_check ok, every row of
// a committed transaction) and restores over a database rewritten since.
func TestSQLiteUnderWrites(t *testing.T) {
	d := newData(t, "data")
	path := filepath.Join(d.Shared, "data", "app.db")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, path)
	exec1(t, db, "CREATE TABLE t (id INTEGER PRIMARY KEY, batch INTEGER, v TEXT)")
	var stop atomic.Bool
	done := make(chan error)
	go func() {
		// Each transaction writes a batch of 10 rows.
		for b := 0; !stop.Load(); b++ {
			tx, err := db.Begin()
			if err != nil {
				done <- err
				return
			}
			for i := range 10 {
				if _, err := tx.Exec("INSERT INTO t (batch, v) VALUES (?, ?)", b, strings.Repeat("x", 100+i)); err != nil {
					done <- err
					return
				}
			}
			if err := tx.Commit(); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	time.Sleep(100 * time.Millisecond)
	taken, err := d.Create(context.Background(), Request{Label: "pre-deploy"})
	stop.Store(true)
	if werr := <-done; werr != nil {
		t.Fatal(werr)
	}
	if err != nil {
		t.Fatal(err)
	}
	// The migration rewrites the table.
	exec1(t, db, "DELETE FROM t WHERE batch % 2 = 0")
	exec1(t, db, "ALTER TABLE t ADD COLUMN w TEXT")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Restore(context.Background(), taken.ID); err != nil {
		t.Fatal(err)
	}
	db = openDB(t, path)
	var ok string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("integrity_check: %q %v", ok, err)
	}
	n := count(t, db)
	if n == 0 || n%10 != 0 {
		t.Fatalf("%d rows: not whole transactions", n)
	}
	var cols int
	if err := db.QueryRow("SELECT count(*) FROM pragma_table_info('t')").Scan(&cols); err != nil || cols != 3 {
		t.Fatalf("columns %d (%v): the migration's column is still there", cols, err)
	}
}

func TestCorruptArchiveChangesNothing(t *testing.T) {
	d := newData(t, "data")
	data := filepath.Join(d.Shared, "data")
	writeTree(t, data, map[string]string{"a": strings.Repeat("snapshot me ", 5000), "b/c": "x"})
	taken, err := d.Create(context.Background(), Request{})
	if err != nil {
		t.Fatal(err)
	}
	writeTree(t, data, map[string]string{"a": "live"})
	before := readTree(t, data)
	// Flip one byte in the middle of the archive.
	b, err := os.ReadFile(d.archivePath(taken.ID))
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(d.archivePath(taken.ID), b, 0o600); err != nil {
		t.Fatal(err)
	}
	err = d.Restore(context.Background(), taken.ID)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "nothing changed") {
		t.Fatalf("restore of a corrupt archive: %v", err)
	}
	if readTree(t, data) != before {
		t.Fatal("the failed restore changed the data")
	}
	if entries, _ := os.ReadDir(d.Shared); len(entries) != 1 {
		t.Fatalf("left behind in shared/: %v", entries)
	}
}

func TestRestoreOwnersAndAbsentPaths(t *testing.T) {
	d := newData(t, "data", "uploads")
	data := filepath.Join(d.Shared, "data")
	writeTree(t, data, map[string]string{"db": "1"})
	if err := os.Chown(filepath.Join(data, "db"), 1234, 2345); err != nil {
		t.Skip("needs root to chown:", err)
	}
	if err := os.Symlink("db", filepath.Join(data, "link")); err != nil {
		t.Fatal(err)
	}
	taken, err := d.Create(context.Background(), Request{})
	if err != nil {
		t.Fatal(err)
	}
	// uploads/ did not exist at the snapshot: a restore moves it away.
	writeTree(t, filepath.Join(d.Shared, "uploads"), map[string]string{"x": "later"})
	if err := d.Restore(context.Background(), taken.ID); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(data, "db"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1234 || st.Gid != 2345 {
		t.Fatalf("owner %d:%d", st.Uid, st.Gid)
	}
	if l, _ := os.Readlink(filepath.Join(data, "link")); l != "db" {
		t.Fatalf("symlink %q", l)
	}
	if _, err := os.Stat(filepath.Join(d.Shared, "uploads")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("uploads/ still there: %v", err)
	}
}

// TestKill9DuringRestore kills a process restoring two paths at many
// points; after Recover each time, the data is all old or all restored.
func TestKill9DuringRestore(t *testing.T) {
	if os.Getenv("SNAPSHOT_RESTORE_CHILD") != "" {
		return
	}
	d := newData(t, "data", "media")
	old := map[string]string{}
	restored := map[string]string{}
	for i := range 300 {
		name := fmt.Sprintf("f%03d", i)
		restored["data/"+name] = strings.Repeat("R", 20000)
		restored["media/"+name] = strings.Repeat("r", 20000)
		old["data/"+name] = "old"
		old["media/"+name] = "old"
	}
	writeTree(t, d.Shared, restored)
	taken, err := d.Create(context.Background(), Request{})
	if err != nil {
		t.Fatal(err)
	}
	wantRestored := readTree(t, d.Shared)
	// 0: killed by itself right after the first path was swapped in.
	for _, delay := range []time.Duration{0, 5, 20, 40, 60, 80, 100, 150, 250} {
		writeTree(t, d.Shared, old)
		wantOld := readTree(t, d.Shared)
		cmd := exec.Command(os.Args[0], "-test.run=^TestRestoreChild$")
		cmd.Env = append(os.Environ(), "SNAPSHOT_RESTORE_CHILD="+d.Shared+"|"+d.Dir+"|"+taken.ID+"|"+fmt.Sprint(delay == 0))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if delay > 0 {
			time.Sleep(delay * time.Millisecond)
			_ = cmd.Process.Kill()
		}
		_ = cmd.Wait()
		what, err := Recover(d.Shared)
		if err != nil {
			t.Fatal(err)
		}
		switch got := readTree(t, d.Shared); got {
		case wantOld:
			t.Logf("killed at %dms: old data (%s)", delay, what)
		case wantRestored:
			t.Logf("killed at %dms: restored data (%s)", delay, what)
		default:
			t.Fatalf("killed at %dms: a mix of old and restored data (recover: %s)", delay, what)
		}
	}
}

// TestRestoreChild is the process TestKill9DuringRestore kills.
func TestRestoreChild(t *testing.T) {
	env := os.Getenv("SNAPSHOT_RESTORE_CHILD")
	if env == "" {
		t.Skip("run by TestKill9DuringRestore")
	}
	parts := strings.Split(env, "|")
	d := &Data{Shared: parts[0], Paths: []string{"data", "media"}, Dir: parts[1]}
	if parts[3] == "true" {
		afterSwap = func(string) { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL) }
	}
	if err := d.Restore(context.Background(), parts[2]); err != nil {
		t.Fatal(err)
	}
}
