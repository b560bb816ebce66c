package cli

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

func newExecCmd(g *globals) *cobra.Command {
	var svc string
	cmd := &cobra.Command{
		Use:   "exec [--service NAME] -- CMD [ARG...]",
		Short: "Run a one-off command (a console, a data fix) in the live release, as the app user, with a service's env file",
		Long: "Runs CMD in the service's directory of the live release, as the app user, with the environment the service gets " +
			"(its env file, APP_VERSION, SLIPWAY_*), attached to this terminal. The exit status is the command's. " +
			"Without --service: the first service that listens (port or proxy), else the first service.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withRunnableApp(func(a *app) error {
				one, err := a.engine.ExecFor(svc)
				if err != nil {
					return err
				}
				path, err := lookPath(args[0], one.Dir, one.Env)
				if err != nil {
					return usageError{Err: err}
				}
				c := &exec.Cmd{Path: path, Args: args, Dir: one.Dir, Env: one.Env,
					Stdin: cmd.InOrStdin(), Stdout: g.stdout, Stderr: g.stderr,
					SysProcAttr: &syscall.SysProcAttr{Credential: one.Credential}}
				// No context: ^C reaches the command from the terminal, and
				// slipway waits for it.
				err = c.Run()
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					code := ee.ExitCode()
					if code < 0 {
						code = 128 + int(ee.Sys().(syscall.WaitStatus).Signal())
					}
					return exitError(code)
				}
				return err
			})
		},
	}
	cmd.Flags().StringVar(&svc, "service", "", "whose directory and env file the command gets")
	return cmd
}

// lookPath finds name as the service would: a path is taken relative to
// dir, a bare name is looked up in the PATH of env.
func lookPath(name, dir string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		if !filepath.IsAbs(name) {
			name = filepath.Join(dir, name)
		}
		return name, nil
	}
	for _, kv := range env {
		if p, ok := strings.CutPrefix(kv, "PATH="); ok {
			for _, d := range filepath.SplitList(p) {
				if !filepath.IsAbs(d) {
					d = filepath.Join(dir, d)
				}
				full := filepath.Join(d, name)
				if fi, err := os.Stat(full); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
					return full, nil
				}
			}
		}
	}
	return "", errors.New(name + ": not found in the service's PATH")
}
