package cli

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/internal/agent"
)

func newAgentCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "agent",
		Short: "Run the daemon: recover, then deploy on push (poll, webhooks) and serve the HTTP API",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := g.openApp()
			if err != nil {
				return err
			}
			defer a.close()
			logger := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("app", a.cfg.App)
			ag, err := agent.New(a.cfg, a.engine, a.db, logger, Version)
			if err != nil {
				return err
			}
			return ag.Run(signalContext(cmd))
		},
	}
}
