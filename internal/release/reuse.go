package release

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/slipway-dev/slipway/internal/run"
)

// copyTimeout bounds the copy of one reused path.
const copyTimeout = 10 * time.Minute

// KeysMatch reports whether every key file is byte-identical in both
// directories (a file missing from both counts as identical).
func KeysMatch(prevDir, nextDir string, keys []string) (bool, error) {
	for _, k := range keys {
		a, errA := os.ReadFile(filepath.Join(prevDir, k))
		b, errB := os.ReadFile(filepath.Join(nextDir, k))
		switch {
		case errors.Is(errA, os.ErrNotExist) && errors.Is(errB, os.ErrNotExist):
			continue
		case errA != nil || errB != nil:
			return false, nil
		case !bytes.Equal(a, b):
			return false, nil
		}
	}
	return true, nil
}

// CopyPaths copies each path from prevDir into nextDir (cp -a keeps links,
// modes and times), then rewrites the absolute references to the previous
// release that tools bake into scripts (a venv's bin/ shebangs and activate).
func CopyPaths(ctx context.Context, prevRelease, nextRelease, prevDir, nextDir string, paths []string) error {
	for _, p := range paths {
		src := filepath.Join(prevDir, p)
		if _, err := os.Lstat(src); err != nil {
			return fmt.Errorf("reuse %s: %w", p, err)
		}
		dst := filepath.Join(nextDir, p)
		if err := os.RemoveAll(dst); err != nil {
			return fmt.Errorf("reuse %s: %w", p, err)
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("reuse %s: %w", p, err)
		}
		if err := run.Run(ctx, run.Cmd{Argv: []string{"cp", "-a", "--reflink=auto", "--", src, dst}, Timeout: copyTimeout}); err != nil {
			return fmt.Errorf("reuse %s: %w", p, err)
		}
		if err := relocateScripts(filepath.Join(dst, "bin"), prevRelease, nextRelease); err != nil {
			return fmt.Errorf("reuse %s: %w", p, err)
		}
	}
	return nil
}

// relocateScripts replaces old with new in the small text files of dir.
func relocateScripts(dir, old, new string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
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
		if err := os.WriteFile(path, b, info.Mode().Perm()); err != nil {
			return err
		}
	}
	return nil
}
