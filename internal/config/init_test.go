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
			{Dir: "web", Tool: ToolNPM, BuildScript: true, StartScript: true},
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
		}}, []string{"backend", "web"}, 2},
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
	c, err := Load(writeConfig(t, Template(Detect(dir))))
	if err != nil {
		t.Fatal(err)
	}
	if c.App != "shop" || c.Repo != dir {
		t.Errorf("app = %q, repo = %q", c.App, c.Repo)
	}
	if got := []string{c.Build[0].Run, c.Build[1].Run}; !reflect.DeepEqual(got, []string{"uv sync --frozen", "npm ci && npm run build"}) {
		t.Errorf("build = %q", got)
	}
	if c.Services["api"].Dir != "api" || c.Services["web"].Port != 3000 || c.Health.URL != "http://127.0.0.1:8000/health" {
		t.Errorf("services = %+v %+v, health = %+v", *c.Services["api"], *c.Services["web"], *c.Health)
	}
}
