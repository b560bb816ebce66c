package release

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/slipway-dev/slipway/internal/failpoint"
	"github.com/slipway-dev/slipway/internal/fsutil"
)

// Release is one immutable release tree.
type Release struct {
	Name    string
	Dir     string
	Commit  string
	Version string
}

// TimeFormat is the UTC timestamp in release names and APP_VERSION.
const TimeFormat = "20060102T150405Z"

// AppVersion is APP_VERSION for commit sha deployed at t.
func AppVersion(t time.Time, sha string) string {
	return t.UTC().Format(TimeFormat) + "+" + sha[:7]
}

// Exporter writes the tree of a commit into a directory (the git mirror).
type Exporter interface {
	Export(ctx context.Context, sha, dir string) error
}

const tmpPrefix = ".tmp-"

// Create makes the tree of a release for commit sha at t: exported under a
// temporary name, REVISION written, shared paths linked, then renamed into
// place. Build steps then run inside it; Stamp writes its VERSION.
func (l Layout) Create(ctx context.Context, x Exporter, sha string, t time.Time, shared []string) (Release, error) {
	name := t.UTC().Format(TimeFormat) + "-" + sha[:12]
	for i := 2; ; i++ {
		if _, err := os.Lstat(l.Dir(name)); os.IsNotExist(err) {
			break
		}
		name = fmt.Sprintf("%s-%s-%d", t.UTC().Format(TimeFormat), sha[:12], i)
	}
	r := Release{Name: name, Dir: l.Dir(name), Commit: sha, Version: AppVersion(t, sha)}
	tmp := filepath.Join(l.ReleasesDir(), tmpPrefix+name)
	_ = os.RemoveAll(tmp)
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return r, fmt.Errorf("create release: %w", err)
	}
	fail := func(err error) (Release, error) {
		_ = os.RemoveAll(tmp)
		return r, err
	}
	if err := x.Export(ctx, sha, tmp); err != nil {
		return fail(err)
	}
	if err := linkShared(tmp, l.SharedDir(), shared); err != nil {
		return fail(err)
	}
	// The list of the deps/ trees a release links is slipway's, never the
	// commit's.
	if err := removeIn(tmp, depsFile); err != nil {
		return fail(err)
	}
	// REVISION last: its presence marks a complete tree.
	if err := writeNew(tmp, "REVISION", []byte(sha+"\n")); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, r.Dir); err != nil {
		return fail(fmt.Errorf("create release: %w", err))
	}
	if err := fsutil.SyncDir(l.ReleasesDir()); err != nil {
		return r, err
	}
	return r, nil
}

// linkShared replaces each shared path in the release with a symlink to
// shared/<path>, creating the shared directory on first use. It works
// through os.Root, so a symlink committed in the repository can never make
// it touch anything outside the release.
func linkShared(dir, sharedRoot string, shared []string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer func() { _ = root.Close() }()
	for _, p := range shared {
		target := filepath.Join(sharedRoot, p)
		if err := os.MkdirAll(target, 0o755); err != nil {
			return fmt.Errorf("shared %s: %w", p, err)
		}
		if err := root.RemoveAll(p); err != nil {
			return fmt.Errorf("shared %s: %w", p, err)
		}
		if parent := filepath.Dir(p); parent != "." {
			if err := root.MkdirAll(parent, 0o755); err != nil {
				return fmt.Errorf("shared %s: %w", p, err)
			}
		}
		if err := root.Symlink(target, p); err != nil {
			return fmt.Errorf("shared %s: %w", p, err)
		}
	}
	return nil
}

// removeIn removes name from dir, whatever it is, inside the tree.
func removeIn(dir, name string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer func() { _ = root.Close() }()
	return root.RemoveAll(name)
}

// writeNew writes a file slipway owns in a release tree: whatever the
// commit put at that name (a symlink to /etc/passwd, say) is removed first,
// and the file is created exclusively, inside the tree.
func writeNew(dir, name string, data []byte) error {
	if err := removeIn(dir, name); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer func() { _ = root.Close() }()
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Open reads the release called name.
func (l Layout) Open(name string) (Release, error) {
	r := Release{Name: name, Dir: l.Dir(name)}
	rev, err := os.ReadFile(filepath.Join(r.Dir, "REVISION"))
	if err != nil {
		return r, fmt.Errorf("release %s: %w", name, err)
	}
	r.Commit = strings.TrimSpace(string(rev))
	if v, err := os.ReadFile(filepath.Join(r.Dir, "VERSION")); err == nil {
		r.Version = strings.TrimSpace(string(v))
	} else if ts, _, ok := strings.Cut(name, "-"); ok && len(r.Commit) >= 7 {
		r.Version = ts + "+" + r.Commit[:7]
	}
	return r, nil
}

// List returns the complete releases, oldest first.
func (l Layout) List() ([]Release, error) {
	entries, err := os.ReadDir(l.ReleasesDir())
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("list releases: %w", err)
	}
	type listed struct {
		Release
		stamp   string    // the time in its name, to the second
		created time.Time // when its REVISION was written
	}
	var found []listed
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		r, err := l.Open(e.Name())
		if err != nil {
			continue
		}
		fi, err := os.Stat(filepath.Join(r.Dir, "REVISION"))
		if err != nil {
			continue
		}
		stamp, _, _ := strings.Cut(r.Name, "-")
		found = append(found, listed{r, stamp, fi.ModTime()})
	}
	// Two deploys can start in the same second: within it, the order is
	// the order they were created in, not that of their commit ids.
	sort.Slice(found, func(i, j int) bool {
		a, b := found[i], found[j]
		if a.stamp != b.stamp {
			return a.stamp < b.stamp
		}
		if !a.created.Equal(b.created) {
			return a.created.Before(b.created)
		}
		return a.Name < b.Name
	})
	out := make([]Release, len(found))
	for i, f := range found {
		out[i] = f.Release
	}
	return out, nil
}

// trashPrefix names a release that was removed from releases/ (renamed)
// and whose files are not all deleted yet.
const trashPrefix = tmpPrefix + "rm-"

// Trash takes a release out of releases/ in one rename: it is no release
// any more, and EmptyTrash deletes its files later. It refuses the current
// release.
func (l Layout) Trash(name string) error {
	if name == "" || strings.ContainsAny(name, "/") {
		return fmt.Errorf("remove release: bad name %q", name)
	}
	if cur, _ := l.Current(); cur == name {
		return fmt.Errorf("remove release %s: it is current", name)
	}
	trash := filepath.Join(l.ReleasesDir(), trashPrefix+name)
	if err := os.RemoveAll(trash); err != nil { // an earlier one, half deleted
		return fmt.Errorf("remove release %s: %w", name, err)
	}
	if err := os.Rename(l.Dir(name), trash); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove release %s: %w", name, err)
	}
	return nil
}

// Remove deletes a release tree now. It refuses the current release.
func (l Layout) Remove(name string) error {
	// Renamed first, so that a half-deleted tree never looks like a release.
	if err := l.Trash(name); err != nil {
		return err
	}
	failpoint.Hit("release:removing")
	return os.RemoveAll(filepath.Join(l.ReleasesDir(), trashPrefix+name))
}

// EmptyTrash deletes the files of the releases Trash took out, and of the
// deps/ trees Prune took out, and returns their names (the trees' as
// "deps/NAME").
func (l Layout) EmptyTrash() ([]string, error) {
	var removed []string
	for _, d := range []struct{ dir, prefix string }{{l.ReleasesDir(), ""}, {l.DepsDir(), "deps/"}} {
		entries, err := os.ReadDir(d.dir)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return removed, err
		}
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), trashPrefix) {
				continue
			}
			failpoint.Hit("release:removing")
			if err := os.RemoveAll(filepath.Join(d.dir, e.Name())); err != nil {
				return removed, err
			}
			removed = append(removed, d.prefix+strings.TrimPrefix(e.Name(), trashPrefix))
		}
	}
	return removed, nil
}

// RemovePartial deletes temporary trees left by an interrupted create. The
// trash of removed releases is left to EmptyTrash.
func (l Layout) RemovePartial() ([]string, error) {
	entries, err := os.ReadDir(l.ReleasesDir())
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	var removed []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) && !strings.HasPrefix(e.Name(), trashPrefix) {
			if err := os.RemoveAll(filepath.Join(l.ReleasesDir(), e.Name())); err != nil {
				return removed, err
			}
			removed = append(removed, e.Name())
		}
	}
	return removed, nil
}

// Prune takes out releases beyond keep, never one in protect; releases in
// failed go first, then the oldest. It returns the names it took out. Then
// it takes out the deps/ trees that no release left links. With later,
// their files stay in the trash for EmptyTrash; else they are deleted now.
func (l Layout) Prune(keep int, protect, failed map[string]bool, later bool) ([]string, error) {
	removed, err := l.pruneReleases(keep, protect, failed, later)
	if err != nil {
		return removed, err
	}
	return removed, l.pruneDeps(later)
}

func (l Layout) pruneReleases(keep int, protect, failed map[string]bool, later bool) ([]string, error) {
	all, err := l.List()
	if err != nil {
		return nil, err
	}
	excess := len(all) - keep
	if excess <= 0 {
		return nil, nil
	}
	var order []string
	for _, pass := range []bool{true, false} {
		for _, r := range all {
			if !protect[r.Name] && failed[r.Name] == pass {
				order = append(order, r.Name)
			}
		}
	}
	remove := l.Remove
	if later {
		remove = l.Trash
	}
	var removed []string
	for _, name := range order {
		if excess == 0 {
			break
		}
		if err := remove(name); err != nil {
			return removed, err
		}
		removed = append(removed, name)
		excess--
	}
	return removed, nil
}

// Stamp writes the release's VERSION file (its APP_VERSION).
func Stamp(r Release) error {
	if err := writeNew(r.Dir, "VERSION", []byte(r.Version+"\n")); err != nil {
		return fmt.Errorf("stamp: %w", err)
	}
	return nil
}
