package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestAppName(t *testing.T) {
	tests := map[string]string{
		"lucille":      "lucille",
		"My_Cool App":  "my-cool-app",
		"--x--":        "x",
		"2048":         "app-2048",
		"":             "app",
		"日本":           "app",
		"api.v2":       "api-v2",
		"Already-Good": "already-good",
	}
	for in, want := range tests {
		if got := appName(in); got != want {
			t.Errorf("appName(%q) = %q, want %q", in, got, want)
		}
	}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDetect(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "My_Cool App")
	writeFiles(t, dir, map[string]string{
		".git/config":               "[core]\n\tbare = false\n[remote \"origin\"]\n\turl = git@github.com:acme/cool.git\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n",
		"go.mod":                    "module x\n",
		"backend/uv.lock":           "",
		"backend/pyproject.toml":    "",
		"api/requirements.txt":      "flask\n",
		"api/pyproject.toml":        "",
		"lib/pyproject.toml":        "",
		"web/package.json":          `{"scripts": {"build": "vite build", "start": "node dist/server.js"}}`,
		"site/package.json":         `{"scripts": {"dev": "vite"}}`,
		"broken/package.json":       `{not json`,
		"node_modules/package.json": `{}`,
		".hidden/go.mod":            "module y\n",
		"docs/README.md":            "",
	})
	got := Detect(dir)
	want := Detected{
		App:  "my-cool-app",
		Repo: "git@github.com:acme/cool.git",
		Projects: []Project{
			{Tool: ToolGo},
			{Dir: "api", Tool: ToolPip, Requirements: true},
			{Dir: "backend", Tool: ToolUV},
			{Dir: "broken", Tool: ToolNPM},
			{Dir: "lib", Tool: ToolPip},
			{Dir: "site", Tool: ToolNPM},
			{Dir: "web", Tool: ToolNPM, BuildScript: true, StartScript: true, Start: "node dist/server.js"},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Detect =\n%+v\nwant\n%+v", got, want)
	}
}

func TestDetectWithoutRemote(t *testing.T) {
	dir := t.TempDir()
	if got := Detect(dir); got.Repo != dir || len(got.Projects) != 0 {
		t.Errorf("Detect = %+v", got)
	}
}

// TestTemplateLoads: what slipway init writes loads without edits, and
// every key in it says what it does.
func TestTemplateLoads(t *testing.T) {
	withPID1(t, "init")
	tests := []struct {
		name     string
		d        Detected
		services []string
		steps    int
	}{
		{"nothing found", Detected{App: "site", Repo: "/srv/site"}, []string{"site"}, 0},
		{"empty detection", Detected{}, []string{"app"}, 0},
		{"spec-like", Detected{App: "lucille", Repo: "https://github.com/acme/lucille.git", Projects: []Project{
			{Dir: "backend", Tool: ToolUV}, {Dir: "web", Tool: ToolNPM, BuildScript: true, StartScript: true},
		}}, []string{"backend", "web"}, 3},
		{"everything at the root", Detected{App: "mono", Repo: "/srv/mono", Projects: []Project{
			{Tool: ToolPip, Requirements: true}, {Tool: ToolNPM}, {Tool: ToolGo}, {Tool: ToolPip},
		}}, []string{"mono", "mono-go", "mono-npm", "mono-pip"}, 4},
		{"awkward names", Detected{App: "True", Repo: `C:\repos\x # y`, Projects: []Project{
			{Dir: "1e3", Tool: ToolGo}, {Dir: "null", Tool: ToolNPM}, {Dir: "a b: c", Tool: ToolUV}, {Dir: "X\tY", Tool: ToolPip},
		}}, []string{"a-b-c", "app-1e3", "null", "x-y"}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := Template(tt.d)
			p := writeConfig(t, out)
			c, err := Load(p)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if got := c.ServiceNames(); !reflect.DeepEqual(got, tt.services) {
				t.Errorf("services = %v, want %v", got, tt.services)
			}
			if len(c.Build) != tt.steps {
				t.Errorf("%d build steps, want %d", len(c.Build), tt.steps)
			}
			for _, s := range c.Build {
				if s.Dir != "" && s.Dir != strings.Trim(s.Dir, " ") {
					t.Errorf("dir %q", s.Dir)
				}
			}
			if tt.d.Repo != "" && c.Repo != tt.d.Repo {
				t.Errorf("repo = %q, want %q", c.Repo, tt.d.Repo)
			}
			if len(c.Unset) != 0 {
				t.Errorf("unset = %v", c.Unset)
			}
			for i, line := range strings.Split(out, "\n") {
				if strings.TrimSpace(line) != "" && !strings.Contains(line, "#") {
					t.Errorf("line %d has no comment: %q", i+1, line)
				}
			}
		})
	}
}

func TestTemplateOfDetect(t *testing.T) {
	withPID1(t, "init")
	dir := filepath.Join(t.TempDir(), "shop")
	writeFiles(t, dir, map[string]string{
		"api/uv.lock":      "",
		"web/package.json": `{"scripts": {"build": "vite build"}}`,
	})
	out := Template(Detect(dir))
	c, err := Load(writeConfig(t, out))
	if err != nil {
		t.Fatal(err)
	}
	if c.App != "shop" || c.Repo != dir {
		t.Errorf("app = %q, repo = %q", c.App, c.Repo)
	}
	var runs []string
	for _, b := range c.Build {
		runs = append(runs, b.Run)
	}
	if want := []string{"uv sync --frozen", "npm install", "npm run build"}; !reflect.DeepEqual(runs, want) {
		t.Errorf("build = %q, want %q", runs, want)
	}
	if c.Services["api"].Dir != "api" || c.Services["web"].Port != 3000 {
		t.Errorf("services = %+v %+v", *c.Services["api"], *c.Services["web"])
	}
	// Nothing in the code serves a health route: init must not invent one.
	if c.Health != nil || !strings.Contains(out, "# health:") || !strings.Contains(out, "TODO: no health route found") {
		t.Errorf("health = %+v\n%s", c.Health, out)
	}
	if !strings.Contains(out, "TODO: no lock file") {
		t.Errorf("npm without a lock file must be marked:\n%s", out)
	}
	// The venv is reused while its lock file is unchanged, shared in deps/.
	if r := c.Build[0].Reuse; r == nil || !reflect.DeepEqual(r.Paths, []string{".venv"}) || !reflect.DeepEqual(r.Key, []string{"uv.lock", "pyproject.toml"}) || !r.Share {
		t.Errorf("uv sync's reuse = %+v", r)
	}
}

// TestTemplateReusesTheVenvOfRequirements: a pip project's venv is reused
// while requirements.txt is unchanged.
func TestTemplateReusesTheVenvOfRequirements(t *testing.T) {
	withPID1(t, "init")
	dir := filepath.Join(t.TempDir(), "shop")
	writeFiles(t, dir, map[string]string{"requirements.txt": "flask\n", "app.py": "print(1)\n"})
	c, err := Load(writeConfig(t, Template(Detect(dir))))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Build) == 0 {
		t.Fatal("no build step")
	}
	if r := c.Build[0].Reuse; r == nil || !reflect.DeepEqual(r.Paths, []string{".venv"}) || !reflect.DeepEqual(r.Key, []string{"requirements.txt"}) || !r.Share {
		t.Errorf("the venv step %q: reuse = %+v", c.Build[0].Run, r)
	}
}

// TestDetectFixtures: what init reads from the three fixture apps, shaped
// like the ones operators deploy (a TypeScript service, a Go app with a
// Procfile, a Python app with a worker and SQLite).
func TestDetectFixtures(t *testing.T) {
	withPID1(t, "init")
	tests := []struct {
		fixture  string
		project  Project // Code.Literals and Code.Routes are not compared
		procfile []Process
		shared   []string
		services map[string]string // name -> command
		health   string
		require  []string
		smoke    string
	}{
		{
			fixture: "agent-services",
			project: Project{Tool: ToolNPM, BuildScript: true, StartScript: true, Lock: "package-lock.json", Start: "node dist/server.js",
				Code: Code{Secrets: []string{"VERS_AUTH_TOKEN"}, AuthEnv: "VERS_AUTH_TOKEN", Bearer: true, ReadsPort: true, Port: 3100, Health: "/health"}},
			shared:   []string{"data"},
			services: map[string]string{"agent-services": "node dist/server.js"},
			health:   "http://127.0.0.1:3100/health",
			require:  []string{"VERS_AUTH_TOKEN"},
			smoke:    "http://127.0.0.1:3100/tasks",
		},
		{
			fixture: "notes",
			project: Project{Tool: ToolGo, Start: "bin/notes",
				Code: Code{Secrets: []string{"NOTES_API_TOKEN"}, AuthEnv: "NOTES_API_TOKEN", Bearer: true, ReadsPort: true, Health: "/healthz"}},
			procfile: []Process{{"web", "bin/notes"}},
			services: map[string]string{"web": "bin/notes"},
			health:   "http://127.0.0.1:8080/healthz",
			require:  []string{"NOTES_API_TOKEN"},
			smoke:    "http://127.0.0.1:8080/notes",
		},
		{
			fixture: "board",
			project: Project{Tool: ToolPip, Requirements: true, Start: ".venv/bin/python app.py", Worker: ".venv/bin/python worker.py",
				Code: Code{Secrets: []string{"VERS_AUTH_TOKEN"}, AuthEnv: "VERS_AUTH_TOKEN", Bearer: true, ReadsPort: true, Port: 8000, Health: "/health", SQLite: true}},
			shared:   []string{"data"},
			services: map[string]string{"board": ".venv/bin/python app.py", "worker": ".venv/bin/python worker.py"},
			health:   "http://127.0.0.1:8000/health",
			require:  []string{"VERS_AUTH_TOKEN"},
			smoke:    "http://127.0.0.1:8000/tasks",
		},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			d := Detect(filepath.Join("..", "..", "testdata", "init", tt.fixture))
			if len(d.Projects) != 1 {
				t.Fatalf("projects = %+v", d.Projects)
			}
			got := d.Projects[0]
			got.Code.Literals, got.Code.Routes = nil, nil
			if !reflect.DeepEqual(got, tt.project) {
				t.Errorf("project =\n%+v\nwant\n%+v", got, tt.project)
			}
			if !reflect.DeepEqual(d.Procfile, tt.procfile) || !reflect.DeepEqual(d.Shared, tt.shared) {
				t.Errorf("procfile = %v, shared = %v", d.Procfile, d.Shared)
			}
			out := Template(d)
			c, err := Load(writeConfig(t, out))
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			cmds := make(map[string]string)
			for name, s := range c.Services {
				cmds[name] = s.Command
			}
			if !reflect.DeepEqual(cmds, tt.services) {
				t.Errorf("services = %v, want %v", cmds, tt.services)
			}
			if c.Health == nil || c.Health.URL != tt.health {
				t.Errorf("health = %+v, want %s", c.Health, tt.health)
			}
			if !reflect.DeepEqual(c.RequireEnv, tt.require) || !reflect.DeepEqual(c.Shared, tt.shared) {
				t.Errorf("require_env = %v, shared = %v", c.RequireEnv, c.Shared)
			}
			if len(c.Smoke) != 2 || c.Smoke[0].URL != tt.smoke || c.Smoke[0].ExpectStatus != 401 ||
				c.Smoke[1].ExpectStatus != 200 || !strings.Contains(out, `headers: { Authorization: "Bearer ${`+tt.require[0]+`}" }`) {
				t.Errorf("smoke = %+v", c.Smoke)
			}
			if strings.Contains(out, "# TODO") {
				t.Errorf("init settled everything in %s, yet left a TODO:\n%s", tt.fixture, out)
			}
		})
	}
}

// TestReadCode: the hints init takes from source, one pattern at a time.
func TestReadCode(t *testing.T) {
	tests := []struct {
		name, file, src string
		want            Code
	}{
		{"node port fallback", "s.js", `const port = process.env.PORT ?? '4000'`, Code{ReadsPort: true, Port: 4000}},
		{"python getenv or", "s.py", `port = int(os.getenv("PORT") or 5001)`, Code{ReadsPort: true, Port: 5001}},
		{"go cmp.Or", "m.go", `addr := ":" + cmp.Or(os.Getenv("PORT"), "9090")`, Code{ReadsPort: true, Port: 9090}},
		{"hard-coded listen", "s.js", `server.listen(8081)`, Code{Port: 8081}},
		{"go literal address", "m.go", `http.ListenAndServe(":7070", nil)`, Code{Port: 7070}},
		{"secret without auth", "s.py", `key = os.environ["STRIPE_API_KEY"]`, Code{Secrets: []string{"STRIPE_API_KEY"}}},
		{"header token, not bearer", "s.ts", `if (req.headers.authorization !== process.env["ADMIN_TOKEN"]) deny()`,
			Code{Secrets: []string{"ADMIN_TOKEN"}, AuthEnv: "ADMIN_TOKEN"}},
		{"routes and health", "m.go", `mux.HandleFunc("GET /livez", h); mux.HandleFunc("POST /jobs", h); mux.HandleFunc("/api/jobs", h); f("/usr/bin/env")`,
			Code{Health: "/livez", Routes: []string{"/api/jobs"}}},
		{"the best health route wins", "a.py", `if p == "/status": ... elif p == "/healthz": ...`, Code{Health: "/healthz"}},
		{"sqlite", "db.js", `const Database = require('better-sqlite3')`, Code{SQLite: true}},
		{"other files are not read", "notes.txt", `process.env.PORT || 3000`, Code{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{tt.file: tt.src, "node_modules/x/index.js": `process.env.NPM_TOKEN`})
			got := readCode(dir)
			got.Literals = nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("readCode =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestSharedDirs(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		".gitignore":         "# comment\nnode_modules/\n/dist\ndata/\n*.log\n!keep/\n.env\nspool\nscratch/\n",
		"api/.gitignore":     "uploads/\n__pycache__/\n",
		"api/pyproject.toml": "",
		"api/app.py":         `SPOOL = os.path.join(BASE, "spool")`,
	})
	d := Detect(dir)
	// data: a run-time name; spool: ignored and named by the code;
	// api/uploads: ignored in api/. scratch is ignored but neither.
	if want := []string{"data", "spool", "api/uploads"}; !reflect.DeepEqual(d.Shared, want) {
		t.Errorf("shared = %v, want %v", d.Shared, want)
	}
}

func TestReadProcfile(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"Procfile": "# processes\nweb: bin/api --port $PORT\nworker:   bin/worker\n\nbad line\nrelease: bin/migrate\nempty:\n"})
	want := []Process{{"web", "bin/api --port $PORT"}, {"worker", "bin/worker"}, {"release", "bin/migrate"}}
	if got := readProcfile(filepath.Join(dir, "Procfile")); !reflect.DeepEqual(got, want) {
		t.Errorf("procfile = %q, want %q", got, want)
	}
}

// TestTemplateOfProcfile: release becomes migrate, npm start runs the
// built entry point directly, and a $PORT in a command gets a port.
func TestTemplateOfProcfile(t *testing.T) {
	withPID1(t, "init")
	dir := filepath.Join(t.TempDir(), "shop")
	writeFiles(t, dir, map[string]string{
		"Procfile":     "web: npm start\nworker: node dist/worker.js\nclock: node dist/clock.js --port $PORT\nrelease: node dist/migrate.js\n",
		"package.json": `{"main": "dist/index.js", "scripts": {"build": "tsc", "start": "npm run build && node dist/index.js"}}`,
		"src/index.ts": `app.listen(process.env.PORT || 5000); app.get("/health", ok)`,
	})
	c, err := Load(writeConfig(t, Template(Detect(dir))))
	if err != nil {
		t.Fatal(err)
	}
	if c.Services["web"].Command != "node dist/index.js" || c.Services["web"].Port != 5000 {
		t.Errorf("web = %+v", *c.Services["web"])
	}
	if c.Services["clock"].Port == 0 || c.Services["clock"].Port == 5000 {
		t.Errorf("clock = %+v", *c.Services["clock"])
	}
	// A worker line is a service of its own, with no port.
	if w := c.Services["worker"]; w == nil || w.Command != "node dist/worker.js" || w.Port != 0 {
		t.Errorf("worker = %+v", w)
	}
	if c.Migrate == nil || c.Migrate.Run != "node dist/migrate.js" {
		t.Errorf("migrate = %+v", c.Migrate)
	}
	if c.Health == nil || c.Health.URL != "http://127.0.0.1:5000/health" {
		t.Errorf("health = %+v", c.Health)
	}
}
