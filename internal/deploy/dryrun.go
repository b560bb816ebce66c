package deploy

import (
	"context"
	"fmt"
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
	add := func(name, detail string) { p.Steps = append(p.Steps, PlanStep{name, detail}) }
	if c := d.change; c != nil {
		p.Action, p.Reason = c.action(), c.String()
		if !c.rebuild {
			p.Reason += ": the live release would be restarted with it and proven, without a rebuild"
			add("verify-env", fmt.Sprintf("require %v, env files, ports", e.Cfg.RequireEnv))
			e.planProve(add)
			add("mark-applied", "record the config as the one "+live.Name+" runs with")
			return Result{Commit: target, Plan: p, Message: p.Reason}, nil
		}
		p.Reason += ": " + short(target) + " would be built again into a new release"
	}
	add("verify-env", fmt.Sprintf("require %v, env files, ports", e.Cfg.RequireEnv))
	add("prepare", fmt.Sprintf("export %s into releases/<time>-%s, link shared %v", short(target), target[:12], e.Cfg.Shared))
	for _, b := range e.Cfg.Build {
		detail := fmt.Sprintf("run `%s` in %s", b.Run, dirOr(b.Dir))
		if b.Reuse != nil && live.Name != "" && e.keysUnchanged(ctx, live, target, b.Dir, b.Reuse.Key) {
			detail = fmt.Sprintf("reuse %s from %s (%s unchanged); `%s` skipped",
				strings.Join(b.Reuse.Paths, ", "), live.Name, strings.Join(b.Reuse.Key, ", "), b.Run)
		}
		add("build:"+b.Name, detail)
	}
	if sn := e.Cfg.Snapshot; sn != nil {
		var what []string
		for _, p := range e.Providers() {
			what = append(what, p.Name())
		}
		add("snapshot", "take a pre-deploy snapshot ("+strings.Join(what, ", ")+")")
	}
	if m := e.Cfg.Migrate; m != nil {
		add("migrate", fmt.Sprintf("run `%s` in %s", m.Run, dirOr(m.Dir)))
	}
	add("stamp", "write VERSION (APP_VERSION=<time>+"+short(target)+")")
	add("switch", "current -> the new release")
	e.planProve(add)
	add("mark-safe", "SAFE_COMMIT="+short(target))
	if sn := e.Cfg.Snapshot; sn != nil && sn.PostDeploy {
		add("post-snapshot", "take a post-deploy snapshot")
	}
	add("prune", fmt.Sprintf("keep %d releases", e.Cfg.KeepReleases))
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

// planProve lists the steps that start a release's services and prove
// them, as the run does them.
func (e *Engine) planProve(add func(name, detail string)) {
	add("restart", strings.Join(e.Cfg.ServiceNames(), ", "))
	if h := e.Cfg.Health; h != nil {
		add("health", fmt.Sprintf("%s answers %d within %s", h.URL, h.ExpectStatus, h.Timeout.D()))
	} else {
		add("health", "every service running (no health check configured)")
	}
	if len(e.Cfg.Smoke) > 0 {
		add("smoke", fmt.Sprintf("%d checks", len(e.Cfg.Smoke)))
	}
	if e.usesProxy() {
		add("traffic", "the proxy sends the traffic to the new instances; the old ones are held")
	}
	add("settle", fmt.Sprintf("every service stays up and healthy for %s", e.settleWindow()))
}
