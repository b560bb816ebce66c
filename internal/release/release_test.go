package release

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/git"
	"github.com/slipway-dev/slipway/internal/testkit"
)

const (
	sha1 = "0123456789abcdef0123456789abcdef01234567"
	sha2 = "89abcdef0123456789abcdef0123456789abcdef"
)

// fakeExporter writes a fixed tree. It is a fake on purpose: Exporter is the
// seam between a release and the git mirror, and these tests are about what
// Create does around the export (naming, REVISION, shared links, the
// temporary tree). TestCreateWithGitMirror runs the real git.Mirror.
type fakeExporter struct {
	files map[string]string
	links map[string]string // symlinks committed in the repository
	err   error
	dirs  []string // the directories it was asked to export into
}

func (f *fakeExporter) Export(_ context.Context, sha, dir string) error {
	f.dirs = append(f.dirs, dir)
	for name, content := range f.files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return err
		}
	}
	for name, target := range f.links {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return f.err
}

func appTree() *fakeExporter {
	return &fakeExporter{files: map[string]string{
		"README.md":          "hello\n",
		"backend/app.py":     "print('hi')\n",
		"data/seed.sql":      "-- in the repo, replaced by shared/data\n",
		"logs/app/.gitkeep":  "",
		"web/public/app.css": "body{}\n",
	}}
}

func newLayout(t *testing.T) Layout {
	t.Helper()
	l := Layout{Root: filepath.Join(t.TempDir(), "app")}
	if err := l.Ensure(); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	return l
}

func names(rs []Release) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// makeRelease makes a complete release tree called name by hand.
func makeRelease(t *testing.T, l Layout, name, sha string) string {
	t.Helper()
	dir := l.Dir(name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "REVISION"), []byte(sha+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// at is the release whose tree is dir.
func at(dir string) Release { return Release{Name: filepath.Base(dir), Dir: dir} }

// umask reads this process's umask without changing it.
func umask(t *testing.T) os.FileMode {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			if err != nil {
				t.Fatal(err)
			}
			return os.FileMode(n)
		}
	}
	t.Skip("no Umask in /proc/self/status")
	return 0
}

func TestLayoutEnsure(t *testing.T) {
	l := Layout{Root: filepath.Join(t.TempDir(), "opt", "app")}
	if err := l.Ensure(); err != nil {
		t.Fatal(err)
	}
	if err := l.Ensure(); err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	mask := umask(t)
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
		t.Run(filepath.Base(d.path), func(t *testing.T) {
			info, err := os.Stat(d.path)
			if err != nil {
				t.Fatal(err)
			}
			if !info.IsDir() {
				t.Fatalf("%s is not a directory", d.path)
			}
			if want := d.mode &^ mask; info.Mode().Perm() != want {
				t.Errorf("mode %04o; want %04o", info.Mode().Perm(), want)
			}
		})
	}
	// The env dir holds secrets: nobody but the owner may even list it.
	if info, _ := os.Stat(l.EnvDir()); info.Mode().Perm()&0o077 != 0 {
		t.Errorf("env is %04o", info.Mode().Perm())
	}
}

func TestCreate(t *testing.T) {
	l := newLayout(t)
	x := appTree()
	at := time.Date(2025, 6, 7, 8, 9, 10, 0, time.FixedZone("CEST", 2*60*60))
	r, err := l.Create(t.Context(), x, sha1, at, []string{"data", "logs/app"})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}

	if want := "20250607T060910Z-0123456789ab"; r.Name != want {
		t.Errorf("Name = %q; want %q (UTC time, 12 hex of the sha)", r.Name, want)
	}
	if !regexp.MustCompile(`^\d{8}T\d{6}Z-[0-9a-f]{12}$`).MatchString(r.Name) {
		t.Errorf("Name %q does not match <YYYYmmddTHHMMSSZ>-<sha12>", r.Name)
	}
	if r.Dir != filepath.Join(l.Root, "releases", r.Name) || r.Commit != sha1 || r.Version != "20250607T060910Z+0123456" {
		t.Errorf("release = %+v", r)
	}
	if got := readFile(t, filepath.Join(r.Dir, "REVISION")); got != sha1+"\n" {
		t.Errorf("REVISION = %q", got)
	}
	if got := readFile(t, filepath.Join(r.Dir, "backend", "app.py")); got != "print('hi')\n" {
		t.Errorf("backend/app.py = %q", got)
	}
	if x.dirs[0] == r.Dir || !strings.HasPrefix(filepath.Base(x.dirs[0]), ".") {
		t.Errorf("exported straight into %s; want a hidden temporary tree", x.dirs[0])
	}
	if got := testkit.Names(t, l.ReleasesDir()); len(got) != 1 || got[0] != r.Name {
		t.Errorf("releases/ holds %q; want only %s (no temporary tree)", got, r.Name)
	}

	t.Run("shared links", func(t *testing.T) {
		for _, p := range []string{"data", "logs/app"} {
			link := filepath.Join(r.Dir, p)
			target, err := os.Readlink(link)
			if err != nil || target != filepath.Join(l.SharedDir(), p) {
				t.Errorf("%s -> %q, %v; want shared/%s", p, target, err, p)
			}
			if info, err := os.Stat(filepath.Join(l.SharedDir(), p)); err != nil || !info.IsDir() {
				t.Errorf("shared/%s: %v", p, err)
			}
		}
		// What the app writes lands in shared/, and the next release sees it.
		if err := os.WriteFile(filepath.Join(r.Dir, "data", "app.db"), []byte("rows"), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, filepath.Join(l.SharedDir(), "data", "app.db")); got != "rows" {
			t.Errorf("shared/data/app.db = %q", got)
		}
		if _, err := os.Stat(filepath.Join(l.SharedDir(), "data", "seed.sql")); !errors.Is(err, os.ErrNotExist) {
			t.Error("the repo's data/ leaked into shared/data")
		}
		r2, err := l.Create(t.Context(), appTree(), sha2, at.Add(time.Hour), []string{"data", "logs/app"})
		if err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, filepath.Join(r2.Dir, "data", "app.db")); got != "rows" {
			t.Errorf("next release sees data/app.db = %q", got)
		}
	})

	t.Run("same second", func(t *testing.T) {
		a, err := l.Create(t.Context(), appTree(), sha1, at, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := l.Create(t.Context(), appTree(), sha1, at, nil)
		if err != nil {
			t.Fatal(err)
		}
		if a.Name == r.Name || b.Name == a.Name || a.Dir == r.Dir {
			t.Fatalf("names %q, %q, %q are not distinct", r.Name, a.Name, b.Name)
		}
		if got := readFile(t, filepath.Join(r.Dir, "REVISION")); got != sha1+"\n" {
			t.Errorf("the first release was disturbed: REVISION = %q", got)
		}
		all, err := l.List()
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{r.Name, a.Name, b.Name} {
			if !strings.Contains(strings.Join(names(all), " "), n) {
				t.Errorf("List %q lacks %s", names(all), n)
			}
		}
	})
}

func TestCreateExportFails(t *testing.T) {
	l := newLayout(t)
	boom := errors.New("git archive: disk full")
	x := appTree()
	x.err = boom
	_, err := l.Create(t.Context(), x, sha1, time.Now(), []string{"data"})
	if !errors.Is(err, boom) {
		t.Fatalf("Create = %v; want the export error", err)
	}
	if got := testkit.Names(t, l.ReleasesDir()); len(got) != 0 {
		t.Errorf("releases/ holds %q after a failed create", got)
	}
	if all, _ := l.List(); len(all) != 0 {
		t.Errorf("List = %q", names(all))
	}
}

// A repository may commit symlinks where slipway writes (REVISION, VERSION,
// a shared path or its parent). Slipway replaces its own files and never
// writes through such a link to the rest of the host.
func TestCreateStaysInsideRelease(t *testing.T) {
	tests := []struct {
		name    string
		links   func(outside string) map[string]string
		shared  []string
		created bool // Create succeeds (else it refuses the tree)
	}{
		{name: "REVISION and VERSION are links", created: true,
			links: func(o string) map[string]string {
				return map[string]string{"REVISION": filepath.Join(o, "passwd"), "VERSION": filepath.Join(o, "passwd")}
			}},
		{name: "a shared path is a link", shared: []string{"storage"}, created: true,
			links: func(o string) map[string]string { return map[string]string{"storage": filepath.Join(o, "logs")} }},
		{name: "the parent of a shared path is a link", shared: []string{"logs/app"},
			links: func(o string) map[string]string { return map[string]string{"logs": filepath.Join(o, "logs")} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outside := t.TempDir()
			victim := filepath.Join(outside, "passwd")
			if err := os.WriteFile(victim, []byte("root:x:0:0\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			keep := filepath.Join(outside, "logs", "app", "keep.log")
			if err := os.MkdirAll(filepath.Dir(keep), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(keep, []byte("keep"), 0o644); err != nil {
				t.Fatal(err)
			}

			l := newLayout(t)
			x := &fakeExporter{files: map[string]string{"README.md": "hi\n"}, links: tt.links(outside)}
			r, err := l.Create(t.Context(), x, sha1, time.Now(), tt.shared)
			if tt.created {
				if err != nil {
					t.Fatalf("Create: %v", err)
				}
				if err := Stamp(r); err != nil {
					t.Fatalf("Stamp: %v", err)
				}
				for name, want := range map[string]string{"REVISION": sha1 + "\n", "VERSION": r.Version + "\n"} {
					info, err := os.Lstat(filepath.Join(r.Dir, name))
					if err != nil || !info.Mode().IsRegular() || readFile(t, filepath.Join(r.Dir, name)) != want {
						t.Errorf("%s is not a regular file holding %q: %v, %v", name, want, info, err)
					}
				}
			} else {
				if err == nil {
					t.Fatal("Create accepted a tree that leads outside the release")
				}
				if got := testkit.Names(t, l.ReleasesDir()); len(got) != 0 {
					t.Errorf("releases/ holds %q after a refused create", got)
				}
			}
			if got := readFile(t, victim); got != "root:x:0:0\n" {
				t.Errorf("a file outside the release was written: %q", got)
			}
			if got := readFile(t, keep); got != "keep" {
				t.Errorf("a file outside the release was changed: %q", got)
			}
		})
	}
}

// The real mirror behind the Exporter seam: what a deploy builds in.
func TestCreateWithGitMirror(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	gitc := func(args ...string) string { t.Helper(); return testkit.Git(t, src, args...) }
	if err := os.MkdirAll(filepath.Join(src, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	gitc("init", "-q", "-b", "main")
	for name, mode := range map[string]os.FileMode{"README.md": 0o644, "bin/start": 0o755, "storage/.gitkeep": 0o644} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(src, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, name), []byte("#!/bin/sh\necho started\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("bin/start", filepath.Join(src, "start")); err != nil {
		t.Fatal(err)
	}
	gitc("add", "-A")
	gitc("commit", "-q", "-m", "app")
	sha := gitc("rev-parse", "HEAD")

	l := newLayout(t)
	m := &git.Mirror{Dir: l.Repo(), Remote: src, Timeout: 30 * time.Second}
	if err := m.Ensure(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := m.Fetch(t.Context()); err != nil {
		t.Fatal(err)
	}
	r, err := l.Create(t.Context(), m, sha, time.Now(), []string{"storage"})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if !strings.HasSuffix(r.Name, "-"+sha[:12]) {
		t.Errorf("Name = %q", r.Name)
	}
	if _, err := os.Lstat(filepath.Join(r.Dir, ".git")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("release has a .git: %v", err)
	}
	if target, err := os.Readlink(filepath.Join(r.Dir, "storage")); err != nil || target != filepath.Join(l.SharedDir(), "storage") {
		t.Errorf("storage -> %q, %v", target, err)
	}
	if err := Stamp(r); err != nil {
		t.Fatal(err)
	}
	if err := l.Switch(r.Name); err != nil {
		t.Fatal(err)
	}
	// What an operator checks: current runs the commit that was asked for.
	if got := readFile(t, filepath.Join(l.CurrentLink(), "REVISION")); got != sha+"\n" {
		t.Errorf("current/REVISION = %q", got)
	}
	out, err := exec.Command(filepath.Join(l.CurrentLink(), "start")).Output()
	if err != nil || string(out) != "started\n" {
		t.Errorf("current/start: %q, %v", out, err)
	}
	if got := readFile(t, filepath.Join(l.CurrentLink(), "VERSION")); got != r.Version+"\n" {
		t.Errorf("current/VERSION = %q; want %s", got, r.Version)
	}
}

func TestSwitchAndCurrent(t *testing.T) {
	l := newLayout(t)
	if cur, err := l.Current(); cur != "" || err != nil {
		t.Fatalf("Current with no link = %q, %v", cur, err)
	}
	a := "20250101T000000Z-aaaaaaaaaaaa"
	b := "20250102T000000Z-bbbbbbbbbbbb"
	makeRelease(t, l, a, sha1)
	makeRelease(t, l, b, sha2)

	if err := l.Switch(a); err != nil {
		t.Fatal(err)
	}
	if cur, _ := l.Current(); cur != a {
		t.Errorf("Current = %q; want %s", cur, a)
	}
	// Relative, so the root can be moved or bind-mounted elsewhere.
	if target, _ := os.Readlink(l.CurrentLink()); target != "releases/"+a {
		t.Errorf("current -> %q; want releases/%s", target, a)
	}

	half := "20250103T000000Z-cccccccccccc"
	if err := os.MkdirAll(filepath.Join(l.Dir(half), "backend"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{half, "20250104T000000Z-dddddddddddd"} {
		t.Run("refuses "+name, func(t *testing.T) {
			err := l.Switch(name)
			if err == nil || !strings.Contains(err.Error(), "not a complete release") {
				t.Errorf("Switch = %v; want refused", err)
			}
			if cur, _ := l.Current(); cur != a {
				t.Errorf("Current = %q after a refused switch; want %s", cur, a)
			}
		})
	}

	if err := l.Switch(b); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(l.CurrentLink(), "REVISION")); got != sha2+"\n" {
		t.Errorf("current/REVISION = %q", got)
	}
	if got := testkit.Names(t, l.Root); strings.Contains(strings.Join(got, " "), ".tmp") {
		t.Errorf("root holds %q", got)
	}

	if err := l.Unlink(); err != nil {
		t.Fatal(err)
	}
	if cur, err := l.Current(); cur != "" || err != nil {
		t.Errorf("Current after Unlink = %q, %v", cur, err)
	}
	if err := l.Unlink(); err != nil {
		t.Errorf("second Unlink = %v", err)
	}
}

func TestSafeCommit(t *testing.T) {
	l := newLayout(t)
	if got, err := l.SafeCommit(); got != "" || err != nil {
		t.Fatalf("SafeCommit before any = %q, %v", got, err)
	}
	for _, sha := range []string{sha1, sha2} {
		if err := l.WriteSafeCommit(sha); err != nil {
			t.Fatal(err)
		}
		if got, err := l.SafeCommit(); got != sha || err != nil {
			t.Errorf("SafeCommit = %q, %v; want %s", got, err, sha)
		}
		if got := readFile(t, l.SafeFile()); got != sha+"\n" {
			t.Errorf("run/SAFE_COMMIT = %q", got)
		}
	}
	if got := testkit.Names(t, l.RunDir()); len(got) != 1 || got[0] != "SAFE_COMMIT" {
		t.Errorf("run/ holds %q; want only SAFE_COMMIT", got)
	}
}

func TestStampAndOpen(t *testing.T) {
	l := newLayout(t)
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	r, err := l.Create(t.Context(), appTree(), sha1, at, nil)
	if err != nil {
		t.Fatal(err)
	}

	// Before Stamp, the version is derived from the name.
	if got, err := l.Open(r.Name); err != nil || got.Version != "20250102T030405Z+0123456" || got.Commit != sha1 {
		t.Errorf("Open before Stamp = %+v, %v", got, err)
	}
	r.Version = "custom-1.2.3"
	if err := Stamp(r); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(r.Dir, "VERSION")); got != "custom-1.2.3\n" {
		t.Errorf("VERSION = %q", got)
	}
	if got, err := l.Open(r.Name); err != nil || got.Version != "custom-1.2.3" || got.Dir != r.Dir {
		t.Errorf("Open after Stamp = %+v, %v", got, err)
	}
	if _, err := l.Open("20250101T000000Z-missing"); err == nil {
		t.Error("Open of a missing release succeeded")
	}
	if err := Stamp(Release{Dir: filepath.Join(l.Root, "nope"), Version: "x"}); err == nil {
		t.Error("Stamp into a missing dir succeeded")
	}
	if got := AppVersion(time.Date(2025, 1, 2, 3, 4, 5, 0, time.FixedZone("X", -5*3600)), sha2); got != "20250102T080405Z+89abcde" {
		t.Errorf("AppVersion = %q", got)
	}
}

func TestList(t *testing.T) {
	t.Run("no releases dir", func(t *testing.T) {
		got, err := Layout{Root: filepath.Join(t.TempDir(), "missing")}.List()
		if got != nil || err != nil {
			t.Errorf("List = %v, %v; want nil, nil", got, err)
		}
	})
	l := newLayout(t)
	b := makeRelease(t, l, "20250102T000000Z-bbbbbbbbbbbb", sha2)
	makeRelease(t, l, "20250101T000000Z-aaaaaaaaaaaa", sha1)
	makeRelease(t, l, ".tmp-20250103T000000Z-cccccccccccc", sha1)                      // being created
	makeRelease(t, l, ".tmp-rm-20241231T000000Z-dddddddddddd", sha1)                   // being removed
	if err := os.MkdirAll(l.Dir("20250104T000000Z-eeeeeeeeeeee"), 0o755); err != nil { // no REVISION
		t.Fatal(err)
	}
	if err := os.WriteFile(l.Dir("notes.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b, "VERSION"), []byte("v2\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	all, err := l.List()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"20250101T000000Z-aaaaaaaaaaaa", "20250102T000000Z-bbbbbbbbbbbb"}
	if strings.Join(names(all), " ") != strings.Join(want, " ") {
		t.Fatalf("List = %q; want %q (oldest first, complete only)", names(all), want)
	}
	if all[0].Commit != sha1 || all[1].Commit != sha2 || all[1].Version != "v2" || all[1].Dir != b {
		t.Errorf("List = %+v", all)
	}

	// Deploys that start in the same second name their releases with the
	// same time: the one created first is the older, whatever its commit.
	t.Run("same second", func(t *testing.T) {
		l := newLayout(t)
		made := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		for i, name := range []string{
			"20250101T000000Z-ffffffffffff", "20250101T000000Z-bbbbbbbbbbbb", "20250101T000000Z-bbbbbbbbbbbb-2",
			"20250101T000000Z-aaaaaaaaaaaa", "20241231T235959Z-eeeeeeeeeeee",
		} {
			dir := makeRelease(t, l, name, sha1)
			at := made.Add(time.Duration(i) * 300 * time.Millisecond)
			if strings.HasPrefix(name, "2024") {
				at = made.Add(-time.Second) // an older name wins over a later write
			}
			if err := os.Chtimes(filepath.Join(dir, "REVISION"), at, at); err != nil {
				t.Fatal(err)
			}
		}
		all, err := l.List()
		if err != nil {
			t.Fatal(err)
		}
		want := "20241231T235959Z-eeeeeeeeeeee 20250101T000000Z-ffffffffffff 20250101T000000Z-bbbbbbbbbbbb " +
			"20250101T000000Z-bbbbbbbbbbbb-2 20250101T000000Z-aaaaaaaaaaaa"
		if got := strings.Join(names(all), " "); got != want {
			t.Errorf("List = %s\nwant     %s (within a second, in the order they were created)", got, want)
		}
		// Prune takes the oldest, not the lowest commit id.
		if err := l.Switch("20250101T000000Z-aaaaaaaaaaaa"); err != nil {
			t.Fatal(err)
		}
		removed, err := l.Prune(2, nil, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(removed, " "); got != "20241231T235959Z-eeeeeeeeeeee 20250101T000000Z-ffffffffffff 20250101T000000Z-bbbbbbbbbbbb" {
			t.Errorf("Prune removed %s; want the three created first", got)
		}
	})
}

func TestRemove(t *testing.T) {
	l := newLayout(t)
	old := "20250101T000000Z-aaaaaaaaaaaa"
	cur := "20250102T000000Z-bbbbbbbbbbbb"
	makeRelease(t, l, old, sha1)
	makeRelease(t, l, cur, sha2)
	if err := l.Switch(cur); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		wantErr bool
	}{
		{cur, true},
		{"", true},
		{"../run", true},
		{"..", true},
		{".", true},
		{"20250105T000000Z-nonexistent0", false},
		{old, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := l.Remove(tt.name)
			if (err != nil) != tt.wantErr {
				t.Errorf("Remove(%q) = %v; want error %v", tt.name, err, tt.wantErr)
			}
			// Whatever happened, the live release and the layout are intact.
			if got := readFile(t, filepath.Join(l.CurrentLink(), "REVISION")); got != sha2+"\n" {
				t.Errorf("current/REVISION = %q", got)
			}
			for _, d := range []string{l.ReleasesDir(), l.RunDir(), l.EnvDir()} {
				if _, err := os.Stat(d); err != nil {
					t.Errorf("%s: %v", d, err)
				}
			}
		})
	}
	all, _ := l.List()
	if strings.Join(names(all), " ") != cur {
		t.Errorf("List = %q; want only %s", names(all), cur)
	}
	if got := testkit.Names(t, l.ReleasesDir()); len(got) != 1 {
		t.Errorf("releases/ holds %q; want no leftovers", got)
	}
}

func TestRemovePartial(t *testing.T) {
	t.Run("no releases dir", func(t *testing.T) {
		got, err := Layout{Root: filepath.Join(t.TempDir(), "missing")}.RemovePartial()
		if got != nil || err != nil {
			t.Errorf("RemovePartial = %v, %v", got, err)
		}
	})
	l := newLayout(t)
	good := "20250101T000000Z-aaaaaaaaaaaa"
	makeRelease(t, l, good, sha1)
	// A create interrupted half-way, and a remove interrupted half-way.
	if err := os.MkdirAll(filepath.Join(l.ReleasesDir(), ".tmp-20250102T000000Z-bbbbbbbbbbbb", "node_modules", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	makeRelease(t, l, ".tmp-rm-20241201T000000Z-cccccccccccc", sha2)

	removed, err := l.RemovePartial()
	if err != nil {
		t.Fatal(err)
	}
	// The half-removed release is the trash's: EmptyTrash deletes it.
	if want := []string{".tmp-20250102T000000Z-bbbbbbbbbbbb"}; strings.Join(removed, " ") != strings.Join(want, " ") {
		t.Errorf("removed %q; want %q", removed, want)
	}
	if again, err := l.RemovePartial(); len(again) != 0 || err != nil {
		t.Errorf("second RemovePartial = %q, %v", again, err)
	}
	emptied, err := l.EmptyTrash()
	if err != nil || len(emptied) != 1 || emptied[0] != "20241201T000000Z-cccccccccccc" {
		t.Errorf("EmptyTrash = %q, %v", emptied, err)
	}
	if got := testkit.Names(t, l.ReleasesDir()); len(got) != 1 || got[0] != good {
		t.Errorf("releases/ holds %q; want only %s", got, good)
	}
}

func TestPrune(t *testing.T) {
	r := func(i int) string {
		return "2025010" + strconv.Itoa(i) + "T000000Z-" + strings.Repeat(strconv.Itoa(i), 12)
	}
	set := func(is ...int) map[string]bool {
		m := map[string]bool{}
		for _, i := range is {
			m[r(i)] = true
		}
		return m
	}
	list := func(is ...int) []string {
		var out []string
		for _, i := range is {
			out = append(out, r(i))
		}
		return out
	}
	tests := []struct {
		name     string
		have     int // releases r(1)..r(have); r(have) is current
		keep     int
		protect  map[string]bool
		failed   map[string]bool
		removed  []string
		remained []string
	}{
		{name: "under keep", have: 3, keep: 5, remained: list(1, 2, 3)},
		{name: "exactly keep", have: 3, keep: 3, remained: list(1, 2, 3)},
		{name: "oldest beyond keep", have: 6, keep: 3, protect: set(6),
			removed: list(1, 2, 3), remained: list(4, 5, 6)},
		{name: "current and safe are kept and count toward keep", have: 6, keep: 2, protect: set(1, 6),
			removed: list(2, 3, 4, 5), remained: list(1, 6)},
		{name: "failed go first", have: 6, keep: 4, protect: set(6), failed: set(5),
			removed: list(5, 1), remained: list(2, 3, 4, 6)},
		{name: "failed oldest first", have: 6, keep: 4, protect: set(6), failed: set(5, 3, 4),
			removed: list(3, 4), remained: list(1, 2, 5, 6)},
		{name: "a protected failed release stays", have: 4, keep: 2, protect: set(2, 4), failed: set(2),
			removed: list(1, 3), remained: list(2, 4)},
		{name: "keep 0 keeps only the protected", have: 4, keep: 0, protect: set(3, 4),
			removed: list(1, 2), remained: list(3, 4)},
		{name: "everything protected", have: 3, keep: 1, protect: set(1, 2, 3), remained: list(1, 2, 3)},
	}
	for _, later := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/later=%v", tt.name, later), func(t *testing.T) {
				l := newLayout(t)
				for i := 1; i <= tt.have; i++ {
					makeRelease(t, l, r(i), sha1)
				}
				if err := l.Switch(r(tt.have)); err != nil {
					t.Fatal(err)
				}
				removed, err := l.Prune(tt.keep, tt.protect, tt.failed, later)
				if err != nil {
					t.Fatalf("Prune: %v", err)
				}
				if strings.Join(removed, " ") != strings.Join(tt.removed, " ") {
					t.Errorf("removed %q; want %q", removed, tt.removed)
				}
				all, _ := l.List()
				if strings.Join(names(all), " ") != strings.Join(tt.remained, " ") {
					t.Errorf("left %q; want %q", names(all), tt.remained)
				}
				if cur, _ := l.Current(); cur != r(tt.have) {
					t.Errorf("current = %q", cur)
				}
				// Their files are deleted now, or by EmptyTrash; a partial
				// tree's cleanup leaves the trash alone.
				if partial, _ := l.RemovePartial(); len(partial) != 0 {
					t.Errorf("RemovePartial took %v", partial)
				}
				emptied, err := l.EmptyTrash()
				if err != nil {
					t.Fatal(err)
				}
				want := slices.Sorted(slices.Values(map[bool][]string{true: tt.removed}[later])) // in name order
				if strings.Join(emptied, " ") != strings.Join(want, " ") {
					t.Errorf("EmptyTrash deleted %q; want %q", emptied, want)
				}
				entries, _ := os.ReadDir(l.ReleasesDir())
				if len(entries) != len(tt.remained) {
					t.Errorf("releases/ holds %d entries after EmptyTrash, want %d", len(entries), len(tt.remained))
				}
			})
		}
	}

	t.Run("current survives even unprotected", func(t *testing.T) {
		l := newLayout(t)
		makeRelease(t, l, r(1), sha1)
		makeRelease(t, l, r(2), sha1)
		if err := l.Switch(r(1)); err != nil {
			t.Fatal(err)
		}
		_, _ = l.Prune(0, nil, nil, false)
		if got := readFile(t, filepath.Join(l.CurrentLink(), "REVISION")); got != sha1+"\n" {
			t.Errorf("current/REVISION = %q", got)
		}
	})
}

func TestKeysMatch(t *testing.T) {
	tests := []struct {
		name string
		prev map[string]string // "" value is still a file; missing key is no file
		next map[string]string
		keys []string
		want bool
	}{
		{name: "same", prev: map[string]string{"uv.lock": "a", "pyproject.toml": "p"}, next: map[string]string{"uv.lock": "a", "pyproject.toml": "p"},
			keys: []string{"uv.lock", "pyproject.toml"}, want: true},
		{name: "missing in both is the same", prev: map[string]string{"uv.lock": "a"}, next: map[string]string{"uv.lock": "a"},
			keys: []string{"uv.lock", "requirements.txt"}, want: true},
		{name: "missing in the old one", prev: map[string]string{}, next: map[string]string{"uv.lock": "a"},
			keys: []string{"uv.lock"}, want: false},
		{name: "missing in the new one", prev: map[string]string{"uv.lock": "a"}, next: map[string]string{},
			keys: []string{"uv.lock"}, want: false},
		{name: "one byte differs", prev: map[string]string{"package-lock.json": `{"v":1}`}, next: map[string]string{"package-lock.json": `{"v":2}`},
			keys: []string{"package-lock.json"}, want: false},
		{name: "second key differs", prev: map[string]string{"uv.lock": "a", "pyproject.toml": "p"}, next: map[string]string{"uv.lock": "a", "pyproject.toml": "q"},
			keys: []string{"uv.lock", "pyproject.toml"}, want: false},
		{name: "empty and absent differ", prev: map[string]string{"Gemfile.lock": ""}, next: map[string]string{},
			keys: []string{"Gemfile.lock"}, want: false},
		{name: "nested key", prev: map[string]string{"web/package-lock.json": "x"}, next: map[string]string{"web/package-lock.json": "x"},
			keys: []string{"web/package-lock.json"}, want: true},
		{name: "no keys", prev: map[string]string{"a": "1"}, next: map[string]string{"a": "2"}, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prev, next := t.TempDir(), t.TempDir()
			for dir, files := range map[string]map[string]string{prev: tt.prev, next: tt.next} {
				for name, content := range files {
					path := filepath.Join(dir, name)
					if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			got, err := KeysMatch(prev, next, tt.keys)
			if err != nil || got != tt.want {
				t.Errorf("KeysMatch = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestCopyPaths(t *testing.T) {
	l := newLayout(t)
	prev := makeRelease(t, l, "20250101T000000Z-aaaaaaaaaaaa", sha1)
	next := makeRelease(t, l, "20250102T000000Z-bbbbbbbbbbbb", sha2)
	nm := filepath.Join(prev, "web", "node_modules")
	for name, mode := range map[string]os.FileMode{"left-pad/index.js": 0o644, ".bin/esbuild": 0o755} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(nm, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(nm, name), []byte("#!/bin/sh\necho "+prev+"\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("left-pad/index.js", filepath.Join(nm, "main.js")); err != nil {
		t.Fatal(err)
	}
	// The new release's checkout had a stale copy: it is replaced, not merged.
	if err := os.MkdirAll(filepath.Join(next, "web", "node_modules", "stale"), 0o755); err != nil {
		t.Fatal(err)
	}

	if err := l.CopyReused(t.Context(), at(prev), at(next), "web", []string{"node_modules"}, false); err != nil {
		t.Fatalf("CopyReused: %v", err)
	}
	dst := filepath.Join(next, "web", "node_modules")
	if info, err := os.Stat(filepath.Join(dst, ".bin", "esbuild")); err != nil || info.Mode().Perm() != 0o755 {
		t.Errorf(".bin/esbuild: %v, %v; want mode 0755 kept", info, err)
	}
	if target, err := os.Readlink(filepath.Join(dst, "main.js")); err != nil || target != "left-pad/index.js" {
		t.Errorf("main.js -> %q, %v; want the link kept", target, err)
	}
	if _, err := os.Stat(filepath.Join(dst, "stale")); !errors.Is(err, os.ErrNotExist) {
		t.Error("the stale directory survived")
	}
	if _, err := os.Stat(filepath.Join(nm, "left-pad", "index.js")); err != nil {
		t.Errorf("the previous release lost its copy: %v", err)
	}

	t.Run("missing path", func(t *testing.T) {
		err := l.CopyReused(t.Context(), at(prev), at(next), ".", []string{"vendor/bundle"}, false)
		if err == nil || !strings.Contains(err.Error(), "vendor/bundle") {
			t.Errorf("CopyReused = %v; want an error naming vendor/bundle", err)
		}
	})
}

// A virtualenv bakes its absolute path into bin/: the copy in the new
// release must run on its own, from its own directory, after the old
// release is pruned.
func TestCopyPathsVenv(t *testing.T) {
	venvRoundTrip(t, filepath.Join(t.TempDir(), "app"))
}

// Past 127 bytes a path no longer fits in a shebang; pip's launchers then
// start with #!/bin/sh and an exec line that holds the path.
func TestCopyPathsVenvLongPath(t *testing.T) {
	if testing.Short() {
		t.Skip("creates a second virtualenv")
	}
	root := filepath.Join(t.TempDir(), strings.Repeat("long-directory-name/", 6), "app")
	head := venvRoundTrip(t, root)
	if head[0] != "#!/bin/sh" || !strings.Contains(head[1], "exec") {
		t.Errorf("bin/pip starts with %q; want the /bin/sh exec launcher for a long path", head[:2])
	}
}

// venvRoundTrip creates a virtualenv in an old release under root, copies it
// into a new one, prunes the old one, runs the copy, and returns the first
// lines of the copy's bin/pip.
func venvRoundTrip(t *testing.T, root string) []string {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	l := Layout{Root: root}
	if err := l.Ensure(); err != nil {
		t.Fatal(err)
	}
	prev := makeRelease(t, l, "20250101T000000Z-aaaaaaaaaaaa", sha1)
	next := makeRelease(t, l, "20250102T000000Z-bbbbbbbbbbbb", sha2)
	prevDir, nextDir := filepath.Join(prev, "backend"), filepath.Join(next, "backend")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	makeVenv(ctx, t, python, filepath.Join(prevDir, ".venv"))
	if err := os.MkdirAll(nextDir, 0o755); err != nil {
		t.Fatal(err)
	}

	if err := l.CopyReused(ctx, at(prev), at(next), "backend", []string{".venv"}, false); err != nil {
		t.Fatalf("CopyReused: %v", err)
	}
	if err := os.RemoveAll(prev); err != nil { // pruned
		t.Fatal(err)
	}

	venv := filepath.Join(nextDir, ".venv")
	pip := filepath.Join(venv, "bin", "pip")
	head := strings.SplitN(readFile(t, pip), "\n", 3)
	launcher := strings.Join(head[:2], "\n")
	if !strings.Contains(launcher, venv+"/bin/python") || strings.Contains(launcher, prev) {
		t.Errorf("bin/pip starts with\n%s\nwant it to run %s/bin/python", launcher, venv)
	}
	if !strings.Contains(readFile(t, filepath.Join(venv, "bin", "activate")), venv) {
		t.Error("bin/activate does not name the new venv")
	}

	cmd := exec.CommandContext(ctx, pip, "--version")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "PIP_DISABLE_PIP_VERSION_CHECK=1", "HOME=" + t.TempDir()}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bin/pip --version: %v: %s", err, out)
	}
	if !strings.Contains(string(out), venv) {
		t.Errorf("pip runs from %q; want from %s", out, venv)
	}
	out, err = exec.CommandContext(ctx, filepath.Join(venv, "bin", "python"), "-c", "import sys; print(sys.prefix)").Output()
	if err != nil || strings.TrimSpace(string(out)) != venv {
		t.Errorf("sys.prefix = %q, %v; want %s", out, err, venv)
	}
	return head
}

// makeVenv creates a virtualenv with pip at dir. It installs the pip wheel
// that Python bundles for ensurepip itself, as `python3 -m venv` does, but
// without setuptools and without compiling: the same launchers in half the
// time. Without a bundled wheel it falls back to plain `python3 -m venv`.
func makeVenv(ctx context.Context, t *testing.T, python, dir string) {
	t.Helper()
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
		}
	}
	out, _ := exec.CommandContext(ctx, python, "-c",
		"import ensurepip, glob, os; print(''.join(glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), '_bundled', 'pip-*.whl'))[:1]))").Output()
	wheel := strings.TrimSpace(string(out))
	if wheel == "" {
		run(python, "-m", "venv", dir)
		return
	}
	run(python, "-m", "venv", "--without-pip", dir)
	run(filepath.Join(dir, "bin", "python"), filepath.Join(wheel, "pip"), "install", "--quiet", "--no-index", "--no-deps",
		"--no-compile", "--disable-pip-version-check", wheel)
}

// With link, files are shared with the previous release, but rewriting a
// script for the new place never changes the previous release's copy.
func TestCopyPathsLinkLeavesThePreviousReleaseAlone(t *testing.T) {
	l := Layout{Root: t.TempDir()}
	if err := l.Ensure(); err != nil {
		t.Fatal(err)
	}
	prev := makeRelease(t, l, "20250101T000000Z-aaaaaaaaaaaa", sha1)
	next := makeRelease(t, l, "20250102T000000Z-bbbbbbbbbbbb", sha2)
	script := "#!" + prev + "/.venv/bin/python\nprint('hi')\n"
	testkit.WriteFile(t, filepath.Join(prev, ".venv", "bin", "tool"), script, 0o755)
	testkit.WriteFile(t, filepath.Join(prev, ".venv", "lib", "mod.py"), "x = 1\n", 0o644)
	if err := l.CopyReused(t.Context(), at(prev), at(next), ".", []string{".venv"}, true); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(prev, ".venv", "bin", "tool")); got != script {
		t.Fatalf("the previous release's script changed:\n%s", got)
	}
	if got := readFile(t, filepath.Join(next, ".venv", "bin", "tool")); !strings.Contains(got, next+"/.venv/bin/python") {
		t.Fatalf("the new script was not relocated:\n%s", got)
	}
	a, _ := os.Stat(filepath.Join(prev, ".venv", "lib", "mod.py"))
	b, _ := os.Stat(filepath.Join(next, ".venv", "lib", "mod.py"))
	if !os.SameFile(a, b) {
		t.Fatal("link did not hard-link the files")
	}
}
