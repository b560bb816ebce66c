package release

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/slipway-dev/slipway/internal/failpoint"
)

// Dependency trees kept once (a build step's `reuse.share`): after the step
// builds its paths, each is moved to deps/<release>/<dir>/<path> and a
// symlink takes its place; a later release whose key files are unchanged
// gets the same symlink, which costs the same for a venv of ten thousand
// files as for one of ten. Each release lists the trees it links in its
// .slipway-deps file, and Prune deletes a tree that no release lists.

// depsFile, in a release's root, lists the trees under deps/ that the
// release links, one per line, relative to deps/.
const depsFile = ".slipway-deps"

// DepsDir holds the shared dependency trees.
func (l Layout) DepsDir() string { return filepath.Join(l.Root, "deps") }

// Share moves each path under sub of r, which its build step has just
// made, into deps/ and links it back. The scripts under the tree's bin/
// are re-pointed at its new place. A path the step did not make, or made
// a symlink, is left as it is.
func (l Layout) Share(r Release, sub string, paths []string) error {
	var linked []string
	for _, p := range paths {
		rel := filepath.Join(sub, p)
		src, err := inRelease(r, rel)
		if err != nil {
			return err
		}
		info, err := os.Lstat(src)
		if errors.Is(err, os.ErrNotExist) || (err == nil && info.Mode()&fs.ModeSymlink != 0) {
			continue
		}
		if err != nil {
			return fmt.Errorf("share %s: %w", rel, err)
		}
		entry := filepath.Join(r.Name, rel)
		dst := filepath.Join(l.DepsDir(), entry)
		if err := os.RemoveAll(dst); err != nil { // an interrupted attempt's
			return fmt.Errorf("share %s: %w", rel, err)
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("share %s: %w", rel, err)
		}
		if err := os.Rename(src, dst); err != nil {
			return fmt.Errorf("share %s: %w", rel, err)
		}
		failpoint.Hit("deps:moved")
		if err := relocateScripts(filepath.Join(dst, "bin"), src, dst); err != nil {
			return fmt.Errorf("share %s: %w", rel, err)
		}
		if err := os.Symlink(dst, src); err != nil {
			return fmt.Errorf("share %s: %w", rel, err)
		}
		linked = append(linked, entry)
	}
	return l.recordDeps(r, linked)
}

// LinkDeps gives next, at each path under sub, the tree prev has there:
// the same deps/ tree when prev links one, or else a hard-linked copy of
// prev's own directory, kept in deps/ for next (and later releases).
func (l Layout) LinkDeps(ctx context.Context, prev, next Release, sub string, paths []string) error {
	var linked []string
	for _, p := range paths {
		rel := filepath.Join(sub, p)
		to, err := inRelease(next, rel)
		if err != nil {
			return err
		}
		from := filepath.Join(prev.Dir, rel)
		entry, ok := l.depsEntry(from)
		if !ok {
			entry = filepath.Join(next.Name, rel)
			dst := filepath.Join(l.DepsDir(), entry)
			if err := os.RemoveAll(dst); err != nil {
				return fmt.Errorf("reuse %s: %w", rel, err)
			}
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return fmt.Errorf("reuse %s: %w", rel, err)
			}
			if err := copyTree(from, dst, true); err != nil {
				return fmt.Errorf("reuse %s: %w", rel, err)
			}
			if err := relocateScripts(filepath.Join(dst, "bin"), from, dst); err != nil {
				return fmt.Errorf("reuse %s: %w", rel, err)
			}
		}
		if err := os.RemoveAll(to); err != nil {
			return fmt.Errorf("reuse %s: %w", rel, err)
		}
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return fmt.Errorf("reuse %s: %w", rel, err)
		}
		if err := os.Symlink(filepath.Join(l.DepsDir(), entry), to); err != nil {
			return fmt.Errorf("reuse %s: %w", rel, err)
		}
		linked = append(linked, entry)
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return l.recordDeps(next, linked)
}

// inRelease returns the path of rel in r, refusing one whose directory a
// symlink committed in the repository puts outside the release.
func inRelease(r Release, rel string) (string, error) {
	path := filepath.Join(r.Dir, rel)
	root, err := filepath.EvalSymlinks(r.Dir)
	if err != nil {
		return "", err
	}
	dir, err := filepath.EvalSymlinks(filepath.Dir(path))
	if errors.Is(err, os.ErrNotExist) {
		return path, nil // made by MkdirAll, inside the release
	}
	if err != nil {
		return "", err
	}
	if dir != root && !strings.HasPrefix(dir, root+string(filepath.Separator)) {
		return "", fmt.Errorf("%s: its directory is a symlink out of the release (%s)", rel, dir)
	}
	return path, nil
}

// depsEntry returns the deps/ tree that the symlink at path points to,
// relative to deps/, if it is one and it exists.
func (l Layout) depsEntry(path string) (string, bool) {
	target, err := os.Readlink(path)
	if err != nil {
		return "", false
	}
	rel, err := filepath.Rel(l.DepsDir(), target)
	if err != nil || rel == "." || !filepath.IsLocal(rel) {
		return "", false
	}
	if _, err := os.Stat(target); err != nil {
		return "", false
	}
	return rel, true
}

// recordDeps adds entries to r's list of the deps/ trees it links.
func (l Layout) recordDeps(r Release, entries []string) error {
	if len(entries) == 0 {
		return nil
	}
	have, err := readDeps(r.Dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !slices.Contains(have, e) {
			have = append(have, e)
		}
	}
	return writeNew(r.Dir, depsFile, []byte(strings.Join(have, "\n")+"\n"))
}

// readDeps reads the deps/ trees the release in dir links.
func readDeps(dir string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, depsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(b)), nil
}

// pruneDeps takes out the deps/ trees of releases that no release links
// any more; with later, their files stay in the trash for EmptyTrash.
func (l Layout) pruneDeps(later bool) error {
	entries, err := os.ReadDir(l.DepsDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	all, err := l.List()
	if err != nil {
		return err
	}
	used := map[string]bool{}
	for _, r := range all {
		lines, err := readDeps(r.Dir)
		if err != nil {
			return err // a list it cannot read: nothing is deleted
		}
		for _, e := range lines {
			top, _, _ := strings.Cut(e, string(filepath.Separator))
			used[top] = true
		}
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || used[e.Name()] {
			continue
		}
		trash := filepath.Join(l.DepsDir(), trashPrefix+e.Name())
		if err := os.RemoveAll(trash); err != nil {
			return err
		}
		if err := os.Rename(filepath.Join(l.DepsDir(), e.Name()), trash); err != nil {
			return err
		}
		if !later {
			if err := os.RemoveAll(trash); err != nil {
				return err
			}
		}
	}
	return nil
}

// Deps returns the deps/ trees the release called name links.
func (l Layout) Deps(name string) ([]string, error) { return readDeps(l.Dir(name)) }

// MissingDeps returns the deps/ trees that the release called name lists
// but that are gone: that release's services would not start.
func (l Layout) MissingDeps(name string) ([]string, error) {
	lines, err := l.Deps(name)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, e := range lines {
		if _, err := os.Stat(filepath.Join(l.DepsDir(), e)); err != nil {
			missing = append(missing, e)
		}
	}
	return missing, nil
}
