package deploy

import (
	"context"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/slipway-dev/slipway/internal/release"
)

// Plan is what a deploy would do.
type Plan struct {
	Target  string     `json:"target"`
	Subject string     `json:"subject,omitempty"`
	Live    string     `json:"live,omitempty"`
	Safe    string     `json:"safe,omitempty"`
	Action  string     `json:"action"` // deploy | nothing | skip | repair
	Reason  string     `json:"reason,omitempty"`
	Steps   []PlanStep `json:"steps,omitempty"`
}

// PlanStep is one step of a plan.
type PlanStep struct {
	Name   string `json:"name"`
	Detail string `json:"detail"`
}

// dryRun resolves the target and says what a deploy would do. It takes no
// lock and changes nothing but the git mirror's cache of the remote.
func (e *Engine) dryRun(ctx context.Context, opts Options) (Result, error) {
	if err := e.Layout.Ensure(); err != nil {
		return Result{}, err
	}
	safe, _ := e.Layout.SafeCommit()
	target, _, err := e.resolve(ctx, opts)
	if err != nil {
		return Result{}, err
	}
	safeRel, _ := e.releaseOf(ctx, safe)
	live := e.liveRelease()
	p := &Plan{Target: target, Subject: e.Mirror.Subject(ctx, target), Live: live.Name, Safe: safe, Action: "deploy"}
	d := e.planSkip(ctx, target, opts.Force, safeRel, live)
	if d.skip != "" {
		p.Action, p.Reason = "skip", d.skip
		switch {
		case d.repair != "":
			p.Action, p.Reason = "repair", d.skip+"; the live release is down ("+d.repair+"): it would be restarted, and proven healthy"
		case strings.HasPrefix(d.skip, "nothing to do"):
			p.Action = "nothing"
		}
		return Result{Commit: target, Plan: p, Message: p.Reason}, nil
	}
	// The steps are the run's own table (steps.go), listed, not run.
	a := &attempt{e: e, opts: opts, safe: safe, safeRel: safeRel, live: live, rel: live}
	if c := d.change; c != nil {
		p.Action, p.Reason = c.action(), c.String()
		if !c.rebuild {
			p.Reason += ": the live release would be restarted with it and proven, without a rebuild"
			p.Steps = planOf(ctx, a.reconfigureSteps())
			return Result{Commit: target, Plan: p, Message: p.Reason}, nil
		}
		p.Reason += ": " + short(target) + " would be built again into a new release"
	}
	p.Steps = planOf(ctx, a.deploySteps(target))
	return Result{Commit: target, Plan: p, Message: "dry run: nothing was changed"}, nil
}

// keysUnchanged compares the key files of the live release with the
// target commit's, without exporting it.
func (e *Engine) keysUnchanged(ctx context.Context, live release.Release, target, dir string, keys []string) bool {
	for _, k := range keys {
		p := path.Join(dir, k)
		if info, err := os.Stat(filepath.Join(live.Dir, p)); err == nil && info.IsDir() {
			return false // a directory key is compared once the release is exported
		}
		want, inTarget := e.Mirror.ReadFile(ctx, target, p)
		have, err := readFile(live.Dir, p)
		if inTarget != (err == nil) || want != have {
			return false
		}
	}
	return true
}

func dirOr(d string) string {
	if d == "" {
		return "the release root"
	}
	return d
}
