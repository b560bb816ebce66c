package config

import (
	"reflect"
	"testing"
)

func TestHelpers(t *testing.T) {
	t.Setenv("SLIPWAY_TEST_PROC", "process")
	c := &Config{
		Root:     "/opt/web",
		EnvFiles: map[string]string{"b": "b.env", "a": "sub/a.env", "gone": "gone.env"},
		Services: map[string]*Service{"worker": {}, "api": {}, "beat": {}},
		Env: map[string]map[string]string{
			"a": {"K": "from-a", "SLIPWAY_TEST_PROC": "file"},
			"b": {"K": "from-b", "ONLY_B": "b"},
		},
	}
	if got := c.ServiceNames(); !reflect.DeepEqual(got, []string{"api", "beat", "worker"}) {
		t.Errorf("ServiceNames = %v", got)
	}
	if got := c.EnvFilePath("a"); got != "/opt/web/env/sub/a.env" {
		t.Errorf("EnvFilePath(a) = %q", got)
	}
	if got := c.EnvFilePath("nope"); got != "" {
		t.Errorf("EnvFilePath(nope) = %q", got)
	}
	if got := c.EnvFor("b"); !reflect.DeepEqual(got, c.Env["b"]) {
		t.Errorf("EnvFor(b) = %v", got)
	}
	if got := c.EnvFor("gone"); got != nil {
		t.Errorf("EnvFor(gone) = %v", got)
	}
	if got := (*Config)(nil).EnvFor("a"); got != nil {
		t.Errorf("nil EnvFor = %v", got)
	}
	lookups := []struct {
		key, want string
		ok        bool
	}{
		{"SLIPWAY_TEST_PROC", "process", true},
		{"K", "from-a", true},
		{"ONLY_B", "b", true},
		{"SLIPWAY_TEST_NOWHERE", "", false},
	}
	for _, l := range lookups {
		if got, ok := c.LookupEnv(l.key); got != l.want || ok != l.ok {
			t.Errorf("LookupEnv(%s) = %q, %v; want %q, %v", l.key, got, ok, l.want, l.ok)
		}
	}
}

func TestPosString(t *testing.T) {
	tests := []struct {
		p    Pos
		want string
	}{
		{Pos{File: "slipway.yml", Line: 3, Col: 7}, "slipway.yml:3:7"},
		{Pos{File: "slipway.yml"}, "slipway.yml"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.p, got, tt.want)
		}
	}
	e := &Error{Pos: Pos{File: "a.yml", Line: 1, Col: 2}, Msg: "bad"}
	if e.Error() != "a.yml:1:2: bad" {
		t.Errorf("Error() = %q", e.Error())
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"app", "root", "repo", "services", "env_files", "timeout"}
	tests := map[string]string{
		"servics":   "services",
		"Services":  "services",
		"envfiles":  "env_files",
		"timout":    "timeout",
		"rot":       "root",
		"colour":    "",
		"x":         "",
		"something": "",
	}
	for in, want := range tests {
		if got := suggest(in, known); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}
