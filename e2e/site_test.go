//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// The example apps, as the scenarios deploy them.
type example struct {
	dir     string // under examples/
	app     string
	port    int
	envs    map[string]string // env file name -> content
	service []string          // its services
}

// trickyValue has what systemd would otherwise expand or unquote.
const trickyValue = `a "quoted" $HOME ${USER} %h \n\\ back`

const (
	apiToken      = "e2e-api-token-0123456789abcdef"
	webhookSecret = "e2e-webhook-secret-0123456789"
)

var (
	pythonAPI = example{dir: "python-api", app: "board", port: 8000, service: []string{"backend", "worker"}, envs: map[string]string{
		// TRICKY must reach the service byte for byte through systemd's
		// EnvironmentFile= parsing (see TestBootstrapPython).
		"backend.env": "VERS_AUTH_TOKEN=e2e-board-token\nPORT=8000\nDATA_DIR=../data\nTRICKY='" + trickyValue + "'\nTRICKY2=\"it's $$HOME\"\n",
		"worker.env":  "VERS_AUTH_TOKEN=e2e-board-token\nDATA_DIR=../data\n",
	}}
	nodeWeb = example{dir: "node-web", app: "web", port: 3000, service: []string{"web"}, envs: map[string]string{
		// npm cannot reach a registry from the VM: it installs from the
		// cache the test copies in (see site.npmCache), through the deps
		// step's env file (see newSite).
		"web.env": "WEB_AUTH_TOKEN=e2e-web-token\nnpm_config_offline=true\n",
	}}
)

// site is one example app on one VM, and its git repo on the host.
type site struct {
	t   *testing.T
	vm  *VM
	ex  example
	src string // the host's working repo; pushed to the VM's /srv/git/<app>.git
	cfg string // slipway.yml as installed
}

// slipwayBin is slipway built once for the VMs (static: the VM has its own libc).
var slipwayBin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "slipway-e2e-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "slipway")
	// With the crash tests' failpoints (a no-op unless SLIPWAY_FAILPOINT
	// names one: see internal/failpoint).
	cmd := exec.Command("go", "build", "-tags", "failpoints", "-o", bin, "../cmd/slipway")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// newSite makes the host repo of an example and the bare repo on the VM.
// edit rewrites the example's slipway.yml for this scenario.
func newSite(t *testing.T, vm *VM, ex example, edit func(string) string) *site {
	t.Helper()
	s := &site{t: t, vm: vm, ex: ex, src: t.TempDir()}
	if out, err := exec.Command("cp", "-a", filepath.Join("..", "examples", ex.dir)+"/.", s.src).CombinedOutput(); err != nil {
		t.Fatalf("copy example: %v %s", err, out)
	}
	cfg := readFile(t, filepath.Join(s.src, "slipway.yml"))
	cfg = regexp.MustCompile(`(?m)^repo: .*$`).ReplaceAllString(cfg, "repo: /srv/git/"+ex.app+".git")
	cfg = regexp.MustCompile(`(?m)^root: .*\n`).ReplaceAllString(cfg, "")
	// On a systemd host the manager defaults to systemd.
	cfg = regexp.MustCompile(`(?m)^manager: process\n`).ReplaceAllString(cfg, "")
	cfg = strings.Replace(cfg, "branch: main\n", "branch: main\nuser: "+ex.app+"\n", 1)
	cfg += "\napi:\n  listen: 127.0.0.1:9010\n  token_env: SLIPWAY_API_TOKEN\n"
	cfg = strings.Replace(cfg, "env_files:\n", "env_files:\n  agent: agent.env\n", 1)
	if ex.app == nodeWeb.app {
		cfg = strings.Replace(cfg, "    run: npm ci --no-audit --no-fund\n", "    run: npm ci --no-audit --no-fund\n    env_file: web\n", 1)
	}
	if edit != nil {
		cfg = edit(cfg)
	}
	s.cfg = cfg
	s.git("init", "-q", "-b", "main")
	s.git("add", "-A")
	s.git("commit", "-q", "-m", "first")
	vm.MustSSH(t, "git init -q --bare /srv/git/"+ex.app+".git")
	s.push()
	return s
}

func (s *site) git(args ...string) string {
	s.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = s.src
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=e2e", "GIT_AUTHOR_EMAIL=e2e@example.com",
		"GIT_COMMITTER_NAME=e2e", "GIT_COMMITTER_EMAIL=e2e@example.com", "GIT_SSH_COMMAND="+s.vm.SSHCommand())
	out, err := cmd.CombinedOutput()
	if err != nil {
		s.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// push sends the host repo's main to the VM's bare repo, over ssh.
func (s *site) push() {
	s.t.Helper()
	s.git("push", "-q", "-f", "ssh://root@"+s.vm.Addr+"/srv/git/"+s.ex.app+".git", "HEAD:main")
}

// commit changes files (path -> content; "" removes) and returns the sha.
func (s *site) commit(msg string, files map[string]string) string {
	s.t.Helper()
	for p, c := range files {
		full := filepath.Join(s.src, p)
		if c == "" {
			_ = os.Remove(full)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			s.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			s.t.Fatal(err)
		}
	}
	s.git("add", "-A")
	s.git("commit", "-q", "-m", msg)
	return s.head()
}

func (s *site) head() string { return s.git("rev-parse", "HEAD") }

// bootstrap follows the README's "Bootstrap a VM" steps literally: copy the
// binary, write the config and the env files, `slipway install`. It returns
// install's output and how long it took.
func (s *site) bootstrap(installArgs ...string) (string, time.Duration) {
	s.t.Helper()
	bin, err := slipwayBin()
	if err != nil {
		s.t.Fatal(err)
	}
	s.vm.CopyTo(s.t, bin, "/usr/local/bin/slipway", 0o755)
	s.writeRemote("/etc/slipway/slipway.yml", s.cfg, 0o644)
	root := "/opt/" + s.ex.app
	s.vm.MustSSH(s.t, "install -d -m 0700 "+root+"/env")
	envs := map[string]string{"agent.env": "SLIPWAY_API_TOKEN=" + apiToken + "\nSLIPWAY_WEBHOOK_SECRET=" + webhookSecret + "\n"}
	for name, content := range s.ex.envs {
		envs[name] = content
	}
	for name, content := range envs {
		s.writeRemote(root+"/env/"+name, content, 0o600)
	}
	start := time.Now()
	out := s.vm.MustSSH(s.t, "slipway install "+strings.Join(installArgs, " "))
	took := time.Since(start)
	if s.ex.app == nodeWeb.app {
		s.npmCache()
	}
	return out, took
}

// writeRemote writes a file on the VM (through a local temp file and scp).
func (s *site) writeRemote(path, content string, mode os.FileMode) {
	s.t.Helper()
	local := filepath.Join(s.t.TempDir(), filepath.Base(path))
	if err := os.WriteFile(local, []byte(content), mode); err != nil {
		s.t.Fatal(err)
	}
	s.vm.MustSSH(s.t, "install -d "+filepath.Dir(path))
	s.vm.CopyTo(s.t, local, path, mode)
}

// npmCache fills an npm cache on the host (the registry is reachable from
// here, not from the VMs) and copies it into the app user's home on the VM
// (~/.npm, npm's default cache), for `npm ci` with npm_config_offline.
func (s *site) npmCache() {
	s.t.Helper()
	cache := npmCacheDir(s.t)
	tar := filepath.Join(s.t.TempDir(), "npm-cache.tar")
	if out, err := exec.Command("tar", "-C", cache, "-cf", tar, ".").CombinedOutput(); err != nil {
		s.t.Fatalf("tar npm cache: %v %s", err, out)
	}
	s.vm.CopyTo(s.t, tar, "/tmp/npm-cache.tar", 0o644)
	s.vm.MustSSH(s.t, "install -d -o web -g web /opt/web/home/.npm && tar -C /opt/web/home/.npm -xf /tmp/npm-cache.tar && chown -R web:web /opt/web/home/.npm")
}

var npmCacheOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "slipway-e2e-npm")
	if err != nil {
		return "", err
	}
	work := filepath.Join(dir, "work")
	cache := filepath.Join(dir, "cache")
	if out, err := exec.Command("cp", "-a", filepath.Join("..", "examples", "node-web"), work).CombinedOutput(); err != nil {
		return "", fmt.Errorf("%v %s", err, out)
	}
	cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--cache", cache)
	cmd.Dir = work
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm ci: %v %s", err, out)
	}
	return cache, nil
})

func npmCacheDir(t *testing.T) string {
	t.Helper()
	dir, err := npmCacheOnce()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// slipway runs slipway on the VM and returns its output and exit code.
func (s *site) slipway(args ...string) (string, int) {
	s.t.Helper()
	return s.vm.Run(s.t, append([]string{"slipway"}, args...)...)
}

// mustSlipway runs slipway on the VM and fails the test unless it exits 0.
func (s *site) mustSlipway(args ...string) string {
	s.t.Helper()
	out, code := s.slipway(args...)
	if code != 0 {
		s.t.Fatalf("slipway %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// serving is the version the app serves on the VM ("" when it does not answer).
func (s *site) serving() string {
	s.t.Helper()
	out, code := s.vm.Run(s.t, "curl", "-sf", "--max-time", "5", fmt.Sprintf("http://127.0.0.1:%d/version", s.ex.port))
	if code != 0 {
		return ""
	}
	return strings.TrimSpace(out)
}

func (s *site) assertServing(sha string) {
	s.t.Helper()
	if v := s.serving(); !strings.HasSuffix(v, "+"+sha[:7]) {
		s.t.Fatalf("serving %q, want commit %s", v, sha[:7])
	}
}

// waitDeployed waits until the app serves commit sha and the deploy that
// switched to it has finished: sha is the safe commit. The backend serves
// the new release before the deploy restarts the workers and marks it safe,
// so a test that looks at the units must wait for both.
func (s *site) waitDeployed(sha string, limit time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if strings.HasSuffix(s.serving(), "+"+sha[:7]) && s.safeCommit() == sha {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	out, _ := s.slipway("status")
	hist, _ := s.slipway("history")
	s.t.Fatalf("commit %s not served and safe after %s (serving %q)\n%s\n%s", sha[:7], limit, s.serving(), out, hist)
}

// assertActive checks that every service's unit is active under systemd.
func (s *site) assertActive() {
	s.t.Helper()
	for _, svc := range s.ex.service {
		unit := s.ex.app + "-" + svc + ".service"
		if out, code := s.vm.Run(s.t, "systemctl", "is-active", unit); code != 0 {
			j, _ := s.vm.Run(s.t, "journalctl", "-u", unit, "-n", "30", "--no-pager")
			s.t.Fatalf("%s is %s\n%s", unit, strings.TrimSpace(out), j)
		}
	}
}

func (s *site) safeCommit() string {
	s.t.Helper()
	out, _ := s.vm.Run(s.t, "cat", "/opt/"+s.ex.app+"/run/SAFE_COMMIT")
	return strings.TrimSpace(out)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
