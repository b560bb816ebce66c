package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/slipway-dev/slipway/internal/git"
	"github.com/slipway-dev/slipway/internal/ledger"
	"github.com/slipway-dev/slipway/internal/release"
	"github.com/slipway-dev/slipway/internal/snapshot"
)

// ErrNoRelease: no kept release matches what rollback was asked for.
var ErrNoRelease = errors.New("no release to roll back to")

// ErrNothingToRestore: --restore-data, but there is no such snapshot.
var ErrNothingToRestore = errors.New("no data snapshot to restore")

// migrated is the migration that put a release's data where it is: the
// deploy that made the release live ran migrate after taking snap.
type migrated struct {
	deployID int64
	snap     ledger.Snapshot
}

// migrationOf finds the migration run by the deploy of rel, with the data
// snapshot taken just before it; nil when that deploy ran none.
func (e *Engine) migrationOf(ctx context.Context, rel release.Release) (*migrated, error) {
	if rel.Name == "" || e.Cfg.Snapshot == nil {
		return nil, nil
	}
	ds, err := e.Ledger.Deploys(ctx, 200)
	if err != nil {
		return nil, err
	}
	for _, d := range ds {
		if d.Kind != ledger.KindDeploy || d.Release != rel.Name || d.Outcome != ledger.Succeeded {
			continue
		}
		steps, err := e.Ledger.Steps(ctx, d.ID)
		if err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(steps, func(s ledger.Step) bool { return s.Name == "migrate" && s.Outcome == ledger.Succeeded }) {
			return nil, nil
		}
		snaps, err := e.Ledger.Snapshots(ctx, 0)
		if err != nil {
			return nil, err
		}
		for _, s := range snaps {
			if s.DeployID == d.ID && s.Provider == "data" && s.Label == snapshot.LabelPreDeploy {
				return &migrated{deployID: d.ID, snap: s}, nil
			}
		}
		return nil, nil
	}
	return nil, nil
}

// RollbackOptions selects what one rollback does.
type RollbackOptions struct {
	To string // a commit id (prefix); "" = the previous good release
	// RestoreData restores the pre-deploy data snapshot of the release
	// rolled away from, when its deploy ran a migration after it.
	RestoreData bool
	Wait        bool   // wait for the lock instead of exiting 3
	Trigger     string // manual, api
	Actor       string
	DeployID    int64 // adopt a ledger row the agent queued (0: a new row)
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
	if err := e.refuseStopped(); err != nil {
		return Result{}, err
	}
	if err := e.RefuseLooseEnv(); err != nil {
		return Result{}, err
	}

	live := e.liveRelease()
	target, err := e.rollbackTarget(ctx, to, live)
	if err != nil {
		return Result{}, err
	}
	mig, err := e.migrationOf(ctx, live)
	if err != nil {
		return Result{}, err
	}
	if opts.RestoreData && mig == nil {
		return Result{}, fmt.Errorf("--restore-data: %w: the deploy of the live release %s ran no migration after a data snapshot", ErrNothingToRestore, orNone(live.Name))
	}
	id, err := e.openRow(ctx, opts.DeployID, ledger.Deploy{
		Trigger: opts.Trigger, Actor: opts.Actor, Kind: ledger.KindRollback, Commit: target.Commit,
		PreviousCommit: live.Commit, Release: target.Name,
	})
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
	if mig != nil && opts.RestoreData {
		a.preData = mig.snap
		if err := a.step(ctx, "restore-data", false, a.restoreData); err != nil {
			a.switched, a.safeRel = true, live // its services go back up
			return a.fail(ctx, err)
		}
	}
	// A rollback proves itself as a deploy does: after a migration the
	// old code may no longer fit the data.
	steps := append([]seqStep{{name: "switch", run: func(context.Context) (string, error) {
		return "current -> releases/" + target.Name, e.Layout.Switch(target.Name)
	}, plan: func(context.Context) string { return "current -> releases/" + target.Name }}}, a.proof(func(ctx context.Context) (string, error) { return e.startAll(ctx, a.vars(), a.cred) }, false, true)...)
	steps = append(steps, a.markSafeStep(target.Commit))
	for _, s := range steps {
		if err := a.step(ctx, s.name, false, s.run); err != nil {
			// Back to where we were, if that was healthy.
			a.switched, a.safeRel = true, live
			res, err := a.fail(ctx, err)
			var f *Failure
			if mig != nil && !opts.RestoreData && errors.As(err, &f) {
				f.Next = fmt.Sprintf("the data is as the migration of deploy %d left it, which the release before may not read: "+
					"`slipway rollback --to %s --restore-data` restores data snapshot %s first; %s", mig.deployID, short(target.Commit), mig.snap.CommitID, f.Next)
			}
			return res, err
		}
	}
	if e.usesProxy() {
		_ = a.runSteps(ctx, []seqStep{a.drainStep()})
	}
	a.res.Outcome = ledger.Succeeded
	a.res.Message = fmt.Sprintf("rolled back to %s (%s)", short(target.Commit), target.Version)
	switch {
	case mig != nil && opts.RestoreData:
		a.res.Message += fmt.Sprintf("; data snapshot %s (taken before deploy %d's migration) restored", mig.snap.CommitID, mig.deployID)
	case mig != nil:
		a.res.Warning = fmt.Sprintf("the release rolled away from ran a migration (deploy %d) after data snapshot %s was taken at %s: "+
			"the data is still as that migration left it. `slipway rollback --to %s --restore-data` would restore the snapshot, "+
			"losing every write to %v since then",
			mig.deployID, mig.snap.CommitID, mig.snap.Created.Format(time.RFC3339), short(target.Commit), e.Cfg.Snapshot.Data)
	}
	return a.res, e.Ledger.FinishDeploy(context.WithoutCancel(ctx), id, ledger.Succeeded, "", false, e.now())
}

func (e *Engine) rollbackTarget(ctx context.Context, to string, live release.Release) (release.Release, error) {
	all, err := e.Layout.List()
	if err != nil {
		return release.Release{}, err
	}
	if to != "" {
		to = strings.ToLower(to)
		if !git.IsCommitID(to) {
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
