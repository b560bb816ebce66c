package release

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/slipway-dev/slipway/internal/failpoint"
	"github.com/slipway-dev/slipway/internal/fsutil"
)

// Dependency trees kept once (a build step's `reuse.share`): after the step
// builds its paths, each is moved to deps/<release>/<dir>/<path> and a
// symlink takes its place; a later release whose key files are unchanged
// gets the same symlink, which costs the same for a venv of ten thousand
// files as for one of ten. Each release lists the trees it links in its
// .slipway-deps file, and each deps/<release> directory lists the trees it
// holds in its own; Prune deletes a tree that no release lists.

// depsFile lists trees under deps/, one per line, relative to deps/: in a
// release's root, the trees it links; in deps/<release>/, the trees held
// there.
const depsFile = ".slipway-deps"

// maxDepsFile bounds what is read of a depsFile (a release tree is the
// app user's, who could put anything there).
const maxDepsFile = 1 << 20

// DepsDir holds the shared dependency trees.
func (l Layout) DepsDir() string { return filepath.Join(l.Root, "deps") }

// Share moves each path under sub of r, which its build step has just
// made, into deps/ and links it back. The scripts under the tree's bin/
// are re-pointed at its new place. A path the step did not make, or made
// a symlink, is left as it is. It returns the trees it moved.
func (l Layout) Share(r Release, sub string, paths []string) ([]string, error) {
	var moved []string
	for _, p := range paths {
		rel := filepath.Join(sub, p)
		src, err := inRelease(r, rel)
		if err != nil {
			return moved, err
		}
		info, err := os.Lstat(src)
		if errors.Is(err, os.ErrNotExist) || (err == nil && info.Mode()&fs.ModeSymlink != 0) {
			continue
		}
		if err != nil {
			return moved, fmt.Errorf("share %s: %w", rel, err)
		}
		entry := filepath.Join(r.Name, rel)
		dst, err := l.newTree(entry)
		if err != nil {
			return moved, fmt.Errorf("share %s: %w", rel, err)
		}
		if err := os.Rename(src, dst); err != nil {
			return moved, fmt.Errorf("share %s: %w", rel, err)
		}
		failpoint.Hit("deps:moved")
		if err := relocateScripts(filepath.Join(dst, "bin"), src, dst); err != nil {
			return moved, fmt.Errorf("share %s: %w", rel, err)
		}
		if err := os.Symlink(dst, src); err != nil {
			return moved, fmt.Errorf("share %s: %w", rel, err)
		}
		if err := recordDeps(r.Dir, entry, false); err != nil {
			return moved, err
		}
		moved = append(moved, dst)
	}
	return moved, nil
}

// LinkDeps gives next, at each path under sub, the tree prev has there:
// the same deps/ tree when prev links one, or else a hard-linked copy of
// prev's own directory, kept in deps/ for next (and later releases). It
// returns the trees it made.
func (l Layout) LinkDeps(ctx context.Context, prev, next Release, sub string, paths []string) ([]string, error) {
	var made []string
	for _, p := range paths {
		rel := filepath.Join(sub, p)
		from, err := inRelease(prev, rel)
		if err != nil {
			return made, err
		}
		to, err := inRelease(next, rel)
		if err != nil {
			return made, err
		}
		entry, ok := l.depsEntry(from)
		if info, err := os.Lstat(from); !ok && err == nil && info.Mode()&fs.ModeSymlink != 0 {
			// The commit's or the build's own symlink: the new release
			// gets the same, as a copy would.
			if err := copyPath(ctx, from, to, false, "", ""); err != nil {
				return made, fmt.Errorf("reuse %s: %w", rel, err)
			}
			continue
		}
		if !ok {
			entry = filepath.Join(next.Name, rel)
			dst, err := l.newTree(entry)
			if err != nil {
				return made, fmt.Errorf("reuse %s: %w", rel, err)
			}
			if err := copyPath(ctx, from, dst, true, from, dst); err != nil {
				return made, fmt.Errorf("reuse %s: %w", rel, err)
			}
			made = append(made, dst)
		}
		if err := os.RemoveAll(to); err != nil {
			return made, fmt.Errorf("reuse %s: %w", rel, err)
		}
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return made, fmt.Errorf("reuse %s: %w", rel, err)
		}
		if err := os.Symlink(filepath.Join(l.DepsDir(), entry), to); err != nil {
			return made, fmt.Errorf("reuse %s: %w", rel, err)
		}
		if err := recordDeps(next.Dir, entry, false); err != nil {
			return made, err
		}
		if err := ctx.Err(); err != nil {
			return made, err
		}
	}
	return made, nil
}

// CopyReused copies each path under sub from prev into next (keeping
// symlinks, modes and times), then rewrites the absolute references to the
// previous release that tools bake into scripts (a venv's bin/ shebangs and
// activate). With link, files are hard-linked rather than copied
// (directories are still new), which is safe as long as nothing modifies
// them in place. A path that prev links from deps/ (reuse.share, since
// turned off) is copied from the tree it links, so that next has a tree
// of its own.
func (l Layout) CopyReused(ctx context.Context, prev, next Release, sub string, paths []string, link bool) error {
	for _, p := range paths {
		rel := filepath.Join(sub, p)
		to, err := inRelease(next, rel)
		if err != nil {
			return err
		}
		from := filepath.Join(prev.Dir, rel)
		old, repl := prev.Dir, next.Dir
		if entry, ok := l.depsEntry(from); ok {
			from = filepath.Join(l.DepsDir(), entry)
			old, repl = from, to
		} else if _, err := inRelease(prev, rel); err != nil {
			return err
		}
		if err := copyPath(ctx, from, to, link, old, repl); err != nil {
			return fmt.Errorf("reuse %s: %w", rel, err)
		}
	}
	return nil
}

// newTree makes way for the tree entry in deps/ and lists it in its
// deps/<release>/ directory, before anything is put there: a tree that
// is not listed is never deleted.
func (l Layout) newTree(entry string) (string, error) {
	dst := filepath.Join(l.DepsDir(), entry)
	if err := os.RemoveAll(dst); err != nil { // an interrupted attempt's
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	top, _, _ := strings.Cut(entry, string(filepath.Separator))
	if err := recordDeps(filepath.Join(l.DepsDir(), top), entry, true); err != nil {
		return "", err
	}
	return dst, nil
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
	if err != nil || !validEntry(rel) {
		return "", false
	}
	if _, err := os.Stat(target); err != nil {
		return "", false
	}
	return rel, true
}

// validEntry reports whether e names a tree under deps/: a local path of
// at least two parts (deps/<release>/...), not a hidden one.
func validEntry(e string) bool {
	return filepath.IsLocal(e) && strings.Contains(e, string(filepath.Separator)) && !strings.HasPrefix(e, ".")
}

// recordDeps adds entry to the depsFile in dir; held says dir is a
// deps/<release>/ directory (see writeDeps).
func recordDeps(dir, entry string, held bool) error {
	have, err := readDeps(dir)
	if err != nil {
		return err
	}
	if slices.Contains(have, entry) {
		return nil
	}
	return writeDeps(dir, append(have, entry), held)
}

// writeDeps writes the depsFile in dir: in a release (the app user's
// tree) through writeNew, which never follows what is there; in deps/
// (held), which is slipway's, atomically, so that a kill never loses the
// list.
func writeDeps(dir string, entries []string, held bool) error {
	data := []byte(strings.Join(entries, "\n") + "\n")
	if held {
		return fsutil.WriteFile(filepath.Join(dir, depsFile), data, 0o644)
	}
	return writeNew(dir, depsFile, data)
}

// readDeps reads the depsFile in dir: a regular file, never through a
// symlink, of at most maxDepsFile bytes. Lines that name no tree under
// deps/ are ignored.
func readDeps(dir string) ([]string, error) {
	root, err := os.OpenRoot(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer func() { _ = root.Close() }()
	f, err := root.OpenFile(depsFile, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, depsFile), err)
	}
	defer func() { _ = f.Close() }()
	// A regular file of its own, not a hard link to one only root may read.
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st, ok := info.Sys().(*syscall.Stat_t); !info.Mode().IsRegular() || !ok || st.Nlink != 1 {
		return nil, fmt.Errorf("%s is not a file slipway wrote: remove it", filepath.Join(dir, depsFile))
	}
	b, err := io.ReadAll(io.LimitReader(f, maxDepsFile))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range strings.Split(string(b), "\n") {
		if validEntry(e) {
			out = append(out, e)
		}
	}
	return out, nil
}

// pruneDeps takes out the deps/ trees that no release links any more:
// a deps/<release>/ directory none of whose trees is linked goes whole,
// else each tree of it that is not linked; with later, their files stay
// in the trash for EmptyTrash. Every directory in releases/ counts, even
// one that is not a complete release, and one whose list cannot be read
// stops it: nothing is deleted then.
func (l Layout) pruneDeps(later bool) error {
	held, err := os.ReadDir(l.DepsDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	rels, err := os.ReadDir(l.ReleasesDir())
	if err != nil {
		return err
	}
	used := map[string]bool{}
	for _, r := range rels {
		if strings.HasPrefix(r.Name(), ".") || !r.IsDir() {
			continue
		}
		lines, err := readDeps(l.Dir(r.Name()))
		if err != nil {
			return fmt.Errorf("prune deps/: %w", err)
		}
		for _, e := range lines {
			used[e] = true
		}
	}
	for _, h := range held {
		if strings.HasPrefix(h.Name(), ".") || !h.IsDir() {
			continue
		}
		dir := filepath.Join(l.DepsDir(), h.Name())
		trees, err := readDeps(dir)
		if err != nil {
			return fmt.Errorf("prune deps/: %w", err)
		}
		// What releases link here is kept, listed or not.
		var keep []string
		for _, e := range slices.Sorted(maps.Keys(used)) {
			if strings.HasPrefix(e, h.Name()+string(filepath.Separator)) {
				keep = append(keep, e)
			}
		}
		if len(keep) == 0 {
			if err := l.trashTree(dir, h.Name(), later); err != nil {
				return err
			}
			continue
		}
		gone := false
		for _, t := range trees {
			if used[t] || slices.ContainsFunc(keep, func(k string) bool { return strings.HasPrefix(k, t+string(filepath.Separator)) }) {
				continue
			}
			gone = true
			sum := sha256.Sum256([]byte(t))
			if err := l.trashTree(filepath.Join(l.DepsDir(), t), h.Name()+"-"+hex.EncodeToString(sum[:6]), later); err != nil {
				return err
			}
		}
		if gone || len(keep) != len(trees) {
			if err := writeDeps(dir, keep, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// trashTree renames path to deps/.tmp-rm-<name>, and deletes it now
// unless later.
func (l Layout) trashTree(path, name string, later bool) error {
	trash := filepath.Join(l.DepsDir(), trashPrefix+name)
	if err := os.RemoveAll(trash); err != nil {
		return err
	}
	if err := os.Rename(path, trash); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if later {
		return nil
	}
	return os.RemoveAll(trash)
}

// Deps returns the deps/ trees the release called name links, and those
// of them that are gone (its services would not start).
func (l Layout) Deps(name string) (linked, missing []string, err error) {
	linked, err = readDeps(l.Dir(name))
	for _, e := range linked {
		if _, err := os.Stat(filepath.Join(l.DepsDir(), e)); err != nil {
			missing = append(missing, e)
		}
	}
	return linked, missing, err
}
