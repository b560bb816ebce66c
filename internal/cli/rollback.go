package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/internal/deploy"
	"github.com/slipway-dev/slipway/internal/git"
)

func newRollbackCmd(g *globals) *cobra.Command {
	var to string
	var wait, asJSON, events, restoreData bool
	cmd := &cobra.Command{
		Use:   "rollback [--to SHA] [--restore-data]",
		Short: "Go back to the previous good release (or the named one) without rebuilding",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to != "" && !git.IsCommitID(to) {
				return usageError{Err: fmt.Errorf("--to %q is not a commit id (4 to 64 hex digits)", to)}
			}
			return g.withRunnableApp(func(a *app) error {
				var err error
				p := newPrinter(g.stderr, a.cfg)
				out := output{json: asJSON, events: events}
				observe := out.observer(g, p.Event)
				ctx := signalContext(cmd)
				var sum deploy.Summary
				if c := dialAgent(a.cfg.Root); c != nil {
					fmt.Fprintf(g.stderr, "rolling back %s through the running agent\n", a.cfg.App)
					sum, err = c.follow(ctx, "/rollback", map[string]any{"to": to, "restore_data": restoreData}, observe)
				} else {
					a.engine.Observe = observe
					var res deploy.Result
					res, err = a.engine.Rollback(ctx, deploy.RollbackOptions{To: to, RestoreData: restoreData, Wait: wait, Actor: actor()})
					sum = resultJSON(res, err)
				}
				p.stopSpinner()
				return out.report(g, sum, err)
			})
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "roll back to this commit's kept release")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for a running deploy instead of exiting 3")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.Flags().BoolVar(&events, "events", false, "print each step's start and end, then the result, as JSON lines (NDJSON)")
	cmd.Flags().BoolVar(&restoreData, "restore-data", false, "also restore the data snapshot taken before the migration of the release rolled away from")
	return cmd
}
