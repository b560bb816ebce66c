package config

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Template returns a commented slipway.yml for what Detect found. It loads
// as is; what it had to guess is marked TODO, and `slipway check` warns
// while a TODO remains.
func Template(d Detected) string {
	app := appName(d.App)
	repo := d.Repo
	if repo == "" {
		repo = "."
	}
	plan := planInit(app, d)
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
	if len(d.Shared) > 0 {
		w.line(0, "shared: ["+quoteAll(d.Shared)+"]", "ignored by git and written at run time: kept in <root>/shared/, linked into every release")
	} else {
		w.line(0, "# shared: [data]", "paths under <root>/shared/ linked into every release")
	}
	w.blank()
	w.line(0, "env_files:", "name -> dotenv file under <root>/env/ (never in the repo)")
	w.line(1, quote(app)+": "+app+".env", "the variables the services get")
	if len(plan.secrets) > 0 {
		w.line(0, "require_env: ["+strings.Join(plan.secrets, ", ")+"]", "the code reads these secrets: deploys are refused while one is unset or empty")
	} else {
		w.line(0, "# require_env: [SECRET_KEY]", "deploys are refused while one of these is unset or empty")
	}
	w.blank()

	if len(plan.steps) == 0 {
		w.line(0, "# build:", "commands run in order inside the new release; a failure aborts before the switch")
		w.line(0, "#   - name: deps", "shown in the log; default: the command")
		w.line(0, "#     run: make", "the command (with /bin/sh -c when it has shell syntax)")
	} else {
		w.line(0, "build:", "commands run in order inside the new release; a failure aborts before the switch")
		for _, s := range plan.steps {
			s.write(w)
		}
	}
	w.blank()
	if m := plan.migrate; m != nil {
		w.line(0, "migrate:", "run after the build, before the switch; shared data is snapshotted first")
		if m.dir != "" {
			w.line(1, "dir: "+quote(m.dir), "where it runs, relative to the release")
		}
		w.line(1, "run: "+quote(m.run), m.note)
		w.line(1, "env_file: "+quote(app), "the env_files entry it gets")
	} else {
		w.line(0, "# migrate:", "run after the build, before the switch; shared data is snapshotted first")
		w.line(0, "#   dir: .", "where it runs, relative to the release")
		w.line(0, "#   run: ./migrate", "the migration command")
		w.line(0, "#   env_file: "+quote(app), "the env_files entry it gets")
	}
	w.blank()
	w.line(0, "# manager: systemd", "systemd | process; default systemd when PID 1 is systemd")
	w.line(0, "services:", "the long-running processes, restarted on each deploy")
	for _, s := range plan.services {
		s.write(w, app)
	}
	w.blank()
	web := plan.web()
	switch {
	case web.health != "":
		w.line(0, "health:", "proves the new version up; failing it rolls back")
		w.line(1, fmt.Sprintf("url: http://127.0.0.1:%d%s", web.port, web.health), "a route the code serves")
		w.line(1, "expect_status: 200", "the status it must answer with")
		w.line(1, "timeout: 60s", "total time allowed to become healthy")
		w.line(1, "interval: 1s", "time between tries")
	default:
		w.line(0, "# health:", "TODO: no health route found in the code: add one (it answers 200 once the app is up), then uncomment")
		w.line(0, fmt.Sprintf("#   url: http://127.0.0.1:%d/health", web.port), "a URL that answers once the app is up")
		w.line(0, "#   expect_status: 200", "the status it must answer with")
		w.line(0, "#   timeout: 60s", "total time allowed to become healthy")
	}
	w.blank()
	if web.auth != "" {
		route, note := web.route, "a route the code guards with "+web.auth
		if route == "" {
			route, note = "/", "TODO: a route that needs "+web.auth
		}
		url := fmt.Sprintf("http://127.0.0.1:%d%s", web.port, route)
		header, hnote := "Bearer ${"+web.auth+"}", "how the code reads the token"
		if !web.bearer {
			hnote = "TODO: " + hnote
		}
		w.line(0, "smoke:", "checks after health; every one must pass")
		w.line(1, "- name: anonymous is refused", "a server started without its token must not pass")
		w.line(2, "url: "+url, note)
		w.line(2, "expect_status: 401", "the status it must answer with")
		w.line(1, "- name: the token works", "shown in the log")
		w.line(2, "url: "+url, "the same route")
		w.line(2, "headers: { Authorization: "+strconv.Quote(header)+" }", hnote+"; ${VAR} comes from the env files")
		w.line(2, "expect_status: 200", "the status it must answer with")
	} else {
		w.line(0, "# smoke:", "checks after health; every one must pass")
		w.line(0, "#   - name: refuses anonymous calls", "shown in the log")
		w.line(0, fmt.Sprintf("#     url: http://127.0.0.1:%d/api", web.port), "an HTTP check (or run: a command, exit 0 = pass)")
		w.line(0, "#     expect_status: 401", "the status it must answer with; default 200")
	}
	w.blank()
	if len(d.Shared) > 0 && plan.sqlite {
		w.line(0, "snapshot:", "restore points of the data, taken by every deploy before migrate")
		w.line(1, "data: ["+quoteAll(d.Shared)+"]", "the code opens an SQLite database: these shared/ paths are archived")
	} else {
		w.line(0, "# snapshot:", "restore points")
		w.line(0, "#   data: [data]", "shared/ paths archived before migrations")
	}
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

// NextSteps says what the operator does after init, one line each.
func NextSteps(d Detected, file string) []string {
	app := appName(d.App)
	plan := planInit(app, d)
	var out []string
	if len(plan.secrets) > 0 {
		out = append(out, fmt.Sprintf("put %s in /opt/%s/env/%s.env (mode 0600), or in env/%s.env under the root you set",
			strings.Join(plan.secrets, ", "), app, app, app))
	}
	return append(out, "check the lines of "+file+" marked TODO, then run `slipway check`")
}

// initPlan is what the template writes, worked out from what Detect found.
type initPlan struct {
	steps    []plannedStep
	migrate  *plannedStep
	services []plannedService
	secrets  []string
	sqlite   bool
}

// web returns the first service with a port (the template always has one).
func (p initPlan) web() plannedService {
	for _, s := range p.services {
		if s.port > 0 {
			return s
		}
	}
	return p.services[0]
}

// plannedStep is a build or migrate step.
type plannedStep struct {
	name, dir, run, note string
	label, what          string // the parts of the name
	reuse, key           []string
	share                bool // reuse.share: a venv, which nothing writes into once built
}

// plannedService is one service of the template.
type plannedService struct {
	name, dir, command string
	todo               bool   // the command is a guess
	port               int    // 0: it listens on none (a worker)
	portNote           string // what the port line says
	health             string // the health route its code serves, or ""
	auth, route        string // the secret guarding its API, and a route that needs it
	bearer             bool   // the code takes the secret as a bearer token
}

func planInit(app string, d Detected) initPlan {
	var plan initPlan
	secrets := make(map[string]bool)
	stepNames := make(map[string]bool)
	for _, p := range d.Projects {
		for _, s := range buildSteps(p) {
			for i := 2; stepNames[s.name]; i++ {
				s.name = fmt.Sprintf("%s %s %d", s.label, s.what, i)
			}
			stepNames[s.name] = true
			plan.steps = append(plan.steps, s)
		}
		for _, s := range p.Code.Secrets {
			secrets[s] = true
		}
		plan.sqlite = plan.sqlite || p.Code.SQLite
		if p.Migrate != "" && plan.migrate == nil {
			plan.migrate = &plannedStep{dir: p.Dir, run: p.Migrate, note: "the migration the repository has"}
		}
	}
	for s := range secrets {
		plan.secrets = append(plan.secrets, s)
	}
	slices.Sort(plan.secrets)
	if len(d.Procfile) > 0 {
		plan.services = procfileServices(d, &plan)
	} else {
		plan.services = projectServices(app, d.Projects)
	}
	if len(plan.services) == 0 {
		plan.services = []plannedService{{name: app, command: "./start.sh", todo: true, port: 8000, portNote: "TODO: the port it listens on; checked free before start"}}
	}
	return plan
}

// buildSteps are the steps that build one project: its dependencies, kept
// from the previous release while their lock files are unchanged, then its
// build.
func buildSteps(p Project) []plannedStep {
	label := p.Dir
	if label == "" {
		label = string(p.Tool)
	}
	step := func(what, run, note string) plannedStep {
		return plannedStep{name: label + " " + what, label: label, what: what, dir: p.Dir, run: run, note: note}
	}
	switch p.Tool {
	case ToolUV:
		s := step("deps", "uv sync --frozen", "")
		s.reuse, s.key, s.share = []string{".venv"}, []string{"uv.lock", "pyproject.toml"}, true
		return []plannedStep{s}
	case ToolPip:
		if p.Requirements {
			s := step("deps", "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt", "")
			s.reuse, s.key, s.share = []string{".venv"}, []string{"requirements.txt"}, true
			return []plannedStep{s}
		}
		return []plannedStep{step("deps", "python3 -m venv .venv && .venv/bin/pip install .", "")}
	case ToolNPM:
		var out []plannedStep
		if p.Lock != "" {
			s := step("deps", "npm ci", "")
			s.reuse, s.key = []string{"node_modules"}, []string{"package.json", p.Lock}
			out = append(out, s)
		} else {
			out = append(out, step("deps", "npm install", "TODO: no lock file: commit package-lock.json, then use npm ci"))
		}
		if p.BuildScript {
			out = append(out, step("build", "npm run build", ""))
		}
		return out
	case ToolGo:
		return []plannedStep{step("build", "go build -o bin/ ./...", "every main package, into bin/")}
	}
	return nil
}

// defaultPorts are the ports a service gets when its code names none.
var defaultPorts = map[Tool]int{ToolUV: 8000, ToolPip: 8000, ToolNPM: 3000, ToolGo: 8080}

// projectServices plans a service per project, and one for its worker.
func projectServices(app string, projects []Project) []plannedService {
	var out []plannedService
	names := make(map[string]bool)
	ports := make(map[int]bool)
	unique := func(name string, p Project) string {
		if names[name] {
			name += "-" + string(p.Tool)
		}
		for i := 2; names[name]; i++ {
			name = fmt.Sprintf("%s-%d", strings.TrimRight(name, "0123456789-"), i)
		}
		names[name] = true
		return name
	}
	for _, p := range projects {
		name := app
		if p.Dir != "" {
			name = appName(p.Dir)
		}
		s := webService(p)
		s.name = unique(name, p)
		if s.command == "" {
			s.command, s.todo = map[Tool]string{ToolUV: ".venv/bin/python -m app", ToolPip: ".venv/bin/python -m app", ToolNPM: "node server.js", ToolGo: "bin/" + s.name}[p.Tool], true
		}
		for ports[s.port] {
			s.port++
		}
		ports[s.port] = true
		out = append(out, s)
		if p.Worker != "" {
			worker := "worker"
			if p.Dir != "" {
				worker = name + "-worker"
			}
			out = append(out, plannedService{name: unique(worker, p), dir: p.Dir, command: p.Worker})
		}
	}
	return out
}

// webService is what p's code says about its HTTP service.
func webService(p Project) plannedService {
	s := plannedService{dir: p.Dir, command: p.Start, port: p.Code.Port, health: p.Code.Health, auth: p.Code.AuthEnv, bearer: p.Code.Bearer}
	switch {
	case p.Code.ReadsPort && s.port > 0:
		s.portNote = fmt.Sprintf("the code reads $PORT (default %d): slipway sets PORT to this", s.port)
	case p.Code.ReadsPort:
		s.port, s.portNote = defaultPorts[p.Tool], "the code requires $PORT: slipway sets PORT to this"
	case s.port > 0:
		s.portNote = "the port the code listens on; checked free before start"
	default:
		s.port, s.portNote = defaultPorts[p.Tool], "TODO: the port it listens on; checked free before start"
	}
	for _, r := range p.Code.Routes {
		if s.route == "" || (strings.HasPrefix(r, "/api") && !strings.HasPrefix(s.route, "/api")) {
			s.route = r
		}
	}
	return s
}

// procfileServices plans a service per Procfile process; "release" is the
// migration, as on Heroku. The web process runs from the project at the
// top, whose code says its port and routes.
func procfileServices(d Detected, plan *initPlan) []plannedService {
	var top Project
	for _, p := range d.Projects {
		if p.Dir == "" {
			top = p
			break
		}
	}
	var out []plannedService
	ports := make(map[int]bool)
	for _, proc := range d.Procfile {
		if proc.Name == "release" {
			plan.migrate = &plannedStep{run: proc.Command, note: "the Procfile's release process"}
			continue
		}
		s := plannedService{name: appName(proc.Name), command: proc.Command}
		if proc.Name == "web" || strings.Contains(proc.Command, "$PORT") {
			s = webService(top)
			s.name, s.dir, s.command = appName(proc.Name), "", proc.Command
			if s.port == 0 {
				s.port, s.portNote = 8000, "TODO: the port it listens on; checked free before start"
			}
			if strings.Contains(proc.Command, "$PORT") && !strings.HasPrefix(s.portNote, "TODO") {
				s.portNote = "the Procfile passes $PORT: slipway sets PORT to this"
			}
			for ports[s.port] {
				s.port++
			}
			ports[s.port] = true
		}
		if f := strings.Fields(proc.Command); len(f) >= 2 && f[0] == "npm" && (f[1] == "start" || (len(f) == 3 && f[1] == "run" && f[2] == "start")) && top.Start != "" {
			s.command = top.Start // no npm process in front of the server
		}
		out = append(out, s)
	}
	return out
}

func (s plannedStep) write(w *yamlWriter) {
	w.line(1, "- name: "+quote(s.name), "shown in the log and the ledger; default: the command")
	if s.dir != "" {
		w.line(2, "dir: "+quote(s.dir), "where it runs, relative to the release")
	}
	note := "the command (with /bin/sh -c when it has shell syntax)"
	if s.note != "" {
		note = s.note
	}
	w.line(2, "run: "+quote(s.run), note)
	if len(s.reuse) > 0 {
		w.line(2, "reuse:", "copied from the previous release, and the step skipped, while the key files are unchanged")
		w.line(3, "paths: ["+quoteAll(s.reuse)+"]", "what is copied")
		w.line(3, "key: ["+quoteAll(s.key)+"]", "the files compared")
		if s.share {
			w.line(3, "share: true", "kept once in <root>/deps/ and linked into each release, not copied")
		}
	}
	w.line(2, "timeout: 10m", "the step fails after this long")
}

func (s plannedService) write(w *yamlWriter, app string) {
	w.line(1, quote(s.name)+":", "the service's name ([a-z][a-z0-9-]*)")
	if s.dir != "" {
		w.line(2, "dir: "+quote(s.dir), "where it runs, relative to the release")
	}
	note := "how to start it (process manager), relative to dir"
	if s.todo {
		note = "TODO: " + note
	}
	w.line(2, "command: "+quote(s.command), note)
	w.line(2, "# unit: "+app+"-"+s.name+".service", "its systemd unit (systemd manager); default <app>-<name>.service")
	w.line(2, "env_file: "+quote(app), "the env_files entry whose variables it gets")
	if s.port > 0 {
		w.line(2, "port: "+strconv.Itoa(s.port), s.portNote)
	}
	w.line(2, "stop_timeout: 30s", "how long it may take to stop")
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = quote(s)
	}
	return strings.Join(q, ", ")
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
