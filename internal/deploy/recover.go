package deploy

import (
	"context"
	"fmt"
	"strings"

	"github.com/slipway-dev/slipway/internal/ledger"
	"github.com/slipway-dev/slipway/internal/release"
)

// Recovered says what recovery found and did (empty when nothing was left).
type Recovered struct {
	Deploys []int64
	Actions []string
}

// recover repairs what a crash left behind. It runs under the deploy lock:
// a deploy still marked running is one whose process died. That deploy is
// marked interrupted, its half-built release removed, and current and the
// services are brought back to the safe release, healthy (SPEC §4).
func (e *Engine) recover(ctx context.Context) error {
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
	safeRel, _ := e.releaseOf(ctx, safe)
	cur, _ := e.Layout.Current()
	var curRel release.Release
	if cur != "" {
		curRel, _ = e.Layout.Open(cur)
	}

	// Bring current and the services back to the safe release.
	var fixErr error
	switch {
	case safeRel.Name != "" && cur != safeRel.Name:
		detail, err := e.restore(ctx, safeRel, vars{rel: curRel}, nil)
		fixErr = err
		r.Actions = append(r.Actions, "current back to the safe release: "+detail)
	case safeRel.Name != "":
		if _, err := e.healthyNow(ctx, vars{rel: safeRel}); err != nil {
			detail, err := e.restore(ctx, safeRel, vars{rel: safeRel}, nil)
			fixErr = err
			r.Actions = append(r.Actions, "services restarted on the safe release: "+detail)
		}
	case cur != "":
		// No safe release yet: an interrupted first deploy. Nothing was
		// proven healthy, so nothing stays live.
		detail, err := e.restore(ctx, release.Release{}, vars{rel: curRel}, nil)
		fixErr = err
		r.Actions = append(r.Actions, detail)
	}

	for _, d := range unfinished {
		r.Deploys = append(r.Deploys, d.ID)
		if d.Release != "" && d.Release != safeRel.Name {
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
		msg := fmt.Sprintf("interrupted %s (the process died); recovered: %s", at, strings.Join(r.Actions, "; "))
		if fixErr != nil {
			msg += "; recovery failed: " + fixErr.Error()
		}
		if err := e.Ledger.FinishDeploy(ctx, d.ID, ledger.Interrupted, msg, false, e.now()); err != nil {
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
