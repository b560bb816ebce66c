//go:build e2e

package e2e

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/testkit"
)

// TestBootstrapPython follows the README's bootstrap on a fresh VM, checks
// the units, deploys the Python example and sees it run under systemd.
func TestBootstrapPython(t *testing.T) {
	t.Parallel()
	vm := Boot(t, "py")
	s := newSite(t, vm, pythonAPI, nil)
	out, took := s.bootstrap()
	t.Logf("figure: slipway install on a fresh VM: %.2fs", took.Seconds())
	for _, want := range []string{"create system user board", "write unit /etc/systemd/system/board-backend.service",
		"write unit /etc/systemd/system/slipway-board-agent.service", "start slipway-board-agent.service"} {
		if !strings.Contains(out, want) {
			t.Errorf("install output lacks %q:\n%s", want, out)
		}
	}
	start := time.Now()
	again := s.mustSlipway("install")
	took = time.Since(start)
	t.Logf("figure: slipway install, second run: %.2fs", took.Seconds())
	if !strings.Contains(again, "nothing to change") {
		t.Fatalf("second install changed something:\n%s", again)
	}
	if dry := s.mustSlipway("install", "--dry-run"); !strings.Contains(dry, "nothing would change") {
		t.Fatalf("dry run after install:\n%s", dry)
	}
	// Owners and modes of the layout and the env files.
	for path, want := range map[string]string{
		"/opt/board/env":             "700 board",
		"/opt/board/env/backend.env": "600 board",
		"/opt/board/env/agent.env":   "600 board",
		"/opt/board/shared/data":     "755 board",
		"/opt/board/releases":        "755 root",
		"/opt/board/repo.git":        "755 root",
	} {
		if got, _ := vm.Run(t, "stat", "-c", "%a %U", path); strings.TrimSpace(got) != want {
			t.Errorf("%s: %q, want %q", path, strings.TrimSpace(got), want)
		}
	}
	if out, code := vm.Run(t, "systemctl", "is-active", "slipway-board-agent.service"); code != 0 {
		t.Fatalf("agent not active: %s", out)
	}

	sha := s.head()
	s.mustSlipway("deploy")
	s.assertServing(sha)
	s.assertActive()
	// Every generated unit passes systemd-analyze verify (now that the
	// release they run exists).
	units := "/etc/systemd/system/board-backend.service /etc/systemd/system/board-worker.service /etc/systemd/system/slipway-board-agent.service"
	if out, code := vm.Run(t, "sh", "-c", "systemd-analyze verify "+units+" 2>&1"); code != 0 || strings.TrimSpace(out) != "" {
		t.Fatalf("systemd-analyze verify: exit %d\n%s", code, out)
	}
	// The services run as the app user, with the release's APP_VERSION.
	if out, _ := vm.Run(t, "systemctl", "show", "-p", "User", "board-backend.service"); strings.TrimSpace(out) != "User=board" {
		t.Fatalf("backend user: %s", out)
	}
	version, _ := vm.Run(t, "cat", "/opt/board/current/VERSION")
	if got := s.serving(); got != strings.TrimSpace(version) {
		t.Fatalf("serving %q, release VERSION %q", got, version)
	}
	// The env file's values reach the service exactly, through systemd.
	pid, _ := vm.Run(t, "systemctl", "show", "-p", "MainPID", "--value", "board-backend.service")
	environ, _ := vm.Run(t, "cat", "/proc/"+strings.TrimSpace(pid)+"/environ")
	for _, want := range []string{"TRICKY=" + trickyValue + "\x00", "TRICKY2=it's $$HOME\x00", "APP_VERSION=" + strings.TrimSpace(version) + "\x00"} {
		if !strings.Contains(environ, want) {
			t.Errorf("backend's environment lacks %q:\n%q", want, environ)
		}
	}
	// The worker writes its heartbeat in shared/ through the hardening.
	testkit.WaitFor(t, 10*time.Second, "worker heartbeat", func() bool {
		out, _ := vm.Run(t, "cat", "/opt/board/shared/data/worker.heartbeat")
		return strings.Contains(out, sha[:7])
	})
	st := s.mustSlipway("status")
	if !strings.Contains(st, "backend    running") || !strings.Contains(st, "health:    ok") {
		t.Fatalf("status:\n%s", st)
	}
	// A one-off command runs as the app user, with the service's env file.
	if out := s.mustSlipway("exec", "--", "id", "-un"); strings.TrimSpace(out) != "board" {
		t.Fatalf("exec runs as %q, want the app user board", out)
	}
	if out := s.mustSlipway("exec", "--", "printenv", "TRICKY"); strings.TrimSuffix(out, "\n") != trickyValue {
		t.Fatalf("exec's TRICKY = %q, want the env file's %q", out, trickyValue)
	}

	// uninstall keeps the data, the secrets and the ledger.
	out = s.mustSlipway("uninstall")
	for _, gone := range []string{"/etc/systemd/system/board-backend.service", "/opt/board/releases", "/opt/board/current"} {
		if _, code := vm.Run(t, "test", "-e", gone); code == 0 {
			t.Errorf("uninstall left %s\n%s", gone, out)
		}
	}
	for _, kept := range []string{"/opt/board/shared/data/board.db", "/opt/board/env/backend.env", "/opt/board/state.db"} {
		if _, code := vm.Run(t, "test", "-e", kept); code != 0 {
			t.Errorf("uninstall removed %s\n%s", kept, out)
		}
	}
	if _, code := vm.Run(t, "systemctl", "is-active", "board-backend.service"); code == 0 {
		t.Error("backend still active after uninstall")
	}
}

// TestBootstrapNode deploys the Node example (npm ci and a build) under systemd.
func TestBootstrapNode(t *testing.T) {
	t.Parallel()
	vm := Boot(t, "node")
	s := newSite(t, vm, nodeWeb, nil)
	s.bootstrap()
	sha := s.head()
	s.mustSlipway("deploy")
	s.assertServing(sha)
	s.assertActive()
	// A change of the sources only: deps reused, bundle rebuilt.
	server := readFile(t, filepath.Join(s.src, "src", "server.js"))
	next := s.commit("comment", map[string]string{"src/server.js": server + "// changed by the e2e test\n"})
	s.push()
	out := s.mustSlipway("deploy")
	if !strings.Contains(out, "reused node_modules") {
		t.Errorf("deps not reused:\n%s", out)
	}
	s.assertServing(next)
	s.assertActive()
}

// TestTimerDeploysPush: timer mode, no daemon; a push is deployed by the timer.
func TestTimerDeploysPush(t *testing.T) {
	t.Parallel()
	vm := Boot(t, "timer")
	s := newSite(t, vm, pythonAPI, func(cfg string) string {
		return cfg + "triggers:\n  poll: 3s\n"
	})
	out, _ := s.bootstrap("--timer")
	if !strings.Contains(out, "slipway-board-deploy.timer") || strings.Contains(out, "agent.service") {
		t.Fatalf("timer install:\n%s", out)
	}
	first := s.head()
	s.waitDeployed(first, 60*time.Second) // the timer's first run deploys the tip
	next := s.commit("readme", map[string]string{"README": "next\n"})
	s.push()
	s.waitDeployed(next, 60*time.Second)
	s.assertActive()
	if out, code := vm.Run(t, "sh", "-c", "systemd-analyze verify /etc/systemd/system/slipway-board-deploy.* 2>&1"); code != 0 || strings.TrimSpace(out) != "" {
		t.Fatalf("verify timer units: %s", out)
	}
	hist := s.mustSlipway("history")
	if strings.Count(hist, "succeeded") != 2 || strings.Count(hist, " timer ") != 2 {
		t.Fatalf("want two deploys by the timer, one per commit:\n%s", hist)
	}
}

// TestWebhookDeploysPush: the agent under systemd deploys a push announced
// by a signed GitHub webhook sent from the host.
func TestWebhookDeploysPush(t *testing.T) {
	t.Parallel()
	vm := Boot(t, "hook")
	s := newSite(t, vm, pythonAPI, func(cfg string) string {
		return cfg + "triggers:\n  poll: 0s\n  webhook:\n    listen: 0.0.0.0:9009\n    secret_env: SLIPWAY_WEBHOOK_SECRET\n"
	})
	s.bootstrap()
	s.mustSlipway("deploy")
	next := s.commit("readme", map[string]string{"README": "next\n"})
	s.push()
	// The payload names the commit, but the agent deploys what it finds at
	// the branch tip itself.
	githubPush(t, "http://"+vm.Addr+":9009/webhook/github", next)
	s.waitDeployed(next, 60*time.Second)
	s.assertActive()
	if !strings.Contains(s.mustSlipway("history"), "webhook") {
		t.Errorf("ledger does not name the webhook trigger:\n%s", s.mustSlipway("history"))
	}
}

// githubPush sends a GitHub push webhook for main, signed with the
// scenarios' secret, to url; it fails the test unless it is accepted.
func githubPush(t *testing.T, url, after string) {
	t.Helper()
	body := []byte(`{"ref":"refs/heads/main","after":"` + after + `","deleted":false}`)
	m := hmac.New(sha256.New, []byte(webhookSecret))
	m.Write(body)
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("e2e-%d", time.Now().UnixNano()))
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(m.Sum(nil)))
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("webhook: %d", resp.StatusCode)
	}
}

// TestBrokenCommitRolledBack: a commit whose backend dies at start is
// rolled back; the deploy's error shows the unit's journal lines; the
// services are active again on the safe commit.
func TestBrokenCommitRolledBack(t *testing.T) {
	t.Parallel()
	vm := Boot(t, "broken")
	s := newSite(t, vm, pythonAPI, nil)
	s.bootstrap()
	good := s.head()
	s.mustSlipway("deploy")
	s.commit("broken backend", map[string]string{"backend/app.py": "import sys\nprint('boom: the database URL is missing', file=sys.stderr, flush=True)\nsys.exit(3)\n"})
	s.push()
	out, code := s.slipway("deploy")
	if code != 1 {
		t.Fatalf("broken deploy: exit %d, want 1\n%s", code, out)
	}
	if !strings.Contains(out, "boom: the database URL is missing") {
		t.Fatalf("the deploy's error does not show the unit's journal lines:\n%s", out)
	}
	s.assertServing(good)
	s.assertActive()
	if s.safeCommit() != good {
		t.Fatalf("safe commit moved: %s", s.safeCommit())
	}
}

// TestRebootComesBack: after a reboot, the agent and the services come back
// on the safe commit by themselves, and status says so.
func TestRebootComesBack(t *testing.T) {
	t.Parallel()
	vm := Boot(t, "reboot")
	s := newSite(t, vm, pythonAPI, nil)
	s.bootstrap()
	sha := s.head()
	s.mustSlipway("deploy")
	vm.Reboot(t)
	testkit.WaitFor(t, 60*time.Second, "services after reboot", func() bool {
		return strings.HasSuffix(s.serving(), "+"+sha[:7])
	})
	s.assertActive()
	if out, code := vm.Run(t, "systemctl", "is-active", "slipway-board-agent.service"); code != 0 {
		t.Fatalf("agent after reboot: %s", out)
	}
	st := s.mustSlipway("status")
	for _, want := range []string{"current:   " + sha[:7], "safe:      " + sha[:7], "health:    ok", "backend    running", "worker     running"} {
		if !strings.Contains(st, want) {
			t.Errorf("status lacks %q:\n%s", want, st)
		}
	}

	// A service stopped with `slipway stop` stays stopped across a reboot
	// (its unit's condition skips it) until `slipway start`.
	s.mustSlipway("stop", "worker")
	vm.Reboot(t)
	testkit.WaitFor(t, 60*time.Second, "the backend after the second reboot", func() bool {
		return strings.HasSuffix(s.serving(), "+"+sha[:7])
	})
	if out, _ := vm.Run(t, "systemctl", "is-active", "board-worker.service"); strings.TrimSpace(out) != "inactive" {
		t.Fatalf("the stopped worker after a reboot: %s", out)
	}
	if out, _ := vm.Run(t, "systemctl", "show", "-p", "ConditionResult", "board-worker.service"); strings.TrimSpace(out) != "ConditionResult=no" {
		t.Fatalf("the worker was not skipped by its condition: %s", out)
	}
	s.mustSlipway("start", "worker")
	s.assertActive()
}

// TestProxyUnderSystemd: the Node example behind the proxy under systemd:
// instances are template units, the proxy is its own unit; deploys under a
// steady load from the host (and an agent restart) drop nothing, and a
// reboot brings the proxy and the serving instance back.
func TestProxyUnderSystemd(t *testing.T) {
	t.Parallel()
	vm := Boot(t, "proxy")
	s := newSite(t, vm, nodeWeb, func(cfg string) string {
		return strings.Replace(cfg, "    port: 3000\n", "    proxy: { listen: 0.0.0.0:3000, health: /health, drain_timeout: 2s }\n", 1)
	})
	out, _ := s.bootstrap()
	if !strings.Contains(out, "start slipway-web-proxy.service") {
		t.Fatalf("install did not start the proxy:\n%s", out)
	}
	s.mustSlipway("deploy")
	active := func() string {
		out, _ := vm.Run(t, "sh", "-c", "systemctl list-units --state=active --no-legend --plain 'web-web@*' | cut -d' ' -f1")
		return strings.TrimSpace(out)
	}
	if a := active(); !strings.HasPrefix(a, "web-web@") || strings.Contains(a, "\n") {
		t.Fatalf("want one active instance unit, got %q", a)
	}
	// A stray instance, as a deploy killed between an instance's start and
	// the switch leaves behind: the next deploy stops and disables it.
	cur := strings.TrimSuffix(strings.TrimPrefix(active(), "web-web@"), ".service")
	vm.MustExec(t, "sh", "-c", fmt.Sprintf("cd /opt/web/run/env && "+
		"sed -e 's/^PORT=.*/PORT=3999/' -e 's/^SLIPWAY_SERVICE=.*/SLIPWAY_SERVICE=web.3999/' web.%s.env > web.3999.env && "+
		"chmod 600 web.3999.env && systemctl enable --quiet --now web-web@3999.service", cur))
	if a := active(); !strings.Contains(a, "web-web@3999.service") {
		t.Fatalf("the stray instance did not start: %q", a)
	}

	var ok, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get("http://" + vm.Addr + ":3000/version")
				if err != nil {
					failed.Add(1)
					t.Logf("request failed: %v", err)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				_ = resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					t.Logf("request failed: %d", resp.StatusCode)
					continue
				}
				ok.Add(1)
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	server := readFile(t, filepath.Join(s.src, "src", "server.js"))
	var sha string
	for i := range 3 {
		sha = s.commit("change", map[string]string{"src/server.js": server + fmt.Sprintf("// change %d\n", i)})
		s.push()
		s.mustSlipway("deploy")
		s.assertServing(sha)
		if i == 1 {
			vm.MustExec(t, "systemctl", "restart", "slipway-web-agent.service")
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("proxy under systemd: %d requests over 3 deploys and an agent restart, %d failed", ok.Load(), failed.Load())
	if failed.Load() != 0 || ok.Load() < 100 {
		t.Fatalf("%d ok, %d failed", ok.Load(), failed.Load())
	}
	if a := active(); strings.Contains(a, "\n") {
		t.Fatalf("old instances still active:\n%s", a)
	}
	if out, _ := vm.Run(t, "systemctl", "is-enabled", "web-web@3999.service"); strings.TrimSpace(out) == "enabled" {
		t.Fatal("the stray instance is still enabled: it would come back at boot")
	}
	vm.Reboot(t)
	testkit.WaitFor(t, 60*time.Second, "the proxy and its instance after the reboot", func() bool {
		return strings.HasSuffix(s.serving(), "+"+sha[:7])
	})
	// The proxy's health checks (every second) see the instance back too.
	testkit.WaitFor(t, 10*time.Second, "proxy status ok", func() bool {
		st := s.mustSlipway("proxy", "status")
		return strings.Contains(st, sha[:12]) && regexp.MustCompile(`\sok\s+\d+\s+false`).MatchString(st)
	})
}

// TestServiceLogsUnderSystemd: `slipway logs --service` reads the unit's
// journal, and follows it with -f; a release whose worker dies in the
// settle window is reported with that run's last output only, not with
// what an earlier run printed.
func TestServiceLogsUnderSystemd(t *testing.T) {
	t.Parallel()
	vm := Boot(t, "logs")
	s := newSite(t, vm, pythonAPI, nil)
	s.bootstrap()
	worker, err := os.ReadFile(filepath.Join(s.src, "worker", "worker.py"))
	if err != nil {
		t.Fatal(err)
	}
	withMain := func(code string) string {
		return strings.Replace(string(worker), "def main():\n", "def main():\n"+code, 1)
	}
	const earlier = "WARNING-FROM-AN-EARLIER-RUN"
	good := s.commit("a warning at start", map[string]string{
		"worker/worker.py": withMain("    print('" + earlier + "', file=sys.stderr, flush=True)\n"),
	})
	s.push()
	s.mustSlipway("deploy")

	if out := s.mustSlipway("logs", "--service", "worker", "-n", "50"); !strings.Contains(out, earlier) {
		t.Fatalf("logs --service worker does not show the journal:\n%s", out)
	}
	// -f follows until it is stopped.
	if out, code := vm.Run(t, "timeout", "3", "slipway", "logs", "--service", "worker", "-f", "-n", "50"); code != 124 || !strings.Contains(out, earlier) {
		t.Fatalf("logs --service worker -f: exit %d, want 124 (still following when stopped)\n%s", code, out)
	}

	// The worker has no health check: the settle window finds it dead.
	s.commit("dies two seconds after start", map[string]string{
		"worker/worker.py": withMain("    def crash():\n        print('v2: crashing now', file=sys.stderr, flush=True)\n        os._exit(1)\n" +
			"    threading.Timer(2.0, crash).start()\n"),
	})
	s.push()
	out, code := s.slipway("deploy")
	if code != 1 || !strings.Contains(out, "service worker is not running") || !strings.Contains(out, "v2: crashing now") {
		t.Fatalf("a release whose worker dies in the settle window: exit %d, want 1 with its last output\n%s", code, out)
	}
	if strings.Contains(out, earlier) {
		t.Fatalf("the failure's last output mixes in an earlier run's:\n%s", out)
	}
	s.assertServing(good)
	s.assertActive()
}
