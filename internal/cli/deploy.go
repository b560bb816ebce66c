package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/internal/deploy"
	"github.com/slipway-dev/slipway/internal/git"
)

func newDeployCmd(g *globals) *cobra.Command {
	var opts deploy.Options
	var asJSON, events bool
	var trigger string
	cmd := &cobra.Command{
		Use:   "deploy [--commit SHA | --ref REF] [--force] [--wait] [--dry-run]",
		Short: "Deploy the branch tip (or a commit or ref) and prove it healthy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case opts.Commit != "" && opts.Ref != "":
				return usageError{Err: errors.New("--commit and --ref are exclusive")}
			case opts.Commit != "" && !git.IsCommitID(opts.Commit):
				return usageError{Err: fmt.Errorf("--commit %q is not a commit id (4 to 64 hex digits)", opts.Commit)}
			case opts.Ref != "":
				if err := git.CheckRefName(opts.Ref); err != nil {
					return usageError{Err: fmt.Errorf("--ref: %w", err)}
				}
			}
			if opts.Hold != "" && !validKey(opts.Hold) {
				return usageError{Err: errors.New(keyRule("--hold"))}
			}
			if trigger != "manual" && trigger != "timer" {
				return usageError{Err: fmt.Errorf("--trigger %q: use manual or timer", trigger)}
			}
			opts.Trigger = trigger
			opts.Actor = actor()
			return runDeploy(cmd, g, opts, output{json: asJSON, events: events})
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Commit, "commit", "", "deploy this commit")
	f.StringVar(&opts.Ref, "ref", "", "deploy this branch or tag")
	f.BoolVar(&opts.Force, "force", false, "deploy even a commit marked bad, or redeploy the safe commit")
	f.BoolVar(&opts.Wait, "wait", false, "wait for a running deploy instead of exiting 3")
	f.BoolVar(&opts.DryRun, "dry-run", false, "print the plan and change nothing")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	f.StringVar(&opts.Hold, "hold", "", "pass the hold of this key (`slipway lock hold`); runs here, not through the agent")
	f.BoolVar(&events, "events", false, "print each step's start and end, then the result, as JSON lines (NDJSON)")
	// Timer mode's unit says who started the deploy, for the ledger.
	f.StringVar(&trigger, "trigger", "manual", "who started this deploy, for the ledger: manual or timer")
	_ = f.MarkHidden("trigger")
	return cmd
}

func runDeploy(cmd *cobra.Command, g *globals, opts deploy.Options, out output) error {
	return g.withRunnableApp(func(a *app) error {
		if fr := a.engine.Fleet(); fr != nil && opts.Trigger == "timer" {
			// As the agent does: the fleet deploys this host in its batches.
			fmt.Fprintf(g.stdout, "this host is in a fleet (%s): `slipway fleet deploy` deploys new tips, not the timer\n", fr)
			return nil
		}
		var err error
		p := newPrinter(g.stderr, a.cfg)
		observe := out.observer(g, p.Event)
		ctx := signalContext(cmd)
		var res deploy.Result
		var sum deploy.Summary
		if c := dialAgent(a.cfg.Root); c != nil && !opts.DryRun && opts.Hold == "" {
			// The agent runs it, so that it queues behind the agent's own
			// deploys. A deploy through a hold runs here: the agent takes
			// no deploy while its host is held.
			fmt.Fprintf(g.stderr, "deploying %s through the running agent\n", a.cfg.App)
			sum, err = c.follow(ctx, "/deploys", map[string]any{"ref": opts.Ref, "commit": opts.Commit, "force": opts.Force}, observe)
		} else {
			a.engine.Observe = observe
			if !opts.DryRun {
				fmt.Fprintf(g.stderr, "deploying %s (%s, branch %s)\n", a.cfg.App, git.Redact(a.cfg.Repo), a.cfg.Branch)
			}
			if opts.Hold != "" {
				opts.Wait = true // behind the agent's deploy that may be ending
			}
			res, err = a.engine.Deploy(ctx, opts)
			sum = resultJSON(res, err)
		}
		p.stopSpinner()
		return out.report(g, sum, err)
	})
}

// output is how a deploy or rollback prints its result: text, one JSON
// document (--json), or JSON lines of its events and then its result
// (--events).
type output struct{ json, events bool }

// observer is what watches the steps: the printer, and with --events one
// JSON line per event on stdout.
func (o output) observer(g *globals, print func(deploy.Event)) func(deploy.Event) {
	if !o.events {
		return print
	}
	// The reader (a fleet's ssh) may go away: the deploy goes on, and its
	// writes fail instead of killing slipway with SIGPIPE.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	enc := json.NewEncoder(g.stdout)
	return func(ev deploy.Event) {
		print(ev)
		_ = enc.Encode(struct {
			Event deploy.Event `json:"event"`
		}{ev})
	}
}

func (o output) report(g *globals, sum deploy.Summary, err error) error {
	if !o.events {
		return report(g, sum, err, o.json)
	}
	_ = json.NewEncoder(g.stdout).Encode(struct {
		Result deploy.Summary `json:"result"`
	}{sum})
	if err != nil {
		explain(g.stderr, sum)
		return reported{err}
	}
	return nil
}

// report prints a deploy's or rollback's result, local or from the agent.
func report(g *globals, sum deploy.Summary, err error, asJSON bool) error {
	if asJSON {
		printJSON(g, sum)
	}
	if err != nil {
		if !asJSON {
			explain(g.stderr, sum)
		}
		return reported{err}
	}
	if asJSON {
		return nil
	}
	if sum.Plan != nil {
		printPlan(g, sum.Plan)
		return nil
	}
	// A skip is said once: the plan step's line, and the message below.
	if sum.Warning != "" {
		fmt.Fprintf(g.stderr, "warning: %s\n", sum.Warning)
	}
	fmt.Fprintln(g.stdout, sum.Message)
	return nil
}

func printPlan(g *globals, p *deploy.Plan) {
	fmt.Fprintf(g.stdout, "target:  %s %s\n", p.Target, p.Subject)
	fmt.Fprintf(g.stdout, "live:    %s\n", orDash(p.Live))
	fmt.Fprintf(g.stdout, "safe:    %s\n", orDash(p.Safe))
	if len(p.Steps) == 0 {
		fmt.Fprintf(g.stdout, "plan:    %s\n", p.Reason)
		return
	}
	if p.Action != "deploy" {
		// A reconfigure or a rebuild of the live commit.
		fmt.Fprintf(g.stdout, "plan:    %s: %s\n", p.Action, p.Reason)
	} else {
		fmt.Fprintln(g.stdout, "plan:")
	}
	for _, s := range p.Steps {
		fmt.Fprintf(g.stdout, "  %-16s %s\n", s.Name, s.Detail)
	}
	fmt.Fprintln(g.stdout, "dry run: nothing was changed")
}

func resultJSON(r deploy.Result, err error) deploy.Summary {
	return deploy.Summarize(r, err, ExitCode(err))
}

func printJSON(g *globals, v any) {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
