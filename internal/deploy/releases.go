package deploy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/slipway-dev/slipway/internal/ledger"
	"github.com/slipway-dev/slipway/internal/release"
)

// releaseOf finds the kept release of commit: the ledger's last good one,
// else the newest on disk with that REVISION. Zero when none is kept.
func (e *Engine) releaseOf(ctx context.Context, commit string) (release.Release, error) {
	if commit == "" {
		return release.Release{}, nil
	}
	if name, err := e.Ledger.ReleaseOf(ctx, commit); err == nil && name != "" {
		if r, err := e.Layout.Open(name); err == nil {
			return r, nil
		}
	}
	all, err := e.Layout.List()
	if err != nil {
		return release.Release{}, err
	}
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].Commit == commit {
			return all[i], nil
		}
	}
	return release.Release{}, fmt.Errorf("no kept release of %s", short(commit))
}

// restore makes release to live again: switch, restart, health. With no
// release to go back to (a first deploy), it stops the services and
// removes current, as the host was before.
func (e *Engine) restore(ctx context.Context, to release.Release, from vars, cred *syscall.Credential) (string, error) {
	if to.Name == "" {
		err := e.stopAll(ctx, from)
		if uerr := e.Layout.Unlink(); err == nil {
			err = uerr
		}
		return "no earlier release to go back to: services stopped, current removed", err
	}
	if err := e.Layout.Switch(to.Name); err != nil {
		return "", err
	}
	v := vars{rel: to, previous: from.rel.Commit, deployID: from.deployID}
	done, err := e.restartAll(ctx, v, cred)
	if err != nil {
		return "", err
	}
	if _, err := e.waitHealthy(ctx, v, cred); err != nil {
		return "", err
	}
	return fmt.Sprintf("current -> releases/%s (%s), services restarted (%s), healthy", to.Name, short(to.Commit), done), nil
}

// startEmptyTrash deletes, in the background while the settle window
// watches the new release, the files of the releases that earlier prunes
// took out: deleting a release (a venv or node_modules is thousands of
// files) takes tens of milliseconds the deploy need not wait for. The
// prune step waits for it.
func (a *attempt) startEmptyTrash() {
	a.emptied = make(chan error, 1)
	go func() {
		_, err := a.e.Layout.EmptyTrash()
		a.emptied <- err
	}()
}

// prune is the prune step. It waits for the deletion the settle window
// started, then takes out the releases beyond keep_releases; with a settle
// window, their files are left for the next deploy's to delete.
func (a *attempt) prune(ctx context.Context, failedNow string) (string, error) {
	var emptyErr error
	if a.emptied != nil {
		emptyErr = <-a.emptied
		a.emptied = nil
	}
	msg, err := a.e.pruneAll(ctx, failedNow, a.e.settleWindow() > 0)
	return msg, errors.Join(emptyErr, err)
}

// pruneAll prunes releases (with later, their files are deleted by the
// next deploy's settle window), then snapshots.
func (e *Engine) pruneAll(ctx context.Context, failedNow string, later bool) (string, error) {
	removed, err := e.prune(ctx, failedNow, later)
	msg := "nothing to remove"
	if len(removed) > 0 {
		msg = "removed " + strings.Join(removed, ", ")
	}
	smsg, serr := e.pruneSnapshots(ctx)
	if smsg != "" {
		msg += "; " + smsg
	}
	if n := e.pruneInstanceLogs(ctx); n > 0 {
		msg += fmt.Sprintf("; removed the logs of %d stopped instance(s)", n)
	}
	return msg, errors.Join(err, serr)
}

// pruneInstanceLogs prunes the log files of proxied instances that no
// longer run (logs/<service>.<port>.log, one per deploy) as releases are:
// the newest keep_releases stay, for the output of a failed one.
func (e *Engine) pruneInstanceLogs(ctx context.Context) int {
	n := 0
	for _, name := range e.Cfg.ServiceNames() {
		s := e.Cfg.Services[name]
		if s.Proxy == nil {
			continue
		}
		base := e.spec(s, vars{}, nil)
		logs, _ := filepath.Glob(filepath.Join(e.Layout.LogDir(), name+".*.log"))
		type stopped struct {
			path string
			mod  time.Time
		}
		var old []stopped
		for _, p := range logs {
			port, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), name+"."), ".log"))
			if err != nil || e.running(ctx, instance(base, e.Cfg.App, port)) {
				continue
			}
			if fi, err := os.Stat(p); err == nil {
				old = append(old, stopped{p, fi.ModTime()})
			}
		}
		sort.Slice(old, func(i, j int) bool { return old[i].mod.After(old[j].mod) })
		for i, o := range old {
			if i >= e.Cfg.KeepReleases && os.Remove(o.path) == nil {
				n++
			}
		}
	}
	return n
}

// prune removes releases beyond keep_releases, never current or the safe
// release; failed releases go first. failedNow is the release of a deploy
// failing right now, which the ledger does not show as failed yet.
func (e *Engine) prune(ctx context.Context, failedNow string, later bool) ([]string, error) {
	cur, _ := e.Layout.Current()
	safe, _ := e.Layout.SafeCommit()
	safeRel, _ := e.releaseOf(ctx, safe)
	protect := map[string]bool{cur: true, safeRel.Name: true}
	failed := map[string]bool{failedNow: true}
	good := map[string]bool{}
	deploys, err := e.Ledger.Deploys(ctx, 1000)
	if err != nil {
		return nil, err
	}
	for _, d := range deploys {
		switch d.Outcome {
		case ledger.Succeeded:
			good[d.Release] = true
		case ledger.Failed, ledger.RolledBack, ledger.Interrupted:
			failed[d.Release] = true
		}
	}
	for name := range good {
		delete(failed, name)
	}
	// A release whose commit is marked bad since (an operator rolled back
	// away from it) goes first too: no plain rollback returns to it.
	checked := map[string]bool{}
	for _, d := range deploys {
		if !good[d.Release] || failed[d.Release] || checked[d.Commit] {
			continue
		}
		checked[d.Commit] = true
		if bad, err := e.Ledger.IsBad(ctx, d.Commit); err == nil && bad {
			failed[d.Release] = true
		}
	}
	if _, err := e.Layout.RemovePartial(); err != nil {
		return nil, err
	}
	if !later {
		if _, err := e.Layout.EmptyTrash(); err != nil {
			return nil, err
		}
	}
	return e.Layout.Prune(e.Cfg.KeepReleases, protect, failed, later)
}
