package deploy

import (
	"context"
	"errors"
	"fmt"

	"github.com/slipway-dev/slipway/internal/ledger"
	"github.com/slipway-dev/slipway/internal/release"
	"github.com/slipway-dev/slipway/internal/snapshot"
)

// ErrNoSnapshotConfig is a snapshot command on an app without `snapshot:`.
var ErrNoSnapshotConfig = errors.New("no snapshot: section in the config")

// TakeSnapshot takes a snapshot by hand (`slipway snapshot create`), under
// the deploy lock, with every configured provider.
func (e *Engine) TakeSnapshot(ctx context.Context, label string, tags []string) ([]ledger.Snapshot, error) {
	if e.Cfg.Snapshot == nil {
		return nil, fmt.Errorf("%s: %w (set snapshot.data or snapshot.create)", e.Cfg.Path, ErrNoSnapshotConfig)
	}
	l, err := e.Lock(ctx, "snapshot", false)
	if err != nil {
		return nil, err
	}
	defer func() { _ = l.Release() }()
	if label == "" {
		label = snapshot.LabelManual
	}
	safe, _ := e.Layout.SafeCommit()
	ss, err := e.takeSnapshots(ctx, label, tags, safe, 0)
	if err != nil {
		return ss, err
	}
	if _, err := e.pruneSnapshots(ctx); err != nil {
		return ss, err
	}
	return ss, nil
}

// RestoreSnapshot restores a snapshot by hand (`slipway snapshot restore`),
// refusing while a deploy runs, as a ledger row of kind restore with its
// steps. A data snapshot is restored with the services stopped, which then
// start again on `current` and must come back healthy; a command snapshot
// runs the operator's restore command. A restore cut short by a crash is
// finished by recovery: the data all old or all restored, the services
// started on `current`, healthy.
func (e *Engine) RestoreSnapshot(ctx context.Context, id, actor string) (string, error) {
	s, err := e.Ledger.SnapshotByID(ctx, id)
	if err != nil {
		return "", err
	}
	p, err := e.provider(s.Provider)
	if err != nil {
		return "", err
	}
	l, err := e.Lock(ctx, "snapshot-restore", false)
	if err != nil {
		return "", err
	}
	defer func() { _ = l.Release() }()
	var live release.Release
	if name, _ := e.Layout.Current(); name != "" {
		if live, err = e.Layout.Open(name); err != nil {
			return "", err
		}
	}
	rid, err := e.Ledger.StartDeploy(ctx, ledger.Deploy{
		Kind: ledger.KindRestore, Trigger: ledger.TriggerManual, Actor: actor,
		Commit: live.Commit, PreviousCommit: live.Commit, Release: live.Name, Started: e.now(),
	})
	if err != nil {
		return "", err
	}
	a := &attempt{e: e, rel: live, live: live, res: Result{Kind: ledger.KindRestore, DeployID: rid, Commit: live.Commit, Release: live.Name, Version: live.Version}}
	if a.j, err = e.openJournal(rid); err != nil {
		_ = e.Ledger.FinishDeploy(context.WithoutCancel(ctx), rid, ledger.Failed, err.Error(), false, e.now())
		return "", err
	}
	defer a.j.close()
	rctx := context.WithoutCancel(ctx)
	finish := func(msg string, err error) (string, error) {
		outcome, text := ledger.Succeeded, ""
		if err != nil {
			outcome, text = ledger.Failed, err.Error()
		}
		if ferr := e.Ledger.FinishDeploy(rctx, rid, outcome, text, false, e.now()); ferr != nil {
			return msg, errors.Join(err, ferr)
		}
		return msg, err
	}
	restored := func(ctx context.Context) (string, error) {
		if err := p.Restore(ctx, s.CommitID); err != nil {
			return "", err
		}
		return "restored " + s.Provider + " snapshot " + s.CommitID, e.Ledger.MarkSnapshotRestored(rctx, s.ID, rid, e.now())
	}
	if s.Provider != "data" {
		err := a.step(ctx, "restore", false, restored)
		return finish("restored "+s.Provider+" snapshot "+s.CommitID, unwrapStep(err))
	}
	if a.cred, err = e.credential(); err != nil {
		return finish("", err)
	}
	v := a.vars()
	if err := a.step(ctx, "stop", false, func(ctx context.Context) (string, error) {
		return "services stopped", e.stopAll(ctx, v)
	}); err != nil {
		return finish("", errors.Join(unwrapStep(err), a.liveAgain(rctx)))
	}
	if err := a.step(ctx, "restore-data", false, restored); err != nil {
		// Nothing changed: the services go back up on the same data.
		return finish("", errors.Join(unwrapStep(err), a.liveAgain(rctx)))
	}
	msg := "restored data snapshot " + s.CommitID
	if live.Name == "" {
		return finish(msg+"; no release is live, so no service was started", nil)
	}
	if err := a.liveAgain(rctx); err != nil {
		return finish("", fmt.Errorf("%s, but the services did not come back healthy: %w", msg, err))
	}
	return finish(msg+"; services restarted on "+short(live.Commit)+", healthy", nil)
}

// liveAgain starts the live release's services after a restore stopped
// them, and waits until they are healthy: the restart and health steps.
func (a *attempt) liveAgain(ctx context.Context) error {
	if a.live.Name == "" {
		return nil
	}
	v := a.vars()
	if err := a.step(ctx, "restart", false, func(ctx context.Context) (string, error) {
		return a.e.restartAll(ctx, v, a.cred)
	}); err != nil {
		return unwrapStep(err)
	}
	return unwrapStep(a.step(ctx, "health", false, func(ctx context.Context) (string, error) {
		return a.e.waitHealthy(ctx, v, a.cred)
	}))
}

// unwrapStep returns the cause of a step's error (the step is recorded).
func unwrapStep(err error) error {
	var se *stepError
	if errors.As(err, &se) {
		return se.err
	}
	return err
}

// DeleteSnapshot deletes a snapshot and its ledger row, under the deploy
// lock that pruning holds too: a deploy's own snapshot is never deleted
// while the deploy may still restore it.
func (e *Engine) DeleteSnapshot(ctx context.Context, id string) error {
	s, err := e.Ledger.SnapshotByID(ctx, id)
	if err != nil {
		return err
	}
	l, err := e.Lock(ctx, "snapshot-delete", false)
	if err != nil {
		return err
	}
	defer func() { _ = l.Release() }()
	if s.Provider != "external" {
		p, err := e.provider(s.Provider)
		if err != nil {
			return err
		}
		if err := p.Delete(ctx, s.CommitID); err != nil && !errors.Is(err, snapshot.ErrNotFound) {
			return err
		}
	}
	return e.Ledger.DeleteSnapshot(ctx, s.ID)
}
