package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func newStatusCmd(g *globals) *cobra.Command {
	var asJSON, offline bool
	cmd := &cobra.Command{
		Use:   "status [--json]",
		Short: "Show the current and safe release, remote tip, services, health, lock and last deploy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := g.openApp()
			if err != nil {
				return err
			}
			defer a.close()
			ctx := signalContext(cmd)
			if err := a.engine.TryRecover(ctx); err != nil {
				fmt.Fprintf(g.stderr, "recovery: %v\n", err)
			}
			s, err := a.engine.Status(ctx, offline)
			if err != nil {
				return err
			}
			if asJSON {
				printJSON(g, s)
				return nil
			}
			w := g.stdout
			fmt.Fprintf(w, "app:       %s (%s)\n", s.App, s.Root)
			if s.Current != nil {
				fmt.Fprintf(w, "current:   %s  %s  releases/%s\n", short(s.Current.Commit), s.Current.Version, s.Current.Name)
			} else {
				fmt.Fprintln(w, "current:   - (nothing deployed)")
			}
			fmt.Fprintf(w, "safe:      %s\n", orDash(short(s.Safe)))
			switch {
			case s.RemoteErr != "":
				fmt.Fprintf(w, "remote:    unknown (%s)\n", s.RemoteErr)
			case s.RemoteTip != "":
				note := ""
				if s.Current != nil && s.RemoteTip != s.Current.Commit {
					note = "  (not deployed)"
				}
				fmt.Fprintf(w, "remote:    %s%s\n", short(s.RemoteTip), note)
			}
			for _, sv := range s.Services {
				state := "stopped"
				if sv.Running {
					state = fmt.Sprintf("running, pid %d", sv.PID)
					if !sv.Since.IsZero() {
						state += ", up " + time.Since(sv.Since).Round(time.Second).String()
					}
				}
				if sv.Detail != "" {
					state += " (" + sv.Detail + ")"
				}
				fmt.Fprintf(w, "service:   %-10s %s\n", sv.Name, state)
			}
			if s.Healthy {
				fmt.Fprintln(w, "health:    ok")
			} else {
				fmt.Fprintf(w, "health:    FAILING: %s\n", firstLine(s.HealthErr))
			}
			if s.Lock != nil {
				if s.Lock.Frozen {
					fmt.Fprintf(w, "lock:      FROZEN by %s since %s: %s\n", s.Lock.Holder.User, s.Lock.Holder.Started.Format(time.RFC3339), s.Lock.Holder.Message)
				} else {
					fmt.Fprintf(w, "lock:      held by %s\n", s.Lock.Holder)
				}
			} else {
				fmt.Fprintln(w, "lock:      free")
			}
			if d := s.Last; d != nil {
				fmt.Fprintf(w, "last:      #%d %s %s %s (%s)\n", d.ID, d.Kind, short(d.Commit), d.Outcome, d.Started.Format(time.RFC3339))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	cmd.Flags().BoolVar(&offline, "offline", false, "do not ask the remote for the branch tip")
	return cmd
}

func short(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}
