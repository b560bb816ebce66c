package deploy

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/slipway-dev/slipway/internal/ledger"
	"github.com/slipway-dev/slipway/internal/service"
)

// OperateOptions selects what `slipway restart|start|stop` does.
type OperateOptions struct {
	Action   string   // ledger.KindRestart, KindStart or KindStop
	Services []string // the services to act on; none means all of them
	Wait     bool     // wait for the lock instead of exiting 3
	Trigger  string
	Actor    string
}

// ErrUnknownService: a service the config does not have (exit 2).
var ErrUnknownService = errors.New("unknown service")

// ErrNothingLive: there is no live release to act on.
var ErrNothingLive = errors.New("nothing is deployed yet")

// Operate restarts, starts or stops services of the live release, under
// the deploy lock, as a ledger row of its own kind. A restart or a start
// goes through the checks of a deploy (health, smoke, settle); a stop
// marks the services stopped first, so that nothing brings them back
// until `slipway start`. All three are allowed while deploys are frozen.
func (e *Engine) Operate(ctx context.Context, opts OperateOptions) (Result, error) {
	if opts.Action != ledger.KindRestart && opts.Action != ledger.KindStart && opts.Action != ledger.KindStop {
		return Result{}, fmt.Errorf("unknown action %q", opts.Action)
	}
	for _, n := range opts.Services {
		if e.Cfg.Services[n] == nil {
			return Result{}, e.unknownService(n)
		}
	}
	if opts.Trigger == "" {
		opts.Trigger = ledger.TriggerManual
	}
	l, err := e.Lock(ctx, opts.Action, opts.Wait)
	if err != nil {
		return Result{}, err
	}
	defer func() { _ = l.Release() }()

	name, _ := e.Layout.Current()
	if name == "" {
		return Result{}, fmt.Errorf("%w: run `slipway deploy` first", ErrNothingLive)
	}
	live, err := e.Layout.Open(name)
	if err != nil {
		return Result{}, err
	}
	names, err := e.operandNames(opts)
	if err != nil {
		return Result{}, err
	}
	safe, err := e.Layout.SafeCommit()
	if err != nil {
		return Result{}, err
	}
	id, err := e.Ledger.StartDeploy(ctx, ledger.Deploy{
		Kind: opts.Action, Trigger: opts.Trigger, Actor: opts.Actor,
		Commit: live.Commit, PreviousCommit: safe, Release: live.Name, Started: e.now(),
	})
	if err != nil {
		return Result{}, err
	}
	a := &attempt{e: e, opts: Options{Trigger: opts.Trigger, Actor: opts.Actor}, safe: safe, safeRel: live, live: live, rel: live,
		res: Result{Kind: opts.Action, DeployID: id, Commit: live.Commit, Previous: safe, Release: live.Name, Version: live.Version}}
	if a.j, err = e.openJournal(id); err != nil {
		_ = e.Ledger.FinishDeploy(context.WithoutCancel(ctx), id, ledger.Failed, err.Error(), false, e.now())
		return a.res, err
	}
	defer a.j.close()
	if a.cred, err = e.credential(); err != nil {
		return a.failInPlace(ctx, &stepError{step: opts.Action, err: err})
	}
	list := strings.Join(names, ", ")
	switch opts.Action {
	case ledger.KindStop:
		if err := a.step(ctx, "stop", false, func(ctx context.Context) (string, error) { return a.stop(ctx, names, opts.Actor) }); err != nil {
			return a.failInPlace(ctx, err)
		}
		a.res.Message = "stopped " + list + ": nothing starts it again until `slipway start`"
	case ledger.KindStart:
		if err := e.unmarkStopped(names); err != nil {
			return a.failInPlace(ctx, &stepError{step: "restart", err: err})
		}
		fallthrough
	default:
		if err := a.runSteps(ctx, a.restartSteps(names)); err != nil {
			return a.failInPlace(ctx, err)
		}
		verb := map[string]string{ledger.KindStart: "started", ledger.KindRestart: "restarted"}[opts.Action]
		a.res.Message = fmt.Sprintf("%s %s on %s (%s): healthy", verb, list, live.Name, live.Version)
		if len(names) == len(e.Cfg.Services) && live.Commit == safe {
			// Every service runs with the config as it is now.
			a.res.Warning = strings.TrimPrefix(e.noteApplied(live.Commit), "; ")
		}
	}
	a.res.Outcome = ledger.Succeeded
	return a.res, e.Ledger.FinishDeploy(context.WithoutCancel(ctx), id, ledger.Succeeded, "", false, e.now())
}

// operandNames are the services an operation acts on. A plain restart
// leaves the stopped ones alone; naming a stopped one is an error.
func (e *Engine) operandNames(opts OperateOptions) ([]string, error) {
	if len(opts.Services) > 0 {
		if opts.Action == ledger.KindRestart {
			for _, n := range opts.Services {
				if e.isStopped(n) {
					return nil, fmt.Errorf("service %s is stopped: `slipway start %s` starts it", n, n)
				}
			}
		}
		return slices.Compact(slices.Sorted(slices.Values(opts.Services))), nil
	}
	all := e.Cfg.ServiceNames()
	if opts.Action != ledger.KindRestart {
		return all, nil
	}
	names := slices.DeleteFunc(slices.Clone(all), e.isStopped)
	if len(names) == 0 {
		return nil, fmt.Errorf("every service is stopped: `slipway start` starts them")
	}
	return names, nil
}

// stop marks names stopped, then stops them (every instance of a proxied
// one; the proxy stays up and answers 502).
func (a *attempt) stop(ctx context.Context, names []string, actor string) (string, error) {
	e := a.e
	if err := e.markStopped(names, stopMark{At: e.now(), Actor: actor, LedgerID: a.res.DeployID}); err != nil {
		return "", err
	}
	v := a.vars()
	var errs []error
	for _, name := range names {
		s := e.Cfg.Services[name]
		spec := e.spec(s, v, a.cred)
		if s.Proxy != nil {
			_, err := e.stopStrays(ctx, spec, 0)
			errs = append(errs, err)
			continue
		}
		if err := e.Services.Stop(ctx, spec); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", name, err))
		}
	}
	return "stopped " + strings.Join(names, ", "), errors.Join(errs...)
}

// reconfigure applies a changed config to the live release without a
// rebuild: verify-env, then the services restarted and proven.
func (a *attempt) reconfigure(ctx context.Context, change *configChange) (Result, error) {
	e := a.e
	a.rel = a.live
	a.res.Release, a.res.Version = a.live.Name, a.live.Version
	var err error
	if a.cred, err = e.credential(); err != nil {
		return a.failInPlace(ctx, &stepError{step: "restart", err: err})
	}
	if err := a.runSteps(ctx, a.reconfigureSteps()); err != nil {
		return a.failInPlace(ctx, err)
	}
	a.res.Outcome = ledger.Succeeded
	a.res.Message = fmt.Sprintf("reconfigured %s (%s): %s; restarted without a rebuild, healthy", short(a.live.Commit), a.live.Version, change)
	return a.res, e.Ledger.FinishDeploy(context.WithoutCancel(ctx), a.res.DeployID, ledger.Succeeded, "", false, e.now())
}

// failInPlace ends a restart, start, stop or reconfigure that failed.
// There is no other release to go back to: behind the proxy the instances
// that served before take the traffic again; services restarted in place
// run as they are, and the host needs an operator (exit 4).
func (a *attempt) failInPlace(ctx context.Context, err error) (Result, error) {
	e := a.e
	var se *stepError
	if !errors.As(err, &se) {
		se = &stepError{step: a.res.Kind, err: err}
	}
	interrupted := ctx.Err() != nil
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	f := &Failure{DeployID: a.res.DeployID, Step: se.step, Err: se.err, kind: ErrFailed}
	switch {
	case !a.started:
		f.State = "nothing live changed: " + e.describeLive(a.rel)
	case e.usesProxy() && e.onlyProxied():
		detail, rerr := e.switchBack(rctx, a.vars(), a.traffic)
		if rerr != nil {
			f.Rollback, f.kind = rerr, ErrRollbackFailed
			f.State = "the instances that served before could not take the traffic back: " + e.describeLive(a.rel)
		} else {
			f.RolledBack = a.traffic
			f.State = detail + ": " + e.describeLive(a.rel)
		}
	default:
		f.kind = ErrRollbackFailed
		f.State = "the services were restarted in place and fail their checks (there is no earlier state to go back to): " + e.describeLive(a.rel)
	}
	outcome := ledger.Failed
	if interrupted {
		f.kind, outcome = ErrInterrupted, ledger.Interrupted
	}
	if a.res.Kind == ledger.KindReconfigure && !interrupted {
		_ = e.recordFailedConfig(a.res.DeployID, a.started && f.kind == ErrRollbackFailed)
	}
	logs := fmt.Sprintf("`slipway logs %d` has the output", a.res.DeployID)
	switch {
	case se.step == "verify-env":
		f.Next = "fix the host (env files under " + e.Layout.EnvDir() + ", ports), then run `slipway deploy` again; `slipway check` lists what is wrong"
	case a.res.Kind == ledger.KindReconfigure:
		f.Next = "this config change is not applied again until it changes: fix slipway.yml or the env files and run `slipway deploy`; " + logs
	default:
		f.Next = "check the services' output (`slipway logs --service NAME`); " + logs
	}
	a.res.Outcome, a.res.Message = outcome, f.Error()
	if ferr := e.Ledger.FinishDeploy(rctx, a.res.DeployID, outcome, f.Error(), false, e.now()); ferr != nil {
		return a.res, errors.Join(f, ferr)
	}
	return a.res, f
}

// onlyProxied reports whether every service is behind the proxy.
func (e *Engine) onlyProxied() bool {
	for _, s := range e.Cfg.Services {
		if s.Proxy == nil {
			return false
		}
	}
	return true
}

// switchBack gives each proxied service's traffic back to the instance
// that served before this attempt (when switched), then stops the others.
func (e *Engine) switchBack(ctx context.Context, v vars, switched bool) (string, error) {
	e.setReadied("", service.Spec{}, false)
	c := e.control()
	var done []string
	if switched {
		for _, name := range e.Cfg.ServiceNames() {
			r, ok, err := c.Route(ctx, name)
			if err != nil {
				return "", err
			}
			if !ok || r.Previous == "" {
				continue
			}
			if _, err := c.Switch(ctx, name, r.Previous, r.PreviousRelease); err != nil {
				return "", fmt.Errorf("switch %s back to %s: %w", name, r.Previous, err)
			}
			done = append(done, name+": traffic back to "+r.Previous)
		}
	}
	detail, err := e.retire(ctx, v, nil)
	if err != nil {
		return "", err
	}
	if len(done) == 0 {
		return "the instances that served before kept the traffic; " + detail, nil
	}
	return strings.Join(done, "; ") + "; " + detail, nil
}

// StopEverything stops every process slipway started for the app: each
// service (in restart mode, and every instance of a proxied one) and the
// proxy. It returns what it stopped (`slipway uninstall`).
func (e *Engine) StopEverything(ctx context.Context) ([]string, error) {
	cur := e.liveRelease()
	v := vars{rel: cur}
	var done []string
	var errs []error
	for _, name := range e.Cfg.ServiceNames() {
		s := e.Cfg.Services[name]
		spec := e.spec(s, v, nil)
		if s.Proxy != nil {
			stopped, err := e.stopStrays(ctx, spec, 0)
			done, errs = append(done, stopped...), append(errs, err)
		}
		// In restart mode; or as it ran before the service went behind
		// the proxy.
		if e.running(ctx, spec) {
			if err := e.Services.Stop(ctx, spec); err != nil {
				errs = append(errs, fmt.Errorf("stop %s: %w", name, err))
				continue
			}
			done = append(done, name)
		}
	}
	if spec, err := e.proxySpec(); err == nil && (e.running(ctx, spec) || e.control().Ping(ctx) == nil) {
		if err := e.Services.Stop(ctx, spec); err != nil {
			errs = append(errs, fmt.Errorf("stop the proxy: %w", err))
		} else {
			done = append(done, ProxyName)
		}
	}
	return done, errors.Join(errs...)
}

// OneOff is how `slipway exec` runs a one-off command for a service.
type OneOff struct {
	Service    string
	Dir        string   // the service's directory in the live release
	Env        []string // as the service gets it, without the marks that make a process one of its instances
	Credential *syscall.Credential
}

// ExecFor prepares a one-off command for service name ("" means the first
// service that listens, else the first): in the live release, as the app
// user, with the service's env file.
func (e *Engine) ExecFor(name string) (OneOff, error) {
	names := e.Cfg.ServiceNames()
	if name == "" {
		for _, n := range names {
			if s := e.Cfg.Services[n]; s.Port != 0 || s.Proxy != nil {
				name = n
				break
			}
		}
		if name == "" && len(names) > 0 {
			name = names[0]
		}
	}
	s := e.Cfg.Services[name]
	if s == nil {
		return OneOff{}, e.unknownService(name)
	}
	cur, _ := e.Layout.Current()
	if cur == "" {
		return OneOff{}, fmt.Errorf("%w: run `slipway deploy` first", ErrNothingLive)
	}
	rel, err := e.Layout.Open(cur)
	if err != nil {
		return OneOff{}, err
	}
	cred, err := e.credential()
	if err != nil {
		return OneOff{}, err
	}
	v := vars{rel: rel, previous: rel.Commit}
	dir := rel.Dir
	if s.Dir != "" {
		dir = filepath.Join(rel.Dir, s.Dir)
	}
	return OneOff{Service: name, Dir: dir, Env: e.env(s.EnvFile, v), Credential: cred}, nil
}
