package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/internal/deploy"
	"github.com/slipway-dev/slipway/internal/ledger"
)

func newDeployCmd(g *globals) *cobra.Command {
	var opts deploy.Options
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "deploy [--commit SHA | --ref REF] [--force] [--wait] [--dry-run]",
		Short: "Deploy the branch tip (or a commit or ref) and prove it healthy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Commit != "" && opts.Ref != "" {
				return usageError{errors.New("--commit and --ref are exclusive")}
			}
			opts.Trigger = "manual"
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
	return cmd
}

func runDeploy(cmd *cobra.Command, g *globals, opts deploy.Options, asJSON bool) error {
	a, err := g.openApp()
	if err != nil {
		return err
	}
	defer a.close()
	p := newPrinter(g.stderr)
	a.engine.Observe = p.Event
	if !opts.DryRun {
		fmt.Fprintf(g.stderr, "deploying %s (%s, branch %s)\n", a.cfg.App, a.cfg.Repo, a.cfg.Branch)
	}
	res, err := a.engine.Deploy(signalContext(cmd), opts)
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
	if asJSON {
		return nil
	}
	if res.Plan != nil {
		printPlan(g, res.Plan)
		return nil
	}
	if res.Outcome == ledger.Skipped && !strings.HasPrefix(res.Message, "nothing to do") {
		fmt.Fprintf(g.stderr, "warning: %s\n", res.Message)
	}
	fmt.Fprintln(g.stdout, res.Message)
	return nil
}

func printPlan(g *globals, p *deploy.Plan) {
	fmt.Fprintf(g.stdout, "target:  %s %s\n", p.Target, p.Subject)
	fmt.Fprintf(g.stdout, "live:    %s\n", orDash(p.Live))
	fmt.Fprintf(g.stdout, "safe:    %s\n", orDash(p.Safe))
	if p.Action != "deploy" {
		fmt.Fprintf(g.stdout, "plan:    %s\n", p.Reason)
		return
	}
	fmt.Fprintln(g.stdout, "plan:")
	for _, s := range p.Steps {
		fmt.Fprintf(g.stdout, "  %-16s %s\n", s.Name, s.Detail)
	}
	fmt.Fprintln(g.stdout, "dry run: nothing was changed")
}

type deployJSON struct {
	ID       int64        `json:"id,omitempty"`
	Outcome  string       `json:"outcome"`
	Commit   string       `json:"commit,omitempty"`
	Previous string       `json:"previous_commit,omitempty"`
	Release  string       `json:"release,omitempty"`
	Version  string       `json:"version,omitempty"`
	Message  string       `json:"message,omitempty"`
	Error    string       `json:"error,omitempty"`
	Step     string       `json:"failed_step,omitempty"`
	Plan     *deploy.Plan `json:"plan,omitempty"`
	ExitCode int          `json:"exit_code"`
}

func resultJSON(r deploy.Result, err error) deployJSON {
	out := deployJSON{ID: r.DeployID, Outcome: string(r.Outcome), Commit: r.Commit, Previous: r.Previous,
		Release: r.Release, Version: r.Version, Message: r.Message, Plan: r.Plan, ExitCode: ExitCode(err)}
	if r.Plan != nil {
		out.Outcome = "dry-run"
	}
	if err != nil {
		out.Error = err.Error()
		var f *deploy.Failure
		if errors.As(err, &f) {
			out.Step = f.Step
		}
	}
	return out
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
