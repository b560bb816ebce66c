package snapshot

import (
	"bytes"
	"context"
	"database/sql"
	"net/url"
	"os"
	"syscall"

	_ "modernc.org/sqlite" // the "sqlite" driver
)

// sqliteMagic starts every SQLite database file.
var sqliteMagic = []byte("SQLite format 3\x00")

// isSQLite reports whether path is a SQLite database, by its header.
func isSQLite(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer func() { _ = f.Close() }()
	head := make([]byte, len(sqliteMagic))
	if _, err := f.ReadAt(head, 0); err != nil {
		return false
	}
	return bytes.Equal(head, sqliteMagic)
}

// copySQLite writes a consistent copy of the database at path to dst with
// VACUUM INTO, which reads one transaction's view of the database while
// the app goes on writing.
func copySQLite(ctx context.Context, path, dst string) error {
	_ = os.Remove(dst)
	owner := ownerOf(path)
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?_pragma=busy_timeout(30000)")
	if err != nil {
		return err
	}
	defer func() {
		_ = db.Close()
		// Opening a WAL database may create its -wal and -shm files; they
		// must stay the app's, or the app can no longer write.
		if owner != nil {
			for _, sfx := range []string{"-wal", "-shm"} {
				_ = os.Lchown(path+sfx, int(owner.Uid), int(owner.Gid))
			}
		}
	}()
	db.SetMaxOpenConns(1)
	_, err = db.ExecContext(ctx, "VACUUM INTO ?", dst)
	return err
}

func ownerOf(path string) *syscall.Stat_t {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	return st
}
