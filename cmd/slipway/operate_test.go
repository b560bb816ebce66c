package main_test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/testkit"
)

// stepNames are the names of a ledger row's steps, in order.
func (a *app) stepNames(id int64) []string {
	var names []string
	for _, s := range a.steps(id) {
		names = append(names, s.Name)
	}
	return names
}

// servicePIDNow is the pid of the service's own process, from status.
func (a *app) servicePIDNow(name string) int {
	a.t.Helper()
	st, _ := a.status()
	pid, _, running := st.service(name)
	if !running {
		return 0
	}
	return pid
}

// TestConfigChangesTakeEffect: with the same commit, a change to an env
// file or to the services' part of slipway.yml restarts the live release
// through its checks without a rebuild (a `reconfigure` row); a change to
// the build rebuilds (a `rebuild` row); a change whose checks fail is not
// tried again until it changes, and never marks the commit bad.
func TestConfigChangesTakeEffect(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", nil)
	a.mustDeploy()
	rel := a.current()
	if r := a.slipway("deploy"); r.code != 0 || !strings.Contains(r.stdout, "nothing to do") {
		t.Fatalf("unchanged: want nothing to do\n%s", r)
	}

	// An env file change.
	before := a.servicePIDNow("backend")
	a.writeEnv("backend.env", map[string]string{"VERS_AUTH_TOKEN": testToken, "PORT": strconv.Itoa(a.port), "DATA_DIR": "../data", "FEATURE_X": "on"})
	r := a.slipway("deploy", "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, "reconfigure") || !strings.Contains(r.stdout, "env:backend") || strings.Contains(r.stdout, "build:") {
		t.Fatalf("dry run after an env change: want a reconfigure naming env:backend, no build\n%s", r)
	}
	r = a.slipway("deploy")
	if r.code != 0 || !strings.Contains(r.stdout, "reconfigured") {
		t.Fatalf("deploy after an env change: want reconfigured\n%s", r)
	}
	d := a.lastDeploy()
	if d.Kind != "reconfigure" || d.Outcome != "succeeded" || a.current() != rel {
		t.Fatalf("want a succeeded reconfigure row on the same release %s: %+v, current %s", rel, d, a.current())
	}
	want := []string{"lock", "resolve", "plan", "verify-env", "restart", "health", "smoke", "settle", "mark-applied"}
	if got := a.stepNames(d.ID); !slices.Equal(got, want) {
		t.Fatalf("reconfigure steps = %v, want %v", got, want)
	}
	after := a.servicePIDNow("backend")
	if after == 0 || after == before || envOf(after)["FEATURE_X"] != "on" {
		t.Fatalf("backend was not restarted with the new env: pid %d -> %d, env %v", before, after, envOf(after)["FEATURE_X"])
	}
	if r := a.slipway("deploy"); r.code != 0 || !strings.Contains(r.stdout, "nothing to do") {
		t.Fatalf("applied: want nothing to do\n%s", r)
	}

	// A smoke check that the live release fails: exit 4 (restarted in
	// place), the commit is not bad, and the same change is not retried.
	cfg, err := os.ReadFile(a.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	good := string(cfg)
	failing := good + "  - name: teapot\n    url: http://127.0.0.1:" + strconv.Itoa(a.port) + "/health\n    expect_status: 418\n"
	testkit.WriteFile(t, a.cfgPath, failing, 0o644)
	if r := a.slipway("deploy", "--dry-run"); !strings.Contains(r.stdout, "reconfigure") || !strings.Contains(r.stdout, "smoke") {
		t.Fatalf("dry run after a smoke change: want a reconfigure naming smoke\n%s", r)
	}
	r = a.slipway("deploy")
	if r.code != 4 || !strings.Contains(r.stderr, "teapot") {
		t.Fatalf("failing reconfigure: want exit 4 naming the check\n%s", r)
	}
	failed := a.lastDeploy()
	if failed.Kind != "reconfigure" || failed.Outcome != "failed" || failed.Bad {
		t.Fatalf("failed reconfigure row: %+v", failed)
	}
	r = a.slipway("deploy")
	if r.code != 0 || !strings.Contains(r.stdout+r.stderr, "failed in deploy "+strconv.FormatInt(failed.ID, 10)) {
		t.Fatalf("the failed change again: want a skip naming deploy %d\n%s", failed.ID, r)
	}
	testkit.WriteFile(t, a.cfgPath, good, 0o644)
	if r := a.slipway("deploy"); r.code != 0 || !strings.Contains(r.stdout, "reconfigured") {
		t.Fatalf("config fixed: want reconfigured\n%s", r)
	}

	// A build change: a new release of the same commit.
	rebuilt := strings.Replace(good, "\nbuild:\n", "\nbuild:\n  - name: extra\n    run: python3 -c pass\n", 1)
	testkit.WriteFile(t, a.cfgPath, rebuilt, 0o644)
	if r := a.slipway("deploy", "--dry-run"); !strings.Contains(r.stdout, "rebuild") || !strings.Contains(r.stdout, "build:extra") {
		t.Fatalf("dry run after a build change: want a rebuild with build:extra\n%s", r)
	}
	r = a.slipway("deploy")
	if r.code != 0 || !strings.Contains(r.stdout, "rebuilt") {
		t.Fatalf("deploy after a build change: want rebuilt\n%s", r)
	}
	if d := a.lastDeploy(); d.Kind != "rebuild" || d.Outcome != "succeeded" || a.current() == rel || !slices.Contains(a.stepNames(d.ID), "build:extra") {
		t.Fatalf("want a rebuild into a new release: %+v, current %s (was %s)", d, a.current(), rel)
	}
	a.assertServing(a.head())
}

// TestStopStartRestart: `slipway restart SERVICE` restarts only it, through
// the checks; `slipway stop` keeps a service stopped through recovery and
// refuses deploys (exit 3) until `slipway start`.
func TestStopStartRestart(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", nil)
	a.mustDeploy()

	backend, worker := a.servicePIDNow("backend"), a.servicePIDNow("worker")
	r := a.slipway("restart", "worker")
	if r.code != 0 || !strings.Contains(r.stdout, "restarted worker") {
		t.Fatalf("restart worker\n%s", r)
	}
	d := a.lastDeploy()
	if d.Kind != "restart" || d.Outcome != "succeeded" {
		t.Fatalf("restart row: %+v", d)
	}
	if got, want := a.stepNames(d.ID), []string{"restart", "health", "smoke", "settle"}; !slices.Equal(got, want) {
		t.Fatalf("restart steps = %v, want %v", got, want)
	}
	if now := a.servicePIDNow("worker"); now == 0 || now == worker {
		t.Fatalf("worker pid %d -> %d: not restarted", worker, now)
	}
	if now := a.servicePIDNow("backend"); now != backend {
		t.Fatalf("backend pid %d -> %d: restarted too", backend, now)
	}
	if r := a.slipway("restart", "nosuch"); r.code != 2 || !strings.Contains(r.stderr, "nosuch") {
		t.Fatalf("restart of an unknown service: want exit 2\n%s", r)
	}

	// Stop, killed right after its step: recovery must not start it.
	a.runKilled("after:stop", "stop", "worker")
	if r := a.slipway("status", "--offline"); r.code != 0 || !strings.Contains(r.stdout, "stopped by `slipway stop`") {
		t.Fatalf("status of a stopped worker: want exit 0 saying so\n%s", r)
	}
	if a.servicePIDNow("worker") != 0 {
		t.Fatal("recovery started the stopped worker")
	}
	// No supervisor is left that could bring it back.
	if _, err := os.Stat(filepath.Join(a.root, "run", "worker.pid")); !os.IsNotExist(err) {
		t.Fatalf("worker.pid still there: %v", err)
	}
	a.commit("next", map[string]string{"README": "next\n"})
	if r := a.slipway("deploy"); r.code != 3 || !strings.Contains(r.stderr, "slipway start") {
		t.Fatalf("deploy while stopped: want exit 3 naming `slipway start`\n%s", r)
	}
	if r := a.slipway("restart"); r.code != 0 || !strings.Contains(r.stdout, "restarted backend") || a.servicePIDNow("worker") != 0 {
		t.Fatalf("a plain restart must leave the stopped worker alone\n%s", r)
	}

	r = a.slipway("start", "worker")
	if r.code != 0 || !strings.Contains(r.stdout, "started worker") || a.servicePIDNow("worker") == 0 {
		t.Fatalf("start worker\n%s", r)
	}
	if d := a.lastDeploy(); d.Kind != "start" || d.Outcome != "succeeded" {
		t.Fatalf("start row: %+v", d)
	}
	a.mustDeploy()
	a.assertServing(a.head())
}

// TestUninstallStopsWhatItStarted: under the process manager and without
// `user:`, `slipway uninstall` stops the services, the proxied instances
// and the proxy before it removes the layout, so no process and no held
// port is left behind.
func TestUninstallStopsWhatItStarted(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", proxyConfig("1s"))
	a.mustDeploy()
	if services, _ := a.processesOf(); len(services) < 3 {
		t.Fatalf("want the backend instance, the worker and the proxy running, got pids %v", services)
	}
	r := a.slipway("uninstall")
	if r.code != 0 || !strings.Contains(r.stdout, "stop slipway-proxy: done") {
		t.Fatalf("uninstall\n%s", r)
	}
	if services, _ := a.processesOf(); len(services) != 0 {
		t.Fatalf("processes of the app left after uninstall: %v", services)
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(a.port))
	if err != nil {
		t.Fatalf("the proxy's port is still held after uninstall: %v", err)
	}
	_ = l.Close()
	for _, gone := range []string{"releases", "deps", "run", "logs", "current"} {
		if _, err := os.Lstat(filepath.Join(a.root, gone)); !os.IsNotExist(err) {
			t.Errorf("%s left after uninstall: %v", gone, err)
		}
	}
}

// TestLogsOfServicesAndARunningDeploy: `slipway logs --service` prints a
// service's log (its requests, here), `slipway logs -f` follows a running
// deploy until it ends, and the logs of stopped proxied instances are
// pruned as releases are.
func TestLogsOfServicesAndARunningDeploy(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", func(cfg string) string {
		cfg = strings.Replace(cfg, "keep_releases: 5", "keep_releases: 1", 1)
		return proxyConfig("1s")(cfg) + "\n" // a migrate that takes a while, below
	})
	a.mustDeploy()
	if code, _ := a.get("/board/tasks", true); code != 200 {
		t.Fatalf("GET /board/tasks = %d", code)
	}
	r := a.slipway("logs", "--service", "backend", "-n", "3")
	if r.code != 0 || !strings.Contains(r.stdout, "/board/tasks") || strings.Count(r.stdout, "\n") > 3 {
		t.Fatalf("logs --service backend -n 3: want at most 3 lines with the request\n%s", r)
	}
	if r := a.slipway("logs", "--service", "nosuch"); r.code != 2 || !strings.Contains(r.stderr, "nosuch") {
		t.Fatalf("logs of an unknown service: want exit 2\n%s", r)
	}

	// A deploy whose migration takes a second, followed while it runs.
	a.edit("slow migrate", "backend/migrate.py", "import", "import time; time.sleep(1)\nimport")
	dep := exec.Command(slipwayBin, "-c", a.cfgPath, "deploy")
	if err := dep.Start(); err != nil {
		t.Fatal(err)
	}
	var id int64
	testkit.WaitFor(t, 30*time.Second, "the deploy's ledger row", func() bool {
		rows := a.history()
		if len(rows) > 0 && rows[0].Outcome == "running" {
			id = rows[0].ID
			return true
		}
		return false
	})
	r = a.slipway("logs", "-f", strconv.FormatInt(id, 10))
	if err := dep.Wait(); err != nil {
		t.Fatalf("deploy: %v", err)
	}
	if d := a.lastDeploy(); d.ID != id || d.Outcome != "succeeded" {
		t.Fatalf("the followed deploy: %+v", d)
	}
	whole, err := os.ReadFile(filepath.Join(a.root, "logs", "deploys", strconv.FormatInt(id, 10)+".log"))
	if err != nil {
		t.Fatal(err)
	}
	if r.code != 0 || r.stdout != string(whole) {
		t.Fatalf("logs -f ended before the deploy, or printed something else than its log\n%s\n--- the log\n%s", r, whole)
	}

	for i := range 3 {
		a.commit("change "+strconv.Itoa(i), map[string]string{"README": strconv.Itoa(i) + "\n"})
		a.mustDeploy()
	}
	logs, _ := filepath.Glob(filepath.Join(a.root, "logs", "backend.*.log"))
	if len(logs) != 2 { // the serving instance's, and keep_releases (1) more
		t.Fatalf("instance logs after 5 deploys with keep_releases 1: %v", logs)
	}
}

// TestExecRunsInTheLiveRelease: `slipway exec` runs a one-off command in
// the service's directory of the live release, with its env file, and
// exits with the command's status.
func TestExecRunsInTheLiveRelease(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", nil)
	a.mustDeploy()
	script := "import os, sys; print(os.getcwd()); print(os.environ.get('VERS_AUTH_TOKEN') == '" + testToken + "'); " +
		"print('SLIPWAY_SERVICE' in os.environ); print(os.path.exists('../data')); sys.exit(3)"
	r := a.slipway("exec", "--", ".venv/bin/python", "-c", script)
	want := filepath.Join(a.root, "releases", a.current(), "backend") + "\nTrue\nFalse\nTrue\n"
	if r.code != 3 || r.stdout != want {
		t.Fatalf("exec: want exit 3 and\n%s\n%s", want, r)
	}
	r = a.slipway("exec", "--service", "worker", "--", "python3", "-c", "import os; print(os.path.basename(os.getcwd()))")
	if r.code != 0 || r.stdout != "worker\n" {
		t.Fatalf("exec --service worker\n%s", r)
	}
	if r := a.slipway("exec", "--", "no-such-command"); r.code != 2 {
		t.Fatalf("exec of a missing command: want exit 2\n%s", r)
	}
}

// TestMessagesSayWhatHappened: --version, aligned step columns whatever
// the build steps' names, `history show ID`, bad commits in history, and
// `proxy status` with the proxy down.
func TestMessagesSayWhatHappened(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", func(cfg string) string {
		return strings.Replace(cfg, "\nbuild:\n", "\nbuild:\n  - name: a-build-step-with-a-rather-long-name\n    run: python3 -c pass\n", 1)
	})
	if r := a.slipway("--version"); r.code != 0 || !strings.HasPrefix(r.stdout, "slipway ") {
		t.Fatalf("--version\n%s", r)
	}
	r := a.mustDeploy()
	col := -1
	for _, line := range strings.Split(r.stderr, "\n") {
		if !strings.HasPrefix(line, "  ✓ ") {
			continue
		}
		// The duration column ends at the same place on every line.
		rest := strings.TrimPrefix(line, "  ✓ ")
		fields := strings.Fields(rest)
		end := strings.Index(rest, fields[1]) + len(fields[1])
		if col >= 0 && end != col {
			t.Fatalf("step columns do not align:\n%s", r.stderr)
		}
		col = end
	}
	d := a.lastDeploy()
	r = a.slipway("history", "show", strconv.FormatInt(d.ID, 10))
	if r.code != 0 || !strings.Contains(r.stdout, "build:a-build-step-with-a-rather-long-name") || !strings.Contains(r.stdout, "mark-safe") {
		t.Fatalf("history show\n%s", r)
	}
	if r := a.slipway("history", "show", "999"); r.code != 2 {
		t.Fatalf("history show of a missing id: want exit 2\n%s", r)
	}
	// A commit rolled back from is skipped as such, not as "failed before".
	a.commit("second", map[string]string{"README": "2\n"})
	a.mustDeploy()
	if r := a.slipway("rollback"); r.code != 0 {
		t.Fatalf("rollback\n%s", r)
	}
	if r := a.slipway("deploy"); r.code != 0 || !strings.Contains(r.stdout, "was rolled back from") || strings.Contains(r.stdout, "failed before") {
		t.Fatalf("deploy after a rollback: want the tip skipped as rolled back from\n%s", r)
	}
	a.edit("broken", "backend/app.py", "import", "import no_such_module\nimport")
	if r := a.slipway("deploy"); r.code != 1 {
		t.Fatalf("a broken commit: want exit 1\n%s", r)
	}
	if r := a.slipway("history"); !strings.Contains(r.stdout, "commit marked bad") {
		t.Fatalf("history must say which commit is marked bad\n%s", r)
	}
	if r := a.slipway("proxy", "status"); r.code != 4 || !strings.Contains(r.stderr, "the proxy is down") {
		t.Fatalf("proxy status with no proxy: want exit 4 saying it is down\n%s", r)
	}
}

// TestSwitchingToTheProxyAndBack: a live service put behind the proxy (a
// config change of the same commit) hands its port over: a new instance
// is started and proven on its own port, then the old service is stopped
// and the proxy binds the port the moment it is free. Taking the service
// out of the proxy again gives the port back to it.
func TestSwitchingToTheProxyAndBack(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", nil)
	a.mustDeploy()
	plain, err := os.ReadFile(a.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	load := startLoad("http://127.0.0.1:"+strconv.Itoa(a.port)+"/health", 4, 2*time.Millisecond, time.Minute)
	testkit.WriteFile(t, a.cfgPath, proxyConfig("1s")(string(plain)), 0o644)
	r := a.slipway("deploy")
	got := load.end()
	m := regexp.MustCompile(`handed over from the service to the proxy in (\d+)ms`).FindStringSubmatch(r.stderr)
	if r.code != 0 || m == nil {
		t.Fatalf("deploy into proxy mode: want exit 0 and the handover\n%s", r)
	}
	gap, _ := strconv.Atoi(m[1])
	t.Logf("handover gap %d ms (SIGTERM to the proxy's bind); users: %s", gap, got)
	if gap > 1000 {
		t.Errorf("handover took %d ms", gap)
	}
	if load.ok.Load() == 0 || load.failed.Load() > 20 {
		t.Errorf("users during the handover: %s", got)
	}
	if d := a.lastDeploy(); d.Kind != "reconfigure" || d.Outcome != "succeeded" {
		t.Fatalf("handover row: %+v", d)
	}
	if code, _ := a.get("/board/tasks", true); code != 200 {
		t.Fatalf("through the proxy: GET /board/tasks = %d", code)
	}
	st, _ := a.status()
	if _, _, running := st.service(deployProxyName); !running {
		t.Fatalf("the proxy does not run: %+v", st)
	}

	// And back to restart mode.
	testkit.WriteFile(t, a.cfgPath, string(plain), 0o644)
	if r := a.slipway("deploy"); r.code != 0 || !strings.Contains(r.stderr, "left the proxy") {
		t.Fatalf("deploy back to restart mode\n%s", r)
	}
	if code, _ := a.get("/board/tasks", true); code != 200 {
		t.Fatalf("without the proxy: GET /board/tasks = %d", code)
	}
	if _, err := os.Stat(filepath.Join(a.root, "run", deployProxyName+".pid")); !os.IsNotExist(err) {
		t.Fatalf("the proxy still runs with no proxied service: %v", err)
	}
	if owner := a.servicePIDNow("backend"); owner == 0 {
		t.Fatal("backend does not run in restart mode")
	}
}

const deployProxyName = "slipway-proxy"

// TestUnrecordedConfigIsApplied: a host whose live release was deployed
// by a slipway that kept no run/applied.json cannot rule out a config
// change: its next deploy restarts the live release through the checks (a
// reconfigure) and writes the record, so a token put into an env file
// meanwhile takes effect.
func TestUnrecordedConfigIsApplied(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", nil)
	a.mustDeploy()
	rel := a.current()
	applied := filepath.Join(a.root, "run", "applied.json")
	if err := os.Remove(applied); err != nil {
		t.Fatal(err)
	}
	before := a.servicePIDNow("backend")
	a.writeEnv("backend.env", map[string]string{"VERS_AUTH_TOKEN": testToken, "PORT": strconv.Itoa(a.port), "DATA_DIR": "../data", "FEATURE_X": "on"})
	r := a.slipway("deploy", "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, "reconfigure") || !strings.Contains(r.stdout, "no record of the config") {
		t.Fatalf("dry run without a record: want a reconfigure that says why\n%s", r)
	}
	r = a.slipway("deploy")
	if d := a.lastDeploy(); r.code != 0 || d.Kind != "reconfigure" || d.Outcome != "succeeded" || a.current() != rel {
		t.Fatalf("deploy without a record: want a succeeded reconfigure of %s: %+v\n%s", rel, d, r)
	}
	if after := a.servicePIDNow("backend"); after == before || envOf(after)["FEATURE_X"] != "on" {
		t.Fatalf("backend was not restarted with the env file: pid %d -> %d", before, after)
	}
	if _, err := os.Stat(applied); err != nil {
		t.Fatalf("the reconfigure wrote no record: %v", err)
	}
	if r := a.slipway("deploy"); r.code != 0 || !strings.Contains(r.stdout, "nothing to do") {
		t.Fatalf("with the record written: want nothing to do\n%s", r)
	}

	// An unrecorded change that fails is not tried again at every deploy
	// (a timer would restart the services every minute); a change to it is.
	if err := os.Remove(applied); err != nil {
		t.Fatal(err)
	}
	a.writeEnv("backend.env", map[string]string{"PORT": strconv.Itoa(a.port), "DATA_DIR": "../data"})
	failed := a.slipway("deploy")
	if failed.code == 0 || !strings.Contains(failed.stderr, "VERS_AUTH_TOKEN") {
		t.Fatalf("an unrecorded reconfigure without the token: want it refused\n%s", failed)
	}
	// (In restart mode the services were restarted with it and are down:
	// the next deploy repairs them, with the env as it is, exit 4.)
	id := a.lastDeploy().ID
	if r := a.slipway("deploy"); !strings.Contains(r.stderr, "that change failed in deploy "+strconv.FormatInt(id, 10)) || a.lastDeploy().Kind == "reconfigure" {
		t.Fatalf("after the failed unrecorded change: want it not tried again\n%s", r)
	}
	a.writeEnv("backend.env", map[string]string{"VERS_AUTH_TOKEN": testToken, "PORT": strconv.Itoa(a.port), "DATA_DIR": "../data"})
	if r := a.slipway("deploy"); r.code != 0 || a.lastDeploy().Outcome != "succeeded" {
		t.Fatalf("the change fixed: want it applied\n%s", r)
	}
	if r := a.slipway("deploy"); r.code != 0 || !strings.Contains(r.stdout, "nothing to do") {
		t.Fatalf("applied: want nothing to do\n%s", r)
	}
}
