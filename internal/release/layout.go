// Package release owns the files on the host (docs/config.md, `root`): the layout under
// the root, immutable release trees, the atomic switch of `current`, the
// safe commit, reuse of dependency directories, and pruning.
package release

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/slipway-dev/slipway/internal/fsutil"
)

// Layout is the directory tree under an app's root.
type Layout struct{ Root string }

// Paths under the root.
func (l Layout) Repo() string        { return filepath.Join(l.Root, "repo.git") }
func (l Layout) ReleasesDir() string { return filepath.Join(l.Root, "releases") }
func (l Layout) CurrentLink() string { return filepath.Join(l.Root, "current") }
func (l Layout) SharedDir() string   { return filepath.Join(l.Root, "shared") }
func (l Layout) EnvDir() string      { return filepath.Join(l.Root, "env") }
func (l Layout) RunDir() string      { return filepath.Join(l.Root, "run") }
func (l Layout) LogDir() string      { return filepath.Join(l.Root, "logs") }
func (l Layout) DeployLogDir() string {
	return filepath.Join(l.Root, "logs", "deploys")
}
func (l Layout) ProxySocket() string  { return filepath.Join(l.Root, "run", "proxy.sock") }
func (l Layout) ProxyState() string   { return filepath.Join(l.Root, "run", "proxy.json") }
func (l Layout) SnapshotsDir() string { return filepath.Join(l.Root, "snapshots") }
func (l Layout) StateDB() string      { return filepath.Join(l.Root, "state.db") }
func (l Layout) LockFile() string     { return filepath.Join(l.Root, "run", "deploy.lock") }
func (l Layout) SafeFile() string     { return filepath.Join(l.Root, "run", "SAFE_COMMIT") }
func (l Layout) SocketPath() string   { return filepath.Join(l.Root, "run", "slipway.sock") }
func (l Layout) CommandsDir() string  { return filepath.Join(l.Root, "run", "commands") }
func (l Layout) AppliedFile() string  { return filepath.Join(l.Root, "run", "applied.json") }
func (l Layout) StoppedDir() string   { return filepath.Join(l.Root, "run", "stopped") }
func (l Layout) FleetFile() string    { return filepath.Join(l.Root, "run", "fleet.json") }

// Dir returns the directory of the release called name.
func (l Layout) Dir(name string) string { return filepath.Join(l.ReleasesDir(), name) }

// Ensure creates the layout's directories with their modes. env/ is 0700:
// it holds secrets.
func (l Layout) Ensure() error {
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{
		{l.Root, 0o755},
		{l.ReleasesDir(), 0o755},
		{l.SharedDir(), 0o755},
		{l.EnvDir(), 0o700},
		{l.RunDir(), 0o755},
		{l.LogDir(), 0o755},
		{l.DeployLogDir(), 0o755},
	} {
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			return fmt.Errorf("create %s: %w", d.path, err)
		}
	}
	return nil
}

// Current returns the name of the release `current` points to ("" if none).
func (l Layout) Current() (string, error) {
	target, err := os.Readlink(l.CurrentLink())
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read current: %w", err)
	}
	return filepath.Base(target), nil
}

// Switch points `current` at release name in one rename(2). The release's
// tree is flushed to disk first (its files were written without an fsync
// each), so that after a power loss `current` never names a tree with
// empty files.
func (l Layout) Switch(name string) error {
	if _, err := os.Stat(filepath.Join(l.Dir(name), "REVISION")); err != nil {
		return fmt.Errorf("switch to %s: not a complete release: %w", name, err)
	}
	if err := fsutil.SyncFS(l.Dir(name)); err != nil {
		return fmt.Errorf("switch to %s: %w", name, err)
	}
	return fsutil.Symlink(filepath.Join("releases", name), l.CurrentLink())
}

// Unlink removes `current` (a first deploy that failed leaves nothing live).
func (l Layout) Unlink() error {
	err := os.Remove(l.CurrentLink())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return fsutil.SyncDir(l.Root)
}

// SafeCommit returns the commit in run/SAFE_COMMIT ("" if none yet).
func (l Layout) SafeCommit() (string, error) {
	b, err := os.ReadFile(l.SafeFile())
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read safe commit: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// WriteSafeCommit records sha as the safe commit, atomically.
func (l Layout) WriteSafeCommit(sha string) error {
	return fsutil.WriteFile(l.SafeFile(), []byte(sha+"\n"), 0o644)
}
