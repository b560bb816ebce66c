package git

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/testkit"
)

// gitEnv keeps the test repositories away from the user's git config.
func gitEnv() []string {
	return append(os.Environ(),
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Test", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=Test", "GIT_COMMITTER_EMAIL=test@example.com",
	)
}

// gitIn runs git in dir and returns its trimmed stdout.
func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = gitEnv()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// source is an app's repository:
//
//	c1 (tag v1) ─ c2 (main)
//	   └─ c3 (feature)
type source struct {
	dir        string
	c1, c2, c3 string
}

func newSource(t *testing.T) *source {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "app")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	gitIn(t, dir, "init", "-q", "-b", "main")
	testkit.WriteFile(t, filepath.Join(dir, "README.md"), "v1\n", 0o644)
	testkit.WriteFile(t, filepath.Join(dir, "bin", "run.sh"), "#!/bin/sh\necho hello from run.sh\n", 0o755)
	testkit.WriteFile(t, filepath.Join(dir, "app", "config", "settings.txt"), "debug = false\n", 0o644)
	if err := os.Symlink("README.md", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("app/config", filepath.Join(dir, "config")); err != nil {
		t.Fatal(err)
	}
	gitIn(t, dir, "add", "-A")
	gitIn(t, dir, "commit", "-q", "-m", "first: the app")
	s := &source{dir: dir, c1: gitIn(t, dir, "rev-parse", "HEAD")}
	gitIn(t, dir, "tag", "-a", "-m", "release one", "v1")

	testkit.WriteFile(t, filepath.Join(dir, "README.md"), "v2\n", 0o644)
	gitIn(t, dir, "commit", "-q", "-am", "second: readme v2")
	s.c2 = gitIn(t, dir, "rev-parse", "HEAD")

	gitIn(t, dir, "checkout", "-q", "-b", "feature", s.c1)
	testkit.WriteFile(t, filepath.Join(dir, "feature.txt"), "wip\n", 0o644)
	gitIn(t, dir, "add", "feature.txt")
	gitIn(t, dir, "commit", "-q", "-m", "feature work")
	s.c3 = gitIn(t, dir, "rev-parse", "HEAD")
	gitIn(t, dir, "checkout", "-q", "main")
	return s
}

// commit adds a commit on main and returns its sha.
func (s *source) commit(t *testing.T, file, content string) string {
	t.Helper()
	testkit.WriteFile(t, filepath.Join(s.dir, file), content, 0o644)
	gitIn(t, s.dir, "add", file)
	gitIn(t, s.dir, "commit", "-q", "-m", "change "+file)
	return gitIn(t, s.dir, "rev-parse", "HEAD")
}

func newMirror(t *testing.T, remote string) *Mirror {
	t.Helper()
	return &Mirror{Dir: filepath.Join(t.TempDir(), "repo.git"), Remote: remote, Timeout: 30 * time.Second}
}

// fetched is a mirror of s, created and fetched.
func fetched(t *testing.T, s *source) *Mirror {
	t.Helper()
	m := newMirror(t, s.dir)
	if err := m.Ensure(t.Context()); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if err := m.Fetch(t.Context()); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	return m
}

func originURL(t *testing.T, m *Mirror) string {
	t.Helper()
	return gitIn(t, "/", "--git-dir", m.Dir, "config", "--get", "remote.origin.url")
}

func TestEnsure(t *testing.T) {
	s := newSource(t)
	m := newMirror(t, s.dir)
	if err := m.Ensure(t.Context()); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if got := gitIn(t, "/", "--git-dir", m.Dir, "rev-parse", "--is-bare-repository"); got != "true" {
		t.Errorf("repo.git is not a bare repository: %q", got)
	}
	if got := originURL(t, m); got != s.dir {
		t.Errorf("origin = %q; want %q", got, s.dir)
	}
	if _, err := os.Stat(m.Dir + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("repo.git.tmp left behind: %v", err)
	}

	t.Run("idempotent", func(t *testing.T) {
		before, err := os.ReadFile(filepath.Join(m.Dir, "config"))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Ensure(t.Context()); err != nil {
			t.Fatalf("second Ensure: %v", err)
		}
		after, _ := os.ReadFile(filepath.Join(m.Dir, "config"))
		if string(before) != string(after) {
			t.Errorf("second Ensure changed the config:\n%s\n---\n%s", before, after)
		}
	})

	t.Run("new remote updates origin", func(t *testing.T) {
		other := newSource(t)
		m.Remote = other.dir
		if err := m.Ensure(t.Context()); err != nil {
			t.Fatalf("Ensure: %v", err)
		}
		if got := originURL(t, m); got != other.dir {
			t.Errorf("origin = %q; want %q", got, other.dir)
		}
		if err := m.Fetch(t.Context()); err != nil {
			t.Fatal(err)
		}
		if !m.Has(t.Context(), other.c2) {
			t.Error("fetch after the remote changed did not fetch from the new remote")
		}
	})
}

func TestEnsureAfterCrash(t *testing.T) {
	s := newSource(t)
	m := newMirror(t, s.dir)
	// An earlier Ensure died half-way through creating the mirror.
	testkit.WriteFile(t, filepath.Join(m.Dir+".tmp", "garbage"), "x", 0o644)
	if err := m.Ensure(t.Context()); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if _, err := os.Stat(filepath.Join(m.Dir, "garbage")); !errors.Is(err, os.ErrNotExist) {
		t.Error("the half-made mirror was reused")
	}
	if err := m.Fetch(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// A relative local path in the config means relative to where slipway was
// started; the mirror must keep working from anywhere.
func TestRelativeRemote(t *testing.T) {
	s := newSource(t)
	for _, rel := range []string{"app", "./app", "../" + filepath.Base(filepath.Dir(s.dir)) + "/app"} {
		t.Run(rel, func(t *testing.T) {
			m := newMirror(t, rel)
			t.Chdir(filepath.Dir(s.dir))
			if err := m.Ensure(t.Context()); err != nil {
				t.Fatalf("Ensure: %v", err)
			}
			if got := originURL(t, m); got != s.dir {
				t.Errorf("origin = %q; want the absolute %q", got, s.dir)
			}
			if tip, err := m.RemoteTip(t.Context(), "main"); err != nil || tip != s.c2 {
				t.Errorf("RemoteTip = %q, %v; want %s", tip, err, s.c2)
			}
			t.Chdir(t.TempDir())
			if err := m.Fetch(t.Context()); err != nil {
				t.Fatalf("Fetch from another directory: %v", err)
			}
			if !m.Has(t.Context(), s.c2) {
				t.Error("mirror lacks main after fetch")
			}
		})
	}
}

// fakeSSH installs GIT_SSH_COMMAND as a script that runs the remote command
// locally: there is no ssh server here, and what is under test is how the
// mirror hands an scp-like address to git.
func fakeSSH(t *testing.T) {
	t.Helper()
	script := filepath.Join(t.TempDir(), "fake-ssh")
	testkit.WriteFile(t, script, "#!/bin/sh\n# the last argument is the command git wants run on the host\nfor a; do last=$a; done\nexec sh -c \"$last\"\n", 0o755)
	t.Setenv("GIT_SSH_COMMAND", script)
}

// "host:path" (scp-like syntax, an ssh config Host alias with no user@) is a
// remote address, not a relative local path.
func TestScpLikeRemote(t *testing.T) {
	s := newSource(t)
	fakeSSH(t)
	remote := "gitserver:" + s.dir
	m := newMirror(t, remote)
	tip, err := m.RemoteTip(t.Context(), "main")
	if err != nil || tip != s.c2 {
		t.Errorf("RemoteTip(%s) = %q, %v; want %s", remote, tip, err, s.c2)
	}
	if err := m.Ensure(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := originURL(t, m); got != remote {
		t.Errorf("origin = %q; want %q as written", got, remote)
	}
	if err := m.Fetch(t.Context()); err != nil {
		t.Errorf("Fetch: %v", err)
	}
}

// askTip is RemoteTip or FetchBranch: both answer the commit at a branch's
// tip on the remote.
type askTip func(m *Mirror, ctx context.Context, branch string) (string, error)

// checkBranchTips runs the cases RemoteTip and FetchBranch share. With
// fetched, the answer must also be in the mirror.
func checkBranchTips(t *testing.T, s *source, m *Mirror, ask askTip, fetched bool) {
	t.Helper()
	tests := []struct {
		branch  string
		want    string
		unknown bool // ErrUnknownRevision
		invalid bool // refused before asking
	}{
		{branch: "main", want: s.c2},
		{branch: "main", want: s.c2}, // nothing new: the same answer
		{branch: "feature", want: s.c3},
		{branch: "v1", unknown: true}, // a tag is not a branch
		{branch: "nope", unknown: true},
		{branch: "-main", invalid: true},
		{branch: "--upload-pack=touch /tmp/pwned", invalid: true},
		{branch: "main..feature", invalid: true},
		{branch: "", invalid: true},
	}
	for _, tt := range tests {
		t.Run(tt.branch, func(t *testing.T) {
			got, err := ask(m, t.Context(), tt.branch)
			switch {
			case tt.want != "":
				if err != nil || got != tt.want {
					t.Fatalf("tip of %s = %q, %v; want %s", tt.branch, got, err, tt.want)
				}
				if fetched && !m.Has(t.Context(), got) {
					t.Fatalf("the mirror lacks %s after the fetch", got)
				}
			case tt.unknown:
				if !errors.Is(err, ErrUnknownRevision) {
					t.Errorf("err = %v; want ErrUnknownRevision", err)
				}
			case tt.invalid:
				if err == nil || errors.Is(err, ErrUnknownRevision) || !strings.Contains(err.Error(), "not a valid branch or tag name") {
					t.Errorf("err = %v; want a refused ref name", err)
				}
			}
		})
	}

	t.Run("unreachable remote", func(t *testing.T) {
		m := newMirror(t, filepath.Join(t.TempDir(), "missing"))
		if fetched {
			if err := m.Ensure(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		_, err := ask(m, t.Context(), "main")
		if err == nil || errors.Is(err, ErrUnknownRevision) {
			t.Fatalf("err = %v; want a remote error", err)
		}
		if !strings.Contains(err.Error(), "missing") {
			t.Errorf("error %q does not name the remote", err)
		}
	})
}

func TestRemoteTip(t *testing.T) {
	s := newSource(t)
	m := newMirror(t, s.dir) // no Ensure: RemoteTip asks the remote, not the mirror
	checkBranchTips(t, s, m, (*Mirror).RemoteTip, false)
}

func TestFetchBranch(t *testing.T) {
	s := newSource(t)
	m := newMirror(t, s.dir)
	if err := m.Ensure(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkBranchTips(t, s, m, (*Mirror).FetchBranch, true)

	t.Run("force-pushed", func(t *testing.T) {
		gitIn(t, s.dir, "checkout", "-q", "main")
		gitIn(t, s.dir, "reset", "-q", "--hard", s.c1)
		if got, err := m.FetchBranch(t.Context(), "main"); err != nil || got != s.c1 {
			t.Fatalf("FetchBranch = %q, %v; want %s, the branch as it is now", got, err, s.c1)
		}
	})
}

func TestHasAndFetch(t *testing.T) {
	s := newSource(t)
	m := newMirror(t, s.dir)
	if err := m.Ensure(t.Context()); err != nil {
		t.Fatal(err)
	}
	if m.Has(t.Context(), s.c2) {
		t.Fatal("Has before any fetch")
	}
	if err := m.Fetch(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, sha := range []string{s.c1, s.c2, s.c3} {
		if !m.Has(t.Context(), sha) {
			t.Errorf("Has(%s) = false after fetch", sha[:7])
		}
	}
	if m.Has(t.Context(), strings.Repeat("0", 40)) {
		t.Error("Has(0000…) = true")
	}

	c4 := s.commit(t, "new.txt", "new\n")
	if m.Has(t.Context(), c4) {
		t.Error("Has(new commit) before fetch")
	}
	// A deleted branch disappears from the mirror on the next fetch.
	gitIn(t, s.dir, "branch", "-D", "feature")
	if err := m.Fetch(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !m.Has(t.Context(), c4) {
		t.Error("Has(new commit) = false after fetch")
	}
	if got, err := m.Resolve(t.Context(), "main"); err != nil || got != c4 {
		t.Errorf("Resolve(main) = %q, %v; want %s", got, err, c4)
	}
	if _, err := m.Resolve(t.Context(), "feature"); !errors.Is(err, ErrUnknownRevision) {
		t.Errorf("Resolve(deleted branch) = %v; want ErrUnknownRevision", err)
	}
}

func TestFetchUnreachable(t *testing.T) {
	s := newSource(t)
	m := fetched(t, s)
	if err := os.RemoveAll(s.dir); err != nil {
		t.Fatal(err)
	}
	err := m.Fetch(t.Context())
	if err == nil {
		t.Fatal("Fetch from a vanished remote succeeded")
	}
	if !strings.Contains(err.Error(), "fetch "+s.dir) {
		t.Errorf("error %q does not say what was fetched", err)
	}
	// What was fetched before stays usable.
	if !m.Has(t.Context(), s.c2) {
		t.Error("the mirror lost its commits")
	}
}

func TestResolve(t *testing.T) {
	s := newSource(t)
	m := fetched(t, s)
	tests := []struct {
		ref     string
		want    string
		unknown bool
		invalid bool
	}{
		{ref: "main", want: s.c2},
		{ref: "feature", want: s.c3},
		{ref: "v1", want: s.c1}, // an annotated tag resolves to its commit
		{ref: "refs/heads/main", want: s.c2},
		{ref: "refs/tags/v1", want: s.c1},
		{ref: s.c1, want: s.c1},
		{ref: s.c2[:7], want: s.c2},
		{ref: s.c3[:12], want: s.c3},
		{ref: "nope", unknown: true},
		{ref: "refs/heads/nope", unknown: true},
		{ref: strings.Repeat("a", 40), unknown: true},
		{ref: "-main", invalid: true},
		{ref: "--output=/tmp/x", invalid: true},
		{ref: "main..feature", invalid: true},
		{ref: "v1..", invalid: true},
		{ref: "main~1", invalid: true},
		{ref: "main^{tree}", invalid: true},
		{ref: "main:README.md", invalid: true},
		{ref: "ma in", invalid: true},
		{ref: "", invalid: true},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			got, err := m.Resolve(t.Context(), tt.ref)
			switch {
			case tt.want != "":
				if err != nil || got != tt.want {
					t.Errorf("Resolve = %q, %v; want %s", got, err, tt.want)
				}
			case tt.unknown:
				if !errors.Is(err, ErrUnknownRevision) || got != "" {
					t.Errorf("Resolve = %q, %v; want ErrUnknownRevision", got, err)
				}
			case tt.invalid:
				if err == nil || errors.Is(err, ErrUnknownRevision) || !strings.Contains(err.Error(), "not a valid branch or tag name") {
					t.Errorf("Resolve = %q, %v; want a refused ref name", got, err)
				}
			}
		})
	}
}

func TestExport(t *testing.T) {
	s := newSource(t)
	m := fetched(t, s)
	dir := t.TempDir()
	if err := m.Export(t.Context(), s.c1, dir); err != nil {
		t.Fatalf("Export: %v", err)
	}

	files := map[string]string{
		"README.md":               "v1\n",
		"bin/run.sh":              "#!/bin/sh\necho hello from run.sh\n",
		"app/config/settings.txt": "debug = false\n",
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "feature.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Error("feature.txt from another branch is in the export")
	}
	if _, err := os.Lstat(filepath.Join(dir, ".git")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf(".git in the export: %v", err)
	}

	t.Run("modes", func(t *testing.T) {
		for name, exec := range map[string]bool{"bin/run.sh": true, "README.md": false, "app/config/settings.txt": false} {
			info, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if got := info.Mode()&0o100 != 0; got != exec {
				t.Errorf("%s mode %v; executable = %v, want %v", name, info.Mode(), got, exec)
			}
			if info.Mode()&0o022 != 0 {
				t.Errorf("%s mode %v is group or world writable", name, info.Mode())
			}
		}
		out, err := exec.Command(filepath.Join(dir, "bin", "run.sh")).Output()
		if err != nil || string(out) != "hello from run.sh\n" {
			t.Errorf("bin/run.sh ran: %q, %v", out, err)
		}
	})

	t.Run("symlinks", func(t *testing.T) {
		for link, want := range map[string]string{"link": "README.md", "config": "app/config"} {
			got, err := os.Readlink(filepath.Join(dir, link))
			if err != nil || got != want {
				t.Errorf("%s -> %q, %v; want %q", link, got, err, want)
			}
		}
		if b, err := os.ReadFile(filepath.Join(dir, "config", "settings.txt")); err != nil || string(b) != "debug = false\n" {
			t.Errorf("through the dir link: %q, %v", b, err)
		}
	})

	t.Run("another commit", func(t *testing.T) {
		dir := t.TempDir()
		if err := m.Export(t.Context(), s.c2, dir); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "README.md")); string(b) != "v2\n" {
			t.Errorf("README.md = %q; want v2", b)
		}
	})

	t.Run("refused", func(t *testing.T) {
		for _, sha := range []string{s.c1[:12], "main", "", strings.Repeat("f", 40)} {
			dir := t.TempDir()
			if err := m.Export(t.Context(), sha, dir); err == nil {
				t.Errorf("Export(%q) succeeded", sha)
			}
		}
	})
}

// A tree git would never check out (a symlink "evil" and a directory "evil/"
// holding a file) must not write through the link: an export stays inside
// its release directory.
func TestExportDoesNotWriteThroughSymlinks(t *testing.T) {
	s := newSource(t)
	outside := t.TempDir()
	blob := func(content string) string {
		cmd := exec.Command("git", "hash-object", "-w", "--stdin")
		cmd.Dir, cmd.Env, cmd.Stdin = s.dir, gitEnv(), strings.NewReader(content)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	mktree := func(entries string) string {
		cmd := exec.Command("git", "mktree")
		cmd.Dir, cmd.Env, cmd.Stdin = s.dir, gitEnv(), strings.NewReader(entries)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	sub := mktree("100644 blob " + blob("pwned\n") + "\tx\n")
	tree := mktree("120000 blob " + blob(outside) + "\tevil\n040000 tree " + sub + "\tevil\n")
	evil := gitIn(t, s.dir, "commit-tree", "-p", s.c2, "-m", "innocent", tree)
	gitIn(t, s.dir, "update-ref", "refs/heads/main", evil)

	m := newMirror(t, s.dir)
	if err := m.Ensure(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := m.Fetch(t.Context()); err != nil {
		t.Skipf("the mirror refused the malformed tree: %v", err)
	}
	release := t.TempDir()
	err := m.Export(t.Context(), evil, release)
	if _, serr := os.Stat(filepath.Join(outside, "x")); serr == nil {
		t.Errorf("Export (err %v) wrote %s outside the release", err, filepath.Join(outside, "x"))
	}
}

func TestReadFile(t *testing.T) {
	s := newSource(t)
	m := fetched(t, s)
	tests := []struct {
		sha, path string
		want      string
		ok        bool
	}{
		{s.c1, "README.md", "v1\n", true},
		{s.c2, "README.md", "v2\n", true},
		{s.c1, "app/config/settings.txt", "debug = false\n", true},
		{s.c2, "feature.txt", "", false},
		{s.c3, "feature.txt", "wip\n", true},
		{s.c1, "missing.yml", "", false},
		{strings.Repeat("0", 40), "README.md", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.sha[:7]+":"+tt.path, func(t *testing.T) {
			got, ok := m.ReadFile(t.Context(), tt.sha, tt.path)
			if got != tt.want || ok != tt.ok {
				t.Errorf("ReadFile = %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestIsAncestor(t *testing.T) {
	s := newSource(t)
	m := fetched(t, s)
	tests := []struct {
		name string
		a, b string
		want bool
	}{
		{"parent of main", s.c1, s.c2, true},
		{"main is not behind its parent", s.c2, s.c1, false},
		{"itself", s.c2, s.c2, true},
		{"branch point of feature", s.c1, s.c3, true},
		{"diverged", s.c2, s.c3, false},
		{"unknown", strings.Repeat("0", 40), s.c2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := m.IsAncestor(t.Context(), tt.a, tt.b); got != tt.want {
				t.Errorf("IsAncestor = %v; want %v", got, tt.want)
			}
		})
	}
}

func TestSubject(t *testing.T) {
	s := newSource(t)
	m := fetched(t, s)
	if got := m.Subject(t.Context(), s.c2); got != "second: readme v2" {
		t.Errorf("Subject = %q", got)
	}
	if got := m.Subject(t.Context(), strings.Repeat("0", 40)); got != "" {
		t.Errorf("Subject(unknown) = %q; want empty", got)
	}
}

func TestIsSHA(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{strings.Repeat("a", 40), true},
		{strings.Repeat("0", 64), true}, // sha256 repositories
		{strings.Repeat("a", 39), false},
		{strings.Repeat("a", 41), false},
		{strings.Repeat("A", 40), false},
		{strings.Repeat("g", 40), false},
		{"main", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := IsSHA(tt.s); got != tt.want {
			t.Errorf("IsSHA(%q) = %v; want %v", tt.s, got, tt.want)
		}
	}
}

func TestRedact(t *testing.T) {
	tests := []struct {
		remote, want string
	}{
		{"https://deploy:ghp_SECRET@github.com/acme/app.git", "https://deploy:xxxxx@github.com/acme/app.git"},
		{"https://x-access-token:SECRET@github.com/acme/app.git", "https://x-access-token:xxxxx@github.com/acme/app.git"},
		{"https://github.com/acme/app.git", "https://github.com/acme/app.git"},
		{"git@github.com:acme/app.git", "git@github.com:acme/app.git"},
		{"ssh://git@host:2222/srv/app.git", "ssh://git@host:2222/srv/app.git"},
		{"/srv/git/app.git", "/srv/git/app.git"},
	}
	for _, tt := range tests {
		t.Run(tt.remote, func(t *testing.T) {
			if got := Redact(tt.remote); got != tt.want {
				t.Errorf("Redact = %q; want %q", got, tt.want)
			}
		})
	}
}

// A token in the remote URL must not reach an error message: `slipway check`
// and the deploy log print them.
func TestErrorsHideCredentials(t *testing.T) {
	const token = "ghp_SECRET123"
	remote := "https://deploy:" + token + "@127.0.0.1:1/acme/app.git" // nothing listens on port 1
	tests := []struct {
		name   string
		ensure bool
		call   func(m *Mirror) error
	}{
		{name: "RemoteTip before the mirror exists", call: func(m *Mirror) error { _, err := m.RemoteTip(t.Context(), "main"); return err }},
		{name: "RemoteTip through the mirror", ensure: true, call: func(m *Mirror) error { _, err := m.RemoteTip(t.Context(), "main"); return err }},
		{name: "Fetch", ensure: true, call: func(m *Mirror) error { return m.Fetch(t.Context()) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMirror(t, remote)
			if tt.ensure {
				if err := m.Ensure(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			err := tt.call(m)
			if err == nil {
				t.Fatal("no error from an unreachable remote")
			}
			if strings.Contains(err.Error(), token) {
				t.Errorf("error shows the token: %v", err)
			}
			if !strings.Contains(err.Error(), "127.0.0.1:1/acme/app.git") {
				t.Errorf("error %q does not say which remote", err)
			}
		})
	}
}

func TestCheckRefName(t *testing.T) {
	for _, ok := range []string{"main", "release/1.2", "feature-x_y", "v1.0.0", "user@host", "a+b"} {
		if err := CheckRefName(ok); err != nil {
			t.Errorf("CheckRefName(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "-main", "--upload-pack=x", "a..b", "a\x00b", "a b", "a//b", "/a", "a/", "a.", ".a", "a/.b",
		"a.lock", "a@{1}", "@", "main~1", "a:b", strings.Repeat("a", 201)} {
		if err := CheckRefName(bad); err == nil {
			t.Errorf("CheckRefName(%q) = nil, want an error", bad)
		}
	}
}

func TestIsCommitID(t *testing.T) {
	for s, want := range map[string]bool{"abcd": true, "ABCDEF12": true, "abc": false, "abcg": false, "": false,
		strings.Repeat("a", 64): true, strings.Repeat("a", 65): false, "--all": false} {
		if got := IsCommitID(s); got != want {
			t.Errorf("IsCommitID(%q) = %v, want %v", s, got, want)
		}
	}
}
