package cli

import (
	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/internal/service/process"
)

// newSuperviseCmd is the process manager's supervisor of one service
// (process.Supervise); the manager starts it, operators never do.
func newSuperviseCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "supervise",
		Short:              "Run one service under the process manager, restarting it when it fails",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error {
			if code := process.Supervise(args); code != 0 {
				return exitError(code)
			}
			return nil
		},
	}
}
