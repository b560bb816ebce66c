package cli

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/internal/deploy"
	"github.com/slipway-dev/slipway/internal/git"
)

func newDeployCmd(g *globals) *cobra.Command {
	var opts deploy.Options
	var asJSON bool
	var trigger string
	cmd := &cobra.Command{
		Use:   "deploy [--commit SHA | --ref REF] [--force] [--wait] [--dry-run]",
		Short: "Deploy the branch tip (or a commit or ref) and prove it healthy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Commit != "" && opts.Ref != "" {
				return usageError{Err: errors.New("--commit and --ref are exclusive")}
			}
			if trigger != "manual" && trigger != "timer" {
				return usageError{Err: fmt.Errorf("--trigger %q: use manual or timer", trigger)}
			}
			opts.Trigger = trigger
			opts.Actor = actor()
			return runDeploy(cmd, g, opts, asJSON)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Commit, "commit", "", "deploy this commit")
	f.StringVar(&opts.Ref, "ref", "", "deploy this branch or tag")
	f.BoolVar(&opts.Force, "force", false, "deploy even a commit marked bad, or redeploy the safe commit")
	f.BoolVar(&opts.Wait, "wait", false, "wait for a running deploy instead of exiting 3")
	f.BoolVar(&opts.DryRun, "dry-run", false, "print the plan and change nothing")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	// Timer mode's unit says who started the deploy, for the ledger.
	f.StringVar(&trigger, "trigger", "manual", "who started this deploy, for the ledger: manual or timer")
	_ = f.MarkHidden("trigger")
	return cmd
}

func runDeploy(cmd *cobra.Command, g *globals, opts deploy.Options, asJSON bool) error {
	a, err := g.openApp()
	if err != nil {
		return err
	}
	defer a.close()
	p := newPrinter(g.stderr, a.cfg)
	ctx := signalContext(cmd)
	var res deploy.Result
	var sum deploy.Summary
	if c := dialAgent(a.cfg.Root); c != nil && !opts.DryRun {
		// The agent runs it, so that it queues behind the agent's own deploys.
		fmt.Fprintf(g.stderr, "deploying %s through the running agent\n", a.cfg.App)
		sum, err = c.follow(ctx, "/deploys", map[string]any{"ref": opts.Ref, "commit": opts.Commit, "force": opts.Force}, p.Event)
	} else {
		a.engine.Observe = p.Event
		if !opts.DryRun {
			fmt.Fprintf(g.stderr, "deploying %s (%s, branch %s)\n", a.cfg.App, git.Redact(a.cfg.Repo), a.cfg.Branch)
		}
		res, err = a.engine.Deploy(ctx, opts)
		sum = resultJSON(res, err)
	}
	p.stopSpinner()
	return report(g, sum, err, asJSON)
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
