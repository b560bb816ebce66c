package main_test

import (
	"fmt"
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

// slowMigrate is testdata/crash/slow-migrate.sh: a migrate command that
// leaves processes behind, in and out of its process group.
func slowMigrate(t *testing.T) string {
	return readFile(t, filepath.Join("..", "..", "testdata", "crash", "slow-migrate.sh"))
}

func withSlowMigrate(cfg string) string {
	return strings.Replace(cfg, "  run: .venv/bin/python migrate.py\n", "  run: sh slow-migrate.sh\n", 1)
}

func processAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return pid
}

func TestKill9DuringMigrateEndsItsProcesses(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", withSlowMigrate)
	good := a.commit("slow migrate script", map[string]string{"backend/slow-migrate.sh": slowMigrate(t)})
	a.mustDeploy()
	a.commit("slow", map[string]string{"SLOW": "1\n"})

	cmd := exec.Command(slipwayBin, "-c", a.cfgPath, "deploy")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(a.root, "shared", "data")
	// Both pid files there and holding a pid.
	hasPID := func(name string) bool {
		b, err := os.ReadFile(filepath.Join(data, name))
		_, aerr := strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && aerr == nil
	}
	testkit.WaitFor(t, 60*time.Second, "the migration's processes", func() bool { return hasPID("setsid.pid") && hasPID("group.pid") })
	pids := []int{readPID(t, filepath.Join(data, "setsid.pid")), readPID(t, filepath.Join(data, "group.pid"))}
	t.Cleanup(func() {
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	})
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	for _, p := range pids {
		if !processAlive(p) {
			t.Fatalf("pid %d died with slipway: the test would prove nothing", p)
		}
	}

	r := a.slipway("status")
	if !strings.Contains(r.stderr, "recovered deploy") || !strings.Contains(r.stderr, "process(es) left by `sh slow-migrate.sh`") {
		t.Fatalf("status did not end the migration's processes: %s", r)
	}
	// Gone when recovery returns: neither can write into the data later.
	for _, p := range pids {
		if processAlive(p) {
			t.Errorf("pid %d of the killed migration survived recovery", p)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(a.root, "run", "commands")); len(ents) != 0 {
		t.Errorf("command records left: %v", ents)
	}
	assertRecovered(t, a, good)
}

// runKilled runs slipway with a failpoint and expects it to die of it.
func (a *app) runKilled(point string, args ...string) {
	a.t.Helper()
	cmd := exec.Command(slipwayBin, append([]string{"-c", a.cfgPath}, args...)...)
	cmd.Env = append(os.Environ(), "SLIPWAY_FAILPOINT="+point)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errorsAs(err, &ee) || ee.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		a.t.Fatalf("slipway %v did not die at %s: %v\n%s", args, point, err, out)
	}
}

// envOf returns the environment pid started with, or nil.
func envOf(pid int) map[string]string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return nil
	}
	env := map[string]string{}
	for _, kv := range strings.Split(string(b), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return env
}

// processesOf returns the live processes whose environment ties them to
// the app's root: its services (SLIPWAY_ROOT) and its commands
// (SLIPWAY_RELEASE_DIR under the root, with SLIPWAY_COMMAND_ID).
func (a *app) processesOf() (services, commands []int) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !processAlive(pid) {
			continue
		}
		env := envOf(pid)
		switch {
		case env["SLIPWAY_COMMAND_ID"] != "" && strings.HasPrefix(env["SLIPWAY_RELEASE_DIR"], a.root+"/"):
			commands = append(commands, pid)
		case env["SLIPWAY_ROOT"] == a.root:
			services = append(services, pid)
		}
	}
	return services, commands
}

// assertWhole checks what must hold after any crash and recovery: no
// process of the killed command, a complete current release that is the
// safe one and serves, every service process of that release, no temp
// directories, a free lock. It returns the safe commit.
func (a *app) assertWhole(t *testing.T) string {
	t.Helper()
	services, commands := a.processesOf()
	for _, pid := range commands {
		c, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		t.Errorf("process %d of a killed command still runs: %q", pid, c)
	}
	cur := a.current()
	if cur == "" {
		t.Fatal("no current release")
	}
	rel := filepath.Join(a.root, "releases", cur)
	if _, err := os.Stat(filepath.Join(rel, "REVISION")); err != nil {
		t.Fatalf("current %s is not a complete release: %v", cur, err)
	}
	safe := a.safeCommit()
	if !strings.HasSuffix(cur, safe[:12]) {
		t.Fatalf("current %s is not the safe commit %s", cur, safe[:7])
	}
	version := strings.TrimPrefix(strings.TrimSpace(readFile(t, filepath.Join(rel, "VERSION"))), "APP_VERSION=")
	if got := a.serving(); got != version {
		t.Fatalf("serving %q, want the current release's %q", got, version)
	}
	for _, pid := range services {
		env := envOf(pid)
		if env["SLIPWAY_SERVICE"] == "slipway-proxy" {
			continue
		}
		if env["APP_VERSION"] != version {
			c, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
			t.Errorf("process %d (%q, service %s) runs %s, not the current release's %s", pid, c, env["SLIPWAY_SERVICE"], env["APP_VERSION"], version)
		}
	}
	for _, pattern := range []string{"releases/.tmp-*", "shared/.restore-*", "shared/.slipway-restore*", ".current.tmp-*", "run/commands/*"} {
		m, _ := filepath.Glob(filepath.Join(a.root, pattern))
		// A pruned release's files wait in releases/.tmp-rm-* for the
		// next settle window, by design.
		m = slices.DeleteFunc(m, func(p string) bool { return strings.HasPrefix(filepath.Base(p), ".tmp-rm-") })
		if len(m) > 0 {
			t.Errorf("left behind: %v", m)
		}
	}
	if r := a.slipway("lock", "status"); !strings.Contains(r.stdout, "free") {
		t.Fatalf("stale lock: %s", r)
	}
	return safe
}

// recoverAfter runs the recovery (slipway status) and checks the ledger
// row the killed command left: interrupted, or succeeded when it had
// passed mark-safe.
func (a *app) recoverAfter(t *testing.T, point string, passed bool) deployRow {
	t.Helper()
	r := a.slipway("status")
	if r.code != 0 {
		t.Fatalf("status after recovery: %s", r)
	}
	d := a.lastDeploy()
	want := "interrupted"
	if passed {
		want = "succeeded"
	}
	if d.Outcome != want {
		t.Fatalf("killed at %s: ledger row %d is %s (%s), want %s\n%s", point, d.ID, d.Outcome, d.Error, want, r)
	}
	return d
}

// deploySteps are a deploy's steps, in order; from mark-safe on, the
// deploy stands.
var deploySteps = []string{"lock", "resolve", "plan", "verify-env", "prepare", "build:venv", "build:compile",
	"snapshot", "migrate", "stamp", "switch", "restart", "health", "smoke", "settle", "mark-safe", "post-snapshot", "prune"}

// boundaries are the points between steps: before the first, and after
// each. (Between one step's end and the next one's start nothing is
// written but the next step's log line.)
func boundaries(steps ...string) []string {
	points := []string{"before:" + steps[0]}
	for _, s := range steps {
		points = append(points, "after:"+s)
	}
	return points
}

// TestCrashPoints kills slipway with SIGKILL at every step boundary of a
// deploy, of the rollback of a failed deploy, of `slipway rollback` and of
// `slipway snapshot restore`, one after the other on one host, in restart
// mode and with the backend behind the proxy, and checks after each
// recovery that the host is whole (assertWhole) and that SAFE_COMMIT never
// names a commit that did not pass every check.
func TestCrashPoints(t *testing.T) {
	t.Parallel()
	t.Run("restart mode", func(t *testing.T) { t.Parallel(); crashPoints(t, false) })
	t.Run("proxy mode", func(t *testing.T) { t.Parallel(); crashPoints(t, true) })
}

func crashPoints(t *testing.T, proxied bool) {
	a := newApp(t, "python-api", func(cfg string) string {
		// A broken commit's health fails within 3 s, not the example's 20.
		cfg = strings.Replace(cfg, "  timeout: 20s\n  interval: 200ms\n", "  timeout: 3s\n  interval: 200ms\n", 1)
		if proxied {
			cfg = proxyConfig("1s")(cfg)
		}
		return withSnapshots("  data: [data]\n  post_deploy: true\n")(cfg)
	})
	steps := deploySteps
	rollbackSteps := []string{"switch", "restart", "health", "smoke", "settle"}
	if proxied {
		steps = slices.Insert(slices.Clone(deploySteps), slices.Index(deploySteps, "settle"), "traffic")
		steps = slices.Insert(steps, slices.Index(steps, "mark-safe")+1, "drain")
		rollbackSteps = []string{"switch", "restart", "health", "smoke", "traffic", "settle"}
	}
	a.mustDeploy()
	safe := a.assertWhole(t)
	n := 0
	next := func() string {
		n++
		return a.commit(fmt.Sprintf("change %d", n), map[string]string{"README": fmt.Sprintf("change %d\n", n)})
	}

	t.Run("deploy", func(t *testing.T) {
		a := a.with(t)
		stood := false
		for _, point := range boundaries(steps...) {
			stood = stood || point == "after:mark-safe"
			sha := next()
			t0 := time.Now()
			a.runKilled(point, "deploy")
			t1 := time.Now()
			d := a.recoverAfter(t, point, stood)
			t.Logf("%s: killed after %s, recovered in %s", point, t1.Sub(t0).Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))
			got := a.assertWhole(t)
			switch {
			case stood && got != sha:
				t.Fatalf("killed at %s, after mark-safe: safe is %s, want the new %s", point, got[:7], sha[:7])
			case !stood && got != safe:
				t.Fatalf("killed at %s: safe is %s, want the old %s (deploy %d: %s)", point, got[:7], safe[:7], d.ID, d.Error)
			}
			safe = got
		}
	})

	t.Run("failed deploy's rollback", func(t *testing.T) {
		a := a.with(t)
		for _, point := range []string{"before:rollback", "after:rollback", "before:restore-data", "after:restore-data"} {
			a.edit("health says 500 "+point, "backend/app.py",
				`self.send_body(200, {"status": "ok", "version": APP_VERSION})`,
				`self.send_body(500, {"status": "broken", "version": APP_VERSION})`)
			a.runKilled(point, "deploy")
			a.recoverAfter(t, point, false)
			if got := a.assertWhole(t); got != safe {
				t.Fatalf("killed at %s: safe is %s, want %s", point, got[:7], safe[:7])
			}
			a.edit("healthy again", "backend/app.py",
				`self.send_body(500, {"status": "broken", "version": APP_VERSION})`,
				`self.send_body(200, {"status": "ok", "version": APP_VERSION})`)
		}
	})

	t.Run("rollback", func(t *testing.T) {
		a := a.with(t)
		for _, point := range boundaries(rollbackSteps...) {
			from := next()
			a.mustDeploy()
			a.runKilled(point, "rollback")
			a.recoverAfter(t, point, false)
			// The rollback is finished: the release before, not the one
			// it was rolling away from.
			if got := a.assertWhole(t); got != safe {
				t.Fatalf("killed at %s: safe is %s, want the rollback's target %s (not %s)", point, got[:7], safe[:7], from[:7])
			}
			if r := a.slipway("deploy"); r.code != 0 || !strings.Contains(r.stdout+r.stderr, "marked bad") {
				t.Fatalf("deploy after the rollback: want the rolled-away commit skipped\n%s", r)
			}
		}
	})

	t.Run("snapshot restore", func(t *testing.T) {
		a := a.with(t)
		r := a.slipway("snapshot", "create", "--label", "crash")
		if r.code != 0 {
			t.Fatalf("snapshot create: %s", r)
		}
		id := strings.Fields(r.stdout)[0]
		data := filepath.Join(a.root, "shared", "data")
		for _, point := range append(boundaries("stop", "restore-data", "restart"), "restore:extracting") {
			testkit.WriteFile(t, filepath.Join(data, "marker"), point+"\n", 0o644)
			a.runKilled(point, "snapshot", "restore", id, "--yes")
			a.recoverAfter(t, point, false)
			a.assertWhole(t)
			// All old or all restored: the marker is there whole or gone.
			if b, err := os.ReadFile(filepath.Join(data, "marker")); err == nil && string(b) != point+"\n" {
				t.Fatalf("killed at %s: marker is %q", point, b)
			}
		}
	})
}

// TestPruneRunsInTheSettleWindow: the prune step takes the releases beyond
// keep_releases out of releases/ at once, and the next deploy's settle
// window deletes their files while it waits on the new release. A kill in
// the middle of that deletion is recovered like any kill before mark-safe:
// the safe release serves, and the next deploy finishes the deletion.
func TestPruneRunsInTheSettleWindow(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", func(cfg string) string {
		return replaceLine(cfg, "keep_releases:", "keep_releases: 2")
	})
	releases := filepath.Join(a.root, "releases")
	a.mustDeploy()
	first := a.current()
	a.commit("two", map[string]string{"README": "two\n"})
	a.mustDeploy()
	second := a.current()
	a.commit("three", map[string]string{"README": "three\n"})
	a.mustDeploy()
	good := a.head()
	var prune string
	for _, s := range a.steps(a.lastDeploy().ID) {
		if s.Name == "prune" {
			prune = s.Detail
		}
	}
	if prune != "removed "+first {
		t.Fatalf("the third deploy's prune: %q, want removed %s", prune, first)
	}
	if _, err := os.Stat(filepath.Join(releases, first)); !os.IsNotExist(err) {
		t.Fatalf("the pruned release %s is still a release (%v)", first, err)
	}
	if _, err := os.Stat(filepath.Join(releases, ".tmp-rm-"+first)); err != nil {
		t.Fatalf("the pruned release's files are not left for the next settle window: %v", err)
	}

	// The fourth deploy is killed while its settle window deletes them.
	a.commit("four", map[string]string{"README": "four\n"})
	a.runKilled("release:removing", "deploy")
	killed := a.lastDeploy()
	log := readFile(t, filepath.Join(a.root, "logs", "deploys", itoa(int(killed.ID))+".log"))
	if !strings.Contains(log, " settle\n") || strings.Contains(log, "<== settle ") {
		t.Fatalf("the deletion did not run in the settle window: the killed deploy's log\n%s", log)
	}
	a.recoverAfter(t, "release:removing", false)
	a.assertServing(good)
	if a.safeCommit() != good || !strings.HasSuffix(a.current(), good[:12]) {
		t.Fatalf("after recovery: safe %s, current %s; want %s", a.safeCommit(), a.current(), good[:7])
	}
	if r := a.slipway("lock", "status"); !strings.Contains(r.stdout, "free") {
		t.Fatalf("stale lock: %s", r)
	}

	// The next deploy finishes: the first release's files are gone, the
	// second is taken out, and two releases remain.
	a.mustDeploy()
	entries, _ := os.ReadDir(releases)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{".tmp-rm-" + second, a.current()}
	if !slices.Contains(names, want[0]) || !slices.Contains(names, want[1]) || len(names) != 3 {
		t.Fatalf("releases/ after the next deploy: %v; want the trash of %s, and two releases with %s", names, second, want[1])
	}
	if slices.Contains(names, ".tmp-rm-"+first) {
		t.Fatalf("the first release's files outlived the next settle window: %v", names)
	}
}

// Killed between moving a freshly built venv to deps/ and linking it back
// (reuse.share): the half-built release goes, the next deploy builds a
// venv of its own, its prune takes out the orphaned one, and the deploy
// after that deletes it.
func TestKilledWhileSharingTheVenv(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", nil)
	deps := filepath.Join(a.root, "deps")
	a.runKilled("deps:moved", "deploy")
	orphan := testkit.Names(t, deps)
	if len(orphan) != 1 {
		t.Fatalf("deps/ = %v; want the moved venv", orphan)
	}
	a.mustDeploy()
	a.assertServing(a.head())
	if d := a.history(); len(d) < 2 || d[len(d)-1].Outcome != "interrupted" {
		t.Fatalf("the killed deploy is not recorded as interrupted: %+v", d)
	}
	built := a.current()
	if got := testkit.Names(t, deps); !slices.Equal(got, []string{".tmp-rm-" + orphan[0], built}) {
		t.Fatalf("deps/ = %v; want the orphan in the trash and %s", got, built)
	}
	a.commit("change", map[string]string{"README": "change\n"})
	a.mustDeploy()
	if got := testkit.Names(t, deps); !slices.Equal(got, []string{built}) {
		t.Fatalf("deps/ = %v; want only %s", got, built)
	}
}
