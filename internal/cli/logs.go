package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/internal/ledger"
	"github.com/slipway-dev/slipway/internal/release"
	"github.com/slipway-dev/slipway/internal/service/process"
)

func newLogsCmd(g *globals) *cobra.Command {
	var svc string
	var lines int
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs [DEPLOY_ID] | logs --service NAME",
		Short: "Print one deploy's output (default: the last deploy), or a service's log",
		Long: "Without --service: everything one deploy's commands printed; with -f, a running deploy is followed until it ends.\n" +
			"With --service: the service's log, from journalctl under systemd, from logs/<service>.log under the process manager " +
			"(for a proxied service, the instance that serves).",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withApp(func(a *app) error {
				var err error
				ctx := signalContext(cmd)
				if svc != "" {
					if len(args) > 0 {
						return usageError{Err: errors.New("give a deploy id or --service, not both")}
					}
					return g.serviceLogs(ctx, a, svc, lines, follow)
				}
				var id int64
				if len(args) == 1 {
					if id, err = strconv.ParseInt(args[0], 10, 64); err != nil || id <= 0 {
						return usageError{Err: fmt.Errorf("%q is not a deploy id", args[0])}
					}
				} else {
					d, err := a.db.Last(ctx)
					if errors.Is(err, ledger.ErrNotFound) {
						return errors.New("no deploys yet")
					}
					if err != nil {
						return err
					}
					id = d.ID
				}
				path := filepath.Join(release.Layout{Root: a.cfg.Root}.DeployLogDir(), strconv.FormatInt(id, 10)+".log")
				if !follow {
					return g.copyFile(path, fmt.Sprintf("no log for deploy %d", id))
				}
				return followFile(ctx, g.stdout, path, 0, func() bool {
					d, err := a.db.Deploy(context.WithoutCancel(ctx), id)
					return err != nil || (!d.Finished.IsZero() && d.Outcome != ledger.Running && d.Outcome != ledger.Queued)
				})
			})
		},
	}
	cmd.Flags().StringVar(&svc, "service", "", "print this service's log instead of a deploy's")
	cmd.Flags().IntVarP(&lines, "lines", "n", 100, "with --service: how many of the last lines")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing what is written: a running deploy until it ends, a service's log until interrupted")
	return cmd
}

func (g *globals) copyFile(path, missing string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return errors.New(missing)
	}
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	_, err = io.Copy(g.stdout, f)
	return err
}

// serviceLogs prints a service's last lines and, with follow, what it
// writes next.
func (g *globals) serviceLogs(ctx context.Context, a *app, name string, lines int, follow bool) error {
	spec, err := a.engine.ServiceSpec(ctx, name)
	if err != nil {
		return usageError{Err: err}
	}
	if lines < 0 {
		return usageError{Err: errors.New("-n must be 0 or more")}
	}
	pm, ok := a.engine.Services.(*process.Manager)
	if !ok {
		// systemd: the journal has it.
		args := []string{"-u", spec.Unit, "-n", strconv.Itoa(lines), "--no-pager", "-o", "short-iso"}
		if follow {
			args = append(args, "-f")
		}
		c := exec.CommandContext(ctx, "journalctl", args...)
		c.Stdout, c.Stderr = g.stdout, g.stderr
		return c.Run()
	}
	path := pm.LogPath(spec.Name)
	text, end, err := process.TailFile(path, lines)
	if err != nil {
		return err
	}
	_, _ = io.WriteString(g.stdout, text)
	if !follow {
		return nil
	}
	return followFile(ctx, g.stdout, path, end, func() bool { return false })
}

// followPoll is how often a followed file is looked at for more.
const followPoll = 200 * time.Millisecond

// followFile copies what is written to path from offset on, until done
// says so (after a last read) or ctx ends.
func followFile(ctx context.Context, w io.Writer, path string, offset int64, done func() bool) error {
	for {
		finished := done()
		if f, err := os.Open(path); err == nil {
			if _, err := f.Seek(offset, io.SeekStart); err == nil {
				n, _ := io.Copy(w, f)
				offset += n
			}
			_ = f.Close()
		}
		if finished {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(followPoll):
		}
	}
}
