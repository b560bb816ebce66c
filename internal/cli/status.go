package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/internal/deploy"
	"github.com/slipway-dev/slipway/internal/exitcode"
)

func newStatusCmd(g *globals) *cobra.Command {
	var asJSON, offline bool
	cmd := &cobra.Command{
		Use:   "status [--json]",
		Short: "Show the current and safe release, remote tip, services, health, lock and last deploy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withApp(func(a *app) error {
				var err error
				ctx := signalContext(cmd)
				var st agentStatus
				if c := dialAgent(a.cfg.Root); c != nil {
					if err := c.get(ctx, "/status", &st); err != nil {
						return err
					}
				} else {
					if err := a.engine.TryRecover(ctx); err != nil {
						fmt.Fprintf(g.stderr, "recovery: %v\n", err)
					}
					if st.Status, err = a.engine.Status(ctx, offline); err != nil {
						return err
					}
				}
				st.Slipway = Version
				if asJSON {
					printJSON(g, st)
				} else {
					printStatus(g.stdout, st)
				}
				if !st.Healthy && st.Current != nil {
					// For cron and monitoring: a live release is down or failing.
					return exitError(exitcode.RollbackFailed)
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	cmd.Flags().BoolVar(&offline, "offline", false, "do not ask the remote for the branch tip")
	return cmd
}

// agentStatus is the status with, when an agent answered, its own state.
type agentStatus struct {
	deploy.Status
	Agent *struct {
		RemoteError string `json:"remote_error"`
		Frozen      string `json:"frozen"`
		Running     int64  `json:"running_deploy"`
		Waiting     int64  `json:"waiting_deploy"`
	} `json:"agent,omitempty"`
	Uptime float64 `json:"agent_uptime_seconds,omitempty"`
	// Slipway is the version of the slipway that answers (the agent's
	// may be older: agent_version).
	Slipway string `json:"slipway_version"`
}

func printStatus(w io.Writer, s agentStatus) {
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
		switch {
		case sv.Running:
			state = fmt.Sprintf("running, pid %d", sv.PID)
			if !sv.Since.IsZero() {
				state += ", up " + time.Since(sv.Since).Round(time.Second).String()
			}
			if sv.Restarts > 0 {
				state += fmt.Sprintf(", restarted %d time(s)", sv.Restarts)
			}
		case s.Current == nil:
		case sv.Stopped:
			state = "stopped by `slipway stop` (`slipway start " + sv.Name + "` starts it)"
		case sv.Detail != "":
			state = "DOWN (" + sv.Detail + ")"
		default:
			state = "DOWN"
		}
		fmt.Fprintf(w, "service:   %-10s %s\n", sv.Name, state)
	}
	if s.Healthy {
		fmt.Fprintln(w, "health:    ok")
	} else {
		fmt.Fprintf(w, "health:    FAILING: %s\n", firstLine(s.HealthErr))
	}
	switch {
	case s.Lock != nil && s.Lock.Frozen:
		fmt.Fprintf(w, "lock:      FROZEN by %s since %s: %s\n", s.Lock.Holder.User, s.Lock.Holder.Started.Format(time.RFC3339), s.Lock.Holder.Message)
	case s.Lock != nil:
		fmt.Fprintf(w, "lock:      held by %s\n", s.Lock.Holder)
	default:
		fmt.Fprintln(w, "lock:      free")
	}
	if d := s.Last; d != nil {
		fmt.Fprintf(w, "last:      #%d %s %s %s (%s)\n", d.ID, d.Kind, short(d.Commit), d.Outcome, d.Started.Format(time.RFC3339))
	}
	if ag := s.Agent; ag != nil {
		line := fmt.Sprintf("agent:     up %s", (time.Duration(s.Uptime) * time.Second).String())
		if ag.Running != 0 {
			line += fmt.Sprintf(", running deploy %d", ag.Running)
		}
		if ag.Waiting != 0 {
			line += fmt.Sprintf(", deploy %d waiting", ag.Waiting)
		}
		if ag.Frozen != "" {
			line += ", holding new commits: deploys are frozen"
		}
		fmt.Fprintln(w, line)
	}
}

func short(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}
