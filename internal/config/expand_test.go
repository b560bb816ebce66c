package config

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestExpandString(t *testing.T) {
	env := map[string]string{"A": "1", "EMPTY": "", "B_2": "two"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	tests := []struct {
		in, want string
		missing  []missingRef
	}{
		{"plain", "plain", nil},
		{"${A}", "1", nil},
		{"x${A}y${B_2}z", "x1ytwoz", nil},
		{"$A and $${A}", "$A and $1", nil},
		{"${A:-x} ${1A} ${}", "${A:-x} ${1A} ${}", nil},
		{"a${NOPE}b", "ab", []missingRef{{"NOPE", 1}}},
		{"${EMPTY}${NOPE}", "", []missingRef{{"EMPTY", 0}, {"NOPE", 8}}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, missing := expandString(tt.in, lookup)
			if got != tt.want || !reflect.DeepEqual(missing, tt.missing) {
				t.Errorf("expandString(%q) = %q, %v; want %q, %v", tt.in, got, missing, tt.want, tt.missing)
			}
		})
	}
}

// appRoot makes an app root with env files and a config pointing at it.
func appRoot(t *testing.T, envFiles map[string]string, body string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "env"), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, content := range envFiles {
		if err := os.WriteFile(filepath.Join(root, "env", name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return writeConfig(t, "app: web\nrepo: /srv/web.git\nroot: "+root+"\n"+body)
}

func TestExpandFromProcessEnv(t *testing.T) {
	withPID1(t, "init")
	t.Setenv("SLIPWAY_TEST_REPO", "git@example.com:acme/web.git")
	t.Setenv("SLIPWAY_TEST_PORT", "8123")
	t.Setenv("SLIPWAY_TEST_TOKEN", "s3cret")
	c, err := Load(writeConfig(t, `app: web
repo: ${SLIPWAY_TEST_REPO}
build:
  - run: echo ${SLIPWAY_TEST_TOKEN}
services:
  web:
    command: ./web --port ${SLIPWAY_TEST_PORT}
    port: ${SLIPWAY_TEST_PORT}
health:
  url: http://127.0.0.1:${SLIPWAY_TEST_PORT}/health
smoke:
  - url: http://127.0.0.1:${SLIPWAY_TEST_PORT}/
    headers: {Authorization: "Bearer ${SLIPWAY_TEST_TOKEN}"}
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Repo != "git@example.com:acme/web.git" {
		t.Errorf("repo = %q", c.Repo)
	}
	if c.Services["web"].Port != 8123 {
		t.Errorf("port = %d", c.Services["web"].Port)
	}
	if c.Health.URL != "http://127.0.0.1:8123/health" {
		t.Errorf("health.url = %q", c.Health.URL)
	}
	if got := c.Smoke[0].Headers["Authorization"]; got != "Bearer s3cret" {
		t.Errorf("header = %q", got)
	}
	// Commands keep their references: their environment expands them.
	if c.Build[0].Run != "echo ${SLIPWAY_TEST_TOKEN}" {
		t.Errorf("run = %q", c.Build[0].Run)
	}
	if c.Services["web"].Command != "./web --port ${SLIPWAY_TEST_PORT}" {
		t.Errorf("command = %q", c.Services["web"].Command)
	}
	if len(c.Unset) != 0 {
		t.Errorf("unset = %v", c.Unset)
	}
}

func TestExpandFromEnvFile(t *testing.T) {
	withPID1(t, "init")
	t.Setenv("SLIPWAY_TEST_BOTH", "from-process")
	p := appRoot(t, map[string]string{
		"a.env": "SLIPWAY_TEST_HOOK=https://hooks.example.com/a\nSLIPWAY_TEST_BOTH=from-a\nSLIPWAY_TEST_AB=from-a\n",
		"b.env": "SLIPWAY_TEST_AB=from-b\nSLIPWAY_TEST_VM=vm-1\n",
	}, `env_files: {b: b.env, a: a.env, missing: nope.env}
notify:
  - url: ${SLIPWAY_TEST_HOOK}
snapshot:
  vm_id: ${SLIPWAY_TEST_VM}
  create: ${SLIPWAY_TEST_BOTH}
  restore: ${SLIPWAY_TEST_AB}
  id_pattern: 'snap-\d+'
`)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Notify[0].URL != "https://hooks.example.com/a" {
		t.Errorf("notify url = %q", c.Notify[0].URL)
	}
	if c.Snapshot.VMID != "vm-1" {
		t.Errorf("vm_id = %q", c.Snapshot.VMID)
	}
	if c.Snapshot.Create != "from-process" {
		t.Errorf("the process environment should win: %q", c.Snapshot.Create)
	}
	if c.Snapshot.Restore != "from-a" {
		t.Errorf("env files should be searched by name (a before b): %q", c.Snapshot.Restore)
	}
	if got := c.EnvFor("b"); !reflect.DeepEqual(got, map[string]string{"SLIPWAY_TEST_AB": "from-b", "SLIPWAY_TEST_VM": "vm-1"}) {
		t.Errorf("EnvFor(b) = %v", got)
	}
	if got := c.EnvFor("missing"); got != nil {
		t.Errorf("a missing env file should not be read: %v", got)
	}
	if len(c.Unset) != 0 {
		t.Errorf("unset = %v", c.Unset)
	}
}

func TestExpandUnset(t *testing.T) {
	withPID1(t, "init")
	t.Setenv("SLIPWAY_TEST_EMPTY", "")
	p := writeConfig(t, `app: web
repo: /srv/web.git
snapshot:
  vm_id: vm-${SLIPWAY_TEST_NOPE}-${SLIPWAY_TEST_EMPTY}
  data: [db]
notify:
  - url: ${SLIPWAY_TEST_HOOK_NOPE}
smoke:
  - url: http://127.0.0.1/
    headers:
      Authorization: "Bearer ${SLIPWAY_TEST_NOPE}"
`)
	c, err := Load(p)
	if err != nil {
		t.Fatalf("an unset variable is not a load error: %v", err)
	}
	want := []VarRef{
		{Name: "SLIPWAY_TEST_NOPE", Pos: Pos{File: p, Line: 4, Col: 13}},
		{Name: "SLIPWAY_TEST_EMPTY", Pos: Pos{File: p, Line: 4, Col: 34}},
		{Name: "SLIPWAY_TEST_HOOK_NOPE", Pos: Pos{File: p, Line: 7, Col: 10}},
		{Name: "SLIPWAY_TEST_NOPE", Pos: Pos{File: p, Line: 11, Col: 22}},
	}
	if !reflect.DeepEqual(c.Unset, want) {
		t.Errorf("Unset =\n%v\nwant\n%v", c.Unset, want)
	}
	if c.Snapshot.VMID != "vm--" {
		t.Errorf("vm_id = %q", c.Snapshot.VMID)
	}
	if c.Unset[0].Pos.String() != p+":4:13" {
		t.Errorf("Pos.String() = %q", c.Unset[0].Pos.String())
	}
}

// TestExpandRootFromProcessOnly: root locates the env files, so a variable
// defined only in an env file cannot move it.
func TestExpandRootFromProcessOnly(t *testing.T) {
	withPID1(t, "init")
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "env"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "env", "a.env"), []byte("SLIPWAY_TEST_SUB=elsewhere\nX=1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLIPWAY_TEST_ROOT", root)
	c, err := Load(writeConfig(t, "app: web\nrepo: r\nroot: ${SLIPWAY_TEST_ROOT}\nenv_files: {a: a.env}\nuser: ${SLIPWAY_TEST_SUB}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Root != root || c.User != "elsewhere" || c.EnvFor("a")["X"] != "1" {
		t.Errorf("root = %q, user = %q, env = %v", c.Root, c.User, c.Env)
	}
}

func TestMalformedEnvFileIsNotALoadError(t *testing.T) {
	withPID1(t, "init")
	p := appRoot(t, map[string]string{"a.env": "not a valid line\n"}, "env_files: {a: a.env}\n")
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.EnvFor("a") != nil {
		t.Errorf("a malformed env file should not be read: %v", c.EnvFor("a"))
	}
}
