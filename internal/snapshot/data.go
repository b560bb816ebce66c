package snapshot

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/slipway-dev/slipway/internal/fsutil"
)

// Data snapshots the listed shared/ paths into a zstd-compressed tar with a
// checksum manifest, in Dir. SQLite databases in them are copied with
// VACUUM INTO, a consistent copy even while the app writes. Restore checks
// every checksum while it extracts into a staging directory beside the
// data, then swaps each path in with rename(2); see Restore.
type Data struct {
	// Shared is <root>/shared; Paths are relative to it.
	Shared string
	Paths  []string
	// Dir holds the archives: <id>.tar.zst and its manifest <id>.json.
	Dir string
	// Now is the clock for ids (time.Now when nil).
	Now func() time.Time
}

// Name implements Provider.
func (d *Data) Name() string { return "data" }

// manifest describes one archive; a snapshot exists once its manifest does.
type manifest struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Label   string    `json:"label"`
	Commit  string    `json:"commit"`
	// Paths are the snapshot's shared/ paths and whether each existed.
	Paths []pathEntry `json:"paths"`
	// Files are the regular files in the archive, with their checksums.
	Files         []fileSum `json:"files"`
	ArchiveSize   int64     `json:"archive_size"`
	ArchiveSHA256 string    `json:"archive_sha256"`
}

type pathEntry struct {
	Path    string `json:"path"`
	Present bool   `json:"present"`
}

type fileSum struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

func (d *Data) archivePath(id string) string  { return filepath.Join(d.Dir, id+".tar.zst") }
func (d *Data) manifestPath(id string) string { return filepath.Join(d.Dir, id+".json") }

func (d *Data) now() time.Time {
	if d.Now != nil {
		return d.Now().UTC()
	}
	return time.Now().UTC()
}

// Create archives the paths. Nothing is left behind when it fails.
func (d *Data) Create(ctx context.Context, r Request) (Taken, error) {
	var suffix [3]byte
	_, _ = rand.Read(suffix[:])
	id := "data-" + d.now().Format("20060102T150405Z") + "-" + hex.EncodeToString(suffix[:])
	if err := os.MkdirAll(d.Dir, 0o700); err != nil {
		return Taken{}, fmt.Errorf("snapshot: %w", err)
	}
	tmp := filepath.Join(d.Dir, ".tmp-"+id+".tar.zst")
	m, err := d.write(ctx, tmp, id)
	if err != nil {
		_ = os.Remove(tmp)
		return Taken{}, fmt.Errorf("snapshot %s: %w", id, err)
	}
	m.Label, m.Commit, m.Created = r.Label, r.Commit, d.now()
	if err := os.Rename(tmp, d.archivePath(id)); err != nil {
		_ = os.Remove(tmp)
		return Taken{}, fmt.Errorf("snapshot %s: %w", id, err)
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := fsutil.WriteFile(d.manifestPath(id), b, 0o600); err != nil {
		_ = os.Remove(d.archivePath(id))
		return Taken{}, fmt.Errorf("snapshot %s: %w", id, err)
	}
	return Taken{ID: id, Size: m.ArchiveSize}, nil
}

// write streams the archive of every path into file tmp.
func (d *Data) write(ctx context.Context, tmp, id string) (*manifest, error) {
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	sum := sha256.New()
	count := &counter{}
	zw, err := zstd.NewWriter(io.MultiWriter(f, sum, count), zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return nil, err
	}
	a := &archiver{ctx: ctx, tw: tar.NewWriter(zw), shared: d.Shared, scratch: filepath.Join(d.Dir, ".tmp-"+id), m: &manifest{ID: id}}
	defer a.cleanup()
	err = nil
	for _, p := range d.Paths {
		if err = a.addPath(p); err != nil {
			break
		}
	}
	if err == nil {
		err = a.addDatabases()
	}
	if err != nil {
		_ = zw.Close()
		return nil, err
	}
	if err := a.tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	a.m.ArchiveSize, a.m.ArchiveSHA256 = count.n, hex.EncodeToString(sum.Sum(nil))
	return a.m, nil
}

type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// archiver writes the tar entries of the shared paths. SQLite databases
// are copied (copySQLite) into scratch files by one goroutine while the
// other files are archived, and go into the archive last.
type archiver struct {
	ctx     context.Context
	tw      *tar.Writer
	shared  string
	scratch string // prefix of the scratch copies of databases
	m       *manifest
	dbs     []*dbCopy
	queue   chan *dbCopy // to the copying goroutine; nil before the first database
}

// dbCopy is one database being copied for the archive; done is closed
// when the copy is finished, err set before.
type dbCopy struct {
	path, scratch string
	entry         fs.DirEntry
	done          chan struct{}
	err           error
}

func (a *archiver) addPath(p string) error {
	root := filepath.Join(a.shared, p)
	if _, err := os.Lstat(root); errors.Is(err, fs.ErrNotExist) {
		a.m.Paths = append(a.m.Paths, pathEntry{Path: p})
		return nil
	}
	a.m.Paths = append(a.m.Paths, pathEntry{Path: p, Present: true})
	return filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := a.ctx.Err(); err != nil {
			return err
		}
		if e.Type().IsRegular() && isSQLite(path) {
			a.copyDatabase(path, e)
			return nil
		}
		// A database's journal files are in its consistent copy already.
		for _, sfx := range []string{"-wal", "-shm", "-journal"} {
			if base, ok := strings.CutSuffix(path, sfx); ok && isSQLite(base) {
				return nil
			}
		}
		return a.add(path, e, path)
	})
}

// copyDatabase queues the copy of a database; one goroutine copies them in
// turn, so at most one copy competes with the archiving.
func (a *archiver) copyDatabase(path string, e fs.DirEntry) {
	if a.queue == nil {
		a.queue = make(chan *dbCopy, 64)
		go func(queue <-chan *dbCopy) {
			for c := range queue {
				c.err = copySQLite(a.ctx, c.path, c.scratch)
				close(c.done)
			}
		}(a.queue)
	}
	c := &dbCopy{path: path, scratch: fmt.Sprintf("%s.%d.db", a.scratch, len(a.dbs)), entry: e, done: make(chan struct{})}
	a.dbs = append(a.dbs, c)
	a.queue <- c
}

// addDatabases archives the database copies as they finish.
func (a *archiver) addDatabases() error {
	a.closeQueue()
	for _, c := range a.dbs {
		<-c.done
		if c.err != nil {
			rel, _ := filepath.Rel(a.shared, c.path)
			return fmt.Errorf("copy database %s: %w", rel, c.err)
		}
		if err := a.add(c.path, c.entry, c.scratch); err != nil {
			return err
		}
		_ = os.Remove(c.scratch)
	}
	return nil
}

func (a *archiver) closeQueue() {
	if a.queue != nil {
		close(a.queue)
		a.queue = nil
	}
}

// cleanup waits for the database copies still running and removes them.
func (a *archiver) cleanup() {
	a.closeQueue()
	for _, c := range a.dbs {
		<-c.done
		_ = os.Remove(c.scratch)
	}
}

// add writes one entry for path, its content read from src (path itself,
// or a database's copy): directories, symlinks and regular files; sockets
// and devices are skipped.
func (a *archiver) add(path string, e fs.DirEntry, src string) error {
	fi, err := e.Info()
	if err != nil {
		return err
	}
	link := ""
	if fi.Mode()&fs.ModeSymlink != 0 {
		if link, err = os.Readlink(path); err != nil {
			return err
		}
	}
	if !fi.IsDir() && !fi.Mode().IsRegular() && link == "" {
		return nil
	}
	rel, err := filepath.Rel(a.shared, path)
	if err != nil {
		return err
	}
	h, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return err
	}
	h.Name = filepath.ToSlash(rel)
	h.Uname, h.Gname = "", ""
	if !fi.Mode().IsRegular() {
		return a.tw.WriteHeader(h)
	}
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	h.Size = st.Size()
	if err := a.tw.WriteHeader(h); err != nil {
		return err
	}
	sum := sha256.New()
	n, err := io.Copy(io.MultiWriter(a.tw, sum), f)
	if err != nil {
		return err
	}
	if n != h.Size {
		return fmt.Errorf("%s changed size while it was archived; a file that is written in place needs the app stopped, or to be a SQLite database", rel)
	}
	a.m.Files = append(a.m.Files, fileSum{Name: h.Name, Size: n, SHA256: hex.EncodeToString(sum.Sum(nil))})
	return nil
}

// Delete removes the snapshot: its manifest first, so a half-deleted one
// is gone, not corrupt.
func (d *Data) Delete(_ context.Context, id string) error {
	if !validID(id) {
		return fmt.Errorf("snapshot %q: %w", id, ErrNotFound)
	}
	if err := os.Remove(d.manifestPath(id)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("snapshot %s: %w", id, ErrNotFound)
		}
		return err
	}
	if err := os.Remove(d.archivePath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return fsutil.SyncDir(d.Dir)
}

// validID keeps ids to what Create makes: no path separators or dots.
func validID(id string) bool {
	return id != "" && !strings.ContainsAny(id, `/\.`) && len(id) < 100
}

// readManifest loads a snapshot's manifest.
func (d *Data) readManifest(id string) (*manifest, error) {
	if !validID(id) {
		return nil, fmt.Errorf("snapshot %q: %w", id, ErrNotFound)
	}
	b, err := os.ReadFile(d.manifestPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("snapshot %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("snapshot %s: manifest: %w: %w", id, ErrCorrupt, err)
	}
	return &m, nil
}

// covered reports whether name is one of the paths or under one.
func (m *manifest) covered(name string) bool {
	return slices.ContainsFunc(m.Paths, func(p pathEntry) bool {
		return p.Present && (name == p.Path || strings.HasPrefix(name, p.Path+"/"))
	})
}
