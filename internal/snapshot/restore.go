package snapshot

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/slipway-dev/slipway/internal/failpoint"
	"github.com/slipway-dev/slipway/internal/fsutil"
)

// Restore brings the snapshot's paths back, in three phases:
//
//  1. extract the archive into a staging directory beside the data
//     (shared/.restore-<id>), checking every file's checksum and the
//     archive's; any mismatch removes the staging directory and returns
//     ErrCorrupt: nothing live was touched;
//  2. write a journal (shared/.slipway-restore.json) naming each path and
//     the inode of its restored copy;
//  3. swap each path in: rename(2) with RENAME_EXCHANGE, so the live path
//     is at every instant either the old data or the restored data; then
//     drop the journal and the old data.
//
// A crash in phase 1 leaves only the staging directory, which Recover
// removes; a crash in phase 3 is finished by Recover from the journal. So
// after Recover the data is all old or all restored, never a mix.
// The services using the data must be stopped first.
func (d *Data) Restore(ctx context.Context, id string) error {
	m, err := d.readManifest(id)
	if err != nil {
		return err
	}
	staging := filepath.Join(d.Shared, ".restore-"+id)
	if err := d.extract(ctx, m, staging); err != nil {
		_ = os.RemoveAll(staging)
		return fmt.Errorf("restore %s (nothing changed): %w", id, err)
	}
	j := journal{ID: id, Staging: staging}
	for _, p := range m.Paths {
		e := journalEntry{Path: p.Path, Present: p.Present}
		if p.Present {
			fi, err := os.Lstat(filepath.Join(staging, p.Path))
			if err != nil {
				_ = os.RemoveAll(staging)
				return fmt.Errorf("restore %s (nothing changed): %w", id, err)
			}
			e.Ino = fi.Sys().(*syscall.Stat_t).Ino
		}
		j.Entries = append(j.Entries, e)
	}
	b, _ := json.Marshal(j)
	if err := fsutil.WriteFile(journalPath(d.Shared), b, 0o600); err != nil {
		_ = os.RemoveAll(staging)
		return fmt.Errorf("restore %s (nothing changed): %w", id, err)
	}
	return finish(d.Shared, j)
}

// extract writes the archive's entries under staging and checks them.
func (d *Data) extract(ctx context.Context, m *manifest, staging string) error {
	_ = os.RemoveAll(staging)
	if err := os.Mkdir(staging, 0o700); err != nil {
		return err
	}
	root, err := os.OpenRoot(staging)
	if err != nil {
		return err
	}
	defer func() { _ = root.Close() }()
	f, err := os.Open(d.archivePath(m.ID))
	if err != nil {
		return fmt.Errorf("%w: archive: %w", ErrCorrupt, err)
	}
	defer func() { _ = f.Close() }()
	whole := sha256.New()
	raw := io.TeeReader(f, whole)
	zr, err := zstd.NewReader(raw)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	defer zr.Close()
	want := map[string]fileSum{}
	for _, s := range m.Files {
		want[s.Name] = s
	}
	seen := 0
	tr := tar.NewReader(zr)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		name := filepath.FromSlash(h.Name)
		if !filepath.IsLocal(name) || !m.covered(h.Name) {
			return fmt.Errorf("%w: entry %q is outside the snapshot's paths", ErrCorrupt, h.Name)
		}
		if err := root.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, h.FileInfo().Mode().Perm()); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := root.Symlink(h.Linkname, name); err != nil {
				return err
			}
		case tar.TypeReg:
			s, ok := want[h.Name]
			if !ok {
				return fmt.Errorf("%w: %s is not in the manifest", ErrCorrupt, h.Name)
			}
			if err := writeChecked(root, name, h, tr, s); err != nil {
				return err
			}
			seen++
			if seen == 1 {
				failpoint.Hit("restore:extracting")
			}
		default:
			return fmt.Errorf("%w: entry %q has unexpected type %c", ErrCorrupt, h.Name, h.Typeflag)
		}
		if err := root.Lchown(name, h.Uid, h.Gid); err != nil && !errors.Is(err, fs.ErrPermission) {
			return err
		}
		if h.Typeflag == tar.TypeDir {
			_ = root.Chmod(name, h.FileInfo().Mode().Perm())
		}
	}
	// Read to the end, so the checksum covers the whole archive.
	if _, err := io.Copy(io.Discard, raw); err != nil {
		return err
	}
	if got := hex.EncodeToString(whole.Sum(nil)); got != m.ArchiveSHA256 {
		return fmt.Errorf("%w: archive checksum %s, manifest says %s", ErrCorrupt, got, m.ArchiveSHA256)
	}
	if seen != len(m.Files) {
		return fmt.Errorf("%w: %d of the manifest's %d files are in the archive", ErrCorrupt, seen, len(m.Files))
	}
	// Everything extracted is on disk before anything is swapped in.
	return fsutil.SyncFS(staging)
}

func writeChecked(root *os.Root, name string, h *tar.Header, r io.Reader, s fileSum) error {
	out, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, h.FileInfo().Mode().Perm())
	if err != nil {
		return err
	}
	sum := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, sum), r)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrCorrupt, h.Name, err)
	}
	if n != s.Size || hex.EncodeToString(sum.Sum(nil)) != s.SHA256 {
		return fmt.Errorf("%w: %s does not match its checksum", ErrCorrupt, h.Name)
	}
	return root.Chtimes(name, h.ModTime, h.ModTime)
}

// journal is a restore between its first and last swap.
type journal struct {
	ID      string         `json:"id"`
	Staging string         `json:"staging"`
	Entries []journalEntry `json:"entries"`
}

type journalEntry struct {
	Path    string `json:"path"`
	Present bool   `json:"present"` // in the snapshot; else the live path is moved away
	Ino     uint64 `json:"ino"`     // inode of the restored copy
}

// afterSwap, when set (by tests), runs after each path is swapped in.
var afterSwap func(path string)

func journalPath(shared string) string { return filepath.Join(shared, ".slipway-restore.json") }

// finish swaps every path of j in (skipping those already swapped), then
// removes the journal and the old data.
func finish(shared string, j journal) error {
	for _, e := range j.Entries {
		live := filepath.Join(shared, e.Path)
		staged := filepath.Join(j.Staging, e.Path)
		fi, err := os.Lstat(live)
		exists := err == nil
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		switch {
		case e.Present && exists && fi.Sys().(*syscall.Stat_t).Ino == e.Ino:
			continue // swapped before a crash
		case e.Present && exists:
			err = unix.Renameat2(unix.AT_FDCWD, staged, unix.AT_FDCWD, live, unix.RENAME_EXCHANGE)
		case e.Present:
			if err = os.MkdirAll(filepath.Dir(live), 0o755); err == nil {
				err = os.Rename(staged, live)
			}
		case exists:
			// Not in the snapshot: move the live path away, into staging.
			if err = os.MkdirAll(filepath.Dir(staged), 0o700); err == nil {
				err = os.Rename(live, staged+".old")
			}
		}
		if err != nil {
			return fmt.Errorf("restore %s: swap %s: %w", j.ID, e.Path, err)
		}
		if err := fsutil.SyncDir(filepath.Dir(live)); err != nil {
			return err
		}
		if afterSwap != nil {
			afterSwap(e.Path)
		}
	}
	if err := os.Remove(journalPath(shared)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := fsutil.SyncDir(shared); err != nil {
		return err
	}
	return os.RemoveAll(j.Staging)
}

// Recover completes or undoes a restore that a crash interrupted: with a
// journal it finishes the swap; without one it removes staging
// directories (the restore had not changed anything yet). It reports what
// it did, "" when there was nothing to do.
func Recover(shared string) (string, error) {
	b, err := os.ReadFile(journalPath(shared))
	switch {
	case err == nil:
		var j journal
		if err := json.Unmarshal(b, &j); err != nil {
			return "", fmt.Errorf("restore journal %s: %w", journalPath(shared), err)
		}
		if filepath.Dir(j.Staging) != filepath.Clean(shared) {
			return "", fmt.Errorf("restore journal %s names a staging directory outside %s", journalPath(shared), shared)
		}
		if err := finish(shared, j); err != nil {
			return "", err
		}
		return "finished restoring snapshot " + j.ID + ", which a crash interrupted", nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", err
	}
	entries, err := os.ReadDir(shared)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil
		}
		return "", err
	}
	var removed []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".restore-") {
			if err := os.RemoveAll(filepath.Join(shared, e.Name())); err != nil {
				return "", err
			}
			removed = append(removed, strings.TrimPrefix(e.Name(), ".restore-"))
		}
	}
	if len(removed) == 0 {
		return "", nil
	}
	return "removed the half-extracted restore of " + strings.Join(removed, ", ") + " (the data was not changed)", nil
}
