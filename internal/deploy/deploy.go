package deploy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/slipway-dev/slipway/internal/config"
	"github.com/slipway-dev/slipway/internal/git"
	"github.com/slipway-dev/slipway/internal/ledger"
	"github.com/slipway-dev/slipway/internal/release"
	"github.com/slipway-dev/slipway/internal/run"
	"github.com/slipway-dev/slipway/internal/service"
	"github.com/slipway-dev/slipway/internal/service/procfs"
)

// Deploy runs one deploy (the steps of docs/deploy.md). The error, when not nil, is a
// *Failure (test it with errors.Is against ErrFailed, ErrRollbackFailed,
// ErrInterrupted), a *lock.LockedError, or a plain error from before the
// deploy began.
func (e *Engine) Deploy(ctx context.Context, opts Options) (Result, error) {
	if opts.Trigger == "" {
		opts.Trigger = "manual"
	}
	if opts.DryRun {
		return e.dryRun(ctx, opts)
	}
	t0 := e.now()
	holder := e.holder(opts.Trigger)
	holder.Key = opts.Hold
	l, err := e.lockAs(ctx, holder, opts.Wait)
	if err != nil {
		return Result{}, err
	}
	defer func() { _ = l.Release() }()
	return e.deployLocked(ctx, opts, e.now().Sub(t0))
}

// attempt is the state of one deploy in progress.
type attempt struct {
	e        *Engine
	j        *journal
	opts     Options
	res      Result
	safe     string          // SAFE_COMMIT before this deploy
	safeRel  release.Release // its release ("" Name if none)
	live     release.Release // what `current` pointed at before
	rel      release.Release // the new release
	cred     *syscall.Credential
	switched bool
	traffic  bool            // an operation's traffic step ran (operate.go)
	started  bool            // services of the new release were (re)started
	migrated bool            // the migrate step started: the data may have changed
	preData  ledger.Snapshot // the pre-deploy data snapshot (ID 0: none)
	// emptiesTrash: the settle window deletes what earlier prunes took out
	// (deploySteps); emptied says when it is done.
	emptiesTrash bool
	emptied      chan error
}

func (e *Engine) deployLocked(ctx context.Context, opts Options, lockWait time.Duration) (Result, error) {
	// A stopped app is not brought back by a deploy: a webhook must not
	// undo an operator's `slipway stop`.
	if err := e.refuseStopped(); err != nil {
		return Result{}, err
	}
	a := &attempt{e: e, opts: opts}
	var err error
	if a.safe, err = e.Layout.SafeCommit(); err != nil {
		return Result{}, err
	}
	a.safeRel, _ = e.releaseOf(ctx, a.safe)
	if name, _ := e.Layout.Current(); name != "" {
		a.live, _ = e.Layout.Open(name)
	}
	id, err := e.openRow(ctx, opts.DeployID, ledger.Deploy{
		Trigger: opts.Trigger, Actor: opts.Actor, Kind: ledger.KindDeploy, PreviousCommit: a.safe,
	})
	if err != nil {
		return Result{}, err
	}
	a.res = Result{Kind: ledger.KindDeploy, DeployID: id, Previous: a.safe}
	if a.j, err = e.openJournal(id); err != nil {
		_ = e.Ledger.FinishDeploy(context.WithoutCancel(ctx), id, ledger.Failed, err.Error(), false, e.now())
		return a.res, err
	}
	defer a.j.close()
	a.j.start("lock")
	a.j.t0 = a.j.t0.Add(-lockWait)
	if err := a.j.end(ctx, ledger.Succeeded, ""); err != nil {
		return a.fail(ctx, &stepError{step: "lock", err: err})
	}
	return a.run(ctx)
}

// stepError carries the step that failed and whether the commit is to blame.
type stepError struct {
	step string
	err  error
	bad  bool
}

func (s *stepError) Error() string { return s.step + ": " + s.err.Error() }
func (s *stepError) Unwrap() error { return s.err }

// step runs fn as the named step, recording its start, end and outcome.
func (a *attempt) step(ctx context.Context, name string, bad bool, fn func(context.Context) (string, error)) error {
	a.j.start(name)
	detail, err := fn(ctx)
	if err == nil && ctx.Err() != nil && name != "mark-safe" {
		// A step that finished is failed by a signal that came meanwhile,
		// except mark-safe: once SAFE_COMMIT is written, the deploy stands.
		err = ctx.Err()
	}
	if err != nil {
		if lerr := a.j.end(ctx, ledger.Failed, Describe(err)); lerr != nil {
			err = errors.Join(err, lerr)
		}
		return &stepError{step: name, err: err, bad: bad}
	}
	if err := a.j.end(ctx, ledger.Succeeded, detail); err != nil {
		// The step did its work, but recovery could not know it did.
		return &stepError{step: name, err: err}
	}
	return nil
}

func (a *attempt) run(ctx context.Context) (Result, error) {
	e := a.e
	var target string
	err := a.step(ctx, "resolve", false, func(ctx context.Context) (string, error) {
		sha, how, err := e.resolve(ctx, a.opts)
		if err != nil {
			return "", err
		}
		target = sha
		// Recovery tells a deploy that passed every check by its commit.
		return short(sha) + " " + how, e.Ledger.UpdateDeploy(ctx, ledger.Deploy{ID: a.res.DeployID, Commit: target, PreviousCommit: a.safe})
	})
	if err != nil {
		return a.fail(ctx, err)
	}
	a.res.Commit = target

	var plan decision
	err = a.step(ctx, "plan", false, func(ctx context.Context) (string, error) {
		plan = e.planSkip(ctx, target, a.opts.Force, a.safeRel, a.live)
		skip := cmp.Or(plan.skipStep, plan.skip)
		switch {
		case plan.repair != "":
			return skip + "; the live release is down (" + plan.repair + "): restarting it", nil
		case plan.skip != "":
			return skip, nil
		case plan.change != nil:
			kind := ledger.KindReconfigure
			if plan.change.rebuild {
				kind = ledger.KindRebuild
			}
			a.res.Kind = kind
			return plan.change.String() + ": " + plan.change.action(), e.Ledger.UpdateDeploy(ctx, ledger.Deploy{ID: a.res.DeployID, Kind: kind})
		}
		return "deploy " + short(target) + " over " + orNone(short(a.live.Commit)), nil
	})
	if err != nil {
		return a.fail(ctx, err)
	}
	if plan.change != nil && !plan.change.rebuild {
		return a.reconfigure(ctx, plan.change)
	}
	if plan.skip != "" {
		a.res.Outcome = ledger.Skipped
		a.res.Message = plan.skip
		a.res.Release = a.live.Name
		if plan.repair != "" {
			if a.cred, err = e.credential(); err != nil {
				return a.fail(ctx, &stepError{step: "restart", err: err})
			}
			if res, err := a.repair(ctx, plan.repair); err != nil {
				return res, err
			}
			a.res.Outcome = ledger.Skipped
			a.res.Message = plan.skip + "; the live release " + short(a.safe) + " was down (" + plan.repair + "): restarted it, healthy"
			if !plan.failedChange {
				_ = e.recordApplied(a.safe)
			}
		}
		return a.res, e.Ledger.FinishDeploy(context.WithoutCancel(ctx), a.res.DeployID, ledger.Skipped, a.res.Message, false, e.now())
	}

	if a.cred, err = e.credential(); err != nil {
		return a.fail(ctx, &stepError{step: "prepare", err: err})
	}
	// What the host must provide is checked first (verify-env): a missing
	// token is reported in milliseconds, not after the build.
	if err := a.runSteps(ctx, a.deploySteps(target)); err != nil {
		return a.fail(ctx, err)
	}
	a.res.Outcome = ledger.Succeeded
	a.res.Message = fmt.Sprintf("deployed %s (%s)", short(target), a.rel.Version)
	if a.res.Kind == ledger.KindRebuild {
		a.res.Message = fmt.Sprintf("rebuilt %s into %s (%s): the config's build part had changed", short(target), a.rel.Name, a.rel.Version)
	}
	if err := e.Ledger.FinishDeploy(context.WithoutCancel(ctx), a.res.DeployID, ledger.Succeeded, "", false, e.now()); err != nil {
		return a.res, err
	}
	return a.res, nil
}

func (a *attempt) vars() vars {
	return vars{rel: a.rel, previous: a.safe, deployID: a.res.DeployID}
}

func (a *attempt) prepare(ctx context.Context) (string, error) {
	e := a.e
	rel, err := e.Layout.Create(ctx, e.Mirror, a.res.Commit, e.now(), e.Cfg.Shared)
	if err != nil {
		return "", err
	}
	a.rel = rel
	a.res.Release, a.res.Version = rel.Name, rel.Version
	// Recovery removes a half-built release by this name.
	if err := e.Ledger.UpdateDeploy(ctx, ledger.Deploy{ID: a.res.DeployID, Commit: rel.Commit, PreviousCommit: a.safe, Release: rel.Name}); err != nil {
		return "", err
	}
	if err := chown(rel.Dir, a.cred); err != nil {
		return "", fmt.Errorf("give release to %s: %w", e.Cfg.User, err)
	}
	if err := chownShared(e.Layout.SharedDir(), e.Cfg.Shared, a.cred); err != nil {
		return "", fmt.Errorf("give shared paths to %s: %w", e.Cfg.User, err)
	}
	return "releases/" + rel.Name, nil
}

// build runs one build step, or copies its reuse paths from the live
// release when the key files are unchanged (and then skips the command).
func (a *attempt) build(ctx context.Context, b *config.Step) (string, error) {
	if b.Reuse != nil && a.live.Name != "" {
		prevDir := filepath.Join(a.live.Dir, b.Dir)
		nextDir := filepath.Join(a.rel.Dir, b.Dir)
		same, err := release.KeysMatch(prevDir, nextDir, b.Reuse.Key)
		if err != nil {
			return "", err
		}
		if same && pathsExist(prevDir, b.Reuse.Paths) {
			how := ""
			if b.Reuse.Share {
				made, err := a.e.Layout.LinkDeps(ctx, a.live, a.rel, b.Dir, b.Reuse.Paths)
				if err != nil {
					return "", err
				}
				if err := chownAll(made, a.cred); err != nil {
					return "", err
				}
				how = ", linked from deps/"
			} else if err := a.e.Layout.CopyReused(ctx, a.live, a.rel, b.Dir, b.Reuse.Paths, b.Reuse.Link); err != nil {
				return "", err
			}
			if err := chown(nextDir, a.cred); err != nil {
				return "", err
			}
			return fmt.Sprintf("reused %s from %s (%s unchanged)%s", strings.Join(b.Reuse.Paths, ", "), a.live.Name, strings.Join(b.Reuse.Key, ", "), how), nil
		}
	}
	if err := a.command(ctx, b); err != nil {
		return "", err
	}
	if b.Reuse != nil && b.Reuse.Share {
		moved, err := a.e.Layout.Share(a.rel, b.Dir, b.Reuse.Paths)
		if err != nil {
			return "", err
		}
		// The scripts re-pointed at deps/ are new files, made by slipway.
		if err := chownAll(moved, a.cred); err != nil {
			return "", err
		}
		return "built " + strings.Join(b.Reuse.Paths, ", ") + ", kept in deps/ for the next releases", nil
	}
	return "", nil
}

// command runs a build or migrate step's command inside the new release.
func (a *attempt) command(ctx context.Context, s *config.Step) error {
	dir := filepath.Join(a.rel.Dir, s.Dir)
	return run.Run(ctx, run.Cmd{
		Argv:       run.Argv(s.Run),
		Dir:        dir,
		Env:        a.e.env(s.EnvFile, a.vars()),
		Timeout:    s.Timeout.D(),
		Output:     a.j.Output(),
		Credential: a.cred,
		Display:    s.Run,
		Track:      a.e.tracker(),
	})
}

// verifyEnv refuses the deploy before the switch when the new version would
// start without what it needs: a required variable, an env file, a port.
func (a *attempt) verifyEnv(ctx context.Context) (string, error) {
	e := a.e
	var problems []string
	for _, u := range e.Cfg.Unset {
		problems = append(problems, fmt.Sprintf("%s: ${%s} is not set in the environment or any env file", u.Pos, u.Name))
	}
	for _, err := range e.Cfg.EnvModeErrors() {
		problems = append(problems, privateProblem(err))
	}
	for _, name := range slices.Sorted(maps.Keys(e.Cfg.EnvFiles)) {
		path := e.Cfg.EnvFilePath(name)
		if _, err := os.Stat(path); err != nil || e.Cfg.Env[name] == nil {
			problems = append(problems, fmt.Sprintf("env file %s (%s) is missing or unreadable", path, e.Cfg.EnvFiles[name]))
		}
	}
	for _, k := range e.Cfg.RequireEnv {
		if !e.Cfg.InEnvFiles(k) {
			msg := fmt.Sprintf("required variable %s is unset or empty in the env files: set it in an env file under %s", k, e.Layout.EnvDir())
			if v, ok := os.LookupEnv(k); ok && v != "" {
				msg += " (it is set in slipway's own environment, but services never inherit that)"
			}
			problems = append(problems, msg)
		}
	}
	for _, spec := range e.specs(ctx, a.vars(), a.cred) {
		if spec.Port == 0 {
			continue
		}
		if err := e.portFree(ctx, spec); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if err := e.proxyListenFree(ctx); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return "", errors.New(strings.Join(problems, "; "))
	}
	return fmt.Sprintf("%d required variables set", len(e.Cfg.RequireEnv)), nil
}

// privateProblem words a config.ModeError for verify-env, with its fix.
// ErrEnvNotPrivate refuses to start the app's processes with an env dir
// or file that others may read: a rollback from the API or the dashboard
// as the CLI's commands do (a deploy refuses at verify-env).
var ErrEnvNotPrivate = errors.New("the env files are not private")

// RefuseLooseEnv returns ErrEnvNotPrivate, with each mode and its chmod,
// while an env dir or file lets others read it.
func (e *Engine) RefuseLooseEnv() error {
	var problems []string
	for _, err := range e.Cfg.EnvModeErrors() {
		problems = append(problems, privateProblem(err))
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrEnvNotPrivate, strings.Join(problems, "; "))
}

func privateProblem(err error) string {
	var me *config.ModeError
	if errors.As(err, &me) {
		return me.Error() + ": " + me.Fix()
	}
	return err.Error()
}

// portFree reports a service's port held by a process that is not the
// service's own running instance.
func (e *Engine) portFree(ctx context.Context, spec service.Spec) error {
	inodes, err := procfs.ListeningInodes(spec.Port)
	if err != nil || len(inodes) == 0 {
		return nil // free (or unknowable: the start will tell)
	}
	// Usually the holder is the service itself: ask it first, before a
	// scan of every process's descriptors.
	if st, err := e.Services.Status(ctx, spec); err == nil && st.Running && st.PID > 0 && procfs.Holds(st.PID, inodes) {
		return nil
	}
	pid, cmdline, err := service.PortOwner(spec.Port)
	if err != nil || pid == 0 {
		return nil
	}
	if st, err := e.Services.Status(ctx, spec); err == nil && st.Running && sameGroup(pid, st.PID) {
		return nil
	}
	if e.proxyHolds(ctx, spec.Name, pid) {
		return nil // the service leaves the proxy: it gets the port at the restart step
	}
	return &service.PortHeldError{Port: spec.Port, PID: pid, Command: cmdline, Service: spec.Name}
}

// sameGroup reports whether pid belongs to the service whose process is
// leader: it is that process, or in its process group. Under the process
// manager the group is the supervisor's, whose child leader is (a command
// with shell syntax runs as sh, with the server a child of it).
func sameGroup(pid, leader int) bool {
	if pid == leader {
		return true
	}
	pg, err := syscall.Getpgid(pid)
	if err != nil {
		return false
	}
	lg, err := syscall.Getpgid(leader)
	return err == nil && (pg == leader || (pg == lg && lg != syscall.Getpgrp()))
}

// pathsExist reports whether every path is in dir; a symlink counts only
// when what it points to exists (a shared deps/ tree that is gone is
// built again).
func pathsExist(dir string, paths []string) bool {
	for _, p := range paths {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			return false
		}
	}
	return true
}

// openRow begins the ledger row of a deploy or rollback: the one the
// agent queued (id), which gets d's commits and release, or else a new
// row from d.
func (e *Engine) openRow(ctx context.Context, id int64, d ledger.Deploy) (int64, error) {
	if id == 0 {
		d.Started = e.now()
		return e.Ledger.StartDeploy(ctx, d)
	}
	if err := e.Ledger.Begin(ctx, id, e.now()); err != nil {
		return 0, err
	}
	d.ID = id
	return id, e.Ledger.UpdateDeploy(ctx, d)
}

// resolve finds the commit to deploy: --commit, --ref, or the branch tip
// the remote reports. --commit fetches only when the mirror lacks it.
func (e *Engine) resolve(ctx context.Context, opts Options) (string, string, error) {
	if err := e.Mirror.Ensure(ctx); err != nil {
		return "", "", err
	}
	switch {
	case opts.Commit != "":
		c := strings.ToLower(opts.Commit)
		if !git.IsCommitID(c) {
			return "", "", fmt.Errorf("--commit %q is not a commit id", opts.Commit)
		}
		if !git.IsSHA(c) || !e.Mirror.Has(ctx, c) {
			// Most often the commit is the branch's new tip (the agent
			// resolves the tip, then deploys it): fetch the branch first,
			// everything only if that was not enough.
			_, err := e.Mirror.FetchBranch(ctx, e.Cfg.Branch)
			if err != nil || !git.IsSHA(c) || !e.Mirror.Has(ctx, c) {
				if err := e.Mirror.Fetch(ctx); err != nil {
					return "", "", err
				}
			}
		}
		sha, err := e.Mirror.Resolve(ctx, c)
		return sha, "(--commit)", err
	case opts.Ref != "":
		if err := e.Mirror.Fetch(ctx); err != nil {
			return "", "", err
		}
		sha, err := e.Mirror.Resolve(ctx, opts.Ref)
		return sha, "(" + opts.Ref + ")", err
	default:
		// One fetch of the branch: with nothing new it costs about what
		// asking for the tip would, and a new tip is fetched at once.
		tip, err := e.Mirror.FetchBranch(ctx, e.Cfg.Branch)
		if err != nil {
			return "", "", err
		}
		return tip, "(tip of " + e.Cfg.Branch + ")", nil
	}
}

// decision is what the plan step decided when the target needs no deploy.
type decision struct {
	skip string // why the target is not deployed ("" to deploy it)
	// skipStep is the plan step's shorter word for skip, when the
	// deploy's result repeats skip in full; "" means skip itself.
	skipStep string
	repair   string // set when the live safe release is down: why, and it is restarted
	// change is set when the target is live and safe but the config
	// changed since it started: it is rebuilt or reconfigured.
	change *configChange
	// failedChange: the config differs from what the live release runs
	// with by a change that failed before (it is not applied again).
	failedChange bool
	// down is why the live safe release is down, with a change: the
	// change's restart brings it back, so repair stays "", but the
	// agent's watch (LiveDown) must still see it.
	down string
}

// planSkip decides whether the target needs no deploy, and whether the
// live release, which is the safe one, must be brought back meanwhile: a
// bad or already-live target must not leave a site down.
func (e *Engine) planSkip(ctx context.Context, target string, force bool, safeRel, live release.Release) decision {
	if force {
		return decision{}
	}
	liveIsSafe := safeRel.Name != "" && live.Name == safeRel.Name
	down := func() string {
		if !liveIsSafe {
			return ""
		}
		if _, err := e.healthyNow(ctx, vars{rel: live}); err != nil {
			return firstLine(err.Error())
		}
		if p, ok := e.proxyState(ctx); ok && !p.Running {
			return "the proxy is down"
		}
		return ""
	}
	if safeRel.Commit == target && liveIsSafe {
		change := e.changedConfig(target)
		if change != nil && change.failedBy == 0 {
			return decision{change: change, down: down()}
		}
		if change != nil {
			return decision{skip: fmt.Sprintf("nothing to do: %s is the safe commit; %s, but that change failed in deploy %d: fix it, or use --force",
				short(target), change, change.failedBy), repair: down(), failedChange: true}
		}
		if why := down(); why != "" {
			return decision{skip: "nothing to deploy: " + short(target) + " is the safe commit", repair: why}
		}
		return decision{skip: "nothing to do: " + short(target) + " is the safe commit and is healthy"}
	}
	if bad, err := e.Ledger.IsBad(ctx, target); err == nil && bad {
		why, _ := e.Ledger.BadBecause(ctx, target)
		what := "failed before"
		if strings.Contains(why, "rolled back by deploy") {
			what = "was rolled back from"
		}
		d := decision{skip: "skipped: " + short(target) + " " + what + " and is marked bad (" + firstLine(why) + "); push a fix, or use --force to deploy it again",
			skipStep: "skip " + short(target) + ": marked bad"}
		d.repair = down()
		return d
	}
	return decision{}
}

// LiveDown says why the live release, when it is the safe one, is down or
// failing its health check ("" when it is fine, or not the safe one).
func (e *Engine) LiveDown(ctx context.Context) string {
	safe, _ := e.Layout.SafeCommit()
	safeRel, _ := e.releaseOf(ctx, safe)
	live := e.liveRelease()
	d := e.planSkip(ctx, safe, false, safeRel, live)
	return cmp.Or(d.repair, d.down)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// repair brings the live safe release back: restart, health, smoke and
// settle, as a deploy proves a release. Its failure means the host needs
// an operator (exit 4).
func (a *attempt) repair(ctx context.Context, why string) (Result, error) {
	e := a.e
	a.rel = a.safeRel
	steps := a.proof(func(ctx context.Context) (string, error) { return e.restartAll(ctx, a.vars(), a.cred) }, false, false)
	for _, s := range steps {
		if err := a.step(ctx, s.name, false, s.run); err != nil {
			f := &Failure{DeployID: a.res.DeployID, Step: s.name, Err: unwrapStep(err), kind: ErrRollbackFailed,
				State: "the safe release " + short(a.safe) + " is live but does not come back healthy (it was down: " + why + ")",
				Next:  fmt.Sprintf("check the services' logs (`slipway logs %d`, logs/<service>.log or journalctl); `slipway status` shows what runs", a.res.DeployID)}
			if ctx.Err() != nil {
				f.kind = ErrInterrupted
			}
			a.res.Outcome, a.res.Message = ledger.Failed, f.Error()
			if ferr := e.Ledger.FinishDeploy(context.WithoutCancel(ctx), a.res.DeployID, ledger.Failed, f.Error(), false, e.now()); ferr != nil {
				return a.res, errors.Join(f, ferr)
			}
			return a.res, f
		}
	}
	return a.res, nil
}

// startAll is the restart step: each service in restart mode is stopped
// and started on the release; each proxied service gets an instance of the
// release, healthy on its own port, that takes no traffic yet (startInstance).
func (e *Engine) startAll(ctx context.Context, v vars, cred *syscall.Credential) (string, error) {
	return e.startServices(ctx, v, cred, nil)
}

// startServices is startAll for the services named in only (nil: all). A
// service an operator stopped stays stopped.
func (e *Engine) startServices(ctx context.Context, v vars, cred *syscall.Credential, only []string) (string, error) {
	e.setReadied("", service.Spec{}, false)
	e.startingMu.Lock()
	e.handovers = nil
	e.startingMu.Unlock()
	var done []string
	for _, name := range e.Cfg.ServiceNames() {
		if (only != nil && !slices.Contains(only, name)) || e.isStopped(name) {
			continue
		}
		s := e.Cfg.Services[name]
		spec := e.spec(s, v, cred)
		if s.Proxy != nil {
			inst, toSwitch, msg, err := e.startInstance(ctx, s, spec, v.rel.Name)
			if err != nil {
				return "", err
			}
			if toSwitch {
				e.setReadied(name, inst, true)
			}
			done = append(done, msg)
			continue
		}
		if err := e.Services.Stop(ctx, spec); err != nil {
			return "", fmt.Errorf("stop %s: %w", spec.Name, err)
		}
		left, err := e.leaveProxy(ctx, spec)
		if err != nil {
			return "", err
		}
		if err := e.Services.Start(ctx, spec); err != nil {
			return "", fmt.Errorf("start %s: %w", spec.Name, err)
		}
		if left {
			stopped, err := e.stopStrays(ctx, spec, 0)
			if err != nil {
				return "", err
			}
			done = append(done, fmt.Sprintf("%s (left the proxy; stopped %s)", spec.Name, strings.Join(stopped, ", ")))
			continue
		}
		done = append(done, spec.Name)
	}
	return strings.Join(done, ", "), nil
}

// restartAll puts every service on the release at once: startAll, the
// traffic switch, and the old instances retired without a hold (for a
// rollback, a recovery, a repair).
func (e *Engine) restartAll(ctx context.Context, v vars, cred *syscall.Credential) (string, error) {
	msg, err := e.startAll(ctx, v, cred)
	if err != nil {
		return "", err
	}
	if !e.usesProxy() {
		return msg, nil
	}
	if t, err := e.switchTraffic(ctx, v); err != nil {
		return "", err
	} else if t != "" {
		msg += "; " + t
	}
	r, err := e.retire(ctx, v, cred)
	if err != nil {
		return "", err
	}
	return msg + "; " + r, nil
}

// stopAll stops every service.
func (e *Engine) stopAll(ctx context.Context, v vars) error {
	var errs []error
	for _, spec := range e.specs(ctx, v, nil) {
		if err := e.Services.Stop(ctx, spec); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", spec.Name, err))
		}
	}
	return errors.Join(errs...)
}

// alive returns an error naming the first service that is not running,
// with the last lines of its output.
func (e *Engine) alive(ctx context.Context, v vars, cred *syscall.Credential) error {
	for _, spec := range e.specs(ctx, v, cred) {
		if e.isStopped(baseName(spec.Name)) {
			continue // stopped by the operator
		}
		st, err := e.Services.Status(ctx, spec)
		if err != nil {
			return fmt.Errorf("service %s: %w", spec.Name, err)
		}
		if !st.Running {
			tail, _ := e.Services.Logs(ctx, spec, 20)
			msg := fmt.Sprintf("service %s is not running", spec.Name)
			if st.Detail != "" {
				msg += " (" + st.Detail + ")"
			}
			if strings.TrimSpace(tail) != "" {
				msg += "; its last output:\n" + tail
			}
			return errors.New(msg)
		}
	}
	return nil
}

// waitHealthy waits for the health check while the services stay up.
func (e *Engine) waitHealthy(ctx context.Context, v vars, cred *syscall.Credential) (string, error) {
	h := e.Cfg.Health
	if h == nil {
		// No health URL: the settle window is what proves the services up.
		return "services running (no health check configured)", e.alive(ctx, v, cred)
	}
	if why := e.checksSkipped(); why != "" {
		return "services running; health check " + why, e.alive(ctx, v, cred)
	}
	t0 := time.Now()
	err := e.checkWait(ctx, h, func() error { return e.alive(ctx, v, cred) })
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s healthy after %s", h.URL, time.Since(t0).Round(time.Millisecond)), nil
}

// healthyNow checks, once, that the services of v are running and healthy.
func (e *Engine) healthyNow(ctx context.Context, v vars) (string, error) {
	if err := e.alive(ctx, v, nil); err != nil {
		return "", err
	}
	if h := e.Cfg.Health; h != nil && e.checksSkipped() == "" {
		if err := e.checkOnce(ctx, h); err != nil {
			return "", err
		}
	}
	return "healthy", nil
}

func short(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}

func orNone(s string) string {
	if s == "" {
		return "nothing"
	}
	return s
}

// Describe renders an error for the ledger and the step line.
func Describe(err error) string {
	var re *run.Error
	if errors.As(err, &re) {
		msg := err.Error()
		if t := strings.TrimSpace(re.Tail); t != "" {
			msg += "\n" + run.LastLines(t, 15)
		}
		return msg
	}
	return err.Error()
}
