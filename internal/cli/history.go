package cli

import (
	"errors"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/internal/ledger"
)

func newHistoryCmd(g *globals) *cobra.Command {
	var asJSON, events bool
	var n int
	cmd := &cobra.Command{
		Use:   "history [--json] [-n N] [--events]",
		Short: "Show the ledger of deploys (or, with --events, of service restarts), newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withApp(func(a *app) error {
				if events {
					es, err := a.db.Events(signalContext(cmd), n)
					if err != nil {
						return err
					}
					if asJSON {
						printJSON(g, es)
						return nil
					}
					tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tTIME\tKIND\tSERVICE\tDETAIL")
					for _, e := range es {
						fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", e.ID, e.Time.Local().Format(time.DateTime), e.Kind, orDash(e.Service), e.Detail)
					}
					return tw.Flush()
				}
				deploys, err := a.db.Deploys(signalContext(cmd), n)
				if err != nil {
					return err
				}
				if asJSON {
					printJSON(g, deploys)
					return nil
				}
				tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSTARTED\tKIND\tTRIGGER\tCOMMIT\tPREVIOUS\tOUTCOME\tDURATION\tERROR")
				for _, d := range deploys {
					dur := "-"
					if !d.Finished.IsZero() {
						dur = fmtDuration(d.Finished.Sub(d.Started))
					}
					outcome := string(d.Outcome)
					if d.Bad {
						outcome += ", commit marked bad" // the error says why
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.Started.Local().Format(time.DateTime),
						d.Kind, d.Trigger, orDash(short(d.Commit)), orDash(short(d.PreviousCommit)), outcome, dur, truncate(firstLine(d.Error), 60))
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	cmd.Flags().IntVarP(&n, "n", "n", 20, "how many rows")
	cmd.Flags().BoolVar(&events, "events", false, "show the events instead: services the supervisor restarted, freezes and unfreezes from the dashboard")
	cmd.AddCommand(newHistoryShowCmd(g))
	return cmd
}

// newHistoryShowCmd is `slipway history show ID`: one row with its steps.
func newHistoryShowCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show ID [--json]",
		Short: "Show one deploy: what it was, how it ended, and each step with its duration and detail",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || id <= 0 {
				return usageError{Err: fmt.Errorf("%q is not a deploy id", args[0])}
			}
			return g.withApp(func(a *app) error {
				ctx := signalContext(cmd)
				d, err := a.db.Deploy(ctx, id)
				if errors.Is(err, ledger.ErrNotFound) {
					return usageError{Err: fmt.Errorf("no deploy %d in the ledger", id)}
				}
				if err != nil {
					return err
				}
				steps, err := a.db.Steps(ctx, id)
				if err != nil {
					return err
				}
				if asJSON {
					printJSON(g, struct {
						ledger.Deploy
						Steps []ledger.Step `json:"steps"`
					}{d, steps})
					return nil
				}
				w := g.stdout
				fmt.Fprintf(w, "deploy %d: %s by %s (%s), %s\n", d.ID, d.Kind, orDash(d.Actor), d.Trigger, d.Outcome)
				fmt.Fprintf(w, "commit:   %s (before: %s)\n", orDash(d.Commit), orDash(d.PreviousCommit))
				fmt.Fprintf(w, "release:  %s\n", orDash(d.Release))
				fmt.Fprintf(w, "started:  %s", d.Started.Local().Format(time.DateTime))
				if !d.Finished.IsZero() {
					fmt.Fprintf(w, ", took %s", fmtDuration(d.Duration()))
				}
				fmt.Fprintln(w)
				if d.Bad {
					fmt.Fprintln(w, "the commit was marked bad by this deploy")
				}
				if d.Error != "" {
					fmt.Fprintf(w, "error:    %s\n", d.Error)
				}
				if d.State != "" {
					fmt.Fprintf(w, "now:      %s\n", d.State)
				}
				if d.Next != "" {
					fmt.Fprintf(w, "next:     %s\n", d.Next)
				}
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "STEP\tOUTCOME\tDURATION\tDETAIL")
				for _, s := range steps {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Name, s.Outcome, fmtDuration(s.Duration), firstLine(s.Detail))
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}
