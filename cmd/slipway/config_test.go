package main_test

import (
	"path/filepath"
	"strings"
	"testing"
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
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "slipway.yml")
			writeFile(t, path, strings.Replace(tc.yaml, "ROOT", filepath.Join(dir, "root"), 1), 0o644)
			for _, cmd := range [][]string{{"check"}, {"deploy"}, {"status"}} {
				r := runSlipway(t, path, cmd...)
				if r.code != 2 {
					t.Fatalf("%v: want exit 2: %s", cmd, r)
				}
				if !strings.Contains(r.stderr, path+tc.where) || !strings.Contains(r.stderr, tc.says) {
					t.Fatalf("%v: want %q and %q in: %s", cmd, path+tc.where, tc.says, r.stderr)
				}
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
	if !strings.Contains(text, "npm ci") {
		t.Fatalf("npm app not detected:\n%s", text)
	}
	if r := runSlipway(t, out, "deploy", "--dry-run"); r.code == 2 {
		t.Fatalf("init's config does not load: %s", r)
	}
	// Its guesses stay visible until the operator checked them.
	if r := runSlipway(t, out, "check"); !strings.Contains(r.stdout+r.stderr, "still marked TODO") {
		t.Fatalf("check must warn about init's TODOs: %s", r)
	}
}
