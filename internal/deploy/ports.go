package deploy

import (
	"context"
	"time"

	"github.com/slipway-dev/slipway/internal/ledger"
	"github.com/slipway-dev/slipway/internal/proxy"
	"github.com/slipway-dev/slipway/internal/release"
)

// The engine's view of what it works with. *ledger.DB and *git.Mirror
// implement these; each interface holds only what the engine calls, so
// that its tests can put something of their own in front (a ledger that
// fails, a mirror that cannot reach its remote) while everything else is
// real.

// DeployLedger records deploys and their steps, and which commits are bad.
type DeployLedger interface {
	StartDeploy(ctx context.Context, d ledger.Deploy) (int64, error)
	Begin(ctx context.Context, id int64, started time.Time) error
	UpdateDeploy(ctx context.Context, d ledger.Deploy) error
	AddStep(ctx context.Context, s ledger.Step) error
	FinishDeploy(ctx context.Context, id int64, outcome ledger.Outcome, errMsg string, bad bool, finished time.Time) error
	NoteFailure(ctx context.Context, id int64, state, next string) error
	Steps(ctx context.Context, deployID int64) ([]ledger.Step, error)
	Deploys(ctx context.Context, limit int) ([]ledger.Deploy, error)
	Last(ctx context.Context) (ledger.Deploy, error)
	Unfinished(ctx context.Context) ([]ledger.Deploy, error)
	LastGoodReleases(ctx context.Context, limit int) ([]ledger.Deploy, error)
	ReleaseOf(ctx context.Context, commit string) (string, error)
	IsBad(ctx context.Context, commit string) (bool, error)
	BadBecause(ctx context.Context, commit string) (string, error)
	MarkBad(ctx context.Context, commit, reason string) error
}

// SnapshotLedger records restore points.
type SnapshotLedger interface {
	AddSnapshot(ctx context.Context, s ledger.Snapshot) (int64, error)
	Snapshots(ctx context.Context, limit int) ([]ledger.Snapshot, error)
	SnapshotByID(ctx context.Context, commitID string) (ledger.Snapshot, error)
	MarkSnapshotRestored(ctx context.Context, id, deployID int64, at time.Time) error
	DeleteSnapshot(ctx context.Context, id int64) error
}

// Ledger is both: the state.db of the app.
type Ledger interface {
	DeployLedger
	SnapshotLedger
}

// Mirror is the app's git mirror: what the engine resolves, fetches and
// exports releases from.
type Mirror interface {
	release.Exporter
	Ensure(ctx context.Context) error
	Fetch(ctx context.Context) error
	FetchBranch(ctx context.Context, branch string) (string, error)
	RemoteTip(ctx context.Context, branch string) (string, error)
	Resolve(ctx context.Context, ref string) (string, error)
	Has(ctx context.Context, sha string) bool
	ReadFile(ctx context.Context, sha, path string) (string, bool)
	Subject(ctx context.Context, sha string) string
	Behind(ctx context.Context, from, to string) (int, error)
}

// ProxyControl is the control API of the app's proxy (`slipway proxy`):
// *proxy.Client on its socket.
type ProxyControl interface {
	Ping(ctx context.Context) error
	Routes(ctx context.Context) ([]proxy.RouteState, error)
	Route(ctx context.Context, service string) (proxy.RouteState, bool, error)
	Ensure(ctx context.Context, service, listen, health string) error
	Adopt(ctx context.Context, service, listen, health, backend, release string) error
	Remove(ctx context.Context, service string) error
	Switch(ctx context.Context, service, backend, release string) (proxy.SwitchResult, error)
	Drain(ctx context.Context, service, backend string, timeout time.Duration) (int64, error)
	Pause(ctx context.Context, service string, limit time.Duration) error
	Resume(ctx context.Context, service string) error
}

// control returns the proxy's control API: Engine.Proxy, else a client
// on the app's proxy socket.
func (e *Engine) control() ProxyControl {
	if e.Proxy != nil {
		return e.Proxy
	}
	return proxy.NewClient(e.Layout.ProxySocket())
}

// Clock is the engine's time: the times it records, and the settle
// window it waits out (the agent's settle of pushes runs on one too).
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the system's time.
type SystemClock struct{}

func (SystemClock) Now() time.Time                         { return time.Now() }
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
