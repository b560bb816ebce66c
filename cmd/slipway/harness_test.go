package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/testkit"
)

// The tests drive the real slipway binary, built once, against real git
// repositories and real app processes on loopback.

var slipwayBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "slipway-bin-")
	if err != nil {
		panic(err)
	}
	slipwayBin = filepath.Join(dir, "slipway")
	preferSystemPython()
	// With the failpoints of the crash tests (internal/failpoint): a
	// no-op unless SLIPWAY_FAILPOINT names one.
	out, err := exec.Command("go", "build", "-tags", "failpoints", "-o", slipwayBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build slipway: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// preferSystemPython takes pyenv's directories out of PATH when python3 is
// one of its shims and the system has its own python3. A shim is a chain of
// bash scripts that costs about 0.4 s of CPU at every start of python3: the
// example worker's start would keep burning CPU while slipway runs its later
// steps, on a 2-core machine, and skew every figure. The Debian VMs that
// slipway deploys to (and the e2e VMs) run /usr/bin/python3.
func preferSystemPython() {
	p, err := exec.LookPath("python3")
	if err != nil || !strings.Contains(p, "/.pyenv/") {
		return
	}
	if exec.Command("/usr/bin/python3", "-c", "import venv, ensurepip").Run() != nil {
		return // no system python3 that can make a venv: keep the shim
	}
	var keep []string
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		if !strings.Contains(dir, "/.pyenv/") {
			keep = append(keep, dir)
		}
	}
	_ = os.Setenv("PATH", strings.Join(keep, string(filepath.ListSeparator)))
}

// app is one example app in a git repository, deployed into its own root.
type app struct {
	t       testing.TB
	name    string // python-api | node-web (examples/), go-ok (testdata/apps/)
	src     string // the git working tree slipway deploys from
	root    string
	cfgPath string
	port    int
	token   string
	bin     string // the slipway binary run; "" is the one built from this tree
}

const testToken = "test-token-7f3a"

// newApp copies examples/<name> into a fresh git repository and writes a
// slipway.yml for it with its own root and port. edit, if set, changes the
// config text before it is written.
func newApp(t testing.TB, name string, edit func(string) string) *app {
	t.Helper()
	base := t.TempDir()
	a := &app{t: t, name: name, src: filepath.Join(base, "src"), root: filepath.Join(base, "root"), port: testkit.FreePort(t), token: testToken}
	dir := filepath.Join("..", "..", "examples", name)
	if _, err := os.Stat(dir); err != nil {
		dir = filepath.Join("..", "..", "testdata", "apps", name) // the tests' own
	}
	copyDir(t, dir, a.src)
	testkit.Git(t, a.src, "init", "-q", "-b", "main")
	testkit.Git(t, a.src, "add", "-A")
	testkit.Git(t, a.src, "commit", "-q", "-m", "initial")

	cfg, err := os.ReadFile(filepath.Join(a.src, "slipway.yml"))
	if err != nil {
		t.Fatal(err)
	}
	defPort := map[string]string{"python-api": "8000", "node-web": "3000", "go-ok": "8080"}[name]
	text := withPort(string(cfg), defPort, a.port)
	text = replaceLine(text, "repo:", "repo: "+a.src)
	text = replaceLine(text, "root:", "root: "+a.root)
	// A short settle window, unless the test sets one: the default 5 s
	// would dominate every test's deploys.
	text = strings.Replace(text, "\nhealth:\n", "\nhealth:\n  settle: 200ms\n", 1)
	if edit != nil {
		text = edit(text)
	}
	a.cfgPath = filepath.Join(base, "slipway.yml")
	testkit.WriteFile(t, a.cfgPath, text, 0o644)

	envDir := filepath.Join(a.root, "env")
	if err := os.MkdirAll(envDir, 0o700); err != nil {
		t.Fatal(err)
	}
	switch name {
	case "python-api":
		a.writeEnv("backend.env", map[string]string{"VERS_AUTH_TOKEN": testToken, "PORT": strconv.Itoa(a.port), "DATA_DIR": "../data"})
		a.writeEnv("worker.env", map[string]string{"VERS_AUTH_TOKEN": testToken, "DATA_DIR": "../data"})
	case "node-web":
		a.writeEnv("web.env", map[string]string{"WEB_AUTH_TOKEN": testToken, "PORT": strconv.Itoa(a.port)})
	}
	t.Cleanup(a.stopServices)
	return a
}

// with returns a copy of a that reports to t (for subtests).
func (a *app) with(t *testing.T) *app {
	c := *a
	c.t = t
	return &c
}

func (a *app) writeEnv(file string, vars map[string]string) {
	var b strings.Builder
	for k, v := range vars {
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	testkit.WriteFile(a.t, filepath.Join(a.root, "env", file), b.String(), 0o600)
}

// stopServices kills whatever the test's deploys left running.
func (a *app) stopServices() {
	pids, _ := filepath.Glob(filepath.Join(a.root, "run", "*.pid"))
	for _, p := range pids {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var pf struct {
			PID  int `json:"pid"`
			PGID int `json:"pgid"`
		}
		if json.Unmarshal(b, &pf) == nil {
			if pf.PGID > 0 {
				_ = syscall.Kill(-pf.PGID, syscall.SIGKILL)
			} else if pf.PID > 0 {
				_ = syscall.Kill(pf.PID, syscall.SIGKILL)
			}
		}
	}
}

// result is one run of the slipway binary.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// slipway runs the binary with the app's config.
func (a *app) slipway(args ...string) result {
	a.t.Helper()
	bin := a.bin
	if bin == "" {
		bin = slipwayBin
	}
	return runBinary(a.t, bin, a.cfgPath, args...)
}

func runSlipway(t testing.TB, cfg string, args ...string) result {
	t.Helper()
	return runBinary(t, slipwayBin, cfg, args...)
}

func runBinary(t testing.TB, bin, cfg string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"-c", cfg}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run slipway: %v", err)
	}
	return r
}

// mustDeploy deploys and fails the test unless it exits 0.
func (a *app) mustDeploy(args ...string) result {
	a.t.Helper()
	r := a.slipway(append([]string{"deploy"}, args...)...)
	if r.code != 0 {
		a.t.Fatalf("deploy: %s", r)
	}
	return r
}

// withPort puts port in place of the port def where the config names it
// (host:def, or def after a key), and nowhere else: a temporary directory's
// random name may hold its digits (…1146658000 became …11466530272, and
// the test's first deploy found no repository there).
func withPort(text, def string, port int) string {
	re := regexp.MustCompile(`([: ])` + def + `\b`)
	return re.ReplaceAllString(text, "${1}"+strconv.Itoa(port))
}

// commit writes files into the repository and commits them; "" deletes.
func (a *app) commit(msg string, files map[string]string) string {
	a.t.Helper()
	return testkit.Commit(a.t, a.src, msg, files)
}

// edit rewrites one file of the repository with a replacement and commits.
func (a *app) edit(msg, file, old, new string) string {
	a.t.Helper()
	b, err := os.ReadFile(filepath.Join(a.src, file))
	if err != nil {
		a.t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		a.t.Fatalf("%s does not contain %q", file, old)
	}
	return a.commit(msg, map[string]string{file: strings.Replace(string(b), old, new, 1)})
}

func (a *app) head() string {
	return strings.TrimSpace(testkit.Git(a.t, a.src, "rev-parse", "HEAD"))
}

// get requests path from the app; with token it sends the bearer token.
func (a *app) get(path string, token bool) (int, string) {
	a.t.Helper()
	return a.request(http.MethodGet, path, "", token)
}

// post sends body as JSON to path with the app's token.
func (a *app) post(path, body string) (int, string) {
	a.t.Helper()
	return a.request(http.MethodPost, path, body, true)
}

// request calls the app on its port; a failed call gives status 0 and the error.
func (a *app) request(method, path, body string, token bool) (int, string) {
	a.t.Helper()
	req, _ := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", a.port, path), strings.NewReader(body))
	if token {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// serving returns the version the app's /health reports ("" if down).
func (a *app) serving() string {
	a.t.Helper()
	code, body := a.get("/health", false)
	if code != 200 {
		return ""
	}
	var h struct{ Version string }
	_ = json.Unmarshal([]byte(body), &h)
	return h.Version
}

// servingCommit asserts the app serves commit sha.
func (a *app) assertServing(sha string) {
	a.t.Helper()
	v := a.serving()
	if !strings.HasSuffix(v, "+"+sha[:7]) {
		a.t.Fatalf("serving version %q, want commit %s", v, sha[:7])
	}
}

func (a *app) safeCommit() string {
	b, _ := os.ReadFile(filepath.Join(a.root, "run", "SAFE_COMMIT"))
	return strings.TrimSpace(string(b))
}

func (a *app) current() string {
	target, err := os.Readlink(filepath.Join(a.root, "current"))
	if err != nil {
		return ""
	}
	return filepath.Base(target)
}

// history returns the ledger through `slipway history --json`.
func (a *app) history() []deployRow {
	a.t.Helper()
	r := a.slipway("history", "--json", "-n", "100")
	if r.code != 0 {
		a.t.Fatalf("history: %s", r)
	}
	var rows []deployRow
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		a.t.Fatalf("history json: %v\n%s", err, r.stdout)
	}
	return rows
}

type deployRow struct {
	Started        time.Time
	ID             int64
	Trigger        string
	Actor          string
	Commit         string
	PreviousCommit string
	Release        string
	Outcome        string
	Error          string
	Bad            bool
	Kind           string
}

func (a *app) lastDeploy() deployRow {
	a.t.Helper()
	rows := a.history()
	if len(rows) == 0 {
		a.t.Fatal("ledger is empty")
	}
	return rows[0]
}

func (a *app) servicePID(name string) int {
	b, err := os.ReadFile(filepath.Join(a.root, "run", name+".pid"))
	if err != nil {
		return 0
	}
	var pf struct {
		PID int `json:"pid"`
	}
	_ = json.Unmarshal(b, &pf)
	return pf.PID
}

func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		for _, skip := range []string{"node_modules", ".venv", "dist", ".slipway", "__pycache__"} {
			if rel == skip || strings.HasPrefix(rel, skip+"/") || strings.Contains(rel, "/"+skip) {
				if info.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

func replaceLine(text, prefix, line string) string {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, prefix) {
			lines[i] = line
		}
	}
	return strings.Join(lines, "\n")
}

// waitFor polls cond until it holds or the timeout passes.

// runIn runs slipway without a config flag in dir.
func runIn(t testing.TB, dir string, args ...string) result {
	t.Helper()
	cmd := exec.Command(slipwayBin, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }

func TestWithPortLeavesPathsAlone(t *testing.T) {
	in := "repo: /tmp/TestX1146658000/001/src\nport: 8000\nurl: http://127.0.0.1:8000/health\n"
	want := "repo: /tmp/TestX1146658000/001/src\nport: 41234\nurl: http://127.0.0.1:41234/health\n"
	if got := withPort(in, "8000", 41234); got != want {
		t.Fatalf("withPort:\n%s\nwant:\n%s", got, want)
	}
}
