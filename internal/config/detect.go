package config

import (
	"encoding/json"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Tool is a build tool that slipway init recognises.
type Tool string

// The tools Detect recognises, by the file that gives each away.
const (
	ToolUV  Tool = "uv"  // uv.lock
	ToolPip Tool = "pip" // requirements.txt, or pyproject.toml without uv.lock
	ToolNPM Tool = "npm" // package.json
	ToolGo  Tool = "go"  // go.mod
)

// Project is one buildable part of a repository.
type Project struct {
	Dir  string // relative to the repository; "" for its root
	Tool Tool
	// Requirements is set for pip when requirements.txt exists (else pip
	// installs the pyproject.toml project).
	Requirements bool
	BuildScript  bool   // npm: package.json has a "build" script
	StartScript  bool   // npm: package.json has a "start" script
	Lock         string // npm: the lock file (package-lock.json or npm-shrinkwrap.json), if any
	// Start is the command that starts its server, relative to Dir, when
	// the files say so (npm: the built entry point, python: app.py, go: the
	// built binary); "" when unsure.
	Start string
	// Worker is the command of a second, non-HTTP process (python:
	// worker.py), or "".
	Worker string
	// Migrate is its migration command (python: migrate.py), or "".
	Migrate string
	Code    Code // what its source says
}

// Code is what a project's source files say about how it runs. It comes
// from reading string literals, not from running anything, so every field
// is a hint for the template, which marks what it could not settle.
type Code struct {
	// Secrets are the variables it reads whose names say they hold a
	// secret (…TOKEN, …SECRET, …PASSWORD, …API_KEY), sorted.
	Secrets []string
	// AuthEnv is the secret read in a file that also looks at the
	// Authorization header: the token that guards its API.
	AuthEnv string
	Bearer  bool // that file checks for "Bearer "
	// ReadsPort is set when it reads $PORT; Port is the default it falls
	// back to (0: none, so it requires $PORT), or a port it listens on.
	ReadsPort bool
	Port      int
	Health    string   // a health route it serves (/health, /healthz, …), or ""
	Routes    []string // the other GET routes it names, in the order found
	SQLite    bool     // it opens an SQLite database
	Literals  []string // path-like names it uses (data, uploads), for Shared
}

// Process is one line of a Procfile.
type Process struct {
	Name, Command string
}

// Detected is what slipway init found in a working directory.
type Detected struct {
	App      string    // the directory's name, made a valid app name
	Repo     string    // the origin remote's URL, else the directory's absolute path
	Projects []Project // in the directory, then in its immediate subdirectories
	// Procfile holds the processes of the Procfile at the top, in order.
	Procfile []Process
	// Shared are directories the repository ignores that the app writes at
	// run time (data/, uploads/): they must outlive a release.
	Shared []string
}

// Detect looks at dir and its immediate subdirectories for uv, pip, npm and
// go projects, reads their source for what the template needs, and reads
// the Procfile and .gitignore files. It reads only; what it cannot read it
// skips.
func Detect(dir string) Detected {
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = filepath.Clean(dir)
	}
	d := Detected{App: appName(filepath.Base(abs)), Repo: originURL(abs)}
	if d.Repo == "" {
		d.Repo = abs
	}
	d.Projects = detectProjects(abs, "")
	entries, _ := os.ReadDir(abs) // unreadable: nothing found there
	for _, e := range entries {
		if e.IsDir() && !skipDir(e.Name()) {
			d.Projects = append(d.Projects, detectProjects(filepath.Join(abs, e.Name()), e.Name())...)
		}
	}
	d.Procfile = readProcfile(filepath.Join(abs, "Procfile"))
	d.Shared = sharedDirs(abs, d.Projects)
	return d
}

func skipDir(name string) bool {
	return buildDirs[name] || strings.HasPrefix(name, ".")
}

// buildDirs are directories of dependencies and build output: never
// source, never data.
var buildDirs = map[string]bool{
	"node_modules": true, "vendor": true, "venv": true, "env": true, "__pycache__": true,
	"dist": true, "build": true, "out": true, "bin": true, "target": true, "coverage": true,
}

// detectProjects finds the projects in one directory, rel being its path in
// the repository.
func detectProjects(dir, rel string) []Project {
	exists := func(name string) bool {
		fi, err := os.Stat(filepath.Join(dir, name))
		return err == nil && fi.Mode().IsRegular()
	}
	var found []Project
	code := readCode(dir)
	python := Project{Dir: rel, Code: code}
	switch {
	case exists("uv.lock"):
		python.Tool = ToolUV
	case exists("requirements.txt"):
		python.Tool, python.Requirements = ToolPip, true
	case exists("pyproject.toml"):
		python.Tool = ToolPip
	}
	if python.Tool != "" {
		for _, f := range []string{"app.py", "main.py", "server.py", "run.py"} {
			if exists(f) {
				python.Start = ".venv/bin/python " + f
				break
			}
		}
		if exists("worker.py") {
			python.Worker = ".venv/bin/python worker.py"
		}
		if exists("migrate.py") {
			python.Migrate = ".venv/bin/python migrate.py"
		}
		found = append(found, python)
	}
	if exists("package.json") {
		found = append(found, npmProject(dir, rel, code, exists))
	}
	if exists("go.mod") {
		p := Project{Dir: rel, Tool: ToolGo, Code: code}
		if name := goBinary(dir); name != "" {
			p.Start = "bin/" + name
		}
		found = append(found, p)
	}
	return found
}

// npmProject reads package.json, and finds the file that starts the server
// without npm in front of it: `node dist/server.js` rather than `npm start`,
// whose npm process would take the signals meant for the server.
func npmProject(dir, rel string, code Code, exists func(string) bool) Project {
	p := Project{Dir: rel, Tool: ToolNPM, Code: code}
	for _, f := range []string{"package-lock.json", "npm-shrinkwrap.json"} {
		if exists(f) {
			p.Lock = f
			break
		}
	}
	var pkg struct {
		Main    string         `json:"main"`
		Scripts map[string]any `json:"scripts"`
	}
	if b, err := os.ReadFile(filepath.Join(dir, "package.json")); err == nil && json.Unmarshal(b, &pkg) == nil {
		_, p.BuildScript = pkg.Scripts["build"]
		_, p.StartScript = pkg.Scripts["start"]
	}
	start, _ := pkg.Scripts["start"].(string)
	switch m := nodeStart.FindStringSubmatch(strings.TrimSpace(start)); {
	case m != nil:
		p.Start = "node " + m[1]
	case pkg.Main != "" && (p.BuildScript || exists(pkg.Main)):
		p.Start = "node " + path.Clean(pkg.Main)
	default:
		if out := tsOutDir(dir); out != "" {
			for _, f := range []string{"server", "index", "main", "app"} {
				if exists(filepath.Join("src", f+".ts")) || exists(f+".ts") {
					p.Start = "node " + path.Join(out, f+".js")
					break
				}
			}
		}
		for _, f := range []string{"server.js", "index.js", "app.js"} {
			if p.Start == "" && exists(f) {
				p.Start = "node " + f
			}
		}
	}
	return p
}

// The patterns of the files Detect reads.
var (
	// nodeStart matches a start script that only runs node on one file.
	nodeStart      = regexp.MustCompile(`^node\s+([\w./-]+\.[cm]?js)$`)
	tsOutDirKey    = regexp.MustCompile(`"outDir"\s*:\s*"([\w./-]+)"`)
	goModule       = regexp.MustCompile(`(?m)^module\s+"?([^"\s]+)"?`)
	goMainPackage  = regexp.MustCompile(`(?m)^package main\b`)
	goMajorVersion = regexp.MustCompile(`^v[0-9]+$`)
)

// tsOutDir returns compilerOptions.outDir of dir/tsconfig.json, or "".
// tsconfig.json may hold comments, so it is searched rather than parsed.
func tsOutDir(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "tsconfig.json"))
	if err != nil {
		return ""
	}
	if m := tsOutDirKey.FindSubmatch(b); m != nil {
		return path.Clean(string(m[1]))
	}
	return ""
}

// goBinary returns the name `go build -o bin/ ./...` gives the main
// package at dir's top (the module path's last element, without a /vN),
// or "" when there is none.
func goBinary(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return ""
	}
	m := goModule.FindSubmatch(b)
	if m == nil {
		return ""
	}
	mains, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	hasMain := false
	for _, f := range mains {
		src, err := os.ReadFile(f)
		if err == nil && goMainPackage.Match(src) && !strings.HasSuffix(f, "_test.go") {
			hasMain = true
			break
		}
	}
	if !hasMain {
		return ""
	}
	parts := strings.Split(string(m[1]), "/")
	name := parts[len(parts)-1]
	if len(parts) > 1 && goMajorVersion.MatchString(name) {
		name = parts[len(parts)-2]
	}
	return name
}

// The patterns readCode looks for in source files.
var (
	envRead = regexp.MustCompile(`(?:process\.env\.|process\.env\[\s*['"]|os\.environ\[\s*['"]|os\.environ\.get\(\s*['"]|os\.getenv\(\s*['"]|os\.Getenv\(\s*"|os\.LookupEnv\(\s*")([A-Z][A-Z0-9_]*)`)
	// portDefault matches a fallback after reading PORT: `PORT || 3000`,
	// `get("PORT", "8000")`, `cmp.Or(os.Getenv("PORT"), "8080")`.
	portDefault = regexp.MustCompile(`PORT['"]?\]?\)?\s*(?:\|\||\?\?|,|\bor\b)\s*['"]?:?([0-9]{2,5})\b`)
	portListen  = regexp.MustCompile(`\.listen\(\s*([0-9]{2,5})\b|"(?:0\.0\.0\.0|127\.0\.0\.1|localhost)?:([0-9]{2,5})"`)
	routeLit    = regexp.MustCompile(`['"` + "`" + `](?:(GET|POST|PUT|PATCH|DELETE|HEAD) )?(/[A-Za-z0-9_/-]*)['"` + "`" + `]`)
	secretName  = regexp.MustCompile(`TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|PRIVATE_KEY`)
	sqliteUse   = regexp.MustCompile(`\bsqlite3?\b|better-sqlite3|modernc\.org/sqlite|mattn/go-sqlite3|node:sqlite`)
	nameLit     = regexp.MustCompile(`['"]([a-z][a-z0-9_-]*)/?['"]`)
)

// healthPaths are the routes taken for a health check, best first.
var healthPaths = []string{"/health", "/healthz", "/_health", "/livez", "/readyz", "/ping", "/up", "/status"}

// notRoutes are path literals that name files on the host, not routes.
var notRoutes = regexp.MustCompile(`^/(usr|tmp|etc|var|dev|proc|sys|bin|opt|home|run|srv)(/|$)`)

// readCode scans the source files under dir (a few levels deep, skipping
// dependencies and build output) for what Code holds.
func readCode(dir string) Code {
	var c Code
	secrets := make(map[string]bool)
	routes := make(map[string]bool)
	literals := make(map[string]bool)
	health := len(healthPaths)
	files := 0
	_ = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable: skipped
		}
		if e.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			if p != dir && (skipDir(e.Name()) || strings.Count(rel, string(filepath.Separator)) >= 3) {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(p) {
		case ".js", ".mjs", ".cjs", ".ts", ".mts", ".py", ".go":
		default:
			return nil
		}
		if strings.HasSuffix(p, "_test.go") || strings.HasSuffix(p, ".d.ts") || files >= 500 {
			return nil
		}
		info, err := e.Info()
		if err != nil || info.Size() > 512<<10 {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		files++
		src := string(b)
		auth := strings.Contains(strings.ToLower(src), "authorization")
		for _, m := range envRead.FindAllStringSubmatch(src, -1) {
			name := m[1]
			if name == "PORT" {
				c.ReadsPort = true
			}
			if secretName.MatchString(name) {
				secrets[name] = true
				if auth && c.AuthEnv == "" {
					c.AuthEnv = name
					c.Bearer = strings.Contains(src, "Bearer ")
				}
			}
		}
		if m := portDefault.FindStringSubmatch(src); m != nil && c.Port == 0 {
			c.Port, _ = strconv.Atoi(m[1])
		}
		if m := portListen.FindStringSubmatch(src); m != nil && c.Port == 0 && !c.ReadsPort {
			c.Port, _ = strconv.Atoi(m[1] + m[2])
		}
		for _, m := range routeLit.FindAllStringSubmatch(src, -1) {
			method, route := m[1], m[2]
			if i := slices.Index(healthPaths, route); i >= 0 {
				health = min(health, i)
				continue
			}
			if route == "/" || notRoutes.MatchString(route) || (method != "" && method != "GET") || routes[route] {
				continue
			}
			routes[route] = true
			c.Routes = append(c.Routes, route)
		}
		c.SQLite = c.SQLite || sqliteUse.MatchString(src)
		for _, m := range nameLit.FindAllStringSubmatch(src, -1) {
			literals[m[1]] = true
		}
		return nil
	})
	if health < len(healthPaths) {
		c.Health = healthPaths[health]
	}
	for s := range secrets {
		c.Secrets = append(c.Secrets, s)
	}
	slices.Sort(c.Secrets)
	for l := range literals {
		c.Literals = append(c.Literals, l)
	}
	slices.Sort(c.Literals)
	return c
}

// readProcfile returns the processes of a Procfile ("name: command" lines),
// or nil when there is none.
func readProcfile(file string) []Process {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	var out []Process
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		name, cmd, ok := strings.Cut(line, ":")
		if !ok || strings.HasPrefix(line, "#") || strings.ContainsAny(name, " \t") || strings.TrimSpace(cmd) == "" {
			continue
		}
		out = append(out, Process{Name: name, Command: strings.TrimSpace(cmd)})
	}
	return out
}

// runtimeDirs are directory names that hold what an app writes while it
// runs. One the repository ignores is shared, so it outlives the release.
var runtimeDirs = map[string]bool{
	"data": true, "uploads": true, "upload": true, "storage": true, "media": true, "files": true,
	"attachments": true, "db": true, "database": true, "state": true, "var": true, "blobs": true,
}

// sharedDirs reads the .gitignore at the top and in each project's
// directory and returns the directories it ignores that hold run-time
// data: a name in runtimeDirs, or one the project's code names as a string
// (and that is not build output). Paths are relative to the repository.
func sharedDirs(root string, projects []Project) []string {
	named := make(map[string]map[string]bool) // project dir -> names its code uses
	dirs := []string{""}
	for _, p := range projects {
		if named[p.Dir] == nil {
			named[p.Dir] = make(map[string]bool)
			if p.Dir != "" {
				dirs = append(dirs, p.Dir)
			}
		}
		for _, l := range p.Code.Literals {
			named[p.Dir][l] = true
		}
	}
	var out []string
	for _, d := range dirs {
		for _, pat := range ignoredDirs(filepath.Join(root, d, ".gitignore")) {
			base := path.Base(pat)
			full := path.Join(d, pat)
			inCode := named[d][base] || named[path.Dir(full)][base] || (path.Dir(full) == "." && anyNamed(named, base))
			if (runtimeDirs[base] || inCode) && !buildDirs[base] && !slices.Contains(out, full) {
				out = append(out, full)
			}
		}
	}
	return out
}

func anyNamed(named map[string]map[string]bool, name string) bool {
	for _, n := range named {
		if n[name] {
			return true
		}
	}
	return false
}

// ignoredDirs returns the plain paths (no globs, no negation) a .gitignore
// lists, without their leading and trailing slashes.
func ignoredDirs(file string) []string {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	var out []string
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "!") || strings.ContainsAny(line, "*?[\\ ") {
			continue
		}
		line = strings.Trim(line, "/")
		if line == "" || strings.HasPrefix(line, ".") || strings.Contains(line, "..") || path.Ext(line) != "" {
			continue
		}
		out = append(out, line)
	}
	return out
}

// originURL reads the URL of the origin remote from dir/.git/config, or "".
func originURL(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, ".git", "config"))
	if err != nil {
		return ""
	}
	inOrigin := false
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			inOrigin = line == `[remote "origin"]`
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok && inOrigin && strings.TrimSpace(k) == "url" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

var notNameChars = regexp.MustCompile(`[^a-z0-9]+`)

// appName turns a directory name into a valid app or service name.
func appName(s string) string {
	s = strings.Trim(notNameChars.ReplaceAllString(strings.ToLower(s), "-"), "-")
	switch {
	case s == "":
		return "app"
	case s[0] < 'a' || s[0] > 'z':
		return "app-" + s
	}
	return s
}
