package config

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
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
	BuildScript  bool // npm: package.json has a "build" script
	StartScript  bool // npm: package.json has a "start" script
}

// Detected is what slipway init found in a working directory.
type Detected struct {
	App      string    // the directory's name, made a valid app name
	Repo     string    // the origin remote's URL, else the directory's absolute path
	Projects []Project // in the directory, then in its immediate subdirectories
}

// Detect looks at dir and its immediate subdirectories for uv, pip, npm and
// go projects. It reads only; what it cannot read it skips.
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
	return d
}

func skipDir(name string) bool {
	switch name {
	case "node_modules", "vendor", "venv", "__pycache__":
		return true
	}
	return strings.HasPrefix(name, ".")
}

// detectProjects finds the projects in one directory, rel being its path in
// the repository.
func detectProjects(dir, rel string) []Project {
	exists := func(name string) bool {
		fi, err := os.Stat(filepath.Join(dir, name))
		return err == nil && fi.Mode().IsRegular()
	}
	var found []Project
	switch {
	case exists("uv.lock"):
		found = append(found, Project{Dir: rel, Tool: ToolUV})
	case exists("requirements.txt"):
		found = append(found, Project{Dir: rel, Tool: ToolPip, Requirements: true})
	case exists("pyproject.toml"):
		found = append(found, Project{Dir: rel, Tool: ToolPip})
	}
	if exists("package.json") {
		p := Project{Dir: rel, Tool: ToolNPM}
		var pkg struct {
			Scripts map[string]any `json:"scripts"`
		}
		if b, err := os.ReadFile(filepath.Join(dir, "package.json")); err == nil && json.Unmarshal(b, &pkg) == nil {
			_, p.BuildScript = pkg.Scripts["build"]
			_, p.StartScript = pkg.Scripts["start"]
		}
		found = append(found, p)
	}
	if exists("go.mod") {
		found = append(found, Project{Dir: rel, Tool: ToolGo})
	}
	return found
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

// Template returns a commented slipway.yml for what Detect found. It loads
// as is; the commands marked TODO are guesses to check.
func Template(d Detected) string {
	app := appName(d.App)
	repo := d.Repo
	if repo == "" {
		repo = "."
	}
	w := &yamlWriter{}
	w.note(0, "slipway.yml: how slipway deploys "+app+" (reference: docs/config.md).")
	w.note(0, "Written by `slipway init`; check the lines marked TODO, then run `slipway check`.")
	w.blank()
	w.line(0, "app: "+quote(app), "required: the app's name ([a-z][a-z0-9-]*); names units and the default root")
	w.line(0, "repo: "+quote(repo), "required: the git URL or local path to deploy from")
	w.line(0, "branch: main", "the branch deployed and watched for new commits")
	w.line(0, "# root: /opt/"+app, "where releases, shared data and env files live; default /opt/<app>")
	w.line(0, "# user: "+quote(app), "the OS user for builds and services; default: the invoking user")
	w.line(0, "keep_releases: 5", "old releases kept for rollback (current and safe are always kept)")
	w.line(0, "# shared: [data]", "paths under <root>/shared/ linked into every release")
	w.blank()
	w.line(0, "env_files:", "name -> dotenv file under <root>/env/ (never in the repo)")
	w.line(1, quote(app)+": "+app+".env", "the variables the services get")
	w.line(0, "# require_env: [SECRET_KEY]", "deploys are refused while one of these is unset or empty")
	w.blank()

	svcs := planServices(app, d.Projects)
	if len(svcs) == 0 {
		w.line(0, "# build:", "commands run in order inside the new release; a failure aborts before the switch")
		w.line(0, "#   - name: deps", "shown in the log; default: the command")
		w.line(0, "#     run: make", "the command (with /bin/sh -c when it has shell syntax)")
	} else {
		w.line(0, "build:", "commands run in order inside the new release; a failure aborts before the switch")
		for _, s := range svcs {
			s.writeStep(w)
		}
	}
	w.blank()
	w.line(0, "# migrate:", "run after the build, before the switch; shared data is snapshotted first")
	w.line(0, "#   dir: .", "where it runs, relative to the release")
	w.line(0, "#   run: ./migrate", "the migration command")
	w.line(0, "#   env_file: "+quote(app), "the env_files entry it gets")
	w.blank()
	w.line(0, "# manager: systemd", "systemd | process; default systemd when PID 1 is systemd")
	w.line(0, "services:", "the long-running processes, restarted on each deploy")
	if len(svcs) == 0 {
		svcs = []plannedService{{name: app, command: "./start.sh", todo: true, port: 8000}}
	}
	for _, s := range svcs {
		s.writeService(w, app)
	}
	w.blank()
	health := svcs[0].port
	w.line(0, "health:", "proves the new version up; failing it rolls back")
	w.line(1, fmt.Sprintf("url: http://127.0.0.1:%d/health", health), "TODO: a URL that answers once the app is up")
	w.line(1, "expect_status: 200", "the status it must answer with")
	w.line(1, "timeout: 60s", "total time allowed to become healthy")
	w.line(1, "interval: 1s", "time between tries")
	w.blank()
	w.line(0, "# smoke:", "checks after health; every one must pass")
	w.line(0, "#   - name: refuses anonymous calls", "shown in the log")
	w.line(0, fmt.Sprintf("#     url: http://127.0.0.1:%d/api", health), "an HTTP check (or run: a command, exit 0 = pass)")
	w.line(0, "#     expect_status: 401", "the status it must answer with; default 200")
	w.blank()
	w.line(0, "# snapshot:", "restore points")
	w.line(0, "#   data: [data]", "shared/ paths archived before migrations")
	w.blank()
	w.line(0, "# triggers:", "automatic deploys")
	w.line(0, "#   poll: 60s", "check the branch this often; 0 = off")
	w.line(0, "#   webhook:", "signed pushes from the git host")
	w.line(0, "#     listen: 0.0.0.0:9009", "address of the webhook endpoint")
	w.line(0, "#     secret_env: SLIPWAY_WEBHOOK_SECRET", "the variable holding its secret")
	w.line(0, "# api:", "the agent's HTTP API")
	w.line(0, "#   listen: 127.0.0.1:9010", "its address")
	w.line(0, "#   token_env: SLIPWAY_API_TOKEN", "the variable holding its bearer token")
	w.line(0, "# notify:", "JSON POSTs on success, failure and rollback")
	w.line(0, "#   - url: https://hooks.example.com/deploys", "where to send them")
	return w.String()
}

// plannedService is one detected project as a build step and a service.
type plannedService struct {
	name    string
	p       Project
	command string
	todo    bool // the command is a guess
	port    int
}

// planServices names a service per project and gives each a port.
func planServices(app string, projects []Project) []plannedService {
	var out []plannedService
	names := make(map[string]bool)
	ports := make(map[int]bool)
	for _, p := range projects {
		s := plannedService{name: app, p: p}
		if p.Dir != "" {
			s.name = appName(p.Dir)
		}
		if names[s.name] {
			s.name += "-" + string(p.Tool)
		}
		for i := 2; names[s.name]; i++ {
			s.name = fmt.Sprintf("%s-%d", strings.TrimRight(s.name, "0123456789-"), i)
		}
		names[s.name] = true
		switch p.Tool {
		case ToolUV, ToolPip:
			s.command, s.todo, s.port = ".venv/bin/python -m app", true, 8000
		case ToolNPM:
			s.command, s.todo, s.port = "node server.js", true, 3000
			if p.StartScript {
				s.command, s.todo = "npm start", false
			}
		case ToolGo:
			s.command, s.port = "./bin/"+s.name, 8080
		}
		for ports[s.port] {
			s.port++
		}
		ports[s.port] = true
		out = append(out, s)
	}
	return out
}

func (s plannedService) writeStep(w *yamlWriter) {
	var run, what string
	var reusePaths, reuseKey []string
	switch s.p.Tool {
	case ToolUV:
		run, what = "uv sync --frozen", "deps (uv)"
		reusePaths, reuseKey = []string{".venv"}, []string{"uv.lock", "pyproject.toml"}
	case ToolPip:
		run, what = "python3 -m venv .venv && .venv/bin/pip install .", "deps (pip)"
		reusePaths, reuseKey = []string{".venv"}, []string{"pyproject.toml"}
		if s.p.Requirements {
			run = "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt"
			reuseKey = []string{"requirements.txt"}
		}
	case ToolNPM:
		run, what = "npm ci", "deps (npm)"
		if s.p.BuildScript {
			run, what = "npm ci && npm run build", "build (npm)"
		}
	case ToolGo:
		run, what = "go build -o bin/"+s.name+" .", "build (go)"
	}
	w.line(1, "- name: "+quote(s.name+" "+what), "shown in the log and the ledger; default: the command")
	if s.p.Dir != "" {
		w.line(2, "dir: "+quote(s.p.Dir), "where it runs, relative to the release")
	}
	w.line(2, "run: "+quote(run), "the command (with /bin/sh -c when it has shell syntax)")
	if len(reusePaths) > 0 {
		w.line(2, "reuse:", "copied from the previous release while the key files are unchanged")
		w.line(3, "paths: ["+strings.Join(reusePaths, ", ")+"]", "what is copied")
		w.line(3, "key: ["+strings.Join(reuseKey, ", ")+"]", "the files compared")
	}
	w.line(2, "timeout: 10m", "the step fails after this long")
}

func (s plannedService) writeService(w *yamlWriter, app string) {
	w.line(1, quote(s.name)+":", "the service's name ([a-z][a-z0-9-]*)")
	if s.p.Dir != "" {
		w.line(2, "dir: "+quote(s.p.Dir), "where it runs, relative to the release")
	}
	note := "how to start it (process manager), relative to dir"
	if s.todo {
		note = "TODO: " + note
	}
	w.line(2, "command: "+quote(s.command), note)
	w.line(2, "# unit: "+app+"-"+s.name+".service", "its systemd unit (systemd manager); default <app>-<name>.service")
	w.line(2, "env_file: "+quote(app), "the env_files entry whose variables it gets")
	w.line(2, "port: "+strconv.Itoa(s.port), "TODO: the port it listens on; checked free before start")
	w.line(2, "stop_timeout: 30s", "how long it may take to stop")
}

// plainSafe is what quote may leave unquoted.
var plainSafe = regexp.MustCompile(`^[A-Za-z_./][A-Za-z0-9_./ &()+-]*$`)

// quote returns s as a YAML scalar that reads back as the string s:
// double-quoted unless it is plainly safe.
func quote(s string) string {
	switch strings.ToLower(s) {
	case "true", "false", "yes", "no", "on", "off", "y", "n", "null", ".inf", ".nan":
		return strconv.Quote(s)
	}
	if plainSafe.MatchString(s) && !strings.HasSuffix(s, " ") {
		return s
	}
	return strconv.Quote(s)
}

// yamlWriter builds a YAML file line by line, with aligned comments.
type yamlWriter struct {
	lines []templateLine
}

type templateLine struct {
	text, comment string
}

func (w *yamlWriter) line(indent int, text, comment string) {
	w.lines = append(w.lines, templateLine{strings.Repeat("  ", indent) + text, comment})
}

func (w *yamlWriter) note(indent int, text string) {
	w.line(indent, "# "+text, "")
}

func (w *yamlWriter) blank() { w.line(0, "", "") }

// commentColumn is where trailing comments start, unless a line is longer.
const commentColumn = 36

func (w *yamlWriter) String() string {
	var b strings.Builder
	for _, l := range w.lines {
		b.WriteString(l.text)
		if l.comment != "" {
			pad := max(commentColumn-len(l.text), 1)
			b.WriteString(strings.Repeat(" ", pad) + "# " + l.comment)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
