package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFind(t *testing.T) {
	touch := func(t *testing.T, p string) string {
		t.Helper()
		if err := os.WriteFile(p, []byte(minimal), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string) (flag, env, system string)
		want    string // the path found; "" when an error is expected
		wantErr string
	}{
		{"flag first", func(t *testing.T, dir string) (string, string, string) {
			touch(t, "slipway.yml")
			return touch(t, filepath.Join(dir, "flag.yml")), touch(t, filepath.Join(dir, "env.yml")), ""
		}, "flag.yml", ""},
		{"missing flag file is an error", func(t *testing.T, dir string) (string, string, string) {
			touch(t, "slipway.yml")
			return filepath.Join(dir, "nope.yml"), "", ""
		}, "", "(from --config)"},
		{"then the environment", func(t *testing.T, dir string) (string, string, string) {
			touch(t, "slipway.yml")
			return "", touch(t, filepath.Join(dir, "env.yml")), ""
		}, "env.yml", ""},
		{"missing env file is an error", func(t *testing.T, dir string) (string, string, string) {
			return "", filepath.Join(dir, "nope.yml"), ""
		}, "", "(from $SLIPWAY_CONFIG)"},
		{"then the working directory", func(t *testing.T, dir string) (string, string, string) {
			touch(t, "slipway.yml")
			return "", "", touch(t, filepath.Join(dir, "system.yml"))
		}, "slipway.yml", ""},
		{"then /etc", func(t *testing.T, dir string) (string, string, string) {
			return "", "", touch(t, filepath.Join(dir, "system.yml"))
		}, "system.yml", ""},
		{"a directory is not a config", func(t *testing.T, dir string) (string, string, string) {
			if err := os.Mkdir("slipway.yml", 0o755); err != nil {
				t.Fatal(err)
			}
			return "", "", ""
		}, "", "slipway.yml is a directory"},
		{"nothing found", func(t *testing.T, dir string) (string, string, string) {
			return "", "", ""
		}, "", "no slipway.yml found: tried ./slipway.yml and "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(t.TempDir())
			flag, env, system := tt.setup(t, dir)
			if system == "" {
				system = filepath.Join(dir, "absent", "slipway.yml")
			}
			old := systemConfig
			systemConfig = system
			t.Cleanup(func() { systemConfig = old })
			t.Setenv("SLIPWAY_CONFIG", env)

			got, err := Find(flag)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Find = %q, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if filepath.Base(got) != tt.want {
				t.Errorf("Find = %q, want %s", got, tt.want)
			}
		})
	}
}

func TestFindErrors(t *testing.T) {
	t.Chdir(t.TempDir())
	t.Setenv("SLIPWAY_CONFIG", "")
	old := systemConfig
	systemConfig = filepath.Join(t.TempDir(), "slipway.yml")
	t.Cleanup(func() { systemConfig = old })
	if _, err := Find(""); !errors.Is(err, ErrNotFound) {
		t.Errorf("nothing found: %v does not wrap ErrNotFound", err)
	}
	if _, err := Find("nope.yml"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing --config file: %v does not wrap fs.ErrNotExist", err)
	}
}
