package deploy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/slipway-dev/slipway/internal/ledger"
	"github.com/slipway-dev/slipway/internal/release"
	"github.com/slipway-dev/slipway/internal/service"
)

// rollbackTimeout bounds the rollback of a failed or interrupted deploy,
// which runs even when the deploy's own context was cancelled.
const rollbackTimeout = 5 * time.Minute

// fail ends the attempt: before the switch nothing live changed; after it,
// current and the services go back to the safe release.
func (a *attempt) fail(ctx context.Context, err error) (Result, error) {
	e := a.e
	var se *stepError
	if !errors.As(err, &se) {
		se = &stepError{step: "deploy", err: err}
	}
	interrupted := ctx.Err() != nil
	// A rebuild's failure is the changed config's fault, not the commit's.
	bad := se.bad && !interrupted && a.res.Kind != ledger.KindRebuild
	var held *service.PortHeldError
	if errors.As(err, &held) {
		bad = false // the host's fault, not the commit's
	}
	f := &Failure{DeployID: a.res.DeployID, Step: se.step, Err: se.err, kind: ErrFailed}
	outcome := ledger.Failed
	if interrupted {
		f.kind, outcome = ErrInterrupted, ledger.Interrupted
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()

	restored := ""
	if a.wantsDataRestore() {
		rerr := a.step(rctx, "restore-data", false, a.restoreData)
		if rerr != nil {
			f.Rollback = errors.Unwrap(rerr)
			f.kind, outcome = ErrRollbackFailed, ledger.Failed
		} else {
			restored = "; data snapshot " + a.preData.CommitID + " restored"
		}
	}
	switch {
	case f.Rollback != nil:
		f.State = "the pre-deploy data snapshot " + a.preData.CommitID + " could not be restored: the migrated data is live; services are stopped"
	case !a.switched && restored != "":
		// The live release's services were stopped for the restore.
		rerr := a.step(rctx, "rollback", false, func(ctx context.Context) (string, error) {
			return e.restore(ctx, a.live, a.vars(), a.cred)
		})
		if rerr != nil {
			f.Rollback = errors.Unwrap(rerr)
			f.kind, outcome = ErrRollbackFailed, ledger.Failed
			f.State = "the data was restored but the live release did not come back healthy: " + e.describeLive(a.live)
		} else {
			f.State = "nothing live changed" + restored + ": " + e.describeLive(a.live)
		}
	case !a.switched:
		f.State = "nothing live changed: " + e.describeLive(a.live)
	default:
		f.RolledBack = true
		rerr := a.step(rctx, "rollback", false, func(ctx context.Context) (string, error) {
			return e.restore(ctx, a.safeRel, a.vars(), a.cred)
		})
		if rerr != nil {
			f.Rollback = errors.Unwrap(rerr)
			f.kind, outcome = ErrRollbackFailed, ledger.Failed
			f.State = "the rollback did not end healthy: " + e.describeLive(a.safeRel)
		} else {
			if !interrupted {
				outcome = ledger.RolledBack
			}
			f.State = "rolled back" + restored + ": " + e.describeLive(a.safeRel)
		}
	}
	if a.rel.Name != "" {
		_ = a.step(rctx, "prune", false, func(ctx context.Context) (string, error) { return a.prune(ctx, a.rel.Name) })
	}
	if a.res.Kind == ledger.KindRebuild && !interrupted {
		// The rollback restarted the services with the changed config.
		_ = e.recordFailedConfig(a.res.DeployID, a.switched && !e.onlyProxied())
	}
	f.Next = a.nextStep(se, bad, interrupted)
	a.res.Outcome = outcome
	a.res.Message = f.Error()
	msg := f.Error()
	ferr := e.Ledger.FinishDeploy(rctx, a.res.DeployID, outcome, msg, bad, e.now())
	if ferr != nil && a.rel.Name != "" && !a.switched {
		// Most often a full disk, which the failed release may have
		// filled: it never went live and nothing needs it, so it goes,
		// and the row is written again. A row left running would look
		// like a crash to the next command. The trash of earlier prunes
		// goes too.
		_, _ = e.Layout.EmptyTrash()
		if rerr := e.Layout.Remove(a.rel.Name); rerr == nil {
			f.State += "; the failed release " + a.rel.Name + " was removed to record this"
			msg = f.Error()
			ferr = e.Ledger.FinishDeploy(rctx, a.res.DeployID, outcome, msg, bad, e.now())
		}
	}
	if ferr == nil {
		ferr = e.Ledger.NoteFailure(rctx, a.res.DeployID, f.State, f.Next)
	}
	if ferr != nil {
		return a.res, errors.Join(f, fmt.Errorf("record the failure in the ledger: %w", ferr))
	}
	return a.res, f
}

func (a *attempt) nextStep(se *stepError, bad, interrupted bool) string {
	logs := fmt.Sprintf("`slipway logs %d` has the full output", a.res.DeployID)
	switch {
	case interrupted:
		return "run `slipway deploy` again when ready; " + logs
	case a.res.Kind == ledger.KindRebuild:
		return "the changed build config failed; it is not tried again until it changes: fix slipway.yml and run `slipway deploy`; " + logs
	case se.step == "verify-env":
		return "fix the host (env files under " + a.e.Layout.EnvDir() + ", ports), then run `slipway deploy` again; `slipway check` lists what is wrong"
	case bad:
		return "this commit is marked bad and will not be deployed again automatically: push a fix, or `slipway deploy --force` to retry it; " + logs
	default:
		return "fix the cause and run `slipway deploy` again; " + logs
	}
}

// describeLive says which release is live, for a failure's message.
func (e *Engine) describeLive(r release.Release) string {
	if r.Name == "" {
		return "no release is live"
	}
	return fmt.Sprintf("%s (releases/%s) is live", short(r.Commit), r.Name)
}
