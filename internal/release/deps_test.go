package release

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
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

	if _, err := l.Share(rels[0], "backend", []string{".venv", "missing"}); err != nil {
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
		if _, err := l.LinkDeps(ctx, rels[0], next, "backend", []string{".venv"}); err != nil {
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
	if _, err := l.LinkDeps(t.Context(), prev, next, ".", []string{"node_modules"}); err != nil {
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
	if _, err := l.Share(r, "backend", []string{".venv"}); err == nil || !strings.Contains(err.Error(), "out of the release") {
		t.Fatalf("Share = %v; want a refusal", err)
	}
	if _, err := l.LinkDeps(t.Context(), r, r, "backend", []string{".venv"}); err == nil {
		t.Fatal("LinkDeps into a symlink out of the release: no error")
	}
	if info, err := os.Lstat(filepath.Join(outside, ".venv")); err != nil || !info.IsDir() {
		t.Fatalf("the directory outside the release was touched: %v", err)
	}
}

// shareFixture makes a release with a tree at sub/p whose bin/ script
// names the release's path, and shares it.
func shareFixture(t *testing.T, l Layout, name, rel string) Release {
	t.Helper()
	r := Release{Name: name, Dir: makeRelease(t, l, name, sha1)}
	bin := filepath.Join(r.Dir, rel, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	testkit.WriteFile(t, filepath.Join(bin, "tool"), "#!"+filepath.Join(r.Dir, rel, "bin", "python")+"\n", 0o755)
	if _, err := l.Share(r, filepath.Dir(rel), []string{filepath.Base(rel)}); err != nil {
		t.Fatal(err)
	}
	return r
}

// reuse.share turned off: the next release gets a tree of its own, copied
// from the one the live release links, its scripts re-pointed at it; the
// shared one then goes with the last release that links it.
func TestCopyReusedFromASharedTree(t *testing.T) {
	l := newLayout(t)
	prev := shareFixture(t, l, "20250101T000000Z-aaaaaaaaaaaa", "backend/.venv")
	next := Release{Name: "20250102T000000Z-bbbbbbbbbbbb", Dir: makeRelease(t, l, "20250102T000000Z-bbbbbbbbbbbb", sha2)}
	if err := l.CopyReused(t.Context(), prev, next, "backend", []string{".venv"}, false); err != nil {
		t.Fatalf("CopyReused: %v", err)
	}
	venv := filepath.Join(next.Dir, "backend", ".venv")
	if info, err := os.Lstat(venv); err != nil || !info.IsDir() {
		t.Fatalf("the new release's .venv is not a directory of its own: %v", err)
	}
	if got := readFile(t, filepath.Join(venv, "bin", "tool")); got != "#!"+venv+"/bin/python\n" {
		t.Fatalf("bin/tool = %q; want it re-pointed at %s", got, venv)
	}
	if err := os.RemoveAll(prev.Dir); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Prune(5, nil, nil, false); err != nil {
		t.Fatal(err)
	}
	if got := testkit.Names(t, l.DepsDir()); len(got) != 0 {
		t.Fatalf("deps/ = %v; want the shared tree gone with the release that linked it", got)
	}
	if _, err := os.Stat(filepath.Join(venv, "bin", "tool")); err != nil {
		t.Fatalf("the new release's own copy went too: %v", err)
	}
}

// Trees are kept or deleted one by one: a release that rebuilt one of two
// trees leaves the other, still linked, when its builder goes; and a
// directory in releases/ that is not a complete release still keeps what
// it links.
func TestPruneDepsTreeByTree(t *testing.T) {
	l := newLayout(t)
	r1 := Release{Name: "20250101T000000Z-aaaaaaaaaaaa", Dir: makeRelease(t, l, "20250101T000000Z-aaaaaaaaaaaa", sha1)}
	for _, rel := range []string{"backend/.venv", "web/node_modules"} {
		if err := os.MkdirAll(filepath.Join(r1.Dir, rel), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Share(r1, "backend", []string{".venv"}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Share(r1, "web", []string{"node_modules"}); err != nil {
		t.Fatal(err)
	}
	r2 := Release{Name: "20250102T000000Z-bbbbbbbbbbbb", Dir: makeRelease(t, l, "20250102T000000Z-bbbbbbbbbbbb", sha2)}
	if _, err := l.LinkDeps(t.Context(), r1, r2, "backend", []string{".venv"}); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(r2.Dir, "web", "node_modules"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Share(r2, "web", []string{"node_modules"}); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(r1.Dir); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Prune(5, nil, nil, true); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(r1.Name + "/web/node_modules"))
	want := []string{trashPrefix + r1.Name + "-" + hex.EncodeToString(sum[:6]), r1.Name, r2.Name}
	if got := testkit.Names(t, l.DepsDir()); !slices.Equal(got, want) {
		t.Fatalf("deps/ = %v; want %v", got, want)
	}
	if got := readFile(t, filepath.Join(l.DepsDir(), r1.Name, depsFile)); got != r1.Name+"/backend/.venv\n" {
		t.Fatalf("deps/%s lists %q; want only its venv", r1.Name, got)
	}
	if _, err := os.Stat(filepath.Join(r2.Dir, "backend", ".venv")); err != nil {
		t.Fatalf("r2's venv: %v", err)
	}
	// A file in releases/ is no release, and stops nothing.
	testkit.WriteFile(t, filepath.Join(l.ReleasesDir(), "NOTES"), "mine\n", 0o644)
	// r2 loses its REVISION (it is no complete release any more): what
	// it links stays all the same.
	if err := os.Remove(filepath.Join(r2.Dir, "REVISION")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Prune(5, nil, nil, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(r2.Dir, "backend", ".venv")); err != nil {
		t.Fatalf("a release that could not be opened lost its venv: %v", err)
	}
}

// The list a release keeps is the app user's tree: it is never read
// through a symlink, nor from a FIFO, nor past its size bound, and only
// names of trees under deps/ count. A committed one is removed at export.
func TestReadDepsDistrustsTheTree(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	testkit.WriteFile(t, secret, "root/x/y\n", 0o600)
	if err := os.Symlink(secret, filepath.Join(dir, depsFile)); err != nil {
		t.Fatal(err)
	}
	if got, err := readDeps(dir); err == nil {
		t.Fatalf("readDeps through a symlink = %v; want an error", got)
	}
	if err := os.Remove(filepath.Join(dir, depsFile)); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(secret, filepath.Join(dir, depsFile)); err != nil {
		t.Fatal(err)
	}
	if got, err := readDeps(dir); err == nil {
		t.Fatalf("readDeps of a hard link = %v; want an error", got)
	}
	if err := os.Remove(filepath.Join(dir, depsFile)); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, depsFile), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := readDeps(dir); err == nil {
		t.Fatalf("readDeps of a FIFO = %v; want an error", got)
	}
	if err := os.Remove(filepath.Join(dir, depsFile)); err != nil {
		t.Fatal(err)
	}
	testkit.WriteFile(t, filepath.Join(dir, depsFile), "../../etc/passwd\n/abs/x\nonepart\n.tmp-rm-a/b\nR/backend/.venv\n"+strings.Repeat("x", maxDepsFile), 0o644)
	if got, err := readDeps(dir); err != nil || !slices.Equal(got, []string{"R/backend/.venv"}) {
		t.Fatalf("readDeps = %v, %v; want only R/backend/.venv", got, err)
	}

	l := newLayout(t)
	x := appTree()
	x.files[depsFile] = "R/backend/.venv\n"
	r, err := l.Create(t.Context(), x, sha1, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(r.Dir, depsFile)); !os.IsNotExist(err) {
		t.Fatalf("the commit's %s is in the release: %v", depsFile, err)
	}
}

// A bin/ that the build made a symlink is not followed when scripts are
// re-pointed; a path that is a file is shared as well as a directory.
func TestShareOddTrees(t *testing.T) {
	l := newLayout(t)
	r := Release{Name: "20250101T000000Z-aaaaaaaaaaaa", Dir: makeRelease(t, l, "20250101T000000Z-aaaaaaaaaaaa", sha1)}
	outside := t.TempDir()
	victim := filepath.Join(outside, "script")
	body := "#!" + filepath.Join(r.Dir, "tree") + "/python\n"
	testkit.WriteFile(t, victim, body, 0o755)
	if err := os.MkdirAll(filepath.Join(r.Dir, "tree"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(r.Dir, "tree", "bin")); err != nil {
		t.Fatal(err)
	}
	testkit.WriteFile(t, filepath.Join(r.Dir, "app.bin"), "binary\n", 0o755)
	if _, err := l.Share(r, ".", []string{"tree", "app.bin"}); err != nil {
		t.Fatalf("Share: %v", err)
	}
	if got := readFile(t, victim); got != body {
		t.Fatalf("a file outside the release was rewritten: %q", got)
	}
	if got := readFile(t, filepath.Join(r.Dir, "app.bin")); got != "binary\n" {
		t.Fatalf("app.bin through its link = %q", got)
	}
}

// Names with spaces are whole lines of the lists: a tree at "web x" is not
// taken for one at "web", which would hold another tree that is linked.
func TestPruneDepsNamesWithSpaces(t *testing.T) {
	l := newLayout(t)
	r := Release{Name: "20250101T000000Z-aaaaaaaaaaaa", Dir: makeRelease(t, l, "20250101T000000Z-aaaaaaaaaaaa", sha1)}
	for _, rel := range []string{"web/node_modules", "web x"} {
		if err := os.MkdirAll(filepath.Join(r.Dir, rel), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Share(r, "web", []string{"node_modules"}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Share(r, ".", []string{"web x"}); err != nil {
		t.Fatal(err)
	}
	n := Release{Name: "20250102T000000Z-bbbbbbbbbbbb", Dir: makeRelease(t, l, "20250102T000000Z-bbbbbbbbbbbb", sha2)}
	if _, err := l.LinkDeps(t.Context(), r, n, "web", []string{"node_modules"}); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := l.Deps(r.Name); !slices.Equal(got, []string{r.Name + "/web/node_modules", r.Name + "/web x"}) {
		t.Fatalf("Deps = %q", got)
	}
	if err := os.RemoveAll(r.Dir); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Prune(5, nil, nil, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(n.Dir, "web", "node_modules")); err != nil {
		t.Fatalf("the linked node_modules went: %v", err)
	}
	if _, err := os.Stat(filepath.Join(l.DepsDir(), r.Name, "web x")); !os.IsNotExist(err) {
		t.Fatalf("the unlinked tree at \"web x\" is still there: %v", err)
	}
}

// A live release whose reuse path is a symlink of its own (not into
// deps/) gives the next one the same symlink; nothing it points to is
// rewritten.
func TestLinkDepsOfASymlink(t *testing.T) {
	l := newLayout(t)
	prev := Release{Name: "20250101T000000Z-aaaaaaaaaaaa", Dir: makeRelease(t, l, "20250101T000000Z-aaaaaaaaaaaa", sha1)}
	next := Release{Name: "20250102T000000Z-bbbbbbbbbbbb", Dir: makeRelease(t, l, "20250102T000000Z-bbbbbbbbbbbb", sha2)}
	outside := t.TempDir()
	body := "#!" + prev.Dir + "/python\n"
	testkit.WriteFile(t, filepath.Join(outside, "bin", "tool"), body, 0o755)
	if err := os.Symlink(outside, filepath.Join(prev.Dir, ".venv")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.LinkDeps(t.Context(), prev, next, ".", []string{".venv"}); err != nil {
		t.Fatalf("LinkDeps: %v", err)
	}
	if target, _ := os.Readlink(filepath.Join(next.Dir, ".venv")); target != outside {
		t.Fatalf(".venv links to %q; want %s", target, outside)
	}
	if got := readFile(t, filepath.Join(outside, "bin", "tool")); got != body {
		t.Fatalf("a script outside the releases was rewritten: %q", got)
	}
}
