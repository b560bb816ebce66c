package deploy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/slipway-dev/slipway/internal/config"
	"github.com/slipway-dev/slipway/internal/ledger"
	"github.com/slipway-dev/slipway/internal/run"
	"github.com/slipway-dev/slipway/internal/snapshot"
)

// Providers returns the snapshot providers the config sets up: data when
// snapshot.data lists paths, command when snapshot.create is set.
func (e *Engine) Providers() []snapshot.Provider {
	s := e.Cfg.Snapshot
	if s == nil {
		return nil
	}
	var out []snapshot.Provider
	if len(s.Data) > 0 {
		out = append(out, &snapshot.Data{Shared: e.Layout.SharedDir(), Paths: s.Data, Dir: e.Layout.SnapshotsDir(), Now: e.now})
	}
	if s.Create != "" {
		// The config was validated: these parse.
		parse := func(text string) *snapshot.Template {
			if text == "" {
				return nil
			}
			t, _ := snapshot.ParseTemplate(text)
			return t
		}
		out = append(out, &snapshot.Command{
			CreateCmd: parse(s.Create), RestoreCmd: parse(s.Restore), DeleteCmd: parse(s.Delete),
			IDPattern: regexp.MustCompile(s.IDPattern), VMID: s.VMID, Timeout: s.Timeout.D(),
			Env: run.BaseEnv(), Track: e.tracker(),
		})
	}
	return out
}

// provider returns the provider of a ledger row.
func (e *Engine) provider(name string) (snapshot.Provider, error) {
	for _, p := range e.Providers() {
		if p.Name() == name {
			return p, nil
		}
	}
	if name == "external" {
		return nil, fmt.Errorf("this snapshot was recorded through the API; slipway cannot restore or delete it: use your VM's own tools")
	}
	return nil, fmt.Errorf("snapshot provider %q is not configured in %s (snapshot:)", name, e.Cfg.Path)
}

// takeSnapshots takes one snapshot with every provider and records each.
func (e *Engine) takeSnapshots(ctx context.Context, label string, tags []string, commit string, deployID int64) ([]ledger.Snapshot, error) {
	var out []ledger.Snapshot
	host, _ := os.Hostname()
	for _, p := range e.Providers() {
		sctx, cancel := context.WithTimeout(ctx, e.Cfg.Snapshot.Timeout.D())
		taken, err := p.Create(sctx, snapshot.Request{Label: label, Tags: tags, App: e.Cfg.App, Commit: commit, VMID: e.Cfg.Snapshot.VMID})
		cancel()
		if err != nil {
			return out, fmt.Errorf("%s snapshot: %w", p.Name(), err)
		}
		s := ledger.Snapshot{CommitID: taken.ID, Provider: p.Name(), VMID: e.Cfg.Snapshot.VMID, Label: label,
			Agent: "slipway@" + host, Tags: tags, App: e.Cfg.App, Commit: commit, DeployID: deployID, Size: taken.Size, Created: e.now()}
		if s.ID, err = e.Ledger.AddSnapshot(context.WithoutCancel(ctx), s); err != nil {
			return out, err
		}
		out = append(out, s)
	}
	return out, nil
}

func describeSnapshots(ss []ledger.Snapshot) string {
	var parts []string
	for _, s := range ss {
		d := s.Provider + " " + s.CommitID
		if s.Size > 0 {
			d += fmt.Sprintf(" (%s)", HumanBytes(s.Size))
		}
		parts = append(parts, d)
	}
	return strings.Join(parts, ", ")
}

// HumanBytes renders a size in binary units (B, KiB, MiB, GiB).
func HumanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// snapshot is the deploy's snapshot step, before migrate: a failure stops
// the deploy before anything changed.
func (a *attempt) snapshot(ctx context.Context) (string, error) {
	ss, err := a.e.takeSnapshots(ctx, snapshot.LabelPreDeploy, nil, a.res.Commit, a.res.DeployID)
	for _, s := range ss {
		if s.Provider == "data" {
			a.preData = s
		}
	}
	if err != nil {
		return "", err
	}
	return describeSnapshots(ss), nil
}

// restoreData puts the pre-deploy data snapshot back after a failed
// deploy whose migration ran, with the services stopped.
func (a *attempt) restoreData(ctx context.Context) (string, error) {
	e := a.e
	p, err := e.provider(a.preData.Provider)
	if err != nil {
		return "", err
	}
	if err := e.stopAll(ctx, a.vars()); err != nil {
		return "", err
	}
	if err := p.Restore(ctx, a.preData.CommitID); err != nil {
		return "", err
	}
	if err := e.Ledger.MarkSnapshotRestored(ctx, a.preData.ID, a.res.DeployID, e.now()); err != nil {
		return "", err
	}
	return "restored data snapshot " + a.preData.CommitID + " (taken before migrate)", nil
}

// wantsDataRestore reports whether a failure of this attempt puts the data
// back: its migration started and a pre-deploy data snapshot exists.
func (a *attempt) wantsDataRestore() bool {
	s := a.e.Cfg.Snapshot
	return a.migrated && a.preData.ID != 0 && s != nil && s.RestoreData == config.RestoreDataAuto
}

// pruneSnapshots keeps snapshot.keep snapshots per label, newest first,
// and never one of the safe commit. Snapshots recorded through the API,
// and a command provider without a delete command, are left alone.
func (e *Engine) pruneSnapshots(ctx context.Context) (string, error) {
	if e.Cfg.Snapshot == nil {
		return "", nil
	}
	safe, _ := e.Layout.SafeCommit()
	all, err := e.Ledger.Snapshots(ctx, 0)
	if err != nil {
		return "", err
	}
	perLabel := map[string]int{}
	var deleted []string
	var errs []error
	for _, s := range all { // newest first
		if s.Provider == "external" {
			continue
		}
		perLabel[s.Label]++
		if perLabel[s.Label] <= e.Cfg.Snapshot.Keep || (safe != "" && s.Commit == safe) {
			continue
		}
		p, err := e.provider(s.Provider)
		if err != nil {
			continue
		}
		if err := p.Delete(ctx, s.CommitID); err != nil && !errors.Is(err, snapshot.ErrNotFound) {
			if !errors.Is(err, snapshot.ErrNotSupported) {
				errs = append(errs, err)
			}
			continue
		}
		if err := e.Ledger.DeleteSnapshot(ctx, s.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		deleted = append(deleted, s.CommitID)
	}
	if len(deleted) == 0 {
		return "", errors.Join(errs...)
	}
	slices.Sort(deleted)
	return "deleted snapshots " + strings.Join(deleted, ", "), errors.Join(errs...)
}
