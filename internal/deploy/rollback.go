package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/slipway-dev/slipway/internal/ledger"
	"github.com/slipway-dev/slipway/internal/release"
)

// ErrNoRelease: no kept release matches what rollback was asked for.
var ErrNoRelease = errors.New("no release to roll back to")

// RollbackOptions selects what one rollback does.
type RollbackOptions struct {
	To       string // a commit id (prefix); "" = the previous good release
	Wait     bool   // wait for the lock instead of exiting 3
	Trigger  string // manual, api
	Actor    string
	DeployID int64 // adopt a ledger row the agent queued (0: a new row)
}

// Rollback makes an earlier good release live again without rebuilding:
// the previous good release, or the newest kept release of commit opts.To.
func (e *Engine) Rollback(ctx context.Context, opts RollbackOptions) (Result, error) {
	to := opts.To
	if opts.Trigger == "" {
		opts.Trigger = "manual"
	}
	l, err := e.Lock(ctx, "rollback", opts.Wait)
	if err != nil {
		return Result{}, err
	}
	defer func() { _ = l.Release() }()

	var live release.Release
	if name, _ := e.Layout.Current(); name != "" {
		live, _ = e.Layout.Open(name)
	}
	target, err := e.rollbackTarget(ctx, to, live)
	if err != nil {
		return Result{}, err
	}
	id := opts.DeployID
	if id != 0 {
		err = e.Ledger.Begin(ctx, id, e.now())
		if err == nil {
			err = e.Ledger.UpdateDeploy(ctx, ledger.Deploy{ID: id, Commit: target.Commit, PreviousCommit: live.Commit, Release: target.Name})
		}
	} else {
		id, err = e.Ledger.StartDeploy(ctx, ledger.Deploy{
			Trigger: opts.Trigger, Actor: opts.Actor, Kind: ledger.KindRollback, Commit: target.Commit,
			PreviousCommit: live.Commit, Release: target.Name, Started: e.now(),
		})
	}
	if err != nil {
		return Result{}, err
	}
	a := &attempt{e: e, res: Result{Kind: ledger.KindRollback, DeployID: id, Commit: target.Commit, Previous: live.Commit, Release: target.Name, Version: target.Version}, rel: target, live: live}
	if a.j, err = e.openJournal(id); err != nil {
		_ = e.Ledger.FinishDeploy(context.WithoutCancel(ctx), id, ledger.Failed, err.Error(), false, e.now())
		return a.res, err
	}
	defer a.j.close()
	a.safe = live.Commit
	if a.cred, err = e.credential(); err != nil {
		return a.fail(ctx, &stepError{step: "switch", err: err})
	}
	if live.Commit != "" && live.Commit != target.Commit {
		// The operator walks away from this commit: automatic deploys must
		// not bring it straight back. Marked before the switch, so that a
		// crash in between cannot let it return.
		if err := e.Ledger.MarkBad(ctx, live.Commit, fmt.Sprintf("rolled back by deploy %d", id)); err != nil && !errors.Is(err, ledger.ErrNotFound) {
			return a.fail(ctx, &stepError{step: "switch", err: err})
		}
	}
	v := a.vars()
	steps := []namedStep{
		{"switch", func(context.Context) (string, error) {
			return "current -> releases/" + target.Name, e.Layout.Switch(target.Name)
		}},
		{"restart", func(ctx context.Context) (string, error) { return e.startAll(ctx, v, a.cred) }},
		{"health", func(ctx context.Context) (string, error) { return e.waitHealthy(ctx, v, a.cred) }},
		// A rollback proves itself as a deploy does: after a migration the
		// old code may no longer fit the data.
		{"smoke", func(ctx context.Context) (string, error) {
			if len(e.Cfg.Smoke) == 0 {
				return "no smoke checks configured", nil
			}
			return e.smoke(ctx, v, a.j.Output(), a.cred)
		}},
		{"traffic", func(ctx context.Context) (string, error) { return e.switchTraffic(ctx, v) }},
		{"settle", func(ctx context.Context) (string, error) { return e.settle(ctx, v, a.cred) }},
		{"mark-safe", func(context.Context) (string, error) {
			return "SAFE_COMMIT=" + short(target.Commit), e.Layout.WriteSafeCommit(target.Commit)
		}},
	}
	if !e.usesProxy() {
		steps = slices.DeleteFunc(steps, func(s namedStep) bool { return s.name == "traffic" })
	}
	for _, s := range steps {
		if err := a.step(ctx, s.name, false, s.fn); err != nil {
			// Back to where we were, if that was healthy.
			a.switched, a.safeRel = true, live
			return a.fail(ctx, err)
		}
	}
	if e.usesProxy() {
		_ = a.step(ctx, "drain", false, func(ctx context.Context) (string, error) { return e.retire(ctx, v, a.cred) })
	}
	a.res.Outcome = ledger.Succeeded
	a.res.Message = fmt.Sprintf("rolled back to %s (%s)", short(target.Commit), target.Version)
	return a.res, e.Ledger.FinishDeploy(context.WithoutCancel(ctx), id, ledger.Succeeded, "", false, e.now())
}

func (e *Engine) rollbackTarget(ctx context.Context, to string, live release.Release) (release.Release, error) {
	all, err := e.Layout.List()
	if err != nil {
		return release.Release{}, err
	}
	if to != "" {
		to = strings.ToLower(to)
		if !isCommitID(to) {
			return release.Release{}, fmt.Errorf("--to %q is not a commit id", to)
		}
		// Only a release that once passed every check: rollback skips the
		// smoke checks a deploy would run.
		good, err := e.Ledger.LastGoodReleases(ctx, 0)
		if err != nil {
			return release.Release{}, err
		}
		for _, d := range good {
			if strings.HasPrefix(d.Commit, to) {
				if r, err := e.Layout.Open(d.Release); err == nil {
					return r, nil
				}
			}
		}
		return release.Release{}, fmt.Errorf("%w: no kept release of %s (kept: %s)", ErrNoRelease, to, kept(all))
	}
	good, err := e.Ledger.LastGoodReleases(ctx, 100)
	if err != nil {
		return release.Release{}, err
	}
	for _, d := range good {
		if d.Release == live.Name || d.Commit == live.Commit {
			continue
		}
		// A commit rolled away from before (or failed since) is not where
		// a plain rollback goes; --to can still name it.
		if bad, err := e.Ledger.IsBad(ctx, d.Commit); err != nil {
			return release.Release{}, err
		} else if bad {
			continue
		}
		if r, err := e.Layout.Open(d.Release); err == nil {
			return r, nil
		}
	}
	return release.Release{}, fmt.Errorf("%w: no earlier good release is kept (kept: %s); deploy one with `slipway deploy --commit SHA`", ErrNoRelease, kept(all))
}

func kept(all []release.Release) string {
	if len(all) == 0 {
		return "none"
	}
	var s []string
	for _, r := range all {
		s = append(s, short(r.Commit))
	}
	return strings.Join(s, ", ")
}
