// Package cli holds slipway's commands, one file each. Commands are thin:
// they parse flags, load the config, and call into the domain packages.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/internal/config"
	"github.com/slipway-dev/slipway/internal/deploy"
	"github.com/slipway-dev/slipway/internal/ledger"
	"github.com/slipway-dev/slipway/internal/release"
	"github.com/slipway-dev/slipway/internal/service"
	"github.com/slipway-dev/slipway/internal/service/process"
	"github.com/slipway-dev/slipway/internal/service/systemd"
	"github.com/slipway-dev/slipway/internal/unit"
)

// Version is set at build time (-ldflags "-X .../cli.Version=...").
var Version = "dev"

// globals are the flags every command has.
type globals struct {
	config string
	stdout io.Writer
	stderr io.Writer
}

// NewRoot builds the slipway command tree.
func NewRoot() *cobra.Command {
	g := &globals{stdout: os.Stdout, stderr: os.Stderr}
	root := &cobra.Command{
		Use:           "slipway",
		Short:         "Deploy a git-backed app onto Linux hosts, safely",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			g.stdout, g.stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
		},
	}
	root.Version = Version
	root.SetVersionTemplate("slipway {{.Version}}\n")
	root.PersistentFlags().StringVarP(&g.config, "config", "c", "", "path to slipway.yml (default: $SLIPWAY_CONFIG, ./slipway.yml, /etc/slipway/slipway.yml)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{Err: err} })
	root.AddCommand(
		newInitCmd(g), newCheckCmd(g), newDeployCmd(g), newRollbackCmd(g),
		newStatusCmd(g), newHistoryCmd(g), newLogsCmd(g), newLockCmd(g), newVersionCmd(g), newAgentCmd(g),
		newInstallCmd(g), newUninstallCmd(g), newSnapshotCmd(g), newProxyCmd(g), newSuperviseCmd(),
	)
	root.AddCommand(newOperateCmds(g)...)
	root.AddCommand(newExecCmd(g), newFleetCmd(g), newRegistryCmd(g))
	return root
}

// loadConfig finds and loads slipway.yml.
func (g *globals) loadConfig() (*config.Config, error) {
	path, err := config.Find(g.config)
	if err != nil {
		return nil, usageError{Err: err}
	}
	return config.Load(path)
}

// app is a loaded config with its ledger and engine; close it after use.
type app struct {
	cfg    *config.Config
	db     *ledger.DB
	engine *deploy.Engine
}

func (a *app) close() {
	if a.db != nil {
		_ = a.db.Close()
	}
}

// openApp loads the config, creates the layout, opens the ledger and wires
// the engine with the configured service manager; check, if set, vets the
// config before anything is created.
func (g *globals) openApp(check func(*config.Config) error) (*app, error) {
	cfg, err := g.loadConfig()
	if err != nil {
		return nil, err
	}
	if check != nil {
		if err := check(cfg); err != nil {
			return nil, err
		}
	}
	layout := release.Layout{Root: cfg.Root}
	if err := layout.Ensure(); err != nil {
		return nil, err
	}
	db, err := ledger.Open(layout.StateDB())
	if err != nil {
		return nil, err
	}
	mgr, err := managerFor(cfg, layout)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	e := deploy.New(cfg, db, mgr)
	e.OnRecover = func(r deploy.Recovered) {
		for _, id := range r.Deploys {
			fmt.Fprintf(g.stderr, "recovered deploy %d, which a crash interrupted:\n", id)
		}
		if len(r.Deploys) == 0 && len(r.Actions) > 0 {
			fmt.Fprintln(g.stderr, "recovered what a killed slipway left behind:")
		}
		for _, a := range r.Actions {
			fmt.Fprintf(g.stderr, "  - %s\n", a)
		}
	}
	return &app{cfg: cfg, db: db, engine: e}, nil
}

// withApp runs fn with the app opened (see openApp), and closes it after.
func (g *globals) withApp(fn func(a *app) error) error {
	return g.withAppChecked(nil, fn)
}

// withRunnableApp is withApp for the commands that start the app's
// processes with its env files (deploy, rollback, restart, start, exec):
// an env dir or file that others may read is a usage error (exit 2),
// with its fix, before anything is created.
func (g *globals) withRunnableApp(fn func(a *app) error) error {
	return g.withAppChecked(envPrivate, fn)
}

func (g *globals) withAppChecked(check func(*config.Config) error, fn func(a *app) error) error {
	a, err := g.openApp(check)
	if err != nil {
		return err
	}
	defer a.close()
	return fn(a)
}

// envPrivate refuses env dirs and files whose modes let others read them.
func envPrivate(cfg *config.Config) error {
	var msgs []string
	for _, err := range cfg.EnvModeErrors() {
		var me *config.ModeError
		if errors.As(err, &me) {
			msgs = append(msgs, me.Error()+": "+me.Fix())
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return usageError{Err: errors.New(strings.Join(msgs, "; "))}
}

// startGrace is how long Start watches a new process for an instant exit.
const startGrace = 5 * time.Millisecond

func managerFor(cfg *config.Config, layout release.Layout) (service.Manager, error) {
	switch cfg.Manager {
	case config.ManagerProcess:
		m := process.New(layout.RunDir(), layout.LogDir())
		m.Ledger = layout.StateDB()
		// The health step keeps watching the services (and shows a dead
		// one's output), so Start only needs to catch an instant exit.
		m.StartGrace = startGrace
		return m, nil
	case config.ManagerSystemd:
		if _, err := exec.LookPath("systemctl"); err != nil {
			return nil, usageError{Err: fmt.Errorf("%s: manager systemd needs systemctl, which is not in PATH; use `manager: process` on hosts without systemd", cfg.Path)}
		}
		return systemd.New(cfg.Root, unit.Services(cfg)), nil
	default:
		return nil, usageError{Err: fmt.Errorf("%s: unknown manager %q", cfg.Path, cfg.Manager)}
	}
}

// signalContext is the command's context; cancelled on SIGINT/SIGTERM.
func signalContext(cmd *cobra.Command) context.Context {
	return cmd.Context()
}
