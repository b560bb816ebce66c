package cli

import (
	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/internal/deploy"
	"github.com/slipway-dev/slipway/internal/ledger"
)

// newOperateCmds are `slipway restart|start|stop [SERVICE...]`.
func newOperateCmds(g *globals) []*cobra.Command {
	short := map[string]string{
		ledger.KindRestart: "Restart services of the live release, through health, smoke and settle",
		ledger.KindStart:   "Start services that `slipway stop` stopped, through health, smoke and settle",
		ledger.KindStop:    "Stop services; nothing starts them again (recovery, supervision, deploys) until `slipway start`",
	}
	var cmds []*cobra.Command
	for _, action := range []string{ledger.KindRestart, ledger.KindStart, ledger.KindStop} {
		var wait, asJSON bool
		cmd := &cobra.Command{
			Use:   action + " [SERVICE...]",
			Short: short[action],
			RunE: func(cmd *cobra.Command, args []string) error {
				// Stopping needs no env file: it works whatever their modes.
				with := g.withRunnableApp
				if action == ledger.KindStop {
					with = g.withApp
				}
				return with(func(a *app) error {
					p := newPrinter(g.stderr, a.cfg)
					a.engine.Observe = p.Event
					res, err := a.engine.Operate(signalContext(cmd), deploy.OperateOptions{Action: action, Services: args, Wait: wait, Actor: actor()})
					p.stopSpinner()
					return report(g, resultJSON(res, err), err, asJSON)
				})
			},
		}
		cmd.Flags().BoolVar(&wait, "wait", false, "wait for a running deploy instead of exiting 3")
		cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
		cmds = append(cmds, cmd)
	}
	return cmds
}
