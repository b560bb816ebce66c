package main_test

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/testkit"
)

const (
	apiToken   = "api-token-0123456789abcdef"
	hookSecret = "hook-secret-42"
)

// agentApp is an app with `slipway agent` running for it.
type agentApp struct {
	*app
	apiPort, hookPort int
	env               []string // more of the agent's environment
	cmd               *exec.Cmd
	logs              *bytes.Buffer
	mu                sync.Mutex
}

// agentConfig appends the agent's settings to an app's config.
func agentConfig(poll string, apiPort, hookPort int, branch string) func(string) string {
	return func(cfg string) string {
		cfg = replaceLine(cfg, "branch:", "branch: "+branch)
		return cfg + fmt.Sprintf(`
triggers:
  poll: %s
  webhook:
    listen: 127.0.0.1:%d
    secret_env: HOOK_SECRET
api:
  listen: 127.0.0.1:%d
  token_env: API_TOKEN
`, poll, hookPort, apiPort)
	}
}

func newAgentApp(t *testing.T, poll string, edit func(string) string) *agentApp {
	t.Helper()
	apiPort, hookPort := testkit.FreePort(t), testkit.FreePort(t)
	a := newApp(t, "python-api", func(cfg string) string {
		if edit != nil {
			cfg = edit(cfg)
		}
		return agentConfig(poll, apiPort, hookPort, "master")(cfg)
	})
	testkit.Git(t, a.src, "branch", "-m", "master")
	return &agentApp{app: a, apiPort: apiPort, hookPort: hookPort}
}

// start runs the agent and waits until its API answers.
func (g *agentApp) start(t testing.TB) {
	t.Helper()
	g.cmd = exec.Command(slipwayBin, "-c", g.cfgPath, "agent")
	g.cmd.Env = append(os.Environ(), "API_TOKEN="+apiToken, "HOOK_SECRET="+hookSecret)
	g.cmd.Env = append(g.cmd.Env, g.env...)
	g.logs = &bytes.Buffer{}
	g.cmd.Stderr = &lockedWriter{w: g.logs, mu: &g.mu}
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd := g.cmd
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	testkit.WaitFor(t, 20*time.Second, "the agent's API", func() bool {
		code, _ := g.api("GET", "/health", "", false)
		return code == 200
	})
}

func (g *agentApp) agentLogs() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.logs.String()
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// api calls the agent's HTTP API.
func (g *agentApp) api(method, path, body string, token bool) (int, string) {
	req, _ := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", g.apiPort, path), strings.NewReader(body))
	if token {
		req.Header.Set("Authorization", "Bearer "+apiToken)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// hook sends a webhook to the agent's webhook listener.
func (g *agentApp) hook(provider string, body []byte, headers map[string]string) int {
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/webhook/%s", g.hookPort, provider), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

func sign(body []byte, secret string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// deliveries numbers the webhook deliveries of tests that run in parallel.
var deliveries atomic.Int64

func githubHeaders(event string, body []byte, secret string) map[string]string {
	return map[string]string{
		"X-GitHub-Event":      event,
		"X-GitHub-Delivery":   fmt.Sprintf("delivery-%d-%d", time.Now().UnixNano(), deliveries.Add(1)),
		"X-Hub-Signature-256": "sha256=" + sign(body, secret),
	}
}

func payload(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "webhooks", "github", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pushBody(ref string) []byte {
	return []byte(fmt.Sprintf(`{"ref":%q,"before":"%s","after":"%s","checkout_sha":"%s","deleted":false}`,
		ref, strings.Repeat("1", 40), strings.Repeat("2", 40), strings.Repeat("2", 40)))
}

// deploysCount is the number of ledger rows.
func (g *agentApp) deploysCount(t testing.TB) int {
	code, body := g.api("GET", "/deploys?limit=10000", "", true)
	if code != 200 {
		t.Fatalf("GET /deploys: %d %s", code, body)
	}
	var ds []json.RawMessage
	_ = json.Unmarshal([]byte(body), &ds)
	return len(ds)
}

// waitChecks waits until the agent has checked the branch n more times
// (its status's last_check moved n times).
func (g *agentApp) waitChecks(t testing.TB, n int) {
	t.Helper()
	lastCheck := func() string {
		_, body := g.api("GET", "/status", "", true)
		var st struct {
			Agent struct {
				LastCheck string `json:"last_check"`
			} `json:"agent"`
		}
		_ = json.Unmarshal([]byte(body), &st)
		return st.Agent.LastCheck
	}
	seen := lastCheck()
	for i := range n {
		testkit.WaitFor(t, 30*time.Second, fmt.Sprintf("check %d of %d", i+1, n), func() bool {
			now := lastCheck()
			if now != "" && now != seen {
				seen = now
				return true
			}
			return false
		})
	}
}

func (g *agentApp) waitServing(t testing.TB, sha string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !strings.HasSuffix(g.serving(), "+"+sha[:7]) || g.safeCommit() != sha {
		if time.Now().After(deadline) {
			_, deploys := g.api("GET", "/deploys?limit=20", "", true)
			t.Fatalf("timed out waiting for commit %s serving; serving %q\nledger: %s\nagent log:\n%s",
				sha[:7], g.serving(), deploys, g.agentLogs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestAgentWebhooksDeployTheTip(t *testing.T) {
	t.Parallel()
	g := newAgentApp(t, "0", nil)
	g.start(t)

	push := payload(t, "push-branch-master.json")
	if code := g.hook("github", push, githubHeaders("push", push, hookSecret)); code != 202 {
		t.Fatalf("signed GitHub push: %d", code)
	}
	g.waitServing(t, g.head())

	c2 := g.commit("two", map[string]string{"README": "two\n"})
	body := pushBody("refs/heads/master")
	if code := g.hook("gitlab", body, map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": hookSecret}); code != 202 {
		t.Fatalf("GitLab push: %d", code)
	}
	g.waitServing(t, c2)

	c3 := g.commit("three", map[string]string{"README": "three\n"})
	if code := g.hook("gitea", body, map[string]string{"X-Gitea-Event": "push", "X-Gitea-Delivery": "d-1", "X-Gitea-Signature": sign(body, hookSecret)}); code != 202 {
		t.Fatalf("Gitea push: %d", code)
	}
	g.waitServing(t, c3)

	// Nothing below may deploy c4.
	g.commit("four", map[string]string{"README": "four\n"})
	before := g.deploysCount(t)
	ping := payload(t, "ping.json")
	tagDeleted := payload(t, "push-tag-deleted.json")
	otherBranch := pushBody("refs/heads/main")
	replayed := githubHeaders("push", push, hookSecret)
	for _, tc := range []struct {
		name     string
		provider string
		body     []byte
		headers  map[string]string
		want     int
	}{
		{"forged", "github", push, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + strings.Repeat("0", 64)}, 401},
		{"unsigned", "github", push, map[string]string{"X-GitHub-Event": "push"}, 401},
		{"wrong secret", "github", push, githubHeaders("push", push, "not-the-secret"), 401},
		{"gitlab wrong token", "gitlab", body, map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "nope"}, 401},
		{"gitea forged", "gitea", body, map[string]string{"X-Gitea-Event": "push", "X-Gitea-Signature": sign(body, "x")}, 401},
		{"oversized", "github", bytes.Repeat([]byte("a"), 1<<20+1), githubHeaders("push", bytes.Repeat([]byte("a"), 1<<20+1), hookSecret), 413},
		{"ping", "github", ping, githubHeaders("ping", ping, hookSecret), 200},
		{"tag deleted", "github", tagDeleted, githubHeaders("push", tagDeleted, hookSecret), 202},
		{"other branch", "gitlab", otherBranch, map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": hookSecret}, 202},
		{"not a push", "github", ping, githubHeaders("issues", ping, hookSecret), 202},
	} {
		if code := g.hook(tc.provider, tc.body, tc.headers); code != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, code, tc.want)
		}
	}
	// A replayed delivery: the first is accepted once it is new... use a
	// delivery already seen instead: send the same one twice.
	if code := g.hook("github", push, replayed); code != 202 {
		t.Fatalf("first delivery: %d", code)
	}
	g.waitServing(t, g.head()) // that one was real: c4 goes live
	after := g.deploysCount(t)
	if code := g.hook("github", push, replayed); code != 200 {
		t.Fatalf("replayed delivery: %d", code)
	}
	// The handler decides before it answers, and only an accepted push
	// wakes the agent: the answer (and the metric) is the event.
	if _, body := g.api("GET", "/metrics", "", true); !strings.Contains(body, `slipway_webhook_requests_total{app="board",provider="github",result="duplicate"} 1`) {
		t.Fatalf("the replay is not counted as a duplicate:\n%s", body)
	}
	if n := g.deploysCount(t); n != after || after != before+1 {
		t.Fatalf("deploys: %d before, %d after the one valid push, %d after the replay", before, after, n)
	}
	if !strings.Contains(g.agentLogs(), "webhook refused") {
		t.Fatalf("401s are not logged:\n%s", g.agentLogs())
	}
}

func TestAgentAPIAuthAndMetrics(t *testing.T) {
	t.Parallel()
	g := newAgentApp(t, "0", nil)
	g.start(t)
	for _, r := range []struct{ method, path string }{
		{"GET", "/status"}, {"GET", "/deploys"}, {"GET", "/deploys/1"}, {"GET", "/deploys/1/log"},
		{"POST", "/deploys"}, {"POST", "/rollback"}, {"GET", "/feed/events"}, {"GET", "/commits"},
		{"POST", "/commits"}, {"GET", "/registry/vms"}, {"POST", "/registry/vms"}, {"GET", "/metrics"}, {"GET", "/nope"},
	} {
		if code, _ := g.api(r.method, r.path, "{}", false); code != 401 {
			t.Errorf("%s %s without token: %d, want 401", r.method, r.path, code)
		}
	}
	// The dashboard's page, signed out: the app's name and no more.
	if code, body := g.api("GET", "/", "", false); code != 200 || !strings.Contains(body, "Sign in for status") || strings.Contains(body, g.head()[:7]) {
		t.Errorf("GET / signed out: %d\n%s", code, body)
	}
	code, body := g.api("POST", "/deploys", `{}`, true)
	if code != 202 || !strings.Contains(body, `"id"`) {
		t.Fatalf("POST /deploys: %d %s", code, body)
	}
	var acc struct{ ID int64 }
	_ = json.Unmarshal([]byte(body), &acc)
	g.waitServing(t, g.head())
	// The ledger and the metrics are written right after SAFE_COMMIT.
	testkit.WaitFor(t, 10*time.Second, "the deploy recorded", func() bool {
		_, body := g.api("GET", "/metrics", "", true)
		return strings.Contains(body, `slipway_deploys_total{app="board",kind="deploy",outcome="succeeded"} 1`)
	})
	code, body = g.api("GET", "/deploys/"+strconv.FormatInt(acc.ID, 10), "", true)
	if code != 200 || !strings.Contains(body, `"succeeded"`) || !strings.Contains(body, `"mark-safe"`) {
		t.Fatalf("GET /deploys/%d: %d %s", acc.ID, code, body)
	}
	if code, body = g.api("GET", "/metrics", "", true); code != 200 ||
		!strings.Contains(body, `slipway_deploys_total{app="board",kind="deploy",outcome="succeeded"} 1`) ||
		!strings.Contains(body, "slipway_current_commit_info") || !strings.Contains(body, "slipway_last_success_timestamp_seconds") {
		t.Fatalf("metrics: %d\n%s", code, body)
	}
	if code, body = g.api("POST", "/commits", `{"commitId":"commit-abc","vmId":"vm-1","label":"before migration","agent":"t","tags":["pre"]}`, true); code != 201 {
		t.Fatalf("POST /commits: %d %s", code, body)
	}
	if code, body = g.api("GET", "/commits", "", true); code != 200 || !strings.Contains(body, "commit-abc") {
		t.Fatalf("GET /commits: %d %s", code, body)
	}
	// A restore point recorded from outside is in the snapshot ledger.
	if r := g.slipway("snapshot", "list"); r.code != 0 || !strings.Contains(r.stdout, "commit-abc") || !strings.Contains(r.stdout, "external") {
		t.Fatalf("snapshot list after POST /commits: %s", r)
	}
	if code, body = g.api("GET", "/registry/vms", "", true); code != 200 || !strings.Contains(body, g.head()) {
		t.Fatalf("the agent did not register its versions: %d %s", code, body)
	}
	if code, _ = g.api("POST", "/deploys", `{"commit":"--upload-pack=x"}`, true); code != 400 {
		t.Fatalf("bad commit: %d", code)
	}
	if code, _ = g.api("POST", "/deploys", `{"unknown":1}`, true); code != 400 {
		t.Fatalf("unknown field: %d", code)
	}
	if code, _ = g.api("POST", "/deploys", strings.Repeat(" ", 1<<20+10)+"{}", true); code != 413 {
		t.Fatalf("oversized body: %d", code)
	}
}

func TestAgentBurstOfPushesCoalesces(t *testing.T) {
	t.Parallel()
	g := newAgentApp(t, "0", nil)
	g.start(t)
	if code, body := g.api("POST", "/deploys", `{}`, true); code != 202 {
		t.Fatalf("first deploy: %d %s", code, body)
	}
	g.waitServing(t, g.head())
	before := g.deploysCount(t)

	push := payload(t, "push-branch-master.json")
	var newest string
	for i := range 50 {
		if i%10 == 0 {
			newest = g.commit("burst "+itoa(i), map[string]string{"README": itoa(i) + "\n"})
		}
		if code := g.hook("github", push, githubHeaders("push", push, hookSecret)); code != 202 {
			t.Fatalf("push %d: %d", i, code)
		}
		time.Sleep(20 * time.Millisecond)
	}
	g.waitServing(t, newest)
	// Once nothing runs or waits, nothing more can come: the tip is live.
	testkit.WaitFor(t, 30*time.Second, "the agent's queue to empty", func() bool {
		_, body := g.api("GET", "/status", "", true)
		return !strings.Contains(body, `"running_deploy"`) && !strings.Contains(body, `"waiting_deploy"`)
	})
	g.waitServing(t, newest)
	if n := g.deploysCount(t) - before; n > 2 || n < 1 {
		_, deploys := g.api("GET", "/deploys?limit=5", "", true)
		t.Fatalf("%d deploys for the burst, want 1 or 2\n%s", n, deploys)
	}
}

func TestAgentPollingAndBadCommits(t *testing.T) {
	t.Parallel()
	g := newAgentApp(t, "1s", nil)
	g.start(t)
	g.waitServing(t, g.head())
	good := g.head()

	bad := g.edit("break syntax", "backend/app.py", "def main():", "def main(:")
	testkit.WaitFor(t, 60*time.Second, "the bad commit's failed deploy", func() bool {
		d := g.lastDeploy()
		return d.Commit == bad && d.Outcome == "failed"
	})
	n := g.deploysCount(t)
	g.waitChecks(t, 3) // three more polls, each finding the bad tip
	if m := g.deploysCount(t); m != n {
		t.Fatalf("the bad commit was retried: %d deploys, then %d", n, m)
	}
	g.assertServing(good)
	fixed := g.edit("fix syntax", "backend/app.py", "def main(:", "def main():")
	g.waitServing(t, fixed)

	// The agent's log is JSON, one object a line, each naming the app once.
	lines := strings.Split(strings.TrimSpace(g.agentLogs()), "\n")
	for _, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("agent log line is not JSON: %q", line)
		}
		if n := strings.Count(line, `"app":`); n != 1 || m["app"] != "board" {
			t.Fatalf("agent log line names the app %d times: %s", n, line)
		}
	}
}

func TestAgentRefusesToStartWithoutItsSecrets(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		edit func(cfg, dir string) string
		env  []string
		says string
	}{
		{"no token", func(cfg, _ string) string { return cfg }, []string{"HOOK_SECRET=" + hookSecret}, "api.token_env"},
		{"world-readable token file", func(cfg, dir string) string {
			f := filepath.Join(dir, "token")
			_ = os.WriteFile(f, []byte(apiToken), 0o644)
			_ = os.Chmod(f, 0o644)
			return strings.Replace(cfg, "token_env: API_TOKEN", "token_file: "+f, 1)
		}, []string{"HOOK_SECRET=" + hookSecret}, "api.token_file"},
		{"webhook without its secret", func(cfg, _ string) string { return cfg }, []string{"API_TOKEN=" + apiToken}, "secret_env"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			g := newAgentApp(t, "0", func(cfg string) string { return cfg })
			text := tc.edit(readFile(t, g.cfgPath), dir)
			testkit.WriteFile(t, g.cfgPath, text, 0o644)
			cmd := exec.Command(slipwayBin, "-c", g.cfgPath, "agent")
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, tc.env...)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errorsAs(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), tc.says) {
				t.Fatalf("want exit 2 naming %s: %v\n%s", tc.says, err, out)
			}
		})
	}
}

func TestAgentFeedStreamsStepEvents(t *testing.T) {
	t.Parallel()
	g := newAgentApp(t, "0", nil)
	g.start(t)
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/feed/events?follow=1", g.apiPort), nil)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
	if code, body := g.api("POST", "/deploys", `{}`, true); code != 202 {
		t.Fatalf("POST /deploys: %d %s", code, body)
	}
	steps := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	deadline := time.AfterFunc(60*time.Second, func() { _ = resp.Body.Close() })
	defer deadline.Stop()
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "data: ") {
			continue
		}
		var ev struct{ Step, Phase string }
		_ = json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev)
		if ev.Phase == "end" {
			steps[ev.Step] = true
		}
		if ev.Step == "prune" && ev.Phase == "end" {
			break
		}
	}
	for _, s := range []string{"resolve", "plan", "prepare", "build:venv", "migrate", "switch", "restart", "health", "smoke", "mark-safe"} {
		if !steps[s] {
			t.Errorf("no end event for step %s (got %v)", s, steps)
		}
	}
}

func TestCLIGoesThroughTheAgent(t *testing.T) {
	t.Parallel()
	g := newAgentApp(t, "0", nil)
	g.start(t)
	r := g.slipway("deploy")
	if r.code != 0 || !strings.Contains(r.stderr, "through the running agent") || !strings.Contains(r.stderr, "mark-safe") {
		t.Fatalf("deploy through the agent: %s", r)
	}
	g.assertServing(g.head())
	if r := g.slipway("status"); r.code != 0 || !strings.Contains(r.stdout, "agent:") || !strings.Contains(r.stdout, "health:    ok") {
		t.Fatalf("status through the agent: %s", r)
	}
	first := g.head()
	second := g.commit("two", map[string]string{"README": "two\n"})
	if r := g.slipway("deploy"); r.code != 0 {
		t.Fatalf("second deploy through the agent: %s", r)
	}
	g.assertServing(second)
	if r := g.slipway("rollback"); r.code != 0 || !strings.Contains(r.stderr, "through the running agent") {
		t.Fatalf("rollback through the agent: %s", r)
	}
	g.assertServing(first)
	g.edit("health says 500", "backend/app.py",
		`self.send_body(200, {"status": "ok", "version": APP_VERSION})`,
		`self.send_body(500, {"status": "broken", "version": APP_VERSION})`)
	if r := g.slipway("deploy"); r.code != 1 || !strings.Contains(r.stderr, "failed at step health") {
		t.Fatalf("failing deploy through the agent: %s", r)
	}
	if r := g.slipway("lock", "acquire", "-m", "incident"); r.code != 0 {
		t.Fatalf("freeze: %s", r)
	}
	if r := g.slipway("deploy", "--force"); r.code != 3 || !strings.Contains(r.stderr, "incident") {
		t.Fatalf("frozen deploy through the agent: %s", r)
	}
	if r := g.slipway("status"); !strings.Contains(r.stdout, "FROZEN") {
		t.Fatalf("status does not say frozen: %s", r)
	}
}

// TestAgentReadsTheConfigAgain: with an agent running, an edited env file
// or slipway.yml counts from the next deploy on, as without one; a config
// that no longer loads is logged, and the agent goes on with the last one
// that did.
func TestAgentReadsTheConfigAgain(t *testing.T) {
	t.Parallel()
	g := newAgentApp(t, "0", nil)
	g.start(t)
	if r := g.slipway("deploy"); r.code != 0 {
		t.Fatalf("deploy through the agent: %s", r)
	}
	g.writeEnv("backend.env", map[string]string{"VERS_AUTH_TOKEN": testToken, "PORT": itoa(g.port), "DATA_DIR": "../data", "FEATURE": "on"})
	r := g.slipway("deploy")
	if r.code != 0 || !strings.Contains(r.stderr, "through the running agent") || g.lastDeploy().Kind != "reconfigure" {
		t.Fatalf("an env file change through the agent: want a reconfigure: %s\n%+v", r, g.lastDeploy())
	}
	if env := envOf(g.servicePID("backend")); env["FEATURE"] != "on" {
		t.Fatalf("the backend runs without the new variable: %v", env)
	}

	good := readFile(t, g.cfgPath)
	testkit.WriteFile(t, g.cfgPath, good+"no_such_key: 1\n", 0o644)
	if code, body := g.api("POST", "/deploys", `{}`, true); code != http.StatusAccepted && code != http.StatusOK {
		t.Fatalf("POST /deploys = %d %s", code, body)
	}
	testkit.WaitFor(t, 30*time.Second, "the agent to log that the config no longer loads", func() bool {
		return strings.Contains(g.agentLogs(), "the config no longer loads") && strings.Contains(g.agentLogs(), "no_such_key")
	})
	edited := strings.Replace(strings.Replace(good, "  interval: 200ms\n", "  interval: 100ms\n", 1), "  poll: 0\n", "  poll: 1h\n", 1)
	if edited == good {
		t.Fatal("the config edit changed nothing")
	}
	testkit.WriteFile(t, g.cfgPath, edited, 0o644)
	if r := g.slipway("deploy"); r.code != 0 || g.lastDeploy().Kind != "reconfigure" {
		t.Fatalf("a health change through the agent: want a reconfigure: %s\n%+v", r, g.lastDeploy())
	}
	testkit.WaitFor(t, 10*time.Second, "the agent to say triggers need a restart", func() bool {
		return strings.Contains(g.agentLogs(), "restart the agent to apply the change of triggers")
	})
}

func TestAgentKill9DuringDeployIsRecoveredAtStart(t *testing.T) {
	t.Parallel()
	g := newAgentApp(t, "0", func(cfg string) string {
		return strings.Replace(cfg, "build:\n", "build:\n  - name: slow\n    run: sh -c 'if [ -f SLOW ]; then sleep 60; fi'\n", 1)
	})
	g.start(t)
	if code, _ := g.api("POST", "/deploys", `{}`, true); code != 202 {
		t.Fatal("first deploy")
	}
	good := g.head()
	g.waitServing(t, good)
	g.commit("slow", map[string]string{"SLOW": "1\n"})
	if code, _ := g.api("POST", "/deploys", `{}`, true); code != 202 {
		t.Fatal("second deploy")
	}
	waitStep(t, g.app, "build:slow")
	_ = g.cmd.Process.Signal(syscall.SIGKILL)
	_ = g.cmd.Wait()

	g.start(t)
	testkit.WaitFor(t, 30*time.Second, "recovery", func() bool { return g.lastDeploy().Outcome == "interrupted" })
	g.assertServing(good)
	if r := g.slipway("lock", "status"); !strings.Contains(r.stdout, "free") {
		t.Fatalf("lock: %s", r)
	}
}

func TestAgentSIGTERMWaitsForTheRunningDeploy(t *testing.T) {
	t.Parallel()
	g := newAgentApp(t, "0", func(cfg string) string {
		return strings.Replace(cfg, "build:\n", "build:\n  - name: slow\n    run: sleep 2\n", 1)
	})
	g.start(t)
	if code, _ := g.api("POST", "/deploys", `{}`, true); code != 202 {
		t.Fatal("deploy")
	}
	waitStep(t, g.app, "build:slow")
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	if err := g.cmd.Wait(); err != nil {
		t.Fatalf("agent exit: %v\n%s", err, g.agentLogs())
	}
	g.assertServing(g.head())
	if d := g.lastDeploy(); d.Outcome != "succeeded" {
		t.Fatalf("ledger: %+v", d)
	}
}

// Under systemd the agent is Type=notify: it says READY=1 once it listens.
func TestAgentNotifiesSystemdWhenReady(t *testing.T) {
	t.Parallel()
	g := newAgentApp(t, "0", nil)
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	cmd := exec.Command(slipwayBin, "-c", g.cfgPath, "agent")
	cmd.Env = append(os.Environ(), "API_TOKEN="+apiToken, "HOOK_SECRET="+hookSecret, "NOTIFY_SOCKET="+sock)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 256)
	n, err := conn.Read(buf)
	if err != nil || string(buf[:n]) != "READY=1" {
		t.Fatalf("notify: %q %v", buf[:n], err)
	}
	// READY means listening: the API answers at once.
	if code, _ := g.api("GET", "/health", "", false); code != 200 {
		t.Fatalf("health right after READY: %d", code)
	}
}

func TestAgentNotifiesAndBacksOff(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		_ = json.NewDecoder(r.Body).Decode(&m)
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
	}))
	defer srv.Close()
	received := func() []map[string]any {
		mu.Lock()
		defer mu.Unlock()
		return append([]map[string]any(nil), got...)
	}
	g := newAgentApp(t, "0", func(cfg string) string {
		return cfg + "notify:\n  - url: " + srv.URL + "/hooks/secret-token\n"
	})
	g.start(t)
	if code, _ := g.api("POST", "/deploys", `{}`, true); code != 202 {
		t.Fatal("deploy")
	}
	g.waitServing(t, g.head())
	testkit.WaitFor(t, 10*time.Second, "the success notification", func() bool { return len(received()) == 1 })
	if m := received()[0]; m["outcome"] != "succeeded" || m["app"] != "board" || m["commit"] != g.head() || m["text"] == "" {
		t.Fatalf("notification: %v", m)
	}

	bad := g.edit("health says 500", "backend/app.py",
		`self.send_body(200, {"status": "ok", "version": APP_VERSION})`,
		`self.send_body(500, {"status": "broken", "version": APP_VERSION})`)
	for range 2 {
		if code, _ := g.api("POST", "/deploys", `{"commit":"`+bad+`","force":true}`, true); code != 202 {
			t.Fatal("forced deploy")
		}
		testkit.WaitFor(t, 60*time.Second, "the failed deploy", func() bool {
			d := g.lastDeploy()
			return d.Commit == bad && d.Outcome == "rolled-back"
		})
	}
	// The repeat is held back, and says so: that log line is the event.
	testkit.WaitFor(t, 30*time.Second, "the repeated failure's notification to be held back", func() bool {
		return strings.Contains(g.agentLogs(), "notification held back")
	})
	ms := received()
	if len(ms) != 2 || ms[1]["outcome"] != "rolled-back" || ms[1]["error"] == "" {
		t.Fatalf("want one notification of the repeated failure, got %d: %v", len(ms)-1, ms)
	}
	if strings.Contains(g.agentLogs(), "secret-token") {
		t.Fatal("the notify URL's token is in the agent's logs")
	}
}

func TestAgentBacksOffWhenTheRemoteIsDown(t *testing.T) {
	t.Parallel()
	g := newAgentApp(t, "1s", func(cfg string) string { return cfg })
	text := replaceLine(readFile(t, g.cfgPath), "repo:", "repo: "+filepath.Join(t.TempDir(), "gone.git"))
	testkit.WriteFile(t, g.cfgPath, text, 0o644)
	g.start(t)
	g.waitChecks(t, 2) // a failed check at ~1 s, the next after 5 s of backoff
	if n := strings.Count(g.agentLogs(), "cannot reach the remote"); n != 1 {
		t.Fatalf("the remote error was logged %d times, want once:\n%s", n, g.agentLogs())
	}
	code, body := g.api("GET", "/status", "", true)
	if code != 200 || !strings.Contains(body, "remote_error") {
		t.Fatalf("status: %d %s", code, body)
	}
}

// TestAgentBringsBackADownRelease: nothing new to deploy, and the live
// release goes down for good (its worker's supervisor killed too): the
// agent's next poll restarts it and proves it healthy.
func TestAgentBringsBackADownRelease(t *testing.T) {
	t.Parallel()
	g := newAgentApp(t, "1s", nil)
	g.start(t)
	g.waitServing(t, g.head())
	testkit.WaitFor(t, 30*time.Second, "the first deploy to finish", func() bool { return g.safeCommit() == g.head() })
	// Killed alone, the worker is brought back by its supervisor, and
	// /metrics counts it.
	st, _ := g.status()
	pid, _, _ := st.service("worker")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "the restart in /metrics", func() bool {
		_, body := g.api("GET", "/metrics", "", true)
		return strings.Contains(body, `slipway_service_restarts_total{app="board",service="worker"} 1`) &&
			strings.Contains(body, `slipway_service_up{app="board",service="worker"} 1`)
	})
	g.killGroup("worker")
	testkit.WaitFor(t, 10*time.Second, "the worker down in /metrics, or already back", func() bool {
		_, body := g.api("GET", "/metrics", "", true)
		return strings.Contains(body, `slipway_service_up{app="board",service="worker"} 0`) || strings.Contains(g.lastDeploy().Error, "restarted it")
	})
	testkit.WaitFor(t, 30*time.Second, "the agent to restart the worker", func() bool {
		d := g.lastDeploy()
		return d.Outcome == "skipped" && strings.Contains(d.Error, "restarted it, healthy")
	})
	if st, r := g.status(); !st.Healthy {
		t.Fatalf("status after the agent's repair: %s", r)
	}
}

// A repair that brought the release back does not hold the next one back:
// the pause between repairs is for repairs that do not help. The agent
// polls never here, so no healthy check comes between the two falls.
func TestAgentRepairsASecondFallAtOnce(t *testing.T) {
	t.Parallel()
	g := newAgentApp(t, "0", nil)
	g.start(t)
	push := payload(t, "push-branch-master.json")
	wake := func() {
		t.Helper()
		if code := g.hook("github", push, githubHeaders("push", push, hookSecret)); code != 202 {
			t.Fatalf("signed GitHub push: %d", code)
		}
	}
	wake()
	g.waitServing(t, g.head())
	var last int64
	for fall := 1; fall <= 2; fall++ {
		g.killGroup("worker")
		testkit.WaitFor(t, 10*time.Second, "the worker down", func() bool {
			st, _ := g.status()
			_, _, running := st.service("worker")
			return !running
		})
		wake()
		testkit.WaitFor(t, 15*time.Second, fmt.Sprintf("the repair of fall %d", fall), func() bool {
			d := g.lastDeploy()
			return d.ID > last && d.Outcome == "skipped" && strings.Contains(d.Error, "restarted it, healthy")
		})
		last = g.lastDeploy().ID
	}
}

// TestAPIRollbackRefusesLooseEnv: a rollback asked of the agent (the API,
// the dashboard) with an env file others may read is refused with 409 and
// the chmod that fixes it, before it is queued, as the CLI refuses it with
// exit 2; nothing changes. Fixed, it goes through.
func TestAPIRollbackRefusesLooseEnv(t *testing.T) {
	t.Parallel()
	g := newAgentApp(t, "0", nil)
	g.start(t)
	first := g.head()
	if r := g.slipway("deploy"); r.code != 0 {
		t.Fatalf("deploy: %s", r)
	}
	g.commit("two", map[string]string{"README": "two\n"})
	if r := g.slipway("deploy"); r.code != 0 {
		t.Fatalf("second deploy: %s", r)
	}
	before := g.deploysCount(t)
	env := filepath.Join(g.root, "env", "backend.env")
	if err := os.Chmod(env, 0o644); err != nil {
		t.Fatal(err)
	}
	code, body := g.api("POST", "/rollback", "{}", true)
	if code != http.StatusConflict || !strings.Contains(body, "chmod 0600 "+env) {
		t.Fatalf("POST /rollback with a loose env file = %d %s; want 409 naming the chmod", code, body)
	}
	if n := g.deploysCount(t); n != before {
		t.Fatalf("the refused rollback left a ledger row: %d rows, were %d", n, before)
	}
	g.assertServing(g.head())
	if err := os.Chmod(env, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, body := g.api("POST", "/rollback", "{}", true); code != http.StatusAccepted {
		t.Fatalf("POST /rollback once fixed = %d %s", code, body)
	}
	g.waitServing(t, first)
}
