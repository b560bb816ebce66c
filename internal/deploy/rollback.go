package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/slipway-dev/slipway/internal/ledger"
	"github.com/slipway-dev/slipway/internal/release"
)

// ErrNoRelease: no kept release matches what rollback was asked for.
var ErrNoRelease = errors.New("no release to roll back to")

// Rollback makes an earlier good release live again without rebuilding:
// the previous good release, or the newest kept release of commit to.
func (e *Engine) Rollback(ctx context.Context, to string, wait bool) (Result, error) {
	l, err := e.Lock(ctx, "rollback", wait)
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
	id, err := e.Ledger.StartDeploy(ctx, ledger.Deploy{
		Trigger: "manual", Kind: "rollback", Commit: target.Commit,
		PreviousCommit: live.Commit, Release: target.Name, Started: e.now(),
	})
	if err != nil {
		return Result{}, err
	}
	a := &attempt{e: e, res: Result{DeployID: id, Commit: target.Commit, Previous: live.Commit, Release: target.Name, Version: target.Version}, rel: target, live: live}
	if a.j, err = e.openJournal(id); err != nil {
		return a.res, err
	}
	defer a.j.close()
	a.safe = live.Commit
	v := a.vars()
	steps := []struct {
		name string
		fn   func(context.Context) (string, error)
	}{
		{"switch", func(context.Context) (string, error) {
			return "current -> releases/" + target.Name, e.Layout.Switch(target.Name)
		}},
		{"restart", func(ctx context.Context) (string, error) { return e.restartAll(ctx, v, nil) }},
		{"health", func(ctx context.Context) (string, error) { return e.waitHealthy(ctx, v, nil) }},
		{"mark-safe", func(context.Context) (string, error) {
			return "SAFE_COMMIT=" + short(target.Commit), e.Layout.WriteSafeCommit(target.Commit)
		}},
	}
	for _, s := range steps {
		if err := a.step(ctx, s.name, false, s.fn); err != nil {
			// Back to where we were, if that was healthy.
			a.switched, a.safeRel = true, live
			return a.fail(ctx, err)
		}
	}
	if live.Commit != "" && live.Commit != target.Commit {
		// The operator walked away from this commit: automatic deploys must
		// not bring it straight back.
		_ = e.Ledger.MarkBad(ctx, live.Commit, fmt.Sprintf("rolled back by deploy %d", id))
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
		if !hexRE.MatchString(to) {
			return release.Release{}, fmt.Errorf("--to %q is not a commit id", to)
		}
		if r, err := e.releaseOf(ctx, to); err == nil && r.Name != "" {
			return r, nil
		}
		for i := len(all) - 1; i >= 0; i-- {
			if strings.HasPrefix(all[i].Commit, to) {
				if r, err := e.releaseOf(ctx, all[i].Commit); err == nil {
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
