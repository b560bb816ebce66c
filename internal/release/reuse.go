package release

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/slipway-dev/slipway/internal/fsutil"
)

// KeysMatch reports whether every key is byte-identical in both
// directories. A key is a file, or a directory whose whole tree (names,
// contents, symlink targets) is compared; one missing from both counts as
// identical.
func KeysMatch(prevDir, nextDir string, keys []string) (bool, error) {
	for _, k := range keys {
		a, errA := digest(filepath.Join(prevDir, k))
		b, errB := digest(filepath.Join(nextDir, k))
		switch {
		case errors.Is(errA, os.ErrNotExist) && errors.Is(errB, os.ErrNotExist):
			continue
		case errA != nil || errB != nil:
			return false, nil
		case a != b:
			return false, nil
		}
	}
	return true, nil
}

// digest hashes a file, or a directory tree with its relative names, kinds
// and contents, without following symlinks.
func digest(path string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(path, p)
		switch {
		case d.IsDir():
			fmt.Fprintf(h, "d %s\n", rel)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "l %s %s\n", rel, target)
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "f %s %d\n", rel, len(b))
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// copyPath copies the tree at src to dst, replacing what is there, and
// rewrites old to new in the scripts of its bin/.
func copyPath(ctx context.Context, src, dst string, link bool, old, new string) error {
	if _, err := os.Lstat(src); err != nil {
		return err
	}
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := copyTree(src, dst, link); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if info, err := os.Lstat(dst); err != nil || !info.IsDir() {
		return err // a file or a symlink: no scripts of its own to re-point
	}
	return relocateScripts(filepath.Join(dst, "bin"), old, new)
}

// relocateScripts replaces old with new in the small text files of dir.
// Only a directory counts: a bin/ that is a symlink (which a build could
// point anywhere) or a file is left alone.
func relocateScripts(dir, old, new string) error {
	info, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || (err == nil && !info.IsDir()) {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		info, err := e.Info()
		if err != nil || info.Size() > 1<<20 {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.IndexByte(b, 0) >= 0 || !bytes.Contains(b, []byte(old)) {
			continue
		}
		b = bytes.ReplaceAll(b, []byte(old), []byte(new))
		// A new file renamed over the old name: with hard-linked reuse,
		// writing in place would rewrite the previous release's copy too.
		if err := fsutil.WriteFile(path, b, info.Mode().Perm()); err != nil {
			return err
		}
	}
	return nil
}
