package cli

import (
	"errors"
	"fmt"
	"os/user"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/internal/lock"
	"github.com/slipway-dev/slipway/internal/release"
)

func newLockCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lock status | acquire -m MSG | release",
		Short: "Freeze and unfreeze deploys",
	}
	layoutOf := func() (release.Layout, error) {
		cfg, err := g.loadConfig()
		if err != nil {
			return release.Layout{}, err
		}
		l := release.Layout{Root: cfg.Root}
		return l, l.Ensure()
	}
	var asJSON bool
	status := &cobra.Command{
		Use:   "status",
		Short: "Show who holds or froze the deploy lock",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			l, err := layoutOf()
			if err != nil {
				return err
			}
			h, held, err := lock.Status(l.LockFile())
			if err != nil {
				return err
			}
			if asJSON {
				printJSON(g, struct {
					Held   bool        `json:"held"`
					Frozen bool        `json:"frozen"`
					Holder lock.Holder `json:"holder"`
				}{held, h.Frozen, h})
				return nil
			}
			switch {
			case h.Frozen:
				fmt.Fprintf(g.stdout, "frozen: %s\n", h)
			case held:
				fmt.Fprintf(g.stdout, "held: %s\n", h)
			default:
				fmt.Fprintln(g.stdout, "free")
			}
			return nil
		},
	}
	status.Flags().BoolVar(&asJSON, "json", false, "print as JSON")

	var msg string
	acquire := &cobra.Command{
		Use:   "acquire -m MSG",
		Short: "Freeze deploys, manual and automatic, until `lock release` (survives reboots)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if msg == "" || len(msg) > 1000 {
				return usageError{Err: errors.New("say why with -m MSG (at most 1000 characters)")}
			}
			l, err := layoutOf()
			if err != nil {
				return err
			}
			held, err := lock.Acquire(signalContext(cmd), l.LockFile(), holderNow("manual"), false, false)
			if err != nil {
				return err
			}
			defer func() { _ = held.Release() }()
			h := holderNow("manual")
			h.Message = msg
			if err := held.Freeze(h); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "deploys frozen: %s\n", msg)
			return nil
		},
	}
	acquire.Flags().StringVarP(&msg, "message", "m", "", "why deploys are frozen")

	var wait bool
	releaseCmd := &cobra.Command{
		Use:   "release",
		Short: "Unfreeze deploys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := layoutOf()
			if err != nil {
				return err
			}
			held, err := lock.Acquire(signalContext(cmd), l.LockFile(), holderNow("manual"), wait, true)
			if err != nil {
				return err
			}
			defer func() { _ = held.Release() }()
			if held.Frozen() == nil {
				fmt.Fprintln(g.stdout, "deploys were not frozen")
				return nil
			}
			if err := held.Unfreeze(); err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, "deploys unfrozen")
			return nil
		},
	}
	releaseCmd.Flags().BoolVar(&wait, "wait", false, "wait for a running deploy to finish first")
	cmd.AddCommand(status, acquire, releaseCmd)
	return cmd
}

// actor names who ran the command, for the ledger.
func actor() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}

func holderNow(trigger string) lock.Holder {
	return lock.NewHolder(trigger, time.Now())
}
