package deploy

import (
	"context"
	"fmt"
	"strings"

	"github.com/slipway-dev/slipway/internal/config"
	"github.com/slipway-dev/slipway/internal/release"
	"github.com/slipway-dev/slipway/internal/snapshot"
)

// seqStep is one step of a sequence, written once: the run does it, and a
// dry run lists it with what it would do.
type seqStep struct {
	name string
	// bad: a failure here is the commit's fault, which marks it bad.
	bad bool
	// stands: the deploy stands whatever happens here (a step after
	// mark-safe); a failure is recorded only.
	stands bool
	plan   func(context.Context) string
	run    func(context.Context) (string, error)
}

// runSteps runs steps in order and returns the first failure of a step
// the deploy does not stand without.
func (a *attempt) runSteps(ctx context.Context, steps []seqStep) error {
	for _, s := range steps {
		if err := a.step(ctx, s.name, s.bad, s.run); err != nil && !s.stands {
			return err
		}
	}
	return nil
}

// planOf is what a dry run lists of steps.
func planOf(ctx context.Context, steps []seqStep) []PlanStep {
	out := make([]PlanStep, 0, len(steps))
	for _, s := range steps {
		out = append(out, PlanStep{Name: s.name, Detail: s.plan(ctx)})
	}
	return out
}

// deploySteps are the steps of a deploy of target, after its plan: a new
// release built, switched to and proven, then marked safe.
func (a *attempt) deploySteps(target string) []seqStep {
	e := a.e
	a.emptiesTrash = true // the prune step waits for it
	steps := []seqStep{
		a.verifyEnvStep(),
		{name: "prepare", run: a.prepare, plan: func(context.Context) string {
			return fmt.Sprintf("export %s into releases/<time>-%s, link shared %v", short(target), target[:12], e.Cfg.Shared)
		}},
	}
	for i := range e.Cfg.Build {
		b := &e.Cfg.Build[i]
		steps = append(steps, seqStep{name: "build:" + b.Name, bad: true,
			run:  func(ctx context.Context) (string, error) { return a.build(ctx, b) },
			plan: func(ctx context.Context) string { return a.planBuild(ctx, b, target) },
		})
	}
	if e.Cfg.Snapshot != nil {
		steps = append(steps, seqStep{name: "snapshot", run: a.snapshot, plan: func(context.Context) string {
			var what []string
			for _, p := range e.Providers() {
				what = append(what, p.Name())
			}
			return "take a pre-deploy snapshot (" + strings.Join(what, ", ") + ")"
		}})
	}
	if m := e.Cfg.Migrate; m != nil {
		steps = append(steps, seqStep{name: "migrate", bad: true,
			run:  func(ctx context.Context) (string, error) { return a.migrate(ctx, m) },
			plan: func(context.Context) string { return fmt.Sprintf("run `%s` in %s", m.Run, dirOr(m.Dir)) },
		})
	}
	steps = append(steps,
		seqStep{name: "stamp",
			run: func(context.Context) (string, error) { return "APP_VERSION=" + a.rel.Version, release.Stamp(a.rel) },
			plan: func(context.Context) string {
				return "write VERSION (APP_VERSION=<time>+" + short(target) + ")"
			}},
		seqStep{name: "switch",
			run: func(context.Context) (string, error) {
				if err := e.Layout.Switch(a.rel.Name); err != nil {
					return "", err
				}
				a.switched = true
				return "current -> releases/" + a.rel.Name, nil
			},
			plan: func(context.Context) string { return "current -> the new release" }},
	)
	steps = append(steps, a.proof(func(ctx context.Context) (string, error) {
		a.started = true
		return e.startAll(ctx, a.vars(), a.cred)
	}, true, true)...)
	steps = append(steps, a.markSafeStep(target))
	if e.usesProxy() {
		steps = append(steps, a.drainStep())
	}
	if s := e.Cfg.Snapshot; s != nil && s.PostDeploy {
		steps = append(steps, seqStep{name: "post-snapshot", stands: true,
			run: func(ctx context.Context) (string, error) {
				ss, err := e.takeSnapshots(ctx, snapshot.LabelPostDeploy, nil, target, a.res.DeployID)
				return describeSnapshots(ss), err
			},
			plan: func(context.Context) string { return "take a post-deploy snapshot" }})
	}
	return append(steps, seqStep{name: "prune", stands: true,
		run:  func(ctx context.Context) (string, error) { return a.prune(ctx, "") },
		plan: func(context.Context) string { return fmt.Sprintf("keep %d releases", e.Cfg.KeepReleases) }})
}

// reconfigureSteps apply a changed config to the live release (a.rel)
// without a rebuild: its services restarted and proven, then the config
// recorded as applied.
func (a *attempt) reconfigureSteps() []seqStep {
	e := a.e
	steps := append([]seqStep{a.verifyEnvStep()}, a.restartSteps(nil)...)
	return append(steps, seqStep{name: "mark-applied",
		run: func(context.Context) (string, error) {
			return "the config recorded as the one " + a.rel.Name + " runs with", e.recordApplied(a.rel.Commit)
		},
		plan: func(context.Context) string { return "record the config as the one " + a.rel.Name + " runs with" }})
}

// restartSteps restart names (nil: every service) on the live release
// (a.rel) and prove them as a deploy does; behind the proxy the instances
// that served before then drain.
func (a *attempt) restartSteps(names []string) []seqStep {
	e := a.e
	steps := a.proof(func(ctx context.Context) (string, error) {
		a.started = true
		return e.startServices(ctx, a.vars(), a.cred, names)
	}, false, true)
	if e.usesProxy() {
		steps = append(steps, a.drainStep())
	}
	return steps
}

// proof is how a release's services are started and proven: start, then
// health, smoke, the traffic switch behind the proxy (unless start does
// it itself) and settle. bad: a failure is the commit's fault.
func (a *attempt) proof(start func(context.Context) (string, error), bad, traffic bool) []seqStep {
	e := a.e
	steps := []seqStep{
		{name: "restart", bad: bad, run: start,
			plan: func(context.Context) string { return strings.Join(e.Cfg.ServiceNames(), ", ") }},
		{name: "health", bad: bad,
			run: func(ctx context.Context) (string, error) { return e.waitHealthy(ctx, a.vars(), a.cred) },
			plan: func(context.Context) string {
				if h := e.Cfg.Health; h != nil {
					return fmt.Sprintf("%s answers %d within %s", h.URL, h.ExpectStatus, h.Timeout.D())
				}
				return "every service running (no health check configured)"
			}},
		{name: "smoke", bad: bad,
			run: func(ctx context.Context) (string, error) { return e.smoke(ctx, a.vars(), a.j.Output(), a.cred) },
			plan: func(context.Context) string {
				if len(e.Cfg.Smoke) == 0 {
					return "no smoke checks configured"
				}
				return fmt.Sprintf("%d checks", len(e.Cfg.Smoke))
			}},
	}
	if traffic && e.usesProxy() {
		// Only now, proven on its own port, does the release take traffic;
		// the instance that served stays up through the settle window.
		steps = append(steps, seqStep{name: "traffic",
			run: func(ctx context.Context) (string, error) {
				a.traffic = true
				return e.switchTraffic(ctx, a.vars())
			},
			plan: func(context.Context) string {
				return "the proxy sends the traffic to the new instances; the old ones are held"
			}})
	}
	return append(steps, seqStep{name: "settle", bad: bad,
		run: func(ctx context.Context) (string, error) {
			if a.emptiesTrash {
				a.startEmptyTrash()
			}
			return e.settle(ctx, a.vars(), a.cred)
		},
		plan: func(context.Context) string {
			return fmt.Sprintf("every service stays up and healthy for %s", e.settleWindow())
		}})
}

func (a *attempt) verifyEnvStep() seqStep {
	return seqStep{name: "verify-env", run: a.verifyEnv, plan: func(context.Context) string {
		return fmt.Sprintf("require %v, env files, ports", a.e.Cfg.RequireEnv)
	}}
}

// markSafeStep writes SAFE_COMMIT: from here on the deploy stands.
func (a *attempt) markSafeStep(commit string) seqStep {
	e := a.e
	return seqStep{name: "mark-safe",
		run: func(context.Context) (string, error) {
			if err := e.Layout.WriteSafeCommit(commit); err != nil {
				return "", err
			}
			return "SAFE_COMMIT=" + short(commit) + e.noteApplied(commit), nil
		},
		plan: func(context.Context) string { return "SAFE_COMMIT=" + short(commit) }}
}

// drainStep retires the instances that served before the traffic switch;
// the deploy stands whatever happens here.
func (a *attempt) drainStep() seqStep {
	return seqStep{name: "drain", stands: true,
		run: func(ctx context.Context) (string, error) { return a.e.retire(ctx, a.vars(), a.cred) },
		plan: func(context.Context) string {
			return "the instances that served before finish their requests and stop"
		}}
}

// migrate is the migrate step: m's command in the new release, with the
// proxy holding requests meanwhile when it pauses traffic.
func (a *attempt) migrate(ctx context.Context, m *config.Step) (string, error) {
	a.migrated = true
	if m.PauseTraffic {
		resume, err := a.e.pauseTraffic(ctx, m.Timeout.D())
		if err != nil {
			return "", err
		}
		defer resume()
		return "traffic held at the proxy meanwhile", a.command(ctx, m)
	}
	return "", a.command(ctx, m)
}

// planBuild is what a dry run says of build step b: its command, or the
// reuse of the live release's output when the key files are unchanged.
func (a *attempt) planBuild(ctx context.Context, b *config.Step, target string) string {
	if b.Reuse != nil && a.live.Name != "" && a.e.keysUnchanged(ctx, a.live, target, b.Dir, b.Reuse.Key) {
		return fmt.Sprintf("reuse %s from %s (%s unchanged); `%s` skipped",
			strings.Join(b.Reuse.Paths, ", "), a.live.Name, strings.Join(b.Reuse.Key, ", "), b.Run)
	}
	return fmt.Sprintf("run `%s` in %s", b.Run, dirOr(b.Dir))
}
