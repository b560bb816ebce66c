package deploy

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/slipway-dev/slipway/internal/check"
	"github.com/slipway-dev/slipway/internal/config"
	"github.com/slipway-dev/slipway/internal/run"
)

func healthRequest(h *config.Health) check.Request {
	return check.Request{URL: h.URL, ExpectStatus: h.ExpectStatus}
}

func checkWait(ctx context.Context, h *config.Health, alive func() error) error {
	return check.WaitHealthy(ctx, healthRequest(h), h.Timeout.D(), h.Interval.D(), alive)
}

func checkOnce(ctx context.Context, h *config.Health) error {
	r := healthRequest(h)
	r.Timeout = max(h.Interval.D()*5, 2e9)
	return check.Do(ctx, r)
}

// smoke runs every smoke check against the new version; all must pass.
func (e *Engine) smoke(ctx context.Context, v vars, out io.Writer, cred *syscall.Credential) (string, error) {
	for i, c := range e.Cfg.Smoke {
		name := c.Name
		if name == "" {
			name = fmt.Sprintf("#%d", i+1)
		}
		var err error
		if c.Run != "" {
			err = run.Run(ctx, run.Cmd{
				Argv:       run.Argv(c.Run),
				Dir:        filepath.Join(v.rel.Dir, c.Dir),
				Env:        e.env(c.EnvFile, v),
				Timeout:    c.Timeout.D(),
				Output:     out,
				Credential: cred,
				Display:    c.Run,
				Track:      e.tracker(),
			})
		} else {
			err = check.Do(ctx, check.Request{
				Method: c.Method, URL: c.URL, Headers: c.Headers,
				ExpectStatus: c.ExpectStatus, ExpectBody: c.ExpectBody, Timeout: c.Timeout.D(),
			})
		}
		if err != nil {
			return "", fmt.Errorf("smoke check %q: %w", name, err)
		}
		fmt.Fprintf(out, "smoke check %q passed\n", name)
	}
	return fmt.Sprintf("%d checks passed", len(e.Cfg.Smoke)), nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func readFile(dir, rel string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, rel))
	return string(b), err
}
