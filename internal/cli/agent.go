package cli

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/internal/agent"
	"github.com/slipway-dev/slipway/internal/deploy"
	"github.com/slipway-dev/slipway/internal/release"
)

func newAgentCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "agent",
		Short: "Run the daemon: recover, then deploy on push (poll, webhooks) and serve the HTTP API",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withApp(func(a *app) error {
				logger := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("app", a.cfg.App)
				ag, err := agent.New(a.cfg, a.engine, a.db, logger, Version)
				if err != nil {
					return err
				}
				ag.Reload = func() (*deploy.Engine, error) { return g.reloadEngine(a) }
				return ag.Run(signalContext(cmd))
			})
		},
	}
}

// reloadEngine loads the config again and wires a new engine for it, on
// the agent's ledger. The root cannot change under a running agent: its
// ledger, lock and socket live there.
func (g *globals) reloadEngine(a *app) (*deploy.Engine, error) {
	cfg, err := g.loadConfig()
	if err != nil {
		return nil, err
	}
	if cfg.Root != a.cfg.Root {
		return nil, fmt.Errorf("%s: root changed from %s to %s: restart the agent (after moving the root) to use it", cfg.Path, a.cfg.Root, cfg.Root)
	}
	mgr, err := managerFor(cfg, release.Layout{Root: cfg.Root})
	if err != nil {
		return nil, err
	}
	return deploy.New(cfg, a.db, mgr), nil
}
