package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// writeConfig writes a slipway.yml into a fresh directory and returns its path.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "slipway.yml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// withPID1 makes the default manager detection read comm as PID 1's name.
func withPID1(t testing.TB, comm string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "comm")
	if err := os.WriteFile(p, []byte(comm+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := pid1Comm
	pid1Comm = p
	t.Cleanup(func() { pid1Comm = old })
}

const minimal = "app: web\nrepo: /srv/web.git\n"

func TestLoadErrors(t *testing.T) {
	withPID1(t, "init")
	tests := []struct {
		name string
		yaml string
		want string // the error after "FILE:"
	}{
		{"unknown key", minimal + "servics: {}\n",
			`3:1: unknown key "servics" (did you mean "services"?)`},
		{"unknown nested key", minimal + "health:\n  url: http://127.0.0.1/\n  timout: 5s\n",
			`5:3: health: unknown key "timout" (did you mean "timeout"?)`},
		{"unknown key in list item", minimal + "build:\n  - run: make\n    dirr: web\n",
			`5:5: build[0]: unknown key "dirr" (did you mean "dir"?)`},
		{"unknown key without a close match", minimal + "colour: red\n",
			`3:1: unknown key "colour" (known keys: app, root, repo, branch, user, keep_releases, shared, env_files, require_env, build, migrate, manager, services, health, smoke, snapshot, triggers, api, notify, fleet)`},
		{"string for integer", minimal + "keep_releases: five\n",
			`3:16: keep_releases: expected an integer, got string`},
		{"fraction for integer", minimal + "keep_releases: 2.5\n",
			`3:16: keep_releases: expected an integer, got number`},
		{"list for string", "app: [web]\nrepo: r\n",
			`1:6: app: expected a string, got list`},
		{"mapping for string", "app:\n  name: web\nrepo: r\n",
			`1:1: app: expected a string, got mapping`},
		{"list for mapping", minimal + "services: [web]\n",
			`3:11: services: expected a mapping, got list`},
		{"mapping for list", minimal + "build:\n  run: make\n",
			`3:1: build: expected a list, got mapping`},
		{"scalar for list item", minimal + "build:\n  - make\n",
			`4:5: build[0]: expected a mapping, got string`},
		{"integer overflow", minimal + "keep_releases: 99999999999999999999\n",
			`3:16: keep_releases: 99999999999999999999 is out of range`},
		{"bad duration", minimal + "health:\n  url: http://127.0.0.1:8000/health\n  timeout: 5 minutes\n",
			`5:12: health.timeout: "5 minutes" is not a duration (examples: 90s, 5m)`},
		{"duration without unit", minimal + "triggers:\n  poll: 90\n",
			`4:9: triggers.poll: 90 is not a duration: add a unit (examples: 90s, 5m)`},
		{"negative duration", minimal + "build:\n  - run: make\n    timeout: -1m\n",
			`5:14: build[0].timeout: "-1m" must not be negative`},
		{"list for duration", minimal + "triggers:\n  poll: [1s]\n",
			`4:9: triggers.poll: expected a duration (examples: 90s, 5m), got list`},
		{"bad app name", "app: My_App\nrepo: r\n",
			`1:6: app: "My_App" is not a valid name: use lowercase letters, digits and "-", starting with a letter`},
		{"app starting with a digit", "app: 1web\nrepo: r\n",
			`1:6: app: "1web" is not a valid name: use lowercase letters, digits and "-", starting with a letter`},
		{"missing app", "repo: r\n",
			`1:1: missing required key "app" (the app's name, e.g. app: myapp)`},
		{"missing repo", "app: web\n",
			`1:1: missing required key "repo" (the git URL or local path to deploy from)`},
		{"empty file", "",
			`1:1: missing required key "app" (the app's name, e.g. app: myapp)`},
		{"negative keep_releases", minimal + "keep_releases: -1\n",
			`3:16: keep_releases: must be 0 or more, got -1`},
		{"absolute shared path", minimal + "shared: [data, /var/data]\n",
			`3:16: shared[1]: "/var/data" must be a relative path`},
		{"shared path escaping", minimal + "shared:\n  - ../data\n",
			`4:5: shared[0]: "../data" must stay inside its directory (no ..)`},
		{"unclean dir", minimal + "build:\n  - run: make\n    dir: web/\n",
			`5:10: build[0].dir: "web/" is not clean (write "web")`},
		{"reuse link and share", minimal + "build:\n  - run: uv sync\n    reuse: {paths: [.venv], key: [uv.lock], link: true, share: true}\n",
			`5:64: build[0].reuse.share: set "link" or "share", not both`},
		{"reuse path escaping", minimal + "build:\n  - run: uv sync\n    reuse: {paths: [a/../../x], key: [uv.lock]}\n",
			`5:21: build[0].reuse.paths[0]: "a/../../x" must stay inside its directory (no ..)`},
		{"env file escaping", minimal + "env_files:\n  web: ../web.env\n",
			`4:8: env_files.web: "../web.env" must stay inside its directory (no ..)`},
		{"bad require_env name", minimal + "require_env: [API-TOKEN]\n",
			`3:15: require_env[0]: "API-TOKEN" is not a variable name`},
		{"step without run", minimal + "build:\n  - name: deps\n    dir: web\n",
			`4:5: build[0]: missing "run" (the command to run)`},
		{"migrate without run", minimal + "migrate:\n  dir: db\n",
			`3:1: migrate: missing "run" (the command to run)`},
		{"duplicate step names", minimal + "build:\n  - name: deps\n    run: a\n  - name: deps\n    run: b\n",
			`6:11: build[1].name: duplicate step name "deps" (also build[0]); give each step a unique name`},
		{"duplicate default step names", minimal + "build:\n  - run: make\n  - run: make\n",
			`5:10: build[1].run: duplicate step name "make" (also build[0]); give each step a unique name`},
		{"env_file not in env_files", minimal + "env_files: {web: web.env}\nservices:\n  web:\n    command: ./web\n    env_file: backend\n",
			`7:15: services.web.env_file: "backend" is not in env_files (known: web)`},
		{"env_file without env_files", minimal + "build:\n  - run: make\n    env_file: web\n",
			`5:15: build[0].env_file: "web" is not in env_files (add it there: env_files: {web: web.env})`},
		{"bad manager", minimal + "manager: docker\n",
			`3:10: manager: "docker" is not a service manager (use systemd or process)`},
		{"bad service name", minimal + "services:\n  Web_1:\n    command: ./web\n",
			`4:3: services: "Web_1" is not a valid service name: use lowercase letters, digits and "-", starting with a letter`},
		{"empty service", minimal + "services:\n  web:\n",
			`4:3: services.web: expected a mapping with at least "command"`},
		{"service without command, manager unset", minimal + "services:\n  web:\n    port: 8000\n",
			`4:3: services.web: missing "command" (how to start it; required unless manager is systemd)`},
		{"service without command, manager process", minimal + "manager: process\nservices:\n  web:\n    unit: web.service\n",
			`5:3: services.web: missing "command" (how to start it; required unless manager is systemd)`},
		{"port out of range", minimal + "services:\n  web:\n    command: ./web\n    port: 70000\n",
			`6:11: services.web.port: 70000 is out of range (1-65535)`},
		{"negative port", minimal + "services:\n  web:\n    command: ./web\n    port: -1\n",
			`6:11: services.web.port: -1 is out of range (1-65535)`},
		{"proxy without listen", minimal + "services:\n  web:\n    command: ./web\n    proxy: {health: /health}\n",
			`6:5: services.web.proxy: missing "listen" (the public address, e.g. 0.0.0.0:3000)`},
		{"proxy health not a path", minimal + "services:\n  web:\n    command: ./web\n    proxy: {listen: ':3000', health: health}\n",
			`6:38: services.web.proxy.health: "health" must be a path starting with /`},
		{"bad health URL", minimal + "health:\n  url: 127.0.0.1:8000/health\n",
			`4:8: health.url: "127.0.0.1:8000/health" is not an http(s) URL (example: http://127.0.0.1:8000/health)`},
		{"health without URL", minimal + "health:\n  timeout: 5s\n",
			`3:1: health: missing "url" (the URL that answers when the app is up)`},
		{"bad expect_status", minimal + "health:\n  url: http://127.0.0.1/\n  expect_status: 2000\n",
			`5:18: health.expect_status: 2000 is not an HTTP status (100-599)`},
		{"negative fail_after", minimal + "health:\n  url: http://127.0.0.1/\n  fail_after: -1\n",
			`5:15: health.fail_after: must be from 0 (wait for the timeout) to 1000`},
		{"smoke check with url and run", minimal + "smoke:\n  - url: http://127.0.0.1/\n    run: ./check\n",
			`4:5: smoke[0]: set "url" or "run", not both`},
		{"smoke check with neither", minimal + "smoke:\n  - name: nothing\n",
			`4:5: smoke[0]: needs "url" (an HTTP check) or "run" (a command check)`},
		{"bad smoke URL", minimal + "smoke:\n  - url: ftp://example.com/\n",
			`4:10: smoke[0].url: "ftp://example.com/" is not an http(s) URL (example: http://127.0.0.1:8000/health)`},
		{"bad id_pattern", minimal + "snapshot:\n  id_pattern: 'commit-[a-z'\n",
			"4:15: snapshot.id_pattern: not a regular expression: error parsing regexp: missing closing ]: `[a-z`"},
		{"snapshot without provider", minimal + "snapshot:\n  keep: 3\n",
			"4:3: snapshot: takes no snapshot: set data (shared/ paths to archive) or create (your VM's snapshot command)"},
		{"snapshot create without id_pattern", minimal + "snapshot:\n  create: snap --vm {{.VMID}}\n",
			`3:1: snapshot: missing "id_pattern" (the regular expression that finds the snapshot id in create's output)`},
		{"snapshot bad placeholder", minimal + "snapshot:\n  create: snap --vm {{.VmId}}\n  id_pattern: x\n",
			`4:11: snapshot.create: "{{.VmId}}": unknown placeholder (use {{.VMID}}, {{.ID}}, {{.Label}}, {{.App}} or {{.Commit}})`},
		{"snapshot keep 0", minimal + "snapshot:\n  data: [db]\n  keep: 0\n",
			"5:9: snapshot.keep: must be at least 1 (the snapshots kept per label)"},
		{"snapshot restore_data", minimal + "snapshot:\n  data: [db]\n  restore_data: always\n",
			`5:17: snapshot.restore_data: "always": use auto or never`},
		{"webhook without secret", minimal + "triggers:\n  webhook:\n    listen: 0.0.0.0:9009\n",
			`4:3: triggers.webhook: missing "secret_env" (the variable holding the webhook secret)`},
		{"listen port out of range", minimal + "api:\n  listen: 127.0.0.1:70000\n",
			`4:11: api.listen: port "70000" is out of range (1-65535)`},
		{"listen without port", minimal + "api:\n  listen: localhost\n",
			`4:11: api.listen: "localhost" is not host:port (example: 127.0.0.1:9010)`},
		{"notify without url", minimal + "notify:\n  - {}\n",
			`4:5: notify[0]: missing "url" (where to POST deploy events)`},
		{"syntax error", "app: 'web\n",
			`1:6: could not find end character of single-quoted text`},
		{"duplicate key", "app: web\napp: api\n",
			`2:1: mapping key "app" already defined at line 1`},
		{"two documents", minimal + "---\napp: api\n",
			`4:1: a second YAML document: slipway.yml holds one (remove the ---)`},
		{"YAML tag", minimal + "keep_releases: !!str 5\n",
			`3:16: keep_releases: YAML tags such as !!str are not supported; write the value plainly (quote it to make it a string)`},
		{"list at top level", "- app: web\n",
			`1:1: expected a mapping of keys (app: ..., repo: ...), got list`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeConfig(t, tt.yaml)
			cfg, err := Load(p)
			if err == nil {
				t.Fatalf("Load succeeded: %+v", cfg)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error is %T, not *config.Error: %v", err, err)
			}
			if got, want := err.Error(), p+":"+tt.want; got != want {
				t.Errorf("error\n got: %s\nwant: %s", got, want)
			}
			if ce.Pos.File != p {
				t.Errorf("Pos.File = %q, want %q", ce.Pos.File, p)
			}
		})
	}
}

func TestLoadValid(t *testing.T) {
	withPID1(t, "init")
	tests := []struct {
		name  string
		yaml  string
		check func(t *testing.T, c *Config)
	}{
		{"systemd services need no command", minimal + "manager: systemd\nservices:\n  web: {unit: web.service}\n",
			func(t *testing.T, c *Config) {
				if c.Services["web"].Unit != "web.service" {
					t.Errorf("unit = %q", c.Services["web"].Unit)
				}
			}},
		{"explicit keep_releases 0 is kept", minimal + "keep_releases: 0\n",
			func(t *testing.T, c *Config) {
				if c.KeepReleases != 0 {
					t.Errorf("keep_releases = %d, want 0", c.KeepReleases)
				}
			}},
		{"quoted integer", minimal + "keep_releases: \"3\"\n",
			func(t *testing.T, c *Config) {
				if c.KeepReleases != 3 {
					t.Errorf("keep_releases = %d, want 3", c.KeepReleases)
				}
			}},
		{"poll 0 is off", minimal + "triggers: {poll: 0}\n",
			func(t *testing.T, c *Config) {
				if c.Triggers.Poll != 0 {
					t.Errorf("poll = %v", c.Triggers.Poll)
				}
			}},
		{"anchors and merge keys", minimal + "build:\n  - &deps {run: make, timeout: 2m}\n  - {<<: *deps, name: more}\n",
			func(t *testing.T, c *Config) {
				if len(c.Build) != 2 || c.Build[1].Run != "make" || c.Build[1].Timeout != Duration(2*time.Minute) || c.Build[1].Name != "more" {
					t.Errorf("build = %+v", c.Build)
				}
			}},
		{"relative root and repo are next to the config", "app: web\nrepo: ../src\nroot: ./.slipway\n",
			func(t *testing.T, c *Config) {
				dir := filepath.Dir(c.Path)
				if c.Root != filepath.Join(dir, ".slipway") || c.Repo != filepath.Join(filepath.Dir(dir), "src") {
					t.Errorf("root = %q, repo = %q", c.Root, c.Repo)
				}
			}},
		{"remote repos stay as written", "app: web\nrepo: git@github.com:acme/web.git\nroot: /srv/web/\n",
			func(t *testing.T, c *Config) {
				if c.Repo != "git@github.com:acme/web.git" || c.Root != "/srv/web" {
					t.Errorf("root = %q, repo = %q", c.Root, c.Repo)
				}
			}},
		{"dir . is the release", minimal + "build:\n  - {run: make, dir: .}\n",
			func(t *testing.T, c *Config) {
				if c.Build[0].Dir != "." {
					t.Errorf("dir = %q", c.Build[0].Dir)
				}
			}},
		{"block scalar command", minimal + "build:\n  - name: deps\n    run: |\n      make\n      make install\n",
			func(t *testing.T, c *Config) {
				if c.Build[0].Run != "make\nmake install\n" {
					t.Errorf("run = %q", c.Build[0].Run)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(writeConfig(t, tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestLoadDefaults(t *testing.T) {
	tests := []struct {
		comm, manager string
	}{
		{"systemd", ManagerSystemd},
		{"init", ManagerProcess},
		{"tini", ManagerProcess},
	}
	for _, tt := range tests {
		t.Run(tt.comm, func(t *testing.T) {
			withPID1(t, tt.comm)
			p := writeConfig(t, minimal+`
build:
  - run: uv sync
migrate:
  run: alembic upgrade head
services:
  api:
    command: ./api
    proxy: {listen: ":3000"}
health:
  url: http://127.0.0.1:8000/health
smoke:
  - url: http://127.0.0.1:8000/
    method: post
  - run: ./smoke.sh
`)
			got, err := Load(p)
			if err != nil {
				t.Fatal(err)
			}
			want := &Config{
				Path:         p,
				App:          "web",
				Root:         "/opt/web",
				Repo:         "/srv/web.git",
				Branch:       "main",
				KeepReleases: 5,
				Build:        []Step{{Name: "uv sync", Run: "uv sync", Timeout: Duration(10 * time.Minute)}},
				Migrate:      &Step{Name: "migrate", Run: "alembic upgrade head", Timeout: Duration(10 * time.Minute)},
				Manager:      tt.manager,
				Services: map[string]*Service{"api": {
					Name: "api", Command: "./api", Unit: "web-api.service", StopTimeout: Duration(30 * time.Second),
					Proxy: &Proxy{Listen: ":3000", DrainTimeout: Duration(30 * time.Second)},
				}},
				Health: &Health{URL: "http://127.0.0.1:8000/health", ExpectStatus: 200,
					Timeout: Duration(60 * time.Second), Interval: Duration(time.Second), Settle: DefaultSettle, FailAfter: DefaultFailAfter},
				Smoke: []Check{
					{Name: "POST http://127.0.0.1:8000/", URL: "http://127.0.0.1:8000/", Method: "POST", ExpectStatus: 200, Timeout: Duration(30 * time.Second)},
					{Name: "./smoke.sh", Run: "./smoke.sh", Timeout: Duration(30 * time.Second)},
				},
				Env: map[string]map[string]string{},
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Load =\n%s\nwant\n%s", dump(got), dump(want))
			}
		})
	}
}

// TestLoadSpecExample loads testdata/spec.yml, a config that uses every key.
func TestLoadSpecExample(t *testing.T) {
	t.Setenv("VERS_AUTH_TOKEN", "")
	t.Setenv("INFRA_VM_ID", "")
	const file = "testdata/spec.yml"
	got, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	min := func(n int) Duration { return Duration(time.Duration(n) * time.Minute) }
	sec := func(n int) Duration { return Duration(time.Duration(n) * time.Second) }
	want := &Config{
		Path:         file,
		App:          "lucille",
		Root:         "/opt/lucille",
		Repo:         "https://github.com/acme/lucille.git",
		Branch:       "main",
		User:         "lucille",
		KeepReleases: 5,
		Shared:       []string{"data", "logs/app"},
		EnvFiles:     map[string]string{"backend": "backend.env", "worker": "worker.env"},
		RequireEnv:   []string{"VERS_AUTH_TOKEN"},
		Build: []Step{
			{Name: "backend deps", Dir: "backend", Run: "uv sync --frozen", Timeout: min(10),
				Reuse: &Reuse{Paths: []string{".venv"}, Key: []string{"uv.lock", "pyproject.toml"}}},
			{Name: "web build", Dir: "web", Run: "npm ci && npm run build", EnvFile: "backend", Timeout: min(10)},
		},
		Migrate: &Step{Name: "migrate", Dir: "backend", Run: ".venv/bin/alembic upgrade head", EnvFile: "backend", Timeout: min(10)},
		Manager: ManagerSystemd,
		Services: map[string]*Service{
			"backend": {Name: "backend", Dir: "backend", Command: ".venv/bin/uvicorn app:app --host 127.0.0.1 --port 8000",
				Unit: "lucille-backend.service", EnvFile: "backend", Port: 8000, StopTimeout: sec(30)},
			"worker": {Name: "worker", Dir: "worker", Command: ".venv/bin/python -m worker",
				Unit: "lucille-worker.service", EnvFile: "worker", StopTimeout: sec(30)},
		},
		Health: &Health{URL: "http://127.0.0.1:8000/health", ExpectStatus: 200, Timeout: sec(60), Interval: sec(1), Settle: DefaultSettle, FailAfter: DefaultFailAfter},
		Smoke: []Check{
			{Name: "board refuses anonymous calls", URL: "http://127.0.0.1:8000/board/tasks", Method: "GET",
				ExpectStatus: 401, Timeout: sec(30)},
			{Name: "board answers with the token", URL: "http://127.0.0.1:8000/board/tasks", Method: "GET",
				Headers: map[string]string{"Authorization": "Bearer "}, ExpectStatus: 200, ExpectBody: `"tasks"`, Timeout: sec(30)},
			{Name: "custom script", Run: "./scripts/smoke.sh", Timeout: sec(30)},
		},
		Snapshot: &Snapshot{
			Data:        []string{"data"},
			Create:      "vers_vm_commit --vmId {{.VMID}}",
			IDPattern:   "commit-[a-z0-9]+",
			Restore:     "vers_vm_restore --commitId {{.ID}}",
			Keep:        DefaultSnapshotKeep,
			RestoreData: RestoreDataAuto,
			Timeout:     DefaultStepTimeout,
		},
		Triggers: Triggers{Poll: sec(60), Webhook: &Webhook{Listen: "0.0.0.0:9009", SecretEnv: "SLIPWAY_WEBHOOK_SECRET"}},
		API:      API{Listen: "127.0.0.1:9010", TokenEnv: "SLIPWAY_API_TOKEN"},
		Notify:   []Notify{{URL: "https://hooks.example.com/deploys"}},
		Unset: []VarRef{
			{Name: "VERS_AUTH_TOKEN", Pos: Pos{File: file, Line: 62, Col: 31}},
			{Name: "INFRA_VM_ID", Pos: Pos{File: file, Line: 73, Col: 10}},
		},
		Env: map[string]map[string]string{},
	}
	if _, err := os.Stat("/opt/lucille/env"); err == nil {
		want.Env = got.Env // a real lucille install on this machine: its env files are read
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load =\n%s\nwant\n%s", dump(got), dump(want))
	}
}

// dump prints a config with its pointers followed, for failure messages.
func dump(c *Config) string {
	var b strings.Builder
	v := reflect.ValueOf(c).Elem()
	for i := range v.NumField() {
		b.WriteString(v.Type().Field(i).Name + ": " + deref(v.Field(i)) + "\n")
	}
	return b.String()
}

func deref(v reflect.Value) string {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return "nil"
		}
		return "&" + deref(v.Elem())
	case reflect.Map:
		var parts []string
		for _, k := range v.MapKeys() {
			parts = append(parts, deref(k)+":"+deref(v.MapIndex(k)))
		}
		return "map[" + strings.Join(parts, " ") + "]"
	case reflect.Slice:
		var parts []string
		for i := range v.Len() {
			parts = append(parts, deref(v.Index(i)))
		}
		return "[" + strings.Join(parts, " ") + "]"
	case reflect.Struct:
		var parts []string
		for i := range v.NumField() {
			parts = append(parts, v.Type().Field(i).Name+":"+deref(v.Field(i)))
		}
		return "{" + strings.Join(parts, " ") + "}"
	}
	if v.Kind() == reflect.String {
		return strconv.Quote(v.String())
	}
	return fmt.Sprint(v.Interface())
}

// FuzzLoad checks that no input panics, that every refusal is a one-line
// *Error placed in the file, and that what loads is valid.
func FuzzLoad(f *testing.F) {
	spec, err := os.ReadFile("testdata/spec.yml")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		string(spec),
		minimal,
		minimal + "services:\n  web: {command: ./web, port: ${PORT}}\n",
		minimal + "build:\n  - &a {run: make}\n  - {<<: *a, name: b}\n",
		minimal + "health: {url: 'http://x/', timeout: 5 minutes}\n",
		"app: [\n", "- 1\n", "", "a: &a [*a]\n",
		Template(Detected{App: "x", Projects: []Project{{Dir: "a", Tool: ToolUV}, {Tool: ToolNPM}}}),
	} {
		f.Add([]byte(s))
	}
	withPID1(f, "init")
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parse("fuzz.yml", data)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("%T is not a *config.Error: %v", err, err)
			}
			if !strings.HasPrefix(err.Error(), "fuzz.yml:") || ce.Pos.Line < 1 || ce.Pos.Col < 1 {
				t.Fatalf("badly placed: %q", err)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("not one line: %q", err)
			}
			return
		}
		if !namePattern.MatchString(c.App) {
			t.Fatalf("loaded an invalid app name %q", c.App)
		}
		if c.Manager != ManagerSystemd && c.Manager != ManagerProcess {
			t.Fatalf("manager %q", c.Manager)
		}
		for name, s := range c.Services {
			if s == nil || s.Name != name || !namePattern.MatchString(name) {
				t.Fatalf("service %q: %+v", name, s)
			}
		}
	})
}

// TestLoadExamples loads the example apps' configs as shipped.
func TestLoadExamples(t *testing.T) {
	withPID1(t, "init")
	files, err := filepath.Glob("../../examples/*/slipway.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Skip("no examples")
	}
	for _, f := range files {
		t.Run(filepath.Base(filepath.Dir(f)), func(t *testing.T) {
			if _, err := Load(f); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestSettle(t *testing.T) {
	for _, tc := range []struct {
		name, health string
		want         Duration
	}{
		{"default", "health:\n  url: http://127.0.0.1:8000/health\n", DefaultSettle},
		{"set", "health:\n  url: http://127.0.0.1:8000/health\n  settle: 2s\n", Duration(2 * time.Second)},
		{"off", "health:\n  url: http://127.0.0.1:8000/health\n  settle: 0s\n", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "slipway.yml")
			if err := os.WriteFile(path, []byte("app: web\nrepo: /srv/web.git\n"+tc.health), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if c.Health.Settle != tc.want {
				t.Errorf("settle = %s, want %s", c.Health.Settle.D(), tc.want.D())
			}
		})
	}
}
