package process

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/slipway-dev/slipway/internal/run"
	"github.com/slipway-dev/slipway/internal/service"
)

// defaultPath is searched when Spec.Env sets no PATH, as a shell would.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// command turns a service's command into the program to execute and its
// argv. A command with shell syntax (run.NeedsShell; an env assignment has
// an '=') runs as /bin/sh -c COMMAND. Any other is split on whitespace: a
// program with a slash is relative to Spec.Dir, one without is looked up in
// the PATH of Spec.Env; argv[0] stays as written.
func command(s service.Spec) (path string, argv []string, err error) {
	if strings.TrimSpace(s.Command) == "" {
		return "", nil, fmt.Errorf("service %s has no command", s.Name)
	}
	if run.NeedsShell(s.Command) {
		return "/bin/sh", []string{"/bin/sh", "-c", s.Command}, nil
	}
	argv = strings.Fields(s.Command)
	path, err = lookProgram(argv[0], s.Dir, envValue(s.Env, "PATH", defaultPath))
	if err != nil {
		return "", nil, fmt.Errorf("service %s: %w", s.Name, err)
	}
	return path, argv, nil
}

func lookProgram(prog, dir, pathList string) (string, error) {
	if strings.Contains(prog, "/") {
		p := prog
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if err := executable(p); err != nil {
			return "", fmt.Errorf("program %s: %w", p, err)
		}
		return p, nil
	}
	for _, d := range filepath.SplitList(pathList) {
		if d == "" {
			continue
		}
		if !filepath.IsAbs(d) {
			d = filepath.Join(dir, d)
		}
		p := filepath.Join(d, prog)
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("program %s not found in PATH=%s", prog, pathList)
}

var errNotExecutable = errors.New("not an executable file")

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fs.ErrNotExist
		}
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return errNotExecutable
	}
	return nil
}

// envValue returns the value of key in env, the last one winning as in
// exec.Cmd, or def when it is not set.
func envValue(env []string, key, def string) string {
	v, found := def, false
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v, found = val, true
		}
	}
	if !found {
		return def
	}
	return v
}
