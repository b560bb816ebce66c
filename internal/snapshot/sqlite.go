package snapshot

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"net/url"
	"os"
	"syscall"

	"modernc.org/sqlite" // also the "sqlite" driver
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

// copySQLite writes a consistent copy of the database at path to dst
// with SQLite's online backup API: all pages are copied in one step, under
// one read transaction, while the app goes on writing (in WAL mode its
// writers are not blocked). The copy keeps the source's journal mode.
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
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	// The copy is made durable by the archive's fsync, not here.
	dstURI := "file:" + (&url.URL{Path: dst}).EscapedPath() + "?_pragma=synchronous(OFF)"
	return conn.Raw(func(driverConn any) error {
		b, ok := driverConn.(backuper)
		if !ok {
			return errors.New("the sqlite driver has no backup API")
		}
		bk, err := b.NewBackup(dstURI)
		if err != nil {
			return err
		}
		_, err = bk.Step(-1)
		if ferr := bk.Finish(); err == nil {
			err = ferr
		}
		return err
	})
}

// backuper is the backup API of modernc.org/sqlite's connections.
type backuper interface {
	NewBackup(dstURI string) (*sqlite.Backup, error)
}

func ownerOf(path string) *syscall.Stat_t {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	return st
}
