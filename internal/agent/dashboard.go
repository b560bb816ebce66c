package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/slipway-dev/slipway/internal/api"
	"github.com/slipway-dev/slipway/internal/ledger"
	"github.com/slipway-dev/slipway/internal/lock"
)

// dashboard is what the dashboard's actions do (web.Backend): the same
// job queue, engine and lock as the API and the CLI.
type dashboard struct{ a *Agent }

func (d dashboard) Enqueue(ctx context.Context, r api.Request) (int64, error) {
	return d.a.Enqueue(ctx, r)
}

func (d dashboard) Freeze(ctx context.Context, message, actor string) error {
	h := lock.NewHolder("manual", time.Now())
	h.User, h.Message = actor, message
	if err := lock.Freeze(ctx, d.a.engine().Layout.LockFile(), h); err != nil {
		return err
	}
	d.record(ctx, ledger.EventFreeze, fmt.Sprintf("deploys frozen by %s: %s", actor, message))
	return nil
}

func (d dashboard) Unfreeze(ctx context.Context, actor string) (string, error) {
	h := lock.NewHolder("manual", time.Now())
	h.User = actor
	said, err := lock.Unfreeze(ctx, d.a.engine().Layout.LockFile(), h, "", false)
	if err == nil && said == "deploys unfrozen" {
		d.record(ctx, ledger.EventUnfreeze, "deploys unfrozen by "+actor)
	}
	return said, err
}

// record writes an event; the change it records has happened, so a
// failure to write it is logged rather than returned.
func (d dashboard) record(ctx context.Context, kind, detail string) {
	if _, err := d.a.db.AddEvent(context.WithoutCancel(ctx), ledger.Event{Kind: kind, Detail: detail}); err != nil {
		d.a.log.Warn("could not record in the ledger", "event", kind, "err", err)
	}
	d.a.log.Info(detail)
}

func (d dashboard) Restore(ctx context.Context, snapshot, actor string) (string, error) {
	// A restore outlives the browser that asked for it.
	return d.a.engine().RestoreSnapshot(context.WithoutCancel(ctx), snapshot, actor)
}

func (d dashboard) ServiceLog(ctx context.Context, service string, lines int) (string, error) {
	return d.a.engine().ServiceLog(ctx, service, lines)
}
