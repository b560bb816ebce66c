package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/internal/deploy"
	"github.com/slipway-dev/slipway/internal/git"
	"github.com/slipway-dev/slipway/internal/ledger"
	"github.com/slipway-dev/slipway/internal/lock"
)

// fleetReport is what `slipway fleet deploy` sends each host when it
// ends: the rollout, and the fleet's hosts as the operator last saw them.
type fleetReport struct {
	deploy.FleetRecord
	VMs []ledger.VM `json:"vms"`
}

// newRegistryCmd is the host's side of a fleet (used by `slipway fleet`
// over ssh): `registry put` reads a fleetReport on
// stdin, records the hosts (GET /registry/vms lists them) and marks this
// host as one of the fleet; `registry leave` unmarks it.
func newRegistryCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "registry", Short: "The fleet's record on this host: `slipway fleet` puts it, `registry leave` ends it"}
	var release string
	put := &cobra.Command{
		Use:  "put [--release KEY]",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var r fleetReport
			if err := json.NewDecoder(io.LimitReader(os.Stdin, 1<<20)).Decode(&r); err != nil {
				return usageError{Err: fmt.Errorf("registry put: the report on stdin: %w", err)}
			}
			if !git.IsSHA(r.Commit) {
				return usageError{Err: fmt.Errorf("registry put: commit %q is not a commit id", r.Commit)}
			}
			return g.withApp(func(a *app) error {
				ctx := signalContext(cmd)
				if err := a.db.UpsertVMs(ctx, r.VMs); err != nil {
					return err
				}
				if err := a.engine.RecordFleet(&r.FleetRecord); err != nil {
					return err
				}
				if release == "" {
					return nil
				}
				// The rollout is over: its hold ends with the report.
				said, err := lock.Unfreeze(ctx, a.engine.Layout.LockFile(), holderNow("manual"), release, true)
				if err != nil {
					return err
				}
				fmt.Fprintln(g.stdout, said)
				return nil
			})
		},
	}
	put.Flags().StringVar(&release, "release", "", "then end the hold of this key (`lock release --key KEY --wait`)")
	leave := &cobra.Command{
		Use:   "leave",
		Short: "This host is on its own again: its agent and timer deploy new tips",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return g.withApp(func(a *app) error { return a.engine.RecordFleet(nil) })
		},
	}
	cmd.AddCommand(put, leave)
	return cmd
}
