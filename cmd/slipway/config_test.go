package main_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/testkit"
)

// Every config mistake exits 2 with file:line:col, for every command.
func TestConfigMistakesNameTheirPlace(t *testing.T) {
	t.Parallel()
	valid := "app: board\nrepo: /srv/git/board.git\nroot: ROOT\nmanager: process\nservices:\n  web:\n    command: ./web\n"
	cases := []struct {
		name, yaml, where, says string
	}{
		{"unknown key", valid + "servics: {}\n", ":8:1:", "servics"},
		{"wrong type", strings.Replace(valid, "manager: process\n", "manager: process\nkeep_releases: many\n", 1), ":5:16:", "keep_releases"},
		{"missing app", strings.Replace(valid, "app: board\n", "", 1), ":1:1:", "app"},
		{"missing repo", strings.Replace(valid, "repo: /srv/git/board.git\n", "", 1), ":1:1:", "repo"},
		{"bad duration", valid + "health:\n  url: http://127.0.0.1:1/health\n  timeout: 5 minutes\n", ":10:12:", "duration"},
		{"bad app name", strings.Replace(valid, "app: board", "app: Board_1", 1), ":1:6:", "app"},
		{"bad service name", strings.Replace(valid, "  web:", "  Web App:", 1), ":6:3:", "Web App"},
		{"branch that is an option", strings.Replace(valid, "root: ROOT\n", "root: ROOT\nbranch: --upload-pack=touch /tmp/x\n", 1), ":4:9:", "not a valid branch"},
		{"branch with ..", strings.Replace(valid, "root: ROOT\n", "root: ROOT\nbranch: a..b\n", 1), ":4:9:", "not a valid branch"},
		{"branch with NUL", strings.Replace(valid, "root: ROOT\n", "root: ROOT\nbranch: \"a\\0b\"\n", 1), ":4:9:", "not a valid branch"},
		{"file over the size cap", valid + "# " + strings.Repeat("x", 1<<20) + "\n", ":1:1:", "larger than 1024 KiB"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "slipway.yml")
			testkit.WriteFile(t, path, strings.Replace(tc.yaml, "ROOT", filepath.Join(dir, "root"), 1), 0o644)
			for _, cmd := range [][]string{{"check"}, {"deploy"}, {"status"}} {
				r := runSlipway(t, path, cmd...)
				if r.code != 2 {
					t.Fatalf("%v: want exit 2: %s", cmd, r)
				}
				if !strings.Contains(r.stderr, path+tc.where) || !strings.Contains(r.stderr, tc.says) {
					t.Fatalf("%v: want %q and %q in: %s", cmd, path+tc.where, tc.says, r.stderr)
				}
			}
			// Nothing is created for a config that does not load.
			if _, err := os.Stat(filepath.Join(dir, "root")); !os.IsNotExist(err) {
				t.Fatalf("the root was created for a config with a mistake (%v)", err)
			}
		})
	}
}

func TestInitWritesAConfigThatLoads(t *testing.T) {
	t.Parallel()
	a := newApp(t, "node-web", nil)
	out := filepath.Join(t.TempDir(), "slipway.yml")
	cmd := runIn(t, a.src, "init", "-o", out)
	if cmd.code != 0 {
		t.Fatalf("init: %s", cmd)
	}
	text := readFile(t, out)
	for _, want := range []string{"run: npm ci ", "key: [package.json, package-lock.json]", "command: node dist/server.js ", "require_env: [WEB_AUTH_TOKEN]"} {
		if !strings.Contains(text, want) {
			t.Errorf("init's config lacks %q:\n%s", want, text)
		}
	}
	if r := runSlipway(t, out, "deploy", "--dry-run"); r.code == 2 {
		t.Fatalf("init's config does not load: %s", r)
	}
	if r := runSlipway(t, out, "check"); strings.Contains(r.stdout+r.stderr, "still marked TODO") {
		t.Fatalf("init settled everything in node-web, yet check warns about a TODO: %s", r)
	}

	// Where init has to guess (no lock file, no entry point, no health
	// route), the guesses stay visible until the operator checked them.
	bare := filepath.Join(t.TempDir(), "bare")
	testkit.WriteFile(t, filepath.Join(bare, "package.json"), "{}\n", 0o644)
	out = filepath.Join(t.TempDir(), "slipway.yml")
	if r := runIn(t, bare, "init", "-o", out); r.code != 0 {
		t.Fatalf("init: %s", r)
	}
	if r := runSlipway(t, out, "check"); !strings.Contains(r.stdout+r.stderr, "still marked TODO") {
		t.Fatalf("check must warn about init's TODOs: %s", r)
	}
}

// TestBadTargetsExit2: a --commit, --ref or --to that cannot name a
// commit is a usage error, refused before anything is created.
func TestBadTargetsExit2(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "slipway.yml")
	testkit.WriteFile(t, path, "app: board\nrepo: /srv/git/board.git\nroot: "+filepath.Join(dir, "root")+"\nmanager: process\nservices:\n  web:\n    command: ./web\n", 0o644)
	for _, args := range [][]string{
		{"deploy", "--ref=--upload-pack=touch /tmp/x"},
		{"deploy", "--ref", "a..b"},
		{"deploy", "--ref", "main~1"},
		{"deploy", "--commit", "HEAD"},
		{"deploy", "--commit", "abc"},
		{"deploy", "--commit=--all"},
		{"rollback", "--to", "main"},
	} {
		r := runSlipway(t, path, args...)
		if r.code != 2 || !strings.Contains(r.stderr, "not a") {
			t.Errorf("%q: want exit 2 saying why: %s", args, r)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "root")); !os.IsNotExist(err) {
		t.Fatalf("a refused target created the root (%v)", err)
	}
}

// TestInitConfigsDeploy: for each fixture app (a TypeScript service with a
// data dir and a bearer token, a Go app with a Procfile that requires
// $PORT, a Python app with a worker and SQLite), the config `slipway init`
// writes deploys as it is, once the host has the token: the anonymous
// smoke check gets 401, and what the app wrote survives the next deploy.
func TestInitConfigsDeploy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		fixture, secret, route, port string
		persists                     bool // it writes to a data dir that must outlive the release
	}{
		{"agent-services", "VERS_AUTH_TOKEN", "/tasks", "3100", true},
		{"notes", "NOTES_API_TOKEN", "/notes", "8080", false},
		{"board", "VERS_AUTH_TOKEN", "/tasks", "8000", true},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			a := &app{t: t, name: tt.fixture, src: filepath.Join(base, tt.fixture), root: filepath.Join(base, "root"),
				cfgPath: filepath.Join(base, "slipway.yml"), port: testkit.FreePort(t), token: testToken}
			copyDir(t, filepath.Join("..", "..", "testdata", "init", tt.fixture), a.src)
			testkit.Git(t, a.src, "init", "-q", "-b", "main")
			testkit.Git(t, a.src, "add", "-A")
			testkit.Git(t, a.src, "commit", "-q", "-m", "initial")
			t.Cleanup(a.stopServices)

			r := runIn(t, a.src, "init", "-o", a.cfgPath)
			if r.code != 0 || !strings.Contains(r.stderr, "next: put "+tt.secret+" in /opt/"+tt.fixture+"/env/"+tt.fixture+".env") {
				t.Fatalf("init must name the secret to set: %s", r)
			}
			// Only what a test must change: the root, the manager, a free
			// port, and a short settle.
			text := readFile(t, a.cfgPath)
			text = withPort(text, tt.port, a.port)
			text = replaceLine(text, "# root:", "root: "+a.root)
			text = replaceLine(text, "# manager:", "manager: process")
			head, tail, _ := strings.Cut(text, "\nhealth:")
			line, rest, _ := strings.Cut(tail, "\n")
			text = head + "\nhealth:" + line + "\n  settle: 200ms\n" + rest
			testkit.WriteFile(t, a.cfgPath, text, 0o644)

			// Without the token the deploy is refused before anything is built.
			r = a.slipway("deploy")
			if r.code == 0 || !strings.Contains(r.stderr, tt.secret) {
				t.Fatalf("deploy without %s must be refused: %s", tt.secret, r)
			}
			if rels, _ := os.ReadDir(filepath.Join(a.root, "releases")); len(rels) != 0 {
				t.Fatalf("a refused deploy built %d release(s)", len(rels))
			}
			a.writeEnv(tt.fixture+".env", map[string]string{tt.secret: testToken})
			r = a.mustDeploy()
			if !strings.Contains(r.stderr, "2 checks passed") {
				t.Errorf("deploy did not run the two smoke checks:\n%s", r.stderr)
			}
			if code, body := a.get(tt.route, false); code != http.StatusUnauthorized {
				t.Fatalf("anonymous %s = %d %s, want 401", tt.route, code, body)
			}
			if code, body := a.get(tt.route, true); code != http.StatusOK {
				t.Fatalf("%s with the token = %d %s, want 200", tt.route, code, body)
			}
			if !tt.persists {
				return
			}
			title := "written before the deploy"
			if code, body := a.post(tt.route, fmt.Sprintf(`{"title": %q}`, title)); code != http.StatusCreated {
				t.Fatalf("POST %s = %d %s", tt.route, code, body)
			}
			a.commit("a second release", map[string]string{"NOTES.md": "deployed twice\n"})
			a.mustDeploy()
			if _, body := a.get(tt.route, true); !strings.Contains(body, title) {
				t.Fatalf("the task posted before the deploy is gone after it: %s", body)
			}
			if tt.fixture == "board" {
				testkit.WaitFor(t, 10*time.Second, "the worker marks the task done", func() bool {
					_, body := a.get(tt.route, true)
					return strings.Contains(body, `"done": true`)
				})
			}
		})
	}
}
