// Package deploy is the engine: one deploy as the steps of docs/deploy.md, the
// rollback that undoes a failed switch, and the recovery of a deploy that a
// crash interrupted. It depends on small interfaces (ports.go: the ledger,
// the mirror, the proxy's control, the clock); the packages that talk to
// git, the service manager, the proxy and SQLite implement them.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/slipway-dev/slipway/internal/config"
	"github.com/slipway-dev/slipway/internal/git"
	"github.com/slipway-dev/slipway/internal/ledger"
	"github.com/slipway-dev/slipway/internal/lock"
	"github.com/slipway-dev/slipway/internal/release"
	"github.com/slipway-dev/slipway/internal/run"
	"github.com/slipway-dev/slipway/internal/service"
)

// Engine deploys one app on this host.
type Engine struct {
	Cfg      *config.Config
	Layout   release.Layout
	Mirror   Mirror
	Ledger   Ledger
	Services service.Manager
	// Proxy is the proxy's control API; nil means a client on
	// <root>/run/proxy.sock.
	Proxy ProxyControl
	// Observe, when set, is told of every step as it starts and ends.
	Observe func(Event)
	// OnRecover, when set, is told what a recovery of a crashed deploy did.
	OnRecover func(Recovered)
	// Clock is the engine's time; nil means the system's.
	Clock Clock

	// starting are the instances of proxied services that startAll readied
	// and that do not take traffic yet, by service: the health and smoke
	// checks go to them, and switchTraffic sends them the traffic.
	// The agent reads it (status) while a deploy writes it: startingMu.
	starting   map[string]service.Spec
	startingMu sync.Mutex
	// handovers are the services that ran without the proxy and hand
	// their port to it at the traffic step, as they ran (startingMu).
	handovers map[string]service.Spec
}

// handover returns the service that hands its port to the proxy.
func (e *Engine) handover(name string) (service.Spec, bool) {
	e.startingMu.Lock()
	defer e.startingMu.Unlock()
	s, ok := e.handovers[name]
	return s, ok
}

// setHandover records (ok) or forgets (!ok) a handover of name.
func (e *Engine) setHandover(name string, old service.Spec, ok bool) {
	e.startingMu.Lock()
	defer e.startingMu.Unlock()
	if !ok {
		delete(e.handovers, name)
		return
	}
	if e.handovers == nil {
		e.handovers = map[string]service.Spec{}
	}
	e.handovers[name] = old
}

// readied returns the instance startAll readied for service name.
func (e *Engine) readied(name string) (service.Spec, bool) {
	e.startingMu.Lock()
	defer e.startingMu.Unlock()
	inst, ok := e.starting[name]
	return inst, ok
}

// setReadied records (ok) or forgets (!ok) the readied instance of name;
// an empty name forgets them all.
func (e *Engine) setReadied(name string, inst service.Spec, ok bool) {
	e.startingMu.Lock()
	defer e.startingMu.Unlock()
	switch {
	case name == "":
		e.starting = nil
	case ok:
		if e.starting == nil {
			e.starting = map[string]service.Spec{}
		}
		e.starting[name] = inst
	default:
		delete(e.starting, name)
	}
}

// New wires an engine for cfg with the given ledger and service manager.
func New(cfg *config.Config, db *ledger.DB, mgr service.Manager) *Engine {
	l := release.Layout{Root: cfg.Root}
	return &Engine{
		Cfg:      cfg,
		Layout:   l,
		Mirror:   &git.Mirror{Dir: l.Repo(), Remote: cfg.Repo},
		Ledger:   db,
		Services: mgr,
	}
}

// tracker records the app's commands (build, migrate, smoke, snapshot)
// while they run, so that recovery ends whatever a killed slipway left.
func (e *Engine) tracker() *run.Tracker {
	return &run.Tracker{Dir: e.Layout.CommandsDir()}
}

func (e *Engine) clock() Clock {
	if e.Clock != nil {
		return e.Clock
	}
	return SystemClock{}
}

func (e *Engine) now() time.Time { return e.clock().Now().UTC() }

// Options selects what one deploy does.
type Options struct {
	Commit  string // deploy this commit (full or abbreviated id)
	Ref     string // or this branch or tag
	Force   bool   // deploy even a commit marked bad, or the safe commit again
	Wait    bool   // wait for the lock instead of exiting 3
	DryRun  bool   // print the plan, change nothing
	Trigger string // manual, poll, webhook, api
	Actor   string
	// DeployID adopts a ledger row the agent queued (0: a new row).
	DeployID int64
	// Hold is the key of a hold (`slipway lock hold`) this deploy may pass.
	Hold string
}

// Result is what a deploy did.
type Result struct {
	Kind     string // deploy or rollback
	DeployID int64
	Outcome  ledger.Outcome
	Commit   string
	Previous string
	Release  string
	Version  string
	Message  string // a human summary of the outcome
	Warning  string // what the operator should know although it went well
	Plan     *Plan  // set for a dry run
}

// Sentinel errors the CLI maps to exit codes (docs/deploy.md).
var (
	// ErrFailed: the deploy failed; the host is on its safe release (exit 1).
	ErrFailed = errors.New("deploy failed")
	// ErrRollbackFailed: the rollback did not end healthy (exit 4).
	ErrRollbackFailed = errors.New("rollback failed")
	// ErrInterrupted: the deploy was stopped by a signal (exit 5).
	ErrInterrupted = errors.New("interrupted")
)

// Failure explains a failed deploy: the step, the cause, what was done
// about it, and what the operator should do next.
type Failure struct {
	DeployID   int64
	Step       string
	Err        error
	RolledBack bool
	Rollback   error  // the rollback's own failure, if any
	State      string // what is live now
	Next       string // what to do
	kind       error
}

func (f *Failure) Error() string {
	msg := fmt.Sprintf("%s: %v", f.Step, f.Err)
	if f.Rollback != nil {
		msg += fmt.Sprintf("; rollback failed too: %v", f.Rollback)
	}
	return msg
}

// Is lets callers test for ErrFailed, ErrRollbackFailed and ErrInterrupted.
func (f *Failure) Is(target error) bool { return target == f.kind }

func (f *Failure) Unwrap() error { return f.Err }

func (e *Engine) holder(trigger string) lock.Holder {
	return lock.NewHolder(trigger, e.now())
}

// TryRecover recovers a crashed deploy when the lock is free; when another
// slipway holds it, that one is responsible and nothing is done.
func (e *Engine) TryRecover(ctx context.Context) error {
	if err := e.Layout.Ensure(); err != nil {
		return err
	}
	l, err := lock.Acquire(ctx, e.Layout.LockFile(), e.holder("recovery"), false, true)
	if errors.Is(err, lock.ErrLocked) {
		return nil
	}
	if err != nil {
		return err
	}
	defer func() { _ = l.Release() }()
	return e.recover(ctx)
}

// Lock takes the deploy lock for trigger and recovers any deploy a crash
// left unfinished. The caller releases the lock.
// A manual freeze refuses deploys but lets a rollback or a snapshot
// restore through: going back is what an operator in an incident froze
// deploys for.
func (e *Engine) Lock(ctx context.Context, trigger string, wait bool) (*lock.Lock, error) {
	return e.lockAs(ctx, e.holder(trigger), wait)
}

// lockAs is Lock for holder, which may carry the key of a hold to pass.
func (e *Engine) lockAs(ctx context.Context, holder lock.Holder, wait bool) (*lock.Lock, error) {
	if err := e.Layout.Ensure(); err != nil {
		return nil, err
	}
	l, err := lock.Acquire(ctx, e.Layout.LockFile(), holder, wait, allowedWhenFrozen(holder.Trigger))
	if err != nil {
		return nil, err
	}
	if err := e.recover(ctx); err != nil {
		_ = l.Release()
		return nil, err
	}
	return l, nil
}

// allowedWhenFrozen reports whether a command with trigger may run while
// deploys are frozen: going back, and starting, stopping or restarting
// what runs, are what an operator in an incident froze deploys for.
func allowedWhenFrozen(trigger string) bool {
	switch trigger {
	case "rollback", "snapshot-restore", ledger.KindRestart, ledger.KindStart, ledger.KindStop:
		return true
	}
	return false
}
