package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func newHistoryCmd(g *globals) *cobra.Command {
	var asJSON, events bool
	var n int
	cmd := &cobra.Command{
		Use:   "history [--json] [-n N] [--events]",
		Short: "Show the ledger of deploys (or, with --events, of service restarts), newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := g.openApp()
			if err != nil {
				return err
			}
			defer a.close()
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
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.Started.Local().Format(time.DateTime),
					d.Kind, d.Trigger, orDash(short(d.Commit)), orDash(short(d.PreviousCommit)), d.Outcome, dur, truncate(firstLine(d.Error), 60))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	cmd.Flags().IntVarP(&n, "n", "n", 20, "how many rows")
	cmd.Flags().BoolVar(&events, "events", false, "show the events instead: services the supervisor restarted")
	return cmd
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}
