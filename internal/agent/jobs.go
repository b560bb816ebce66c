package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/slipway-dev/slipway/internal/api"
	"github.com/slipway-dev/slipway/internal/deploy"
	"github.com/slipway-dev/slipway/internal/exitcode"
	"github.com/slipway-dev/slipway/internal/ledger"
	"github.com/slipway-dev/slipway/internal/lock"
	"github.com/slipway-dev/slipway/internal/notify"
)

// Enqueue accepts a deploy or rollback (api.Backend). A deploy of the branch
// tip joins a waiting one; anything else replaces the waiting job, which is
// recorded as skipped. A manual freeze refuses deploys at once.
func (a *Agent) Enqueue(ctx context.Context, r api.Request) (int64, error) {
	if r.Kind != ledger.KindRollback {
		if h, _, err := lock.Status(a.engine().Layout.LockFile()); err == nil && h.Frozen {
			return 0, &lock.LockedError{Holder: h}
		}
	} else if err := a.engine().RefuseLooseEnv(); err != nil {
		return 0, err // refused before it is queued, as the CLI refuses it
	}
	j := &job{kind: r.Kind, to: r.To, restoreData: r.RestoreData, tip: r.Kind == ledger.KindDeploy && r.Ref == "" && r.Commit == "" && !r.Force,
		opts: deploy.Options{Ref: r.Ref, Commit: r.Commit, Force: r.Force, Trigger: r.Trigger, Actor: r.Actor, Wait: true}}
	if j.tip {
		// Join a waiting tip deploy without a ledger row of its own.
		a.sched.mu.Lock()
		p := a.sched.pending
		a.sched.mu.Unlock()
		if p != nil && p.tip {
			return p.id, nil
		}
	}
	id, err := a.db.Queue(ctx, ledger.Deploy{Kind: r.Kind, Trigger: r.Trigger, Actor: r.Actor, Commit: r.Commit, Started: time.Now()})
	if err != nil {
		return 0, err
	}
	j.id = id
	follow, replaced := a.sched.add(j)
	if follow != id {
		// Joined a tip deploy queued meanwhile.
		_ = a.db.FinishDeploy(ctx, id, ledger.Skipped, fmt.Sprintf("joined deploy %d", follow), false, time.Now())
	}
	if replaced != nil {
		msg := fmt.Sprintf("superseded by deploy %d", id)
		_ = a.db.FinishDeploy(ctx, replaced.id, ledger.Skipped, msg, false, time.Now())
		a.sched.finish(replaced.id, Done{Result: deploy.Result{DeployID: replaced.id, Outcome: ledger.Skipped, Message: msg}})
	}
	return follow, nil
}

// Wait blocks until job id ends (api.Backend).
func (a *Agent) Wait(ctx context.Context, id int64) (deploy.Summary, bool) {
	d, ok := a.sched.wait(ctx, id)
	if !ok {
		return deploy.Summary{}, false
	}
	return deploy.Summarize(d.Result, d.Err, exitcode.Of(d.Err)), true
}

// Status is `slipway status --json` plus the agent's state (api.Backend).
func (a *Agent) Status(ctx context.Context) (any, error) {
	st, err := a.engine().Status(ctx, true)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	ag := a.state
	a.mu.Unlock()
	if ag.RemoteTip != "" {
		st.RemoteTip = ag.RemoteTip
		st.Behind = a.engine().Behind(ctx, st)
	}
	st.RemoteErr = ag.RemoteError
	a.sched.mu.Lock()
	if a.sched.running != nil {
		ag.Running = a.sched.running.id
	}
	if a.sched.pending != nil {
		ag.Waiting = a.sched.pending.id
	}
	a.sched.mu.Unlock()
	if st.Lock != nil && st.Lock.Frozen {
		ag.Frozen = st.Lock.Holder.Message
	}
	return struct {
		deploy.Status
		Agent   agentState `json:"agent"`
		Uptime  float64    `json:"agent_uptime_seconds"`
		Version string     `json:"agent_version"`
	}{st, ag, time.Since(a.started).Seconds(), a.version}, nil
}

// worker runs jobs one at a time until ctx ends; jobs run under jobsCtx,
// which outlives ctx by the shutdown wait.
func (a *Agent) worker(ctx, jobsCtx context.Context) {
	for {
		a.settle(ctx)
		if ctx.Err() != nil {
			return // shutting down: what waits stays queued, for the next start
		}
		if j := a.sched.next(); j != nil {
			d := a.runJob(jobsCtx, j)
			a.sched.ran()
			a.sched.finish(j.id, d)
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-a.sched.wake:
		}
	}
}

// settle holds a waiting deploy of the branch tip that was queued behind
// another job until no webhook push has arrived for Settle (SettleMax at
// most). It stays in the waiting slot meanwhile, so the pushes join it. It
// returns at once when there is no such deploy, or when a rollback or
// another request comes first.
func (a *Agent) settle(ctx context.Context) {
	clk := a.clk()
	var limit <-chan time.Time // from the first wait on
	for a.sched.waitingTip() {
		a.mu.Lock()
		quiet := clk.Now().Sub(a.state.lastPush)
		a.mu.Unlock()
		if quiet >= a.Settle {
			return
		}
		if limit == nil {
			limit = clk.After(a.SettleMax)
		}
		select {
		case <-ctx.Done():
			return
		case <-limit:
			return
		case <-a.sched.wake:
			// A new request: look again (the worker runs whatever is next).
		case <-clk.After(a.Settle - quiet):
		}
	}
}

func (a *Agent) runJob(ctx context.Context, j *job) Done {
	log := a.log.With("deploy", j.id, "kind", j.kind, "trigger", j.opts.Trigger)
	t0 := time.Now()
	var res deploy.Result
	var err error
	eng := a.reload()
	if j.kind == ledger.KindRollback {
		res, err = eng.Rollback(ctx, deploy.RollbackOptions{To: j.to, RestoreData: j.restoreData, Wait: true, Trigger: j.opts.Trigger, Actor: j.opts.Actor, DeployID: j.id})
	} else {
		opts := j.opts
		opts.DeployID = j.id
		if j.tip {
			// The newest tip, resolved now: a waiting deploy takes what
			// arrived while it waited.
			tip, terr := eng.Mirror.RemoteTip(ctx, eng.Cfg.Branch)
			if terr != nil {
				err = terr
			} else {
				opts.Commit = tip
			}
		}
		if err == nil {
			a.setInflight(opts.Commit)
			res, err = eng.Deploy(ctx, opts)
			a.setInflight("")
		}
	}
	if res.DeployID == 0 {
		// Refused before the engine adopted the row (lock, remote, target).
		res.DeployID = j.id
		outcome := ledger.Failed
		if errors.Is(err, lock.ErrLocked) || errors.Is(err, deploy.ErrNoRelease) {
			outcome = ledger.Skipped
		}
		res.Outcome = outcome
		msg := "refused"
		if err != nil {
			msg = err.Error()
		}
		_ = a.db.FinishDeploy(context.WithoutCancel(ctx), j.id, outcome, msg, false, time.Now())
	}
	if err == nil {
		// The live release is up after this job: a later fall is a new
		// one, repaired without the pause that follows a repair that did
		// not help.
		a.mu.Lock()
		a.state.repairWait, a.state.nextRepair = 0, time.Time{}
		a.mu.Unlock()
	}
	a.metrics.finished(j.kind, res)
	done := deploy.Event{DeployID: res.DeployID, Phase: deploy.PhaseDone, Outcome: res.Outcome, Time: time.Now()}
	if err != nil {
		done.Detail = err.Error()
	}
	a.broker.Publish(done)
	a.register(context.WithoutCancel(ctx))
	if err != nil {
		log.Warn("deploy did not succeed", "outcome", res.Outcome, "err", err, "duration", time.Since(t0).String())
	} else {
		log.Info("deploy finished", "outcome", res.Outcome, "commit", res.Commit, "duration", time.Since(t0).String())
	}
	a.notify(ctx, j, res, err, time.Since(t0))
	return Done{Result: res, Err: err}
}

func (a *Agent) setInflight(commit string) {
	a.mu.Lock()
	a.state.inflight = commit
	a.mu.Unlock()
}

// notify tells the notify URLs of a finished deploy; skips say nothing.
func (a *Agent) notify(ctx context.Context, j *job, res deploy.Result, err error, d time.Duration) {
	if len(a.cfg.Notify) == 0 || res.Outcome == ledger.Skipped {
		return
	}
	host, _ := os.Hostname()
	m := notify.Message{App: a.cfg.App, Commit: res.Commit, Previous: res.Previous, Outcome: string(res.Outcome),
		Duration: d, DeployID: res.DeployID, Host: host, Time: time.Now()}
	if j.kind == ledger.KindRollback && err == nil {
		m.Outcome = "rollback"
	}
	var f *deploy.Failure
	if errors.As(err, &f) {
		m.Error = f.Error()
		m.Same = f.Step
	} else if err != nil {
		m.Error = err.Error()
	}
	nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	a.notifier.Send(nctx, m)
}
