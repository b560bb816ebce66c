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
// refusing while a deploy runs. A data snapshot is restored with the
// services stopped, which then start again on `current` and must come back
// healthy; a command snapshot runs the operator's restore command.
func (e *Engine) RestoreSnapshot(ctx context.Context, id string) (string, error) {
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
	rctx := context.WithoutCancel(ctx)
	if s.Provider != "data" {
		if err := p.Restore(ctx, s.CommitID); err != nil {
			return "", err
		}
		return "restored " + s.Provider + " snapshot " + s.CommitID, e.Ledger.MarkSnapshotRestored(rctx, s.ID, 0, e.now())
	}
	var live release.Release
	if name, _ := e.Layout.Current(); name != "" {
		if live, err = e.Layout.Open(name); err != nil {
			return "", err
		}
	}
	cred, err := e.credential()
	if err != nil {
		return "", err
	}
	v := vars{rel: live}
	if err := e.stopAll(ctx, v); err != nil {
		return "", err
	}
	if err := p.Restore(ctx, s.CommitID); err != nil {
		// Nothing changed: the services go back up on the same data.
		if live.Name != "" {
			_, _ = e.restore(rctx, live, v, cred)
		}
		return "", err
	}
	if err := e.Ledger.MarkSnapshotRestored(rctx, s.ID, 0, e.now()); err != nil {
		return "", err
	}
	msg := "restored data snapshot " + s.CommitID
	if live.Name == "" {
		return msg + "; no release is live, so no service was started", nil
	}
	if _, err := e.restore(rctx, live, v, cred); err != nil {
		return "", fmt.Errorf("%s, but the services did not come back healthy: %w", msg, err)
	}
	return msg + "; services restarted on " + short(live.Commit) + ", healthy", nil
}

// DeleteSnapshot deletes a snapshot and its ledger row.
func (e *Engine) DeleteSnapshot(ctx context.Context, id string) error {
	s, err := e.Ledger.SnapshotByID(ctx, id)
	if err != nil {
		return err
	}
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
