package hostcheck

import (
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/slipway-dev/slipway/internal/config"
	"github.com/slipway-dev/slipway/internal/release"
	"github.com/slipway-dev/slipway/internal/testkit"
)

// sourceRepo makes a git repository with one commit on main and returns its
// path and the commit.
func sourceRepo(t *testing.T) (string, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "src")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	git := func(args ...string) string { t.Helper(); return testkit.Git(t, dir, args...) }
	git("init", "-q", "-b", "main")
	if err := os.WriteFile(filepath.Join(dir, "app.py"), []byte("print(1)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git("add", "-A")
	git("commit", "-q", "-m", "app")
	return dir, git("rev-parse", "HEAD")
}

// freePort returns a loopback port nothing listens on.

// host is what a test sets up on the "host" before `slipway check`.
type host struct {
	repo     string      // repo: in the config
	branch   string      // branch: in the config ("" = default main)
	port     int         // services.web.port
	envDir   os.FileMode // 0: no env dir
	envFile  string      // content of env/web.env; "" with envMode 0: no file
	envMode  os.FileMode
	extraYML string
}

const requiredVar = "SLIPWAY_HOSTCHECK_TEST_SECRET"

// load writes the host's files and slipway.yml, and loads it the way the
// CLI does.
func (h host) load(t *testing.T) *config.Config {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if h.envDir != 0 {
		env := filepath.Join(root, "env")
		if err := os.Mkdir(env, h.envDir); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(env, h.envDir); err != nil {
			t.Fatal(err)
		}
		if h.envMode != 0 {
			path := filepath.Join(env, "web.env")
			if err := os.WriteFile(path, []byte(h.envFile), h.envMode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, h.envMode); err != nil {
				t.Fatal(err)
			}
		}
	}
	branch := ""
	if h.branch != "" {
		branch = "branch: " + h.branch + "\n"
	}
	yml := fmt.Sprintf(`app: demo
root: %s
repo: %s
%smanager: process
env_files:
  web: web.env
require_env: [%s]
services:
  web:
    command: ./bin/server
    env_file: web
    port: %d
%s`, root, h.repo, branch, requiredVar, h.port, h.extraYML)
	path := filepath.Join(dir, "slipway.yml")
	if err := os.WriteFile(path, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config.Load: %v\n%s", err, yml)
	}
	return cfg
}

// want is one finding a test expects: its level and check, and text that
// must appear in What and Fix.
type want struct {
	level Level
	check string
	what  string
	fix   string
}

func (w want) match(f Finding) bool {
	return f.Level == w.level && f.Check == w.check && strings.Contains(f.What, w.what) && strings.Contains(f.Fix, w.fix)
}

func dump(fs []Finding) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "\n  %-4s %-7s %s | %s", f.Level, f.Check, f.What, f.Fix)
	}
	return b.String()
}

func TestRun(t *testing.T) {
	repo, sha := sourceRepo(t)
	good := host{repo: repo, envDir: 0o700, envFile: requiredVar + "=s3cret\n", envMode: 0o600}

	// A port held by a listener of this test process: a foreign one.
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = held.Close() })
	heldPort := held.Addr().(*net.TCPAddr).Port
	pid := strconv.Itoa(os.Getpid())

	tests := []struct {
		name  string
		host  func(t *testing.T, h host) host
		ours  Owner
		want  []want
		fails int // how many findings fail in all
	}{
		{
			name: "healthy host",
			host: func(t *testing.T, h host) host { h.port = testkit.FreePort(t); return h },
			want: []want{
				{OK, "config", "slipway.yml is valid", ""},
				{OK, "git", "git version", ""},
				{OK, "root", "is writable", ""},
				{OK, "env", "env is 0700", ""},
				{OK, "env", "web.env is 0600 and parses", ""},
				{OK, "env", requiredVar + " is set", ""},
				{OK, "ports", "(web) is free", ""},
				{OK, "remote", "main is at " + sha[:7], ""},
			},
		},
		{
			name:  "env dir readable by others",
			host:  func(t *testing.T, h host) host { h.port, h.envDir = testkit.FreePort(t), 0o755; return h },
			want:  []want{{Fail, "env", "has mode 0755; secrets must not be readable by others", "chmod 0700 "}},
			fails: 1,
		},
		{
			name:  "env file readable by others",
			host:  func(t *testing.T, h host) host { h.port, h.envMode = testkit.FreePort(t), 0o644; return h },
			want:  []want{{Fail, "env", "web.env has mode 0644", "chmod 0600 "}},
			fails: 1,
		},
		{
			name: "env file missing",
			host: func(t *testing.T, h host) host { h.port, h.envMode = testkit.FreePort(t), 0; return h },
			want: []want{
				{Fail, "env", "env file web (", "install -m 0600 /dev/null "},
				{Fail, "env", "required variable " + requiredVar + " is unset or empty", "set " + requiredVar},
			},
			fails: 2,
		},
		{
			name: "a TODO of slipway init left",
			host: func(t *testing.T, h host) host {
				h.port, h.extraYML = testkit.FreePort(t), "keep_releases: 3   # TODO: how many\n"
				return h
			},
			want:  []want{{Warn, "config", "slipway.yml:13: a guess of `slipway init` is still marked TODO: how many", "remove its TODO"}},
			fails: 0,
		},
		{
			name: "shared path missing, and one present",
			host: func(t *testing.T, h host) host {
				h.port, h.extraYML = testkit.FreePort(t), "shared: [data, uploads]\n"
				return h
			},
			want: []want{
				{Warn, "shared", "shared/data does not exist; the next deploy creates it", "install -d "},
				{Warn, "shared", "shared/uploads does not exist", ""},
			},
			fails: 0,
		},
		{
			name:  "env dir missing",
			host:  func(t *testing.T, h host) host { h.port, h.envDir = testkit.FreePort(t), 0; return h },
			want:  []want{{Fail, "env", "does not exist", "install -d -m 0700 "}},
			fails: 3, // the dir, the file in it, the variable from it
		},
		{
			name:  "required variable missing",
			host:  func(t *testing.T, h host) host { h.port, h.envFile = testkit.FreePort(t), "OTHER=1\n"; return h },
			want:  []want{{Fail, "env", "required variable " + requiredVar + " is unset or empty", ""}},
			fails: 1,
		},
		{
			name:  "required variable empty",
			host:  func(t *testing.T, h host) host { h.port, h.envFile = testkit.FreePort(t), requiredVar+"=\n"; return h },
			want:  []want{{Fail, "env", "required variable " + requiredVar, ""}},
			fails: 1,
		},
		{
			name: "env file malformed",
			host: func(t *testing.T, h host) host {
				h.port, h.envFile = testkit.FreePort(t), "this is not a dotenv line\n"
				return h
			},
			want:  []want{{Fail, "env", "web.env:1: expected KEY=VALUE", "fix the line it names"}},
			fails: 2, // and so its variable is not set
		},
		{
			name:  "port held by another process",
			host:  func(t *testing.T, h host) host { h.port = heldPort; return h },
			want:  []want{{Fail, "ports", fmt.Sprintf("port %d is held by pid %s (", heldPort, pid), "kill " + pid}},
			fails: 1,
		},
		{
			name: "port held by the app's own service",
			host: func(t *testing.T, h host) host { h.port = heldPort; return h },
			ours: func(port, p int) bool { return port == heldPort && p == os.Getpid() },
			want: []want{{OK, "ports", fmt.Sprintf("port %d is held by web itself (pid %s)", heldPort, pid), ""}},
		},
		{
			name: "repo does not exist",
			host: func(t *testing.T, h host) host {
				h.port, h.repo = testkit.FreePort(t), filepath.Join(t.TempDir(), "no-such-repo")
				return h
			},
			want:  []want{{Fail, "remote", "no-such-repo", "check `repo:` and `branch:`"}},
			fails: 1,
		},
		{
			name:  "branch does not exist",
			host:  func(t *testing.T, h host) host { h.port, h.branch = testkit.FreePort(t), "production"; return h },
			want:  []want{{Fail, "remote", `branch "production": unknown revision`, "check `repo:` and `branch:`"}},
			fails: 1,
		},
		{
			name: "unset variable in the config",
			host: func(t *testing.T, h host) host {
				h.port = testkit.FreePort(t)
				h.extraYML = "health:\n  url: http://127.0.0.1:8000/${SLIPWAY_HOSTCHECK_UNSET}\n"
				return h
			},
			want:  []want{{Fail, "config", "${SLIPWAY_HOSTCHECK_UNSET} is not set", "/env"}},
			fails: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := tt.host(t, good).load(t)
			fs := Run(t.Context(), cfg, tt.ours)
			for _, w := range tt.want {
				found := false
				for _, f := range fs {
					if w.match(f) {
						found = true
						break
					}
				}
				if !found {
					t.Errorf("no finding %s %s %q (fix %q) in:%s", w.level, w.check, w.what, w.fix, dump(fs))
				}
			}
			var fails []Finding
			for _, f := range fs {
				if f.Level == Fail {
					fails = append(fails, f)
					if f.Fix == "" {
						t.Errorf("a failure without a fix: %+v", f)
					}
				}
			}
			if len(fails) != tt.fails {
				t.Errorf("%d failures; want %d:%s", len(fails), tt.fails, dump(fails))
			}
		})
	}
}

// The fixes name the exact paths an operator has to touch.
func TestRunFixNamesPaths(t *testing.T) {
	repo, _ := sourceRepo(t)
	cfg := host{repo: repo, port: testkit.FreePort(t), envDir: 0o755, envFile: requiredVar + "=x\n", envMode: 0o644}.load(t)
	fs := Run(t.Context(), cfg, nil)
	envDir := filepath.Join(cfg.Root, "env")
	wantFixes := map[string]bool{"chmod 0700 " + envDir: false, "chmod 0600 " + filepath.Join(envDir, "web.env"): false}
	for _, f := range fs {
		if _, ok := wantFixes[f.Fix]; ok && f.Level == Fail {
			wantFixes[f.Fix] = true
		}
	}
	for fix, seen := range wantFixes {
		if !seen {
			t.Errorf("no finding with fix %q in:%s", fix, dump(fs))
		}
	}
	// Following the fixes clears the failures.
	if err := os.Chmod(envDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(envDir, "web.env"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range Run(t.Context(), cfg, nil) {
		if f.Level == Fail {
			t.Errorf("still failing after the fixes: %+v", f)
		}
	}
}

// `slipway check` output is pasted into tickets: a token in repo: must not
// appear in it.
func TestRunHidesRepoToken(t *testing.T) {
	const token = "glpat-SECRET123"
	cfg := host{
		repo:    "https://oauth2:" + token + "@127.0.0.1:1/acme/app.git", // nothing listens on port 1
		port:    testkit.FreePort(t),
		envDir:  0o700,
		envFile: requiredVar + "=x\n",
		envMode: 0o600,
	}.load(t)
	fs := Run(t.Context(), cfg, nil)
	for _, f := range fs {
		if strings.Contains(f.What+f.Fix, token) {
			t.Errorf("finding shows the token: %+v", f)
		}
	}
	if !(want{Fail, "remote", "127.0.0.1:1/acme/app.git", ""}).match(findRemote(fs)) {
		t.Errorf("no failing remote finding in:%s", dump(fs))
	}
}

func findRemote(fs []Finding) Finding {
	for _, f := range fs {
		if f.Check == "remote" {
			return f
		}
	}
	return Finding{}
}

// TestCheckShared: a missing shared path is expected before the first
// deploy and a failure once a release is live; under root with `user:`,
// what is inside a shared path must be writable by that user (a deploy
// gives it only the top directory).
func TestCheckShared(t *testing.T) {
	find := func(t *testing.T, cfg *config.Config, l release.Layout) Finding {
		t.Helper()
		fs := checkShared(cfg, l)
		if len(fs) != 1 {
			t.Fatalf("want one finding:%s", dump(fs))
		}
		return fs[0]
	}
	newLayout := func(t *testing.T) release.Layout {
		l := release.Layout{Root: t.TempDir()}
		if err := l.Ensure(); err != nil {
			t.Fatal(err)
		}
		return l
	}
	t.Run("missing", func(t *testing.T) {
		l := newLayout(t)
		cfg := &config.Config{Shared: []string{"data"}}
		if f := find(t, cfg, l); f.Level != Warn || !strings.Contains(f.What, "the next deploy creates it") {
			t.Fatalf("before the first deploy: %+v", f)
		}
		rel := "20260101T000000Z-aaaaaaaaaaaa"
		if err := os.MkdirAll(l.Dir(rel), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("releases", rel), l.CurrentLink()); err != nil {
			t.Fatal(err)
		}
		// A shared path just added: no release links it yet.
		if f := find(t, cfg, l); f.Level != Warn || !strings.Contains(f.What, "the next deploy creates it") {
			t.Fatalf("a shared path the live release does not link: %+v", f)
		}
		if err := os.Symlink(filepath.Join("..", "..", "shared", "data"), filepath.Join(l.Dir(rel), "data")); err != nil {
			t.Fatal(err)
		}
		if f := find(t, cfg, l); f.Level != Fail || !strings.Contains(f.What, "is live") || !strings.Contains(f.Fix, "install -d "+filepath.Join(l.SharedDir(), "data")) {
			t.Fatalf("with a release live: %+v", f)
		}
	})
	t.Run("inside is root's", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root: the deploy gives shared paths to `user:` only as root")
		}
		nobody, err := user.Lookup("nobody")
		if err != nil {
			t.Skip("no user nobody")
		}
		l := newLayout(t)
		data := filepath.Join(l.SharedDir(), "data")
		testkit.WriteFile(t, filepath.Join(data, "board.db"), "x", 0o644) // root's, 0644
		cfg := &config.Config{Shared: []string{"data"}, User: "nobody"}
		f := find(t, cfg, l)
		if f.Level != Fail || !strings.Contains(f.What, "board.db is owned by uid 0") || f.Fix != "chown -R nobody: "+data {
			t.Fatalf("a root-owned file inside: %+v", f)
		}
		uid, _ := strconv.Atoi(nobody.Uid)
		gid, _ := strconv.Atoi(nobody.Gid)
		if err := os.Chown(filepath.Join(data, "board.db"), uid, gid); err != nil {
			t.Fatal(err)
		}
		// The top directory is still root's: the deploy gives it away.
		if f := find(t, cfg, l); f.Level != OK || !strings.Contains(f.What, "writable by nobody") {
			t.Fatalf("after the fix: %+v", f)
		}
	})
}

// TestCheckDeps: a live release that links a deps/ tree that is gone
// fails the check, with the deploy that builds it again.
func TestCheckDeps(t *testing.T) {
	l := release.Layout{Root: t.TempDir()}
	if err := l.Ensure(); err != nil {
		t.Fatal(err)
	}
	if fs := checkDeps(l); len(fs) != 0 {
		t.Fatalf("nothing live: %s", dump(fs))
	}
	name := "20260101T000000Z-aaaaaaaaaaaa"
	r := release.Release{Name: name, Dir: l.Dir(name)}
	venv := filepath.Join(r.Dir, "backend", ".venv")
	if err := os.MkdirAll(filepath.Join(venv, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Share(r, "backend", []string{".venv"}); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("releases", name), l.CurrentLink()); err != nil {
		t.Fatal(err)
	}
	if fs := checkDeps(l); len(fs) != 1 || fs[0].Level != OK {
		t.Fatalf("the tree is there: %s", dump(fs))
	}
	if err := os.RemoveAll(l.DepsDir()); err != nil {
		t.Fatal(err)
	}
	fs := checkDeps(l)
	if len(fs) != 1 || fs[0].Level != Fail || !strings.Contains(fs[0].What, name+"/backend/.venv") || !strings.Contains(fs[0].Fix, "deploy --force") {
		t.Fatalf("the tree is gone: %s", dump(fs))
	}
}
