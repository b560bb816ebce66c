package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/internal/agent"
	"github.com/slipway-dev/slipway/internal/config"
	"github.com/slipway-dev/slipway/internal/deploy"
	"github.com/slipway-dev/slipway/internal/install"
	"github.com/slipway-dev/slipway/internal/ledger"
	"github.com/slipway-dev/slipway/internal/lock"
	"github.com/slipway-dev/slipway/internal/release"
)

func newInstallCmd(g *globals) *cobra.Command {
	var o install.Options
	var timer bool
	cmd := &cobra.Command{
		Use:   "install [--dry-run] [--timer]",
		Short: "Bootstrap this host: system user, layout, env files, mirror, systemd units",
		Long: `Install bootstraps this host for the app of slipway.yml, idempotently:
the system user, the layout under root with its owners and modes (env/ 0700,
env files 0600, both the app user's), the bare mirror, one systemd unit per
service, and the agent's unit (or, with --timer, a timer that runs
"slipway deploy" every triggers.poll). A second run changes nothing and says
so; --dry-run prints what would change. Services start with the first deploy.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.installConfig()
			if err != nil {
				return err
			}
			o.Cfg, o.Out, o.Mode = cfg, g.stdout, install.ModeAgent
			if timer {
				o.Mode = install.ModeTimer
			} else if _, err := agent.LoadSecrets(cfg); err != nil {
				// Better now than an agent unit that fails to start.
				return usageError{Err: fmt.Errorf("the agent would not start: %w; put it in an env file (env_files), or install with --timer for no daemon", err)}
			}
			if o.Bin, err = executable(); err != nil {
				return err
			}
			start := time.Now()
			n, err := install.Install(cmd.Context(), o)
			if err != nil {
				return err
			}
			return g.installSummary("install", n, o.DryRun, start)
		},
	}
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "print what would change, change nothing")
	cmd.Flags().BoolVar(&timer, "timer", false, "no agent daemon: a systemd timer runs `slipway deploy` every triggers.poll (default 1m)")
	return cmd
}

func newUninstallCmd(g *globals) *cobra.Command {
	var o install.Options
	cmd := &cobra.Command{
		Use:   "uninstall [--purge] [--dry-run]",
		Short: "Remove the app's units and layout (keeps shared/, env/ and the ledger unless --purge)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.installConfig()
			if err != nil {
				return err
			}
			o.Cfg, o.Out = cfg, g.stdout
			if !o.DryRun {
				// Never pull the layout from under a running deploy.
				l, err := lockForUninstall(cmd.Context(), release.Layout{Root: cfg.Root})
				if err != nil {
					return err
				}
				if l != nil {
					defer func() { _ = l.Release() }()
				}
			}
			start := time.Now()
			stopped, err := g.stopEverything(cmd.Context(), cfg, o.DryRun)
			if err != nil {
				return err
			}
			n, err := install.Uninstall(cmd.Context(), o)
			if err != nil {
				return err
			}
			return g.installSummary("uninstall", n+stopped, o.DryRun, start)
		},
	}
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "print what would be removed, remove nothing")
	cmd.Flags().BoolVar(&o.Purge, "purge", false, "also remove shared/ (the app's data), env/ and the ledger")
	return cmd
}

// installConfig loads the config; install runs before any layout exists,
// so unlike other commands it creates nothing itself.
func (g *globals) installConfig() (*config.Config, error) {
	cfg, err := g.loadConfig()
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, err
	}
	cfg.Path = abs
	return cfg, nil
}

func (g *globals) installSummary(what string, n int, dryRun bool, start time.Time) error {
	took := time.Since(start).Round(time.Millisecond)
	switch {
	case dryRun && n == 0:
		fmt.Fprintf(g.stdout, "%s: nothing would change\n", what)
	case dryRun:
		fmt.Fprintf(g.stdout, "%s: %d changes planned (dry run, nothing changed)\n", what, n)
	case n == 0:
		fmt.Fprintf(g.stdout, "%s: nothing to change, this host is as the config says (%s)\n", what, took)
	default:
		fmt.Fprintf(g.stdout, "%s: %d changes made (%s)\n", what, n, took)
	}
	return nil
}

// lockForUninstall takes the deploy lock when the layout has one (a frozen
// lock does not stop an uninstall). It returns nil when there is no layout.
func lockForUninstall(ctx context.Context, l release.Layout) (*lock.Lock, error) {
	if _, err := os.Stat(l.RunDir()); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return lock.Acquire(ctx, l.LockFile(), lock.NewHolder("uninstall", time.Now()), false, true)
}

// executable is slipway's own absolute path, for the units to run.
func executable() (string, error) {
	p, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(p)
}

// stopEverything stops the app's services and its proxy before uninstall
// removes the layout that finds them. It returns how many it stopped.
func (g *globals) stopEverything(ctx context.Context, cfg *config.Config, dryRun bool) (int, error) {
	layout := release.Layout{Root: cfg.Root}
	if _, err := os.Stat(layout.StateDB()); err != nil {
		return 0, nil // no layout: nothing of slipway's runs
	}
	if dryRun {
		fmt.Fprintf(g.stdout, "  would stop every service of %s and its proxy\n", cfg.App)
		return 0, nil
	}
	db, err := ledger.Open(layout.StateDB())
	if err != nil {
		return 0, err
	}
	defer func() { _ = db.Close() }()
	mgr, err := managerFor(cfg, layout)
	if err != nil {
		return 0, err
	}
	stopped, err := deploy.New(cfg, db, mgr).StopEverything(ctx)
	for _, s := range stopped {
		fmt.Fprintf(g.stdout, "  stop %s: done\n", s)
	}
	if err != nil {
		return len(stopped), fmt.Errorf("stop the app's processes (nothing was removed): %w", err)
	}
	return len(stopped), nil
}
