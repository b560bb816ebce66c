package deploy

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"github.com/slipway-dev/slipway/internal/ledger"
	"github.com/slipway-dev/slipway/internal/release"
	"github.com/slipway-dev/slipway/internal/snapshot"
)

// Recovered says what recovery found and did (empty when nothing was left).
type Recovered struct {
	Deploys []int64
	Actions []string
}

// interruptionsBeforeBad is how many times a commit's deploy may die
// mid-way (an OOM-killed build, say) before it counts as bad, so that a
// crash never turns into a redeploy loop.
const interruptionsBeforeBad = 2

// recover repairs what a crash left behind. It runs under the deploy lock:
// a deploy still marked running is one whose process died. That deploy is
// marked interrupted, its half-built release removed, and current and the
// services are brought back to the safe release, healthy (docs/deploy.md, crash recovery).
func (e *Engine) recover(ctx context.Context) error {
	// What the killed slipway's commands left running goes first: an
	// orphaned migration must not write into the data recovered below.
	swept, err := e.tracker().Sweep()
	if err != nil {
		return fmt.Errorf("end the processes of interrupted commands: %w", err)
	}
	if len(swept) > 0 && e.OnRecover != nil {
		e.OnRecover(Recovered{Actions: swept})
	}
	// A data restore a crash interrupted is finished (or undone) next:
	// the data is then all old or all restored.
	if msg, err := snapshot.Recover(e.Layout.SharedDir()); err != nil {
		return fmt.Errorf("recover an interrupted data restore: %w", err)
	} else if msg != "" && e.OnRecover != nil {
		e.OnRecover(Recovered{Actions: []string{msg}})
	}
	unfinished, err := e.Ledger.Unfinished(ctx)
	if err != nil {
		return err
	}
	partial, err := e.Layout.RemovePartial()
	if err != nil {
		return err
	}
	if len(unfinished) == 0 {
		return nil
	}
	r := Recovered{}
	for _, p := range partial {
		r.Actions = append(r.Actions, "removed partial tree releases/"+p)
	}
	safe, err := e.Layout.SafeCommit()
	if err != nil {
		return err
	}
	cur, _ := e.Layout.Current()

	// A deploy or rollback killed after mark-safe but before its ledger
	// row was finished did succeed: SAFE_COMMIT and current both name it.
	var done []ledger.Deploy
	var interrupted []ledger.Deploy
	for _, d := range unfinished {
		putsLive := d.Kind == ledger.KindDeploy || d.Kind == ledger.KindRollback || d.Kind == ledger.KindRebuild
		if putsLive && d.Commit != "" && d.Commit == safe && d.Release != "" && d.Release == cur {
			done = append(done, d)
		} else {
			interrupted = append(interrupted, d)
		}
	}
	for _, d := range done {
		if err := e.Ledger.FinishDeploy(ctx, d.ID, ledger.Succeeded, "", false, e.now()); err != nil {
			return err
		}
		r.Deploys = append(r.Deploys, d.ID)
		r.Actions = append(r.Actions, fmt.Sprintf("%s %d had passed every check before the crash: recorded as succeeded", d.Kind, d.ID))
	}

	safeRel, _ := e.releaseOf(ctx, safe)
	var curRel release.Release
	if cur != "" {
		curRel, _ = e.Layout.Open(cur)
	}
	cred, err := e.credential()
	if err != nil {
		return err
	}
	var fixErr error
	if len(interrupted) > 0 {
		var actions []string
		actions, fixErr = e.recoverLive(ctx, interrupted, safeRel, curRel, cred)
		r.Actions = append(r.Actions, actions...)
	}
	if len(done) > 0 && len(interrupted) == 0 && e.usesProxy() {
		// Killed between mark-safe and the drain: the instance that served
		// before is still held.
		if detail, err := e.retire(ctx, vars{rel: curRel}, cred); err != nil {
			r.Actions = append(r.Actions, "could not retire the instance held since the switch: "+err.Error())
		} else {
			r.Actions = append(r.Actions, "retired the instance held since the switch: "+detail)
		}
	}

	good, err := e.goodReleases(ctx)
	if err != nil {
		return err
	}
	for _, d := range interrupted {
		r.Deploys = append(r.Deploys, d.ID)
		// Only a deploy's own, never-proven release goes; a rollback's
		// target is a kept good release.
		if (d.Kind == ledger.KindDeploy || d.Kind == ledger.KindRebuild) && d.Release != "" && !protected(e, d.Release) && !good[d.Release] {
			if now, _ := e.Layout.Current(); now != d.Release {
				if err := e.Layout.Remove(d.Release); err == nil {
					r.Actions = append(r.Actions, "removed half-built releases/"+d.Release)
				}
			}
		}
		steps, _ := e.Ledger.Steps(ctx, d.ID)
		at := "before its first step"
		if len(steps) > 0 {
			at = "after step " + steps[len(steps)-1].Name
		}
		bad := false
		if d.Kind == ledger.KindDeploy && d.Release != "" {
			n, err := e.interruptions(ctx, d.Commit)
			if err != nil {
				return err
			}
			bad = n+1 >= interruptionsBeforeBad
		}
		msg := fmt.Sprintf("interrupted %s (the process died); recovered: %s", at, strings.Join(r.Actions, "; "))
		if bad {
			msg += fmt.Sprintf("; %s was interrupted %d times and is marked bad", short(d.Commit), interruptionsBeforeBad)
		}
		if fixErr != nil {
			msg += "; recovery failed: " + fixErr.Error()
		}
		if err := e.Ledger.FinishDeploy(ctx, d.ID, ledger.Interrupted, msg, bad, e.now()); err != nil {
			return err
		}
		e.appendDeployLog(d.ID, "recover", ledger.Interrupted, 0, msg)
	}
	if e.OnRecover != nil {
		e.OnRecover(r)
	}
	if fixErr != nil {
		return &Failure{Step: "recover", Err: fixErr, kind: ErrRollbackFailed,
			State: "the safe release is not healthy", Next: "check the services' logs; `slipway status` shows what runs"}
	}
	return nil
}

// protected reports whether release is one recovery must keep: the one
// current or SAFE_COMMIT names once it is done.
func protected(e *Engine, name string) bool {
	if cur, _ := e.Layout.Current(); cur == name {
		return true
	}
	safe, _ := e.Layout.SafeCommit()
	r, _ := e.releaseOf(context.Background(), safe)
	return r.Name == name
}

// recoverLive brings current and the services to where the interrupted
// commands meant the host to be, healthy: the rollback's target when a
// rollback was cut short (then SAFE_COMMIT names it), else the safe
// release. With no safe release (an interrupted first deploy), nothing was
// proven healthy, so nothing stays live.
func (e *Engine) recoverLive(ctx context.Context, interrupted []ledger.Deploy, safeRel, curRel release.Release, cred *syscall.Credential) ([]string, error) {
	from := vars{rel: curRel}
	if rb := lastRollback(interrupted); rb != nil {
		target, err := e.Layout.Open(rb.Release)
		if err == nil {
			detail, err := e.finishRollback(ctx, rb, target, from, cred)
			if err == nil {
				return []string{"finished rollback " + strconv.FormatInt(rb.ID, 10) + ": " + detail}, nil
			}
			if safeRel.Name == "" || safeRel.Name == target.Name {
				return nil, fmt.Errorf("finish rollback %d to %s: %w", rb.ID, short(target.Commit), err)
			}
			// Back to the release it was rolling away from, which at least
			// passed its checks once.
			actions := []string{fmt.Sprintf("could not finish rollback %d to %s: %v", rb.ID, short(target.Commit), err)}
			detail, err = e.restore(ctx, safeRel, vars{rel: target}, cred)
			return append(actions, "current back to the safe release: "+detail), err
		}
	}
	switch {
	case safeRel.Name != "" && curRel.Name != safeRel.Name:
		detail, err := e.restore(ctx, safeRel, from, cred)
		return []string{"current back to the safe release: " + detail}, err
	case safeRel.Name != "":
		if _, err := e.healthyNow(ctx, vars{rel: safeRel}); err != nil {
			detail, err := e.restore(ctx, safeRel, vars{rel: safeRel}, cred)
			return []string{"services restarted on the safe release: " + detail}, err
		}
		return nil, nil
	case curRel.Name != "":
		detail, err := e.restore(ctx, release.Release{}, from, cred)
		return []string{detail}, err
	}
	return nil, nil
}

// lastRollback returns the newest interrupted rollback that names its
// target, or nil.
func lastRollback(ds []ledger.Deploy) *ledger.Deploy {
	for i := len(ds) - 1; i >= 0; i-- {
		if ds[i].Kind == ledger.KindRollback && ds[i].Release != "" {
			return &ds[i]
		}
	}
	return nil
}

// finishRollback does what an interrupted rollback had left to do: target
// live, healthy, passing its smoke checks, and SAFE_COMMIT naming it.
func (e *Engine) finishRollback(ctx context.Context, rb *ledger.Deploy, target release.Release, from vars, cred *syscall.Credential) (string, error) {
	detail, err := e.restore(ctx, target, from, cred)
	if err != nil {
		return "", err
	}
	if len(e.Cfg.Smoke) > 0 {
		j, err := e.openJournal(rb.ID)
		if err != nil {
			return "", err
		}
		defer j.close()
		if _, err := e.smoke(ctx, vars{rel: target, previous: from.rel.Commit, deployID: rb.ID}, j.Output(), cred); err != nil {
			return "", err
		}
		detail += ", smoke checks passed"
	}
	if err := e.Layout.WriteSafeCommit(target.Commit); err != nil {
		return "", err
	}
	return detail + ", SAFE_COMMIT=" + short(target.Commit), nil
}

// interruptions counts the earlier interrupted deploys of commit that got
// as far as creating a release.
func (e *Engine) interruptions(ctx context.Context, commit string) (int, error) {
	ds, err := e.Ledger.Deploys(ctx, 200)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, d := range ds {
		if d.Commit == commit && d.Kind == ledger.KindDeploy && d.Outcome == ledger.Interrupted && d.Release != "" {
			n++
		}
	}
	return n, nil
}

// goodReleases are the releases that once passed every check.
func (e *Engine) goodReleases(ctx context.Context) (map[string]bool, error) {
	ds, err := e.Ledger.LastGoodReleases(ctx, 0)
	if err != nil {
		return nil, err
	}
	good := make(map[string]bool, len(ds))
	for _, d := range ds {
		good[d.Release] = true
	}
	return good, nil
}
