package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/testkit"
)

// proxyConfig puts the Node example's web service behind the proxy on the
// app's port; each instance gets a port of its own in $PORT.
func proxyConfig(drain string) func(string) string {
	return func(cfg string) string {
		return regexp.MustCompile(`(?m)^    port: (\d+)$`).ReplaceAllString(cfg,
			"    proxy: { listen: 127.0.0.1:$1, health: /health, drain_timeout: "+drain+" }")
	}
}

// loadgen is a bounded load on one URL from a few clients, recording every
// failure (a transport error or a status other than 200) and every body.
type loadgen struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	failures   map[string]int
	versions   map[string]int
	stop       chan struct{}
	wg         sync.WaitGroup
}

// startLoad sends requests from clients goroutines, each pausing gap
// between requests, until stop or limit.
func startLoad(url string, clients int, gap, limit time.Duration) *loadgen {
	l := &loadgen{failures: map[string]int{}, versions: map[string]int{}, stop: make(chan struct{})}
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	for range clients {
		l.wg.Go(func() {
			for time.Now().Before(deadline) {
				select {
				case <-l.stop:
					return
				default:
				}
				resp, err := client.Get(url)
				if err != nil {
					l.fail(err.Error())
					continue
				}
				body, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				switch {
				case err != nil:
					l.fail(err.Error())
				case resp.StatusCode != 200:
					l.fail(fmt.Sprintf("status %d", resp.StatusCode))
				default:
					l.ok.Add(1)
					l.mu.Lock()
					l.versions[strings.TrimSpace(string(body))]++
					l.mu.Unlock()
				}
				if gap > 0 {
					time.Sleep(gap)
				}
			}
		})
	}
	return l
}

// failureKind names a failure without its ports, so alike ones add up.
func failureKind(what string) string {
	for _, k := range []string{"connection refused", "connection reset", "EOF", "timeout"} {
		if strings.Contains(what, k) {
			return k
		}
	}
	return what
}

func (l *loadgen) fail(what string) {
	what = failureKind(what)
	l.failed.Add(1)
	l.mu.Lock()
	l.failures[what]++
	l.mu.Unlock()
}

// end stops the load and returns a one-line summary.
func (l *loadgen) end() string {
	close(l.stop)
	l.wg.Wait()
	var fs []string
	for k, n := range l.failures {
		fs = append(fs, fmt.Sprintf("%dx %s", n, k))
	}
	sort.Strings(fs)
	return fmt.Sprintf("%d ok, %d failed %v", l.ok.Load(), l.failed.Load(), fs)
}

var versionRE = regexp.MustCompile(`^\d{8}T\d{6}Z\+[0-9a-f]{7}$`)

// touch commits a change of the server's source: a new bundle, new version.
func (a *app) touch(n int) string {
	a.t.Helper()
	src, err := os.ReadFile(filepath.Join(a.src, "src", "server.js"))
	if err != nil {
		a.t.Fatal(err)
	}
	return a.commit(fmt.Sprintf("change %d", n), map[string]string{"src/server.js": string(src) + fmt.Sprintf("// change %d\n", n)})
}

// TestProxyZeroDowntime: under a steady load, 20 deploys, 5 rollbacks, a
// deploy whose new instance never becomes healthy, and the agent killed and
// started again: not one failed request, every answer a version.
func TestProxyZeroDowntime(t *testing.T) {
	t.Parallel()
	apiPort := testkit.FreePort(t)
	a := newApp(t, "node-web", func(cfg string) string {
		return proxyConfig("2s")(cfg) + fmt.Sprintf("\napi:\n  listen: 127.0.0.1:%d\n  token_env: API_TOKEN\n", apiPort)
	})
	a.mustDeploy()
	load := startLoad(fmt.Sprintf("http://127.0.0.1:%d/version", a.port), 4, 2*time.Millisecond, 5*time.Minute)
	served := map[string]bool{a.serving(): true}
	for i := range 20 {
		sha := a.touch(i)
		a.mustDeploy()
		a.assertServing(sha)
		served[a.serving()] = true
		if i%4 == 3 {
			if r := a.slipway("rollback"); r.code != 0 {
				t.Fatalf("rollback: %s", r)
			}
			served[a.serving()] = true
		}
	}
	// A new instance that never becomes healthy: the old one keeps serving.
	before := a.serving()
	src := readFile(t, filepath.Join(a.src, "src", "server.js"))
	a.commit("crashes at start", map[string]string{"src/server.js": "process.exit(7);\n" + src})
	if r := a.slipway("deploy"); r.code != 1 || !strings.Contains(r.stderr, "the old one keeps serving") {
		t.Fatalf("deploy of a crashing instance: want exit 1, old instance serving\n%s", r)
	}
	if a.serving() != before {
		t.Fatalf("serving %q after the failed deploy, want %q", a.serving(), before)
	}
	a.commit("fixed", map[string]string{"src/server.js": src})
	// The agent dies by kill -9 and comes back; the proxy does not notice.
	for i := range 2 {
		agent := exec.Command(slipwayBin, "-c", a.cfgPath, "agent")
		agent.Env = append(os.Environ(), "API_TOKEN="+apiToken)
		if err := agent.Start(); err != nil {
			t.Fatal(err)
		}
		testkit.WaitFor(t, 20*time.Second, "agent", func() bool {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", apiPort))
			if err == nil {
				_ = resp.Body.Close()
			}
			return err == nil
		})
		// A deploy through the agent, which may have started nothing itself.
		sha := a.touch(100 + i)
		a.mustDeploy()
		a.assertServing(sha)
		_ = agent.Process.Signal(syscall.SIGKILL)
		_ = agent.Wait()
		time.Sleep(300 * time.Millisecond)
	}
	summary := load.end()
	t.Logf("proxy mode: %s", summary)
	if load.failed.Load() != 0 || load.ok.Load() < 500 {
		t.Fatalf("requests under load: %s", summary)
	}
	for v := range load.versions {
		if !versionRE.MatchString(v) {
			t.Fatalf("an answer that is not a version: %q", v)
		}
	}
	if len(load.versions) < 20 {
		t.Fatalf("the load saw %d versions over 20 deploys", len(load.versions))
	}
}

// TestRestartModeDropsRequests is the contrast: the same load and deploys
// without the proxy drop requests: the gap the proxy closes exists.
func TestRestartModeDropsRequests(t *testing.T) {
	t.Parallel()
	a := newApp(t, "node-web", nil)
	a.mustDeploy()
	load := startLoad(fmt.Sprintf("http://127.0.0.1:%d/version", a.port), 4, 2*time.Millisecond, 5*time.Minute)
	for i := range 5 {
		a.touch(i)
		a.mustDeploy()
	}
	summary := load.end()
	t.Logf("restart mode, 5 deploys: %s", summary)
	// The port is closed from the old process's stop to the new one's
	// listen: requests then are refused. That is what the proxy is for.
	if load.failed.Load() == 0 || load.failures["connection refused"] == 0 {
		t.Fatalf("restart mode dropped no request over 5 deploys, so the proxy tests prove nothing: %s", summary)
	}
	if load.ok.Load() == 0 {
		t.Fatalf("no request succeeded: %s", summary)
	}
}

// TestProxyPausesTrafficDuringMigrate: with migrate.pause_traffic, the
// proxy holds requests while the migration runs; none fails.
func TestProxyPausesTrafficDuringMigrate(t *testing.T) {
	t.Parallel()
	a := newApp(t, "node-web", func(cfg string) string {
		return proxyConfig("2s")(cfg) + "\nmigrate:\n  run: sleep 1\n  pause_traffic: true\n"
	})
	a.mustDeploy()
	load := startLoad(fmt.Sprintf("http://127.0.0.1:%d/version", a.port), 2, 5*time.Millisecond, time.Minute)
	var sawPause atomic.Bool
	watching := make(chan struct{})
	go func() {
		defer close(watching)
		for range 100 {
			if r := runSlipway(t, a.cfgPath, "proxy", "status", "--json"); regexp.MustCompile(`"paused":\s*true`).MatchString(r.stdout) {
				sawPause.Store(true)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	sha := a.touch(1)
	r := a.mustDeploy()
	<-watching
	summary := load.end()
	if !strings.Contains(r.stderr, "traffic held at the proxy") || !sawPause.Load() {
		t.Fatalf("traffic was not paused during migrate (seen: %v)\n%s", sawPause.Load(), r)
	}
	if load.failed.Load() != 0 {
		t.Fatalf("requests failed: %s", summary)
	}
	a.assertServing(sha)
}

// TestProxyListenHeldRefusesDeploy: the proxy's public address is taken by
// another process: the deploy stops at verify-env, naming it.
func TestProxyListenHeldRefusesDeploy(t *testing.T) {
	t.Parallel()
	a := newApp(t, "node-web", proxyConfig("2s"))
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", a.port))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	r := a.slipway("deploy")
	if r.code != 1 || !strings.Contains(r.stderr, "verify-env") || !strings.Contains(r.stderr, fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("deploy with the proxy's address taken: want exit 1 at verify-env naming this process\n%s", r)
	}
}

// pacedUsers sends a request with the token to url every gap until stop,
// and counts the answers that are not 200: what users would see.
type pacedUsers struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	seen       map[string]int
	stop       chan struct{}
	done       chan struct{}
}

func startUsers(url, token string, gap time.Duration) *pacedUsers {
	u := &pacedUsers{seen: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second}
	go func() {
		defer close(u.done)
		tick := time.NewTicker(gap)
		defer tick.Stop()
		var wg sync.WaitGroup
		defer wg.Wait()
		for {
			select {
			case <-u.stop:
				return
			case <-tick.C:
			}
			wg.Go(func() {
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := client.Do(req)
				what := ""
				if err != nil {
					what = failureKind(err.Error())
				} else {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					if resp.StatusCode != 200 {
						what = fmt.Sprintf("status %d", resp.StatusCode)
					}
				}
				if what == "" {
					u.ok.Add(1)
					return
				}
				u.failed.Add(1)
				u.mu.Lock()
				u.seen[what]++
				u.mu.Unlock()
			})
		}
	}()
	return u
}

func (u *pacedUsers) end() string {
	close(u.stop)
	<-u.done
	return fmt.Sprintf("%d ok, %d failed %v", u.ok.Load(), u.failed.Load(), u.seen)
}

// backendInstance returns the address the proxy sends the backend's
// traffic to.
func (a *app) backendInstance() string {
	a.t.Helper()
	r := a.slipway("proxy", "status", "--json")
	var routes []struct{ Service, Backend string }
	if err := json.Unmarshal([]byte(r.stdout), &routes); err != nil {
		a.t.Fatalf("proxy status: %v\n%s", err, r)
	}
	for _, rt := range routes {
		if rt.Service == "backend" {
			return rt.Backend
		}
	}
	return ""
}

// TestProxySmokeFailureReachesNoUser: behind the proxy, a release whose
// /board/tasks answers 500 while /health is fine fails its smoke checks on
// its own port, before any user reaches it; the instance that served goes
// on serving untouched. A release that dies after the switch, in the
// settle window, is switched back to the held instance (no cold start).
func TestProxySmokeFailureReachesNoUser(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", func(cfg string) string {
		cfg = strings.Replace(cfg, "  settle: 200ms\n", "  settle: 3s\n", 1)
		return proxyConfig("2s")(cfg)
	})
	good := a.head()
	a.mustDeploy()
	serving := a.backendInstance()
	users := startUsers(fmt.Sprintf("http://127.0.0.1:%d/board/tasks", a.port), a.token, 5*time.Millisecond)

	a.edit("tasks answer 500", "backend/app.py", `            self.send_body(200, {"tasks": tasks})`, `            self.send_body(500, {"error": "broken on purpose"})`)
	r := a.slipway("deploy")
	summary := users.end()
	if r.code != 1 || !strings.Contains(r.stderr, "smoke") {
		t.Fatalf("deploy of a smoke-failing release: want exit 1 at smoke\n%s", r)
	}
	t.Logf("users during the deploy of a smoke-failing release: %s", summary)
	if users.failed.Load() != 0 || users.ok.Load() < 50 {
		t.Fatalf("users got errors from a release that failed its smoke checks: %s", summary)
	}
	if got := a.backendInstance(); got != serving {
		t.Fatalf("the proxy sends traffic to %s, want the instance that served, %s", got, serving)
	}
	a.assertServing(good)

	// Passes health and smoke, then dies 1 s after its start: found in the
	// settle window, after the switch; back to the held instance.
	a.edit("tasks fine again", "backend/app.py", `            self.send_body(500, {"error": "broken on purpose"})`, `            self.send_body(200, {"tasks": tasks})`)
	a.edit("dies after 1 s", "backend/app.py", "    ThreadingHTTPServer.allow_reuse_address = True",
		`    threading.Thread(target=lambda: (time.sleep(1), os._exit(1)), daemon=True).start()
    ThreadingHTTPServer.allow_reuse_address = True`)
	r = a.slipway("deploy")
	if r.code != 1 || !strings.Contains(r.stderr, "settle") {
		t.Fatalf("deploy of a release that dies after the switch: want exit 1 at settle\n%s", r)
	}
	if got := a.backendInstance(); got != serving {
		t.Fatalf("after the settle failure the proxy sends traffic to %s, want the held instance %s (no cold start)", got, serving)
	}
	if !strings.Contains(r.stderr, "held since the last switch") {
		t.Errorf("the rollback did not say it went back to the held instance:\n%s", r)
	}
	a.assertServing(good)
	if a.safeCommit() != good {
		t.Fatalf("safe = %s", a.safeCommit())
	}
}

// TestDownProxyIsBroughtBack: the tip is marked bad and then the proxy is
// killed (with its supervisor): status exits 4 and names the proxy down;
// `slipway deploy` skips the bad tip but brings the proxy back, healthy.
func TestDownProxyIsBroughtBack(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", func(cfg string) string {
		// The broken commit's health fails within 3 s, not the example's 20.
		cfg = strings.Replace(cfg, "  timeout: 20s\n  interval: 200ms\n", "  timeout: 3s\n  interval: 200ms\n", 1)
		return proxyConfig("1s")(cfg)
	})
	good := a.head()
	a.mustDeploy()
	a.edit("health says 500", "backend/app.py",
		`self.send_body(200, {"status": "ok", "version": APP_VERSION})`,
		`self.send_body(500, {"status": "broken", "version": APP_VERSION})`)
	if r := a.slipway("deploy"); r.code != 1 {
		t.Fatalf("deploy of a broken commit: %s", r)
	}
	a.killGroup("slipway-proxy")
	testkit.WaitFor(t, 10*time.Second, "the site down", func() bool { return a.serving() == "" })
	r := a.slipway("status", "--offline")
	if r.code != 4 || !strings.Contains(r.stdout, "slipway-proxy DOWN") {
		t.Fatalf("status with the proxy down: want exit 4 naming it\n%s", r)
	}
	r = a.mustDeploy()
	if !strings.Contains(r.stderr, "marked bad") || !strings.Contains(r.stdout, "restarted it, healthy") {
		t.Fatalf("deploy with a bad tip and the proxy down: want it brought back\n%s", r)
	}
	a.assertServing(good)
	if r := a.slipway("status", "--offline"); r.code != 0 {
		t.Fatalf("status after: %s", r)
	}
}
