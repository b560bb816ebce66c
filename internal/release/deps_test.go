package release

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/testkit"
)

// A shared venv: built in one release, moved to deps/ and linked back;
// linked as it is into the next releases; kept while a release links it,
// through prunes and after its builder is gone; deleted when none does.
func TestShareVenv(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	l := newLayout(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	names := []string{"20250101T000000Z-aaaaaaaaaaaa", "20250102T000000Z-bbbbbbbbbbbb", "20250103T000000Z-cccccccccccc"}
	rels := make([]Release, len(names))
	for i, n := range names {
		makeRelease(t, l, n, sha1)
		rels[i] = Release{Name: n, Dir: l.Dir(n), Commit: sha1}
		if err := os.MkdirAll(filepath.Join(rels[i].Dir, "backend"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	built := filepath.Join(rels[0].Dir, "backend", ".venv")
	makeVenv(ctx, t, python, built)

	if err := l.Share(rels[0], "backend", []string{".venv", "missing"}); err != nil {
		t.Fatalf("Share: %v", err)
	}
	entry := filepath.Join(l.DepsDir(), names[0], "backend", ".venv")
	if target, err := os.Readlink(built); err != nil || target != entry {
		t.Fatalf("backend/.venv links to %q (%v); want %s", target, err, entry)
	}
	if got := readFile(t, filepath.Join(rels[0].Dir, depsFile)); got != names[0]+"/backend/.venv\n" {
		t.Fatalf("%s = %q", depsFile, got)
	}
	pip := readFile(t, filepath.Join(entry, "bin", "pip"))
	if !strings.Contains(pip, entry+"/bin/python") || strings.Contains(pip, built) {
		t.Fatalf("bin/pip, moved to deps/, does not run its python there:\n%s", pip)
	}

	for _, next := range rels[1:] {
		if err := l.LinkDeps(ctx, rels[0], next, "backend", []string{".venv"}); err != nil {
			t.Fatalf("LinkDeps: %v", err)
		}
		if target, _ := os.Readlink(filepath.Join(next.Dir, "backend", ".venv")); target != entry {
			t.Fatalf("%s links to %q; want %s", next.Name, target, entry)
		}
	}
	// The builder goes; the tree stays for the releases that link it.
	if _, err := l.Prune(2, nil, nil, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(entry); err != nil {
		t.Fatalf("the tree went with its builder while two releases link it: %v", err)
	}
	venv := filepath.Join(rels[2].Dir, "backend", ".venv")
	out, err := exec.CommandContext(ctx, filepath.Join(venv, "bin", "pip"), "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), entry) {
		t.Fatalf("pip through the link: %v %s", err, out)
	}
	out, err = exec.CommandContext(ctx, filepath.Join(venv, "bin", "python"), "-c", "import sys; print(sys.prefix)").Output()
	if err != nil || strings.TrimSpace(string(out)) != venv {
		t.Fatalf("sys.prefix = %q, %v; want %s (the release's own path)", out, err, venv)
	}

	// No release links it any more: Prune takes it out, to the trash
	// with later, and EmptyTrash deletes it.
	if err := os.Remove(filepath.Join(rels[1].Dir, depsFile)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(rels[2].Dir, depsFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Prune(2, nil, nil, true); err != nil {
		t.Fatal(err)
	}
	if got := testkit.Names(t, l.DepsDir()); !slices.Equal(got, []string{trashPrefix + names[0]}) {
		t.Fatalf("deps/ = %v; want only the trash of %s", got, names[0])
	}
	removed, err := l.EmptyTrash()
	if err != nil || !slices.Equal(removed, []string{"deps/" + names[0]}) {
		t.Fatalf("EmptyTrash = %v, %v", removed, err)
	}
	if got := testkit.Names(t, l.DepsDir()); len(got) != 0 {
		t.Fatalf("deps/ = %v after EmptyTrash", got)
	}
}

// A release that has its own directory (built before share was set) gives
// the next one a hard-linked copy in deps/, which later releases share.
func TestLinkDepsFromADirectory(t *testing.T) {
	l := newLayout(t)
	prev := Release{Name: "20250101T000000Z-aaaaaaaaaaaa", Dir: makeRelease(t, l, "20250101T000000Z-aaaaaaaaaaaa", sha1)}
	next := Release{Name: "20250102T000000Z-bbbbbbbbbbbb", Dir: makeRelease(t, l, "20250102T000000Z-bbbbbbbbbbbb", sha2)}
	mods := filepath.Join(prev.Dir, "node_modules")
	if err := os.MkdirAll(filepath.Join(mods, "left-pad", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mods, "left-pad", "index.js"), []byte("module.exports = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// What the commit has at the path is replaced.
	if err := os.MkdirAll(filepath.Join(next.Dir, "node_modules"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := l.LinkDeps(t.Context(), prev, next, ".", []string{"node_modules"}); err != nil {
		t.Fatalf("LinkDeps: %v", err)
	}
	entry := filepath.Join(l.DepsDir(), next.Name, "node_modules")
	if target, _ := os.Readlink(filepath.Join(next.Dir, "node_modules")); target != entry {
		t.Fatalf("node_modules links to %q; want %s", target, entry)
	}
	a, errA := os.Stat(filepath.Join(mods, "left-pad", "index.js"))
	b, errB := os.Stat(filepath.Join(entry, "left-pad", "index.js"))
	if errA != nil || errB != nil || !os.SameFile(a, b) {
		t.Fatalf("the copy in deps/ is not hard-linked: %v %v", errA, errB)
	}
}

// A path whose directory is a symlink the commit put there, out of the
// release, is refused: nothing outside the release is moved or replaced.
func TestShareStaysInsideTheRelease(t *testing.T) {
	l := newLayout(t)
	r := Release{Name: "20250101T000000Z-aaaaaaaaaaaa", Dir: makeRelease(t, l, "20250101T000000Z-aaaaaaaaaaaa", sha1)}
	outside := t.TempDir()
	if err := os.Mkdir(filepath.Join(outside, ".venv"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(r.Dir, "backend")); err != nil {
		t.Fatal(err)
	}
	if err := l.Share(r, "backend", []string{".venv"}); err == nil || !strings.Contains(err.Error(), "out of the release") {
		t.Fatalf("Share = %v; want a refusal", err)
	}
	if err := l.LinkDeps(t.Context(), r, r, "backend", []string{".venv"}); err == nil {
		t.Fatal("LinkDeps into a symlink out of the release: no error")
	}
	if info, err := os.Lstat(filepath.Join(outside, ".venv")); err != nil || !info.IsDir() {
		t.Fatalf("the directory outside the release was touched: %v", err)
	}
}
