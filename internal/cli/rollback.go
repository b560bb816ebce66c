package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/internal/deploy"
)

func newRollbackCmd(g *globals) *cobra.Command {
	var to string
	var wait, asJSON bool
	cmd := &cobra.Command{
		Use:   "rollback [--to SHA]",
		Short: "Go back to the previous good release (or the named one) without rebuilding",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := g.openApp()
			if err != nil {
				return err
			}
			defer a.close()
			p := newPrinter(g.stderr)
			a.engine.Observe = p.Event
			res, err := a.engine.Rollback(signalContext(cmd), to, wait)
			p.stopSpinner()
			if asJSON {
				printJSON(g, resultJSON(res, err))
			}
			var f *deploy.Failure
			if errors.As(err, &f) {
				explain(g.stderr, f)
				return reported{err}
			}
			if err != nil {
				return err
			}
			if !asJSON {
				fmt.Fprintln(g.stdout, res.Message)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "roll back to this commit's kept release")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for a running deploy instead of exiting 3")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}
