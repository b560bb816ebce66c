package process

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/slipway-dev/slipway/internal/service"
)

func TestCommand(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "serve"), []byte("#!/bin/sh\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "python3"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "data.txt"), []byte("not a program\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sh := func(c string) []string { return []string{"/bin/sh", "-c", c} }
	tests := []struct {
		name, command string
		env           []string
		wantPath      string
		wantArgv      []string
		wantErr       bool
	}{
		{name: "relative to the release dir", command: "bin/serve --port 8000",
			wantPath: filepath.Join(bin, "serve"), wantArgv: []string{"bin/serve", "--port", "8000"}},
		{name: "dot slash", command: "./bin/serve", wantPath: filepath.Join(bin, "serve"), wantArgv: []string{"./bin/serve"}},
		{name: "absolute", command: "/bin/sleep  60", wantPath: "/bin/sleep", wantArgv: []string{"/bin/sleep", "60"}},
		{name: "from PATH of Env", command: "serve now", env: []string{"PATH=/nonexistent:" + bin},
			wantPath: filepath.Join(bin, "serve"), wantArgv: []string{"serve", "now"}},
		{name: "relative PATH entry is relative to Dir", command: "serve", env: []string{"PATH=bin"},
			wantPath: filepath.Join(bin, "serve"), wantArgv: []string{"serve"}},
		{name: "default PATH when Env has none", command: "sleep 60", wantArgv: []string{"sleep", "60"}},
		{name: "extra whitespace", command: "\tsleep\t60 ", wantArgv: []string{"sleep", "60"}},
		{name: "python module", command: "python3 -m http.server 8000", env: []string{"PATH=" + bin},
			wantPath: filepath.Join(bin, "python3"), wantArgv: []string{"python3", "-m", "http.server", "8000"}},
		{name: "pipe", command: "serve | tee out", wantPath: "/bin/sh", wantArgv: sh("serve | tee out")},
		{name: "and", command: "npm ci && npm start", wantPath: "/bin/sh", wantArgv: sh("npm ci && npm start")},
		{name: "semicolon", command: "trap '' TERM; sleep 60", wantPath: "/bin/sh", wantArgv: sh("trap '' TERM; sleep 60")},
		{name: "redirect", command: "serve >out", wantPath: "/bin/sh", wantArgv: sh("serve >out")},
		{name: "subshell", command: "(serve)", wantPath: "/bin/sh", wantArgv: sh("(serve)")},
		{name: "variable", command: "serve --port $PORT", wantPath: "/bin/sh", wantArgv: sh("serve --port $PORT")},
		{name: "backquote", command: "serve `date`", wantPath: "/bin/sh", wantArgv: sh("serve `date`")},
		{name: "backslash", command: `serve a\ b`, wantPath: "/bin/sh", wantArgv: sh(`serve a\ b`)},
		{name: "double quote", command: `serve "a b"`, wantPath: "/bin/sh", wantArgv: sh(`serve "a b"`)},
		{name: "glob", command: "serve *.conf", wantPath: "/bin/sh", wantArgv: sh("serve *.conf")},
		{name: "question mark", command: "serve ?", wantPath: "/bin/sh", wantArgv: sh("serve ?")},
		{name: "bracket", command: "serve [ab]", wantPath: "/bin/sh", wantArgv: sh("serve [ab]")},
		{name: "comment", command: "serve # why", wantPath: "/bin/sh", wantArgv: sh("serve # why")},
		{name: "tilde", command: "serve ~/x", wantPath: "/bin/sh", wantArgv: sh("serve ~/x")},
		{name: "percent", command: "serve %1", wantPath: "/bin/sh", wantArgv: sh("serve %1")},
		{name: "newline", command: "serve\nserve", wantPath: "/bin/sh", wantArgv: sh("serve\nserve")},
		{name: "leading env assignment", command: "PORT=8000 serve", wantPath: "/bin/sh", wantArgv: sh("PORT=8000 serve")},
		{name: "trailing env assignment", command: "serve PORT=8000", wantPath: "/bin/sh", wantArgv: sh("serve PORT=8000")},
		{name: "empty", command: "  ", wantErr: true},
		{name: "missing relative program", command: "bin/nope", wantErr: true},
		{name: "not executable", command: "bin/data.txt", wantErr: true},
		{name: "missing in PATH", command: "no-such-program-slipway", env: []string{"PATH=" + bin}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, argv, err := command(service.Spec{Name: "web", Dir: dir, Command: tt.command, Env: tt.env})
			if tt.wantErr {
				if err == nil {
					t.Fatalf("command(%q) = %q %q, want an error", tt.command, path, argv)
				}
				return
			}
			if err != nil {
				t.Fatalf("command(%q): %v", tt.command, err)
			}
			if tt.wantPath != "" && path != tt.wantPath {
				t.Errorf("path = %q, want %q", path, tt.wantPath)
			}
			if !filepath.IsAbs(path) {
				t.Errorf("path %q is not absolute", path)
			}
			if !slices.Equal(argv, tt.wantArgv) {
				t.Errorf("argv = %q, want %q", argv, tt.wantArgv)
			}
		})
	}
}
