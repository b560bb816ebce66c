package main_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/testkit"
)

func TestFirstDeployThenNoopThenNewCommit(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", nil)
	first := a.head()

	r := a.mustDeploy()
	a.assertServing(first)
	if a.safeCommit() != first {
		t.Fatalf("SAFE_COMMIT = %q, want %s", a.safeCommit(), first)
	}
	if code, _ := a.get("/board/tasks", false); code != 401 {
		t.Fatalf("anonymous /board/tasks = %d, want 401", code)
	}
	if code, body := a.get("/board/tasks", true); code != 200 || !strings.Contains(body, "tasks") {
		t.Fatalf("/board/tasks with token = %d %s", code, body)
	}
	for _, step := range []string{"resolve", "plan", "verify-env", "prepare", "build:venv", "migrate", "stamp", "switch", "restart", "health", "smoke", "mark-safe"} {
		if !strings.Contains(r.stderr, " "+step+" ") {
			t.Errorf("no step line for %s in:\n%s", step, r.stderr)
		}
	}
	if d := a.lastDeploy(); d.Outcome != "succeeded" || d.Commit != first {
		t.Fatalf("ledger: %+v", d)
	}
	// No .git in a release: it can never be dirty.
	if _, err := os.Stat(filepath.Join(a.root, "current", ".git")); !os.IsNotExist(err) {
		t.Fatalf("release has .git: %v", err)
	}
	version, _ := os.ReadFile(filepath.Join(a.root, "current", "VERSION"))
	if !strings.HasSuffix(strings.TrimSpace(string(version)), "+"+first[:7]) {
		t.Fatalf("VERSION = %q", version)
	}

	t.Run("no-op redeploy does not restart", func(t *testing.T) {
		a := a.with(t)
		pid := a.servicePID("backend")
		r := a.mustDeploy()
		if !strings.Contains(r.stdout, "nothing to do") {
			t.Fatalf("want nothing to do: %s", r)
		}
		if got := a.servicePID("backend"); got != pid {
			t.Fatalf("backend restarted: pid %d -> %d", pid, got)
		}
		if d := a.lastDeploy(); d.Outcome != "skipped" {
			t.Fatalf("ledger: %+v", d)
		}
	})

	first0 := a.current()
	t.Run("a new commit is deployed, reusing the venv", func(t *testing.T) {
		a := a.with(t)
		second := a.commit("add a migration", map[string]string{
			"backend/migrations/0002_more.sql": "INSERT INTO tasks (title, done) VALUES ('third', 0);\n",
		})
		r := a.mustDeploy()
		a.assertServing(second)
		if !strings.Contains(r.stderr, "reused .venv") {
			t.Fatalf("venv not reused:\n%s", r.stderr)
		}
		if _, body := a.get("/board/tasks", true); !strings.Contains(body, "third") {
			t.Fatalf("migration 0002 not applied: %s", body)
		}
		// The example shares the venv (reuse.share): kept once in deps/,
		// where the first release built it, and linked into this one.
		entry := filepath.Join(a.root, "deps", first0, "backend", ".venv")
		if target, err := os.Readlink(filepath.Join(a.root, "current", "backend", ".venv")); err != nil || target != entry {
			t.Fatalf("backend/.venv links to %q (%v); want %s", target, err, entry)
		}
		pip := readFile(t, filepath.Join(a.root, "current", "backend", ".venv", "bin", "pip"))
		if !strings.Contains(pip, entry+"/bin/python") {
			t.Fatalf("shared venv's pip does not run its python in deps/:\n%s", pip)
		}
		pipPath := filepath.Join(a.root, "current", "backend", ".venv", "bin", "pip")
		if out, err := exec.Command(pipPath, "--version").CombinedOutput(); err != nil {
			t.Fatalf("shared venv's pip: %v %s", err, out)
		}
	})
}

// With reuse.link instead, the venv is a hard-linked copy in the new
// release, its scripts re-pointed at it.
func TestReuseLinksTheVenv(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", func(cfg string) string {
		return strings.Replace(cfg, "share: true }", "link: true }", 1)
	})
	a.mustDeploy()
	first := filepath.Join(a.root, "releases", a.current())
	a.commit("change", map[string]string{"README": "change\n"})
	if r := a.mustDeploy(); !strings.Contains(r.stderr, "reused .venv") {
		t.Fatalf("venv not reused:\n%s", r.stderr)
	}
	venv := filepath.Join(a.root, "releases", a.current(), "backend", ".venv")
	if info, err := os.Lstat(venv); err != nil || !info.IsDir() {
		t.Fatalf("backend/.venv is not a directory of the release: %v", err)
	}
	a1, _ := os.Stat(filepath.Join(first, "backend", ".venv", "pyvenv.cfg"))
	a2, _ := os.Stat(filepath.Join(venv, "pyvenv.cfg"))
	if a1 == nil || a2 == nil || !os.SameFile(a1, a2) {
		t.Fatal("pyvenv.cfg is not hard-linked to the previous release's")
	}
	pip := readFile(t, filepath.Join(venv, "bin", "pip"))
	if !strings.Contains(pip, venv+"/bin/python") {
		t.Fatalf("reused venv's pip does not run the release's python %s:\n%s", venv, pip)
	}
	if out, err := exec.Command(filepath.Join(venv, "bin", "pip"), "--version").CombinedOutput(); err != nil {
		t.Fatalf("reused venv's pip: %v %s", err, out)
	}
}

// A shared venv outlives the release that built it while releases link
// it; a changed key builds a new one; once no kept release links the old
// one, a deploy's prune takes it out and the next settle window deletes
// it. A rollback to a kept release runs on that release's own venv.
func TestSharedVenvLifetime(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", func(cfg string) string {
		return replaceLine(cfg, "keep_releases:", "keep_releases: 2")
	})
	deps := filepath.Join(a.root, "deps")
	a.mustDeploy()
	builder := a.current()
	for i := range 2 {
		a.commit("change", map[string]string{"README": fmt.Sprintf("change %d\n", i)})
		a.mustDeploy()
	}
	if _, err := os.Stat(filepath.Join(a.root, "releases", builder)); !os.IsNotExist(err) {
		t.Fatalf("the first release is still there: %v", err)
	}
	if got := testkit.Names(t, deps); !slices.Equal(got, []string{builder}) {
		t.Fatalf("deps/ = %v; want the first release's venv, which the two kept releases link", got)
	}
	old := a.current()

	a.commit("a new requirement", map[string]string{"backend/requirements.txt": "# now with a comment\n"})
	if r := a.mustDeploy(); strings.Contains(r.stderr, "reused .venv") || !strings.Contains(r.stderr, "kept in deps/") {
		t.Fatalf("a changed requirements.txt did not build a new venv:\n%s", r.stderr)
	}
	rebuilt := a.current()
	// The old venv is still linked by the kept release before this one.
	if got := testkit.Names(t, deps); !slices.Equal(got, []string{builder, rebuilt}) {
		t.Fatalf("deps/ = %v; want %s and %s", got, builder, rebuilt)
	}
	kept := a.commit("change again", map[string]string{"README": "again\n"})
	a.mustDeploy() // prunes the last release that linked the old venv
	if got := testkit.Names(t, deps); !slices.Equal(got, []string{".tmp-rm-" + builder, rebuilt}) {
		t.Fatalf("deps/ = %v; want the old venv in the trash", got)
	}
	a.commit("and again", map[string]string{"README": "and again\n"})
	a.mustDeploy() // its settle window empties the trash
	if got := testkit.Names(t, deps); !slices.Equal(got, []string{rebuilt}) {
		t.Fatalf("deps/ = %v; want only %s", got, rebuilt)
	}
	if got := testkit.Names(t, filepath.Join(a.root, "releases")); slices.Contains(got, old) || slices.Contains(got, ".tmp-rm-"+old) {
		t.Fatalf("releases/ = %v; %s should be gone", got, old)
	}

	if r := a.slipway("rollback", "--to", kept); r.code != 0 {
		t.Fatalf("rollback: %s", r)
	}
	if a.safeCommit() != kept {
		t.Fatalf("SAFE_COMMIT = %s after the rollback; want %s", a.safeCommit(), kept)
	}
	if target, _ := os.Readlink(filepath.Join(a.root, "current", "backend", ".venv")); target != filepath.Join(deps, rebuilt, "backend", ".venv") {
		t.Fatalf("the rolled-back release links %q", target)
	}
	if code, _ := a.get("/health", false); code != 200 {
		t.Fatalf("/health after rollback = %d", code)
	}
}

func TestBuildFailureKeepsOldVersion(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", nil)
	good := a.head()
	a.mustDeploy()
	releaseBefore := a.current()

	bad := a.edit("break syntax", "backend/app.py", "def main():", "def main(:")
	r := a.slipway("deploy")
	if r.code != 1 {
		t.Fatalf("want exit 1: %s", r)
	}
	if !strings.Contains(r.stderr, "compileall") || !strings.Contains(r.stderr, "exited with code") {
		t.Fatalf("failure does not name the command and its exit code:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, "SyntaxError") && !strings.Contains(r.stderr, "invalid syntax") {
		t.Fatalf("failure does not show the command's output:\n%s", r.stderr)
	}
	a.assertServing(good)
	if a.current() != releaseBefore || a.safeCommit() != good {
		t.Fatalf("current or safe changed: %s %s", a.current(), a.safeCommit())
	}
	d := a.lastDeploy()
	if d.Outcome != "failed" || d.Commit != bad || !d.Bad {
		t.Fatalf("ledger: %+v", d)
	}
}

func TestHealthFailureRollsBack(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", nil)
	good := a.head()
	a.mustDeploy()

	bad := a.edit("health says 500", "backend/app.py",
		`self.send_body(200, {"status": "ok", "version": APP_VERSION})`,
		`self.send_body(500, {"status": "broken", "version": APP_VERSION})`)
	r := a.slipway("deploy")
	if r.code != 1 {
		t.Fatalf("want exit 1: %s", r)
	}
	if !strings.Contains(r.stderr, "rolled back") {
		t.Fatalf("no rollback reported:\n%s", r.stderr)
	}
	a.assertServing(good)
	if d := a.lastDeploy(); d.Outcome != "rolled-back" || d.Commit != bad {
		t.Fatalf("ledger: %+v", d)
	}

	t.Run("the bad commit is not retried", func(t *testing.T) {
		a := a.with(t)
		r := a.slipway("deploy")
		if r.code != 0 || !strings.Contains(r.stderr, "marked bad") {
			t.Fatalf("want skipped with a warning: %s", r)
		}
		a.assertServing(good)
	})
	t.Run("--commit of the bad commit says it is skipped, once", func(t *testing.T) {
		a := a.with(t)
		r := a.slipway("deploy", "--commit", bad)
		out := r.stdout + r.stderr
		if r.code != 0 || !strings.Contains(r.stdout, "skipped: "+bad[:7]) || strings.Count(out, "got status 500") != 1 {
			t.Fatalf("want exit 0, and %s's skip and reason said once: %s", bad[:7], r)
		}
		a.assertServing(good)
	})
	t.Run("a newer commit is deployed", func(t *testing.T) {
		a := a.with(t)
		fixed := a.edit("fix health", "backend/app.py",
			`self.send_body(500, {"status": "broken", "version": APP_VERSION})`,
			`self.send_body(200, {"status": "ok", "version": APP_VERSION})`)
		a.mustDeploy()
		a.assertServing(fixed)
	})
	t.Run("--force retries a bad commit", func(t *testing.T) {
		a := a.with(t)
		r := a.slipway("deploy", "--commit", bad, "--force")
		if r.code != 1 {
			t.Fatalf("forced bad deploy: %s", r)
		}
	})
}

func TestSmokeFailureRollsBack(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", nil)
	good := a.head()
	a.mustDeploy()
	// The worst case of a hand-run deploy: the new version serves everyone without auth.
	a.edit("drop auth", "backend/app.py", "def authorized(header):\n", "def authorized(header):\n    return True\n")
	r := a.slipway("deploy")
	if r.code != 1 || !strings.Contains(r.stderr, "anonymous is refused") {
		t.Fatalf("want smoke failure, exit 1: %s", r)
	}
	a.assertServing(good)
	if code, _ := a.get("/board/tasks", false); code != 401 {
		t.Fatalf("after rollback anonymous gets %d", code)
	}
}

func TestMigrationFailure(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", nil)
	good := a.head()
	a.mustDeploy()
	a.commit("bad migration", map[string]string{"backend/migrations/0002_bad.sql": "INSERT INTO nosuchtable VALUES (1);\n"})
	r := a.slipway("deploy")
	if r.code != 1 || !strings.Contains(r.stderr, "migrate") || !strings.Contains(r.stderr, "nosuchtable") {
		t.Fatalf("want migrate failure naming the error: %s", r)
	}
	a.assertServing(good)
	if d := a.lastDeploy(); d.Outcome != "failed" || !d.Bad {
		t.Fatalf("ledger: %+v", d)
	}
}

func TestMissingRequiredEnvRefusedBeforeSwitch(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", nil)
	good := a.head()
	a.mustDeploy()
	rel := a.current()
	a.writeEnv("backend.env", map[string]string{"PORT": "1", "DATA_DIR": "../data"})
	a.writeEnv("worker.env", map[string]string{"DATA_DIR": "../data"})
	a.commit("next", map[string]string{"README": "next\n"})
	r := a.slipway("deploy")
	if r.code != 1 || !strings.Contains(r.stderr, "VERS_AUTH_TOKEN") || !strings.Contains(r.stderr, "verify-env") {
		t.Fatalf("want refusal naming VERS_AUTH_TOKEN: %s", r)
	}
	if a.current() != rel {
		t.Fatalf("current switched")
	}
	a.assertServing(good)
	d := a.lastDeploy()
	if d.Bad || strings.Contains(r.stdout+r.stderr, "push a fix") {
		t.Fatalf("a host problem marked the commit bad, or blamed it: %+v\n%s", d, r)
	}
	// It fails fast: before anything is exported or built.
	for _, s := range a.steps(d.ID) {
		if s.Name == "prepare" || strings.HasPrefix(s.Name, "build:") {
			t.Fatalf("step %s ran before the missing variable was reported", s.Name)
		}
	}
}

// TestEnvModesEnforcedByDeploy: a deploy refuses secrets that others may
// read, with the chmod that fixes it, before it builds anything.
func TestEnvModesEnforcedByDeploy(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", nil)
	envDir := filepath.Join(a.root, "env")
	file := filepath.Join(envDir, "backend.env")
	for _, tc := range []struct {
		path string
		mode os.FileMode
		fix  string
	}{
		{file, 0o666, "chmod 0600 " + file},
		{envDir, 0o755, "chmod 0700 " + envDir},
	} {
		if err := os.Chmod(tc.path, tc.mode); err != nil {
			t.Fatal(err)
		}
		// Bad input: exit 2, before anything is created (no ledger, no
		// release, no lock).
		for _, cmd := range [][]string{{"deploy"}, {"rollback"}, {"restart"}, {"exec", "--", "true"}} {
			r := a.slipway(cmd...)
			if r.code != 2 || !strings.Contains(r.stderr, tc.fix) {
				t.Fatalf("%v with %s at %04o: want exit 2 saying %q: %s", cmd, tc.path, tc.mode, tc.fix, r)
			}
		}
		for _, p := range []string{"state.db", "releases", "run"} {
			if _, err := os.Stat(filepath.Join(a.root, p)); !os.IsNotExist(err) {
				t.Fatalf("a refused deploy created %s (%v)", p, err)
			}
		}
		if err := os.Chmod(tc.path, map[bool]os.FileMode{true: 0o700, false: 0o600}[tc.path == envDir]); err != nil {
			t.Fatal(err)
		}
	}
	a.mustDeploy()
}

func TestForeignProcessOnPort(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", nil)
	l, err := net.Listen("tcp", "127.0.0.1:"+itoa(a.port))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	r := a.slipway("deploy")
	if r.code != 1 || !strings.Contains(r.stderr, "pid "+itoa(os.Getpid())) {
		t.Fatalf("want failure naming this test's pid %d: %s", os.Getpid(), r)
	}
	if a.current() != "" {
		t.Fatalf("current was switched to %s", a.current())
	}
}

func TestConcurrentDeployExits3(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", func(cfg string) string {
		return strings.Replace(cfg, "build:\n", "build:\n  - name: slow\n    run: sleep 3\n", 1)
	})
	first := exec.Command(slipwayBin, "-c", a.cfgPath, "deploy")
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 20*time.Second, "the first deploy to take the lock", func() bool {
		b, _ := os.ReadFile(filepath.Join(a.root, "run", "deploy.lock"))
		return strings.Contains(string(b), `"pid"`)
	})
	r := a.slipway("deploy")
	if r.code != 3 || !strings.Contains(r.stderr, "pid "+itoa(first.Process.Pid)) {
		t.Fatalf("want exit 3 naming pid %d: %s", first.Process.Pid, r)
	}
	r = a.slipway("deploy", "--wait")
	if r.code != 0 {
		t.Fatalf("--wait: %s", r)
	}
	if err := first.Wait(); err != nil {
		t.Fatalf("first deploy: %v", err)
	}
}

func TestManualLockFreezesDeploys(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", nil)
	if r := a.slipway("lock", "acquire", "-m", "incident 42"); r.code != 0 {
		t.Fatalf("acquire: %s", r)
	}
	r := a.slipway("deploy")
	if r.code != 3 || !strings.Contains(r.stderr, "incident 42") {
		t.Fatalf("want exit 3 naming the freeze: %s", r)
	}
	if r := a.slipway("lock", "status"); !strings.Contains(r.stdout, "frozen") {
		t.Fatalf("status: %s", r)
	}
	if r := a.slipway("lock", "release"); r.code != 0 {
		t.Fatalf("release: %s", r)
	}
	// Both are in the ledger, with who did them.
	if r := a.slipway("history", "--events"); r.code != 0 || !strings.Contains(r.stdout, "deploys frozen by") ||
		!strings.Contains(r.stdout, "incident 42") || !strings.Contains(r.stdout, "deploys unfrozen by") {
		t.Fatalf("history --events after a freeze and an unfreeze:\n%s", r)
	}
	a.mustDeploy()
}

func TestRollback(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", nil)
	c1 := a.head()
	a.mustDeploy()
	c2 := a.commit("two", map[string]string{"README": "two\n"})
	a.mustDeploy()
	c3 := a.commit("three", map[string]string{"README": "three\n"})
	a.mustDeploy()
	a.assertServing(c3)

	r := a.slipway("rollback")
	if r.code != 0 {
		t.Fatalf("rollback: %s", r)
	}
	a.assertServing(c2)
	if a.safeCommit() != c2 {
		t.Fatalf("safe = %s", a.safeCommit())
	}
	r = a.slipway("rollback", "--to", c1[:10])
	if r.code != 0 {
		t.Fatalf("rollback --to: %s", r)
	}
	a.assertServing(c1)
	// The commits rolled away from are not brought back by a plain deploy.
	r = a.slipway("deploy")
	if r.code != 0 || !strings.Contains(r.stderr, "marked bad") {
		t.Fatalf("deploy after rollback: %s", r)
	}
	a.assertServing(c1)
	if r := a.slipway("rollback", "--to", "deadbeef"); r.code == 0 || !strings.Contains(r.stderr, "no kept release") {
		t.Fatalf("rollback to unknown: %s", r)
	}
	// No snapshot: is configured, so no migration ran after one.
	if r := a.slipway("rollback", "--to", c2[:10], "--restore-data"); r.code != 2 || !strings.Contains(r.stderr, "no data snapshot to restore") {
		t.Fatalf("--restore-data with nothing to restore: want exit 2\n%s", r)
	}
	a.assertServing(c1)
}

func TestDryRunChangesNothing(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", nil)
	a.mustDeploy()
	a.commit("next", map[string]string{"README": "next\n"})
	before := snapshotTree(t, a.root)
	rows := len(a.history())
	r := a.slipway("deploy", "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, "reuse .venv") || !strings.Contains(r.stdout, "nothing was changed") {
		t.Fatalf("dry run: %s", r)
	}
	after := snapshotTree(t, a.root)
	if before != after {
		t.Fatalf("dry run changed the root:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if n := len(a.history()); n != rows {
		t.Fatalf("ledger rows %d -> %d", rows, n)
	}
}

// snapshotTree lists the root's files outside the git mirror and the
// ledger's own files, with sizes.
func snapshotTree(t *testing.T, root string) string {
	var b strings.Builder
	_ = filepath.Walk(root, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		if strings.HasPrefix(rel, "repo.git") || strings.HasPrefix(rel, "state.db") || strings.HasPrefix(rel, "logs") || strings.HasPrefix(rel, "shared") {
			return nil
		}
		b.WriteString(rel + " " + itoa(int(info.Size())) + "\n")
		return nil
	})
	return b.String()
}

func TestKill9DuringBuildRecovers(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", func(cfg string) string {
		return strings.Replace(cfg, "build:\n", "build:\n  - name: slow\n    run: sh -c 'if [ -f SLOW ]; then sleep 60; fi'\n", 1)
	})
	good := a.head()
	a.mustDeploy()
	a.commit("slow build", map[string]string{"SLOW": "1\n"})
	killDuring(t, a, "build:slow")

	if _, err := os.Stat(filepath.Join(a.root, "run", "deploy.lock")); err != nil {
		t.Fatal(err)
	}
	a.assertServing(good)
	r := a.slipway("status")
	if r.code != 0 || !strings.Contains(r.stderr, "recovered deploy") {
		t.Fatalf("status did not recover: %s", r)
	}
	assertRecovered(t, a, good)
}

func TestKill9DuringRestartRecovers(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", func(cfg string) string {
		return strings.Replace(cfg, "    command: python3 worker.py\n", "    command: python3 worker.py\n    stop_timeout: 2s\n", 1)
	})
	// The live worker ignores SIGTERM, so the restart's stop takes its
	// stop_timeout (2 s) and the kill below lands inside it.
	good := a.edit("stubborn worker", "worker/worker.py", "signal.signal(signal.SIGTERM, on_signal)", "signal.signal(signal.SIGTERM, signal.SIG_IGN)")
	if !strings.Contains(readFile(t, filepath.Join(a.src, "worker/worker.py")), "SIGTERM, signal.SIG_IGN") {
		t.Fatal("edit did not apply")
	}
	a.mustDeploy()
	a.commit("next", map[string]string{"README": "next\n"})
	killDuring(t, a, "restart")
	// Recovery happens at the next command, here a deploy of the same
	// commit, which goes ahead once the host is back on the safe release.
	r := a.slipway("status")
	if r.code != 0 || !strings.Contains(r.stderr, "recovered deploy") {
		t.Fatalf("status did not recover: %s", r)
	}
	assertRecovered(t, a, good)
	a.mustDeploy()
}

// killDuring starts a deploy, waits until it reaches step, and kills it with SIGKILL.
func killDuring(t *testing.T, a *app, step string) {
	t.Helper()
	cmd := exec.CommandContext(context.Background(), slipwayBin, "-c", a.cfgPath, "deploy")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitStep(t, a, step)
	time.Sleep(300 * time.Millisecond)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
}

// waitStep waits until a deploy's log shows step started and not ended.
func waitStep(t *testing.T, a *app, step string) {
	t.Helper()
	testkit.WaitFor(t, 60*time.Second, "step "+step, func() bool {
		logs, _ := filepath.Glob(filepath.Join(a.root, "logs", "deploys", "*.log"))
		for _, l := range logs {
			b := readFile(t, l)
			if strings.Contains(b, " "+step+"\n") && !strings.Contains(b, "<== "+step+" ") {
				return true
			}
		}
		return false
	})
}

func assertRecovered(t *testing.T, a *app, good string) {
	t.Helper()
	a.assertServing(good)
	if a.safeCommit() != good {
		t.Fatalf("safe = %s", a.safeCommit())
	}
	if rel := a.current(); !strings.HasSuffix(rel, good[:12]) {
		t.Fatalf("current = %s, want a release of %s", rel, good[:7])
	}
	d := a.lastDeploy()
	if d.Outcome != "interrupted" {
		t.Fatalf("ledger: %+v", d)
	}
	entries, _ := os.ReadDir(filepath.Join(a.root, "releases"))
	for _, e := range entries {
		// (A pruned release's files wait in .tmp-rm-* for the next settle
		// window: by design, not half-built.)
		if (strings.HasPrefix(e.Name(), ".") && !strings.HasPrefix(e.Name(), ".tmp-rm-")) || e.Name() == d.Release {
			t.Fatalf("half-built release left behind: %s", e.Name())
		}
	}
	if r := a.slipway("lock", "status"); !strings.Contains(r.stdout, "free") {
		t.Fatalf("stale lock: %s", r)
	}
}

func readFile(t *testing.T, path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestSIGTERMDuringDeploy(t *testing.T) {
	t.Parallel()
	t.Run("before the switch nothing live changes", func(t *testing.T) {
		t.Parallel()
		a := newApp(t, "python-api", func(cfg string) string {
			return strings.Replace(cfg, "build:\n", "build:\n  - name: slow\n    run: sh -c 'if [ -f SLOW ]; then sleep 60; fi'\n", 1)
		})
		good := a.head()
		a.mustDeploy()
		live := a.current()
		a.commit("slow build", map[string]string{"SLOW": "1\n"})
		code := signalDuring(t, a, "build:slow", syscall.SIGTERM)
		if code != 5 {
			t.Fatalf("exit %d, want 5", code)
		}
		a.assertServing(good)
		if a.current() != live {
			t.Fatal("current changed")
		}
		if d := a.lastDeploy(); d.Outcome != "interrupted" || d.Bad {
			t.Fatalf("ledger: %+v", d)
		}
		if r := a.slipway("lock", "status"); !strings.Contains(r.stdout, "free") {
			t.Fatalf("lock: %s", r)
		}
	})
	t.Run("after the switch it rolls back", func(t *testing.T) {
		t.Parallel()
		a := newApp(t, "python-api", nil)
		good := a.head()
		a.mustDeploy()
		a.edit("health says 500", "backend/app.py",
			`self.send_body(200, {"status": "ok", "version": APP_VERSION})`,
			`self.send_body(500, {"status": "broken", "version": APP_VERSION})`)
		code := signalDuring(t, a, "health", syscall.SIGTERM)
		if code != 5 {
			t.Fatalf("exit %d, want 5", code)
		}
		a.assertServing(good)
		if a.safeCommit() != good {
			t.Fatalf("safe = %s", a.safeCommit())
		}
		if d := a.lastDeploy(); d.Outcome != "interrupted" {
			t.Fatalf("ledger: %+v", d)
		}
	})
}

// signalDuring starts a deploy, sends sig once it reaches step, and returns
// its exit code.
func signalDuring(t *testing.T, a *app, step string, sig syscall.Signal) int {
	t.Helper()
	cmd := exec.Command(slipwayBin, "-c", a.cfgPath, "deploy")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitStep(t, a, step)
	_ = cmd.Process.Signal(sig)
	err := cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}

func TestStatusHistoryLogs(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", nil)
	sha := a.head()
	a.mustDeploy()
	r := a.slipway("status", "--json")
	if r.code != 0 {
		t.Fatalf("status: %s", r)
	}
	var s struct {
		Current  struct{ Commit, Version string }
		Safe     string `json:"safe_commit"`
		Tip      string `json:"remote_tip"`
		Healthy  bool
		Services []struct {
			Name    string
			Running bool
		}
		Last struct{ Outcome string } `json:"last_deploy"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("status json: %v\n%s", err, r.stdout)
	}
	if s.Current.Commit != sha || s.Safe != sha || s.Tip != sha || !s.Healthy || len(s.Services) != 2 || !s.Services[0].Running || s.Last.Outcome != "succeeded" {
		t.Fatalf("status: %+v", s)
	}
	r = a.slipway("status")
	for _, want := range []string{"current:", sha[:7], "health:    ok", "lock:      free", "service:   backend"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("status lacks %q:\n%s", want, r.stdout)
		}
	}
	r = a.slipway("history")
	if r.code != 0 || !strings.Contains(r.stdout, "succeeded") || !strings.Contains(r.stdout, sha[:7]) {
		t.Fatalf("history: %s", r)
	}
	r = a.slipway("logs")
	if r.code != 0 || !strings.Contains(r.stdout, "==> ") || !strings.Contains(r.stdout, "migrate") {
		t.Fatalf("logs: %s", r)
	}
	if r := a.slipway("logs", "999"); r.code == 0 {
		t.Fatalf("logs of a missing deploy: %s", r)
	}
	// The token never lands in the logs or the ledger.
	for _, f := range []string{"logs/deploy.log", "logs/deploys/1.log", "state.db"} {
		if strings.Contains(readFile(t, filepath.Join(a.root, f)), testToken) {
			t.Fatalf("%s contains the auth token", f)
		}
	}
}

func TestPruneKeepsCurrentAndSafe(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", func(cfg string) string {
		return replaceLine(cfg, "keep_releases:", "keep_releases: 2")
	})
	var shas []string
	for i := range 4 {
		if i > 0 {
			a.commit("c"+itoa(i), map[string]string{"README": itoa(i) + "\n"})
		}
		a.mustDeploy()
		shas = append(shas, a.head())
	}
	// A failed deploy's release goes first.
	a.edit("break", "backend/app.py", "def main():", "def main(:")
	if r := a.slipway("deploy"); r.code != 1 {
		t.Fatalf("want failure: %s", r)
	}
	entries, _ := os.ReadDir(filepath.Join(a.root, "releases"))
	var names []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".tmp-rm-") { // pruned, files deleted by the next settle window
			names = append(names, e.Name())
		}
	}
	if len(names) != 2 {
		t.Fatalf("releases %v, want 2", names)
	}
	// (Two releases made in the same second sort by their commit id.)
	if cur := a.current(); !strings.HasSuffix(cur, shas[3][:12]) || !slices.Contains(names, cur) {
		t.Fatalf("releases %v: current (%s) must be kept", names, a.current())
	}
	a.assertServing(shas[3])
}

func TestCheckListsFindingsWithFixes(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", nil)
	r := a.slipway("check")
	if r.code != 0 || !strings.Contains(r.stdout, "all checks passed") {
		t.Fatalf("check on a good host: %s", r)
	}
	if err := os.Chmod(filepath.Join(a.root, "env", "backend.env"), 0o644); err != nil {
		t.Fatal(err)
	}
	a.writeEnv("worker.env", map[string]string{"DATA_DIR": "../data"})
	a.writeEnv("backend.env", map[string]string{"PORT": itoa(a.port)})
	_ = os.Chmod(filepath.Join(a.root, "env", "backend.env"), 0o644)
	r = a.slipway("check")
	for _, want := range []string{"chmod 0600", "VERS_AUTH_TOKEN", "fix:"} {
		if r.code != 1 || !strings.Contains(r.stdout, want) {
			t.Fatalf("want exit 1 and %q: %s", want, r)
		}
	}
}

// TestCheckSharedNotWritable: an operator who is not root, with a shared
// path root made, is told before a deploy that the app cannot write there.
// It needs root, to make the path and to run check as another user.
func TestCheckSharedNotWritable(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run check as another user")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("needs setpriv (util-linux)")
	}
	// Everything where the other user can read it: t.TempDir is 0700.
	base, err := os.MkdirTemp("", "slipway-shared-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "slipway")
	b, err := os.ReadFile(slipwayBin)
	if err != nil {
		t.Fatal(err)
	}
	testkit.WriteFile(t, bin, string(b), 0o755)
	root := filepath.Join(base, "root")
	if err := os.MkdirAll(filepath.Join(root, "shared", "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(base, "slipway.yml")
	testkit.WriteFile(t, cfg, "app: board\nrepo: "+base+"\nroot: "+root+"\nmanager: process\nshared: [data]\nservices:\n  web:\n    command: ./web\n", 0o644)
	out, err := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", bin, "-c", cfg, "check").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("check: want exit 1, got %v\n%s", err, out)
	}
	want := "fail  shared  " + filepath.Join(root, "shared", "data") + " is not writable by the app's user (it is owned by uid 0, mode 0755)"
	if !strings.Contains(string(out), want) || !strings.Contains(string(out), "chown -R $(id -un) ") {
		t.Fatalf("check must say the shared path is not writable, and how to fix it: want %q in\n%s", want, out)
	}
}

// TestFullDisk: a deploy that runs out of disk ends failed with its error,
// not running, the live release still serving, and leaves no temporary
// objects in the mirror. The root is a small tmpfs (root needed).
func TestFullDisk(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root, to mount a small tmpfs")
	}
	// A commit with a file FILL has a build that writes until the disk is full.
	a := newApp(t, "python-api", func(cfg string) string {
		return strings.Replace(cfg, "\nmigrate:", "\n  - name: fill\n    run: if [ -f FILL ]; then head -c 300M /dev/zero > fill; fi\n\nmigrate:", 1)
	})
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", a.root).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v %s", err, out)
	}
	// Cleanups run last-registered first: the services (whose pid files
	// are on the tmpfs) are stopped before it is unmounted.
	t.Cleanup(func() {
		a.stopServices()
		_ = exec.Command("umount", "-l", a.root).Run()
	})
	a.writeEnv("backend.env", map[string]string{"VERS_AUTH_TOKEN": testToken, "PORT": itoa(a.port), "DATA_DIR": "../data"})
	a.writeEnv("worker.env", map[string]string{"VERS_AUTH_TOKEN": testToken, "DATA_DIR": "../data"})
	if err := os.Chmod(filepath.Join(a.root, "env"), 0o700); err != nil {
		t.Fatal(err)
	}
	good := a.head()
	a.mustDeploy()

	noTmpObjects := func() {
		t.Helper()
		var left []string
		_ = filepath.WalkDir(filepath.Join(a.root, "repo.git", "objects"), func(p string, d os.DirEntry, err error) error {
			if err == nil && (strings.HasPrefix(d.Name(), "tmp_obj_") || strings.HasPrefix(d.Name(), "tmp_pack_") || strings.HasPrefix(d.Name(), "tmp_idx_")) {
				left = append(left, p)
			}
			return nil
		})
		if len(left) > 0 {
			t.Fatalf("temporary objects left in the mirror: %v", left)
		}
	}
	failed := func(what string) {
		t.Helper()
		r := a.slipway("deploy")
		d := a.lastDeploy()
		if r.code != 1 || d.Outcome != "failed" || !strings.Contains(strings.ToLower(r.stderr+d.Error), "no space left") {
			t.Fatalf("%s: want exit 1 and a failed row saying so: %+v\n%s", what, d, r)
		}
		a.assertServing(good)
		noTmpObjects()
	}

	// A build that fills the disk.
	a.commit("fill the disk", map[string]string{"FILL": "1\n"})
	failed("a build that fills the disk")

	// A fetch that finds the disk full: a commit with 16 MB that does not
	// compress, and a disk left with less than that.
	random := make([]byte, 16<<20)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	a.commit("a big blob", map[string]string{"FILL": "", "blob.bin": string(random)})
	// Leave 4 MB: room for the ledger, not for the blob.
	var fs syscall.Statfs_t
	if err := syscall.Statfs(a.root, &fs); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(a.root, "shared", "filler")
	if free := int64(fs.Bavail) * fs.Bsize; free > 4<<20 {
		testkit.WriteFile(t, filler, string(make([]byte, free-4<<20)), 0o644)
	}
	failed("a fetch on a full disk")

	// With the space back, the same commit deploys.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	a.mustDeploy()
	a.assertServing(a.head())
}

// The host's side of a fleet rollout, as `slipway fleet deploy` drives it
// over ssh: the hold lets only the rollout's deploys through, status says
// the slipway version, and the report at the end records the fleet and
// ends the hold of its key (not another's).
func TestFleetHoldAndReport(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", nil)
	const key = "fleet-board-7"
	if r := a.slipway("lock", "hold", "--key", key, "--ttl", "1m", "-m", "fleet rollout 7 by ops", "--wait"); r.code != 0 {
		t.Fatalf("hold: %s", r)
	}
	if r := a.slipway("deploy"); r.code != 3 || !strings.Contains(r.stderr, "fleet rollout 7") {
		t.Fatalf("a deploy without the key: want exit 3 naming the hold: %s", r)
	}
	a.mustDeploy("--hold", key)
	// Renewed, the hold says what it holds: the fleet's rollout begins so.
	r := a.slipway("lock", "hold", "--key", key, "--ttl", "1m", "-m", "fleet rollout 7 by ops", "--wait", "--json")
	var held struct {
		Key     string `json:"key"`
		Current *struct{ Commit string }
		Safe    string `json:"safe_commit"`
		Slipway string `json:"slipway_version"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &held); err != nil || held.Key != key || held.Current == nil || held.Current.Commit != a.head() || held.Safe != a.head() || held.Slipway == "" {
		t.Fatalf("hold --json: want the key, the live and safe commit %.7s and the version (%v): %s", a.head(), err, r)
	}
	r = a.slipway("status", "--json", "--offline")
	var st struct {
		Slipway string `json:"slipway_version"`
		Lock    *struct {
			Frozen bool
			Holder struct{ Key string }
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.Slipway == "" || st.Lock == nil || st.Lock.Holder.Key != key {
		t.Fatalf("status: want slipway_version and the hold of %s (%v): %s", key, err, r)
	}

	report := func(release string) result {
		t.Helper()
		body := fmt.Sprintf(`{"rollout": 7, "commit": %q, "by": "ops", "vms": [{"name": "web-1", "address": "10.0.0.1", "app": "board", "current_commit": %q, "safe_commit": %q, "version": "dev"}]}`,
			a.head(), a.head(), a.head())
		cmd := exec.Command(slipwayBin, "-c", a.cfgPath, "registry", "put", "--release", release)
		cmd.Stdin = strings.NewReader(body)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		res := result{stdout: stdout.String(), stderr: stderr.String()}
		if ee, ok := err.(*exec.ExitError); ok {
			res.code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if r := report("fleet-board-6"); r.code != 0 || !strings.Contains(r.stdout, "not held for fleet-board-6") {
		t.Fatalf("a report with another key: want the hold kept: %s", r)
	}
	if r := a.slipway("deploy"); r.code != 3 {
		t.Fatalf("still held: want exit 3: %s", r)
	}
	if r := report(key); r.code != 0 || !strings.Contains(r.stdout, "deploys unfrozen") {
		t.Fatalf("the report: %s", r)
	}
	if r := a.slipway("lock", "status"); !strings.Contains(r.stdout, "free") {
		t.Fatalf("after the report the lock is free: %s", r)
	}
	if _, err := os.Stat(filepath.Join(a.root, "run", "fleet.json")); err != nil {
		t.Fatalf("the fleet record: %v", err)
	}
}

// A shared venv deleted from deps/ under the live release: `slipway check`
// fails on it, and `slipway deploy --force`, the fix it names, builds the
// venv again.
func TestMissingSharedVenvIsBuiltAgain(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", nil)
	a.mustDeploy()
	if err := os.RemoveAll(filepath.Join(a.root, "deps")); err != nil {
		t.Fatal(err)
	}
	r := a.slipway("check")
	if r.code == 0 || !strings.Contains(r.stdout+r.stderr, "links trees that are gone") || !strings.Contains(r.stdout+r.stderr, "slipway deploy --force") {
		t.Fatalf("check with the live venv gone:\n%s", r)
	}
	r = a.slipway("deploy", "--force")
	if r.code != 0 || !strings.Contains(r.stderr, "kept in deps/") {
		t.Fatalf("deploy --force did not build the venv again:\n%s", r)
	}
	a.assertServing(a.head())
	if r := a.slipway("check"); strings.Contains(r.stdout+r.stderr, "links trees that are gone") {
		t.Fatalf("check after the fix:\n%s", r)
	}
}

// reuse.share turned off (here for link): the next release copies the
// venv the live one links into a tree of its own, so the shared one can
// go with the last release that links it, and nothing live breaks.
func TestTurningShareOff(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", func(cfg string) string {
		return replaceLine(cfg, "keep_releases:", "keep_releases: 1")
	})
	a.mustDeploy()
	cfg := readFile(t, a.cfgPath)
	testkit.WriteFile(t, a.cfgPath, strings.Replace(cfg, "share: true }", "link: true }", 1), 0o644)
	for i := range 3 {
		a.commit("change", map[string]string{"README": fmt.Sprintf("change %d\n", i)})
		if r := a.mustDeploy(); !strings.Contains(r.stderr, "reused .venv") {
			t.Fatalf("venv not reused:\n%s", r.stderr)
		}
	}
	venv := filepath.Join(a.root, "current", "backend", ".venv")
	if info, err := os.Lstat(venv); err != nil || !info.IsDir() {
		t.Fatalf("the live .venv is not a directory of its own: %v", err)
	}
	if got := testkit.Names(t, filepath.Join(a.root, "deps")); len(got) != 0 {
		t.Fatalf("deps/ = %v; want it empty once no release links the shared venv", got)
	}
	a.assertServing(a.head())
	if out, err := exec.Command(filepath.Join(venv, "bin", "pip"), "--version").CombinedOutput(); err != nil {
		t.Fatalf("the copied venv's pip: %v %s", err, out)
	}
}
