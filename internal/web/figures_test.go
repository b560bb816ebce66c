package web

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/slipway-dev/slipway/internal/fleet"
	"github.com/slipway-dev/slipway/internal/ledger"
	"github.com/slipway-dev/slipway/internal/testkit/browser"
)

// staticFleet is a fleet of n hosts as last gathered: one drifted.
type staticFleet struct{ hosts []fleet.HostStatus }

func (f staticFleet) Grid() ([]fleet.HostStatus, time.Time) { return f.hosts, time.Now() }
func (staticFleet) Rollouts(context.Context, int) ([]fleet.RolloutRow, error) {
	return nil, nil
}
func (staticFleet) Rollout(context.Context, int64) (fleet.RolloutRow, []fleet.Transition, error) {
	return fleet.RolloutRow{}, nil, ledger.ErrNotFound
}
func (staticFleet) Deploy(context.Context, string, string) (int64, error) { return 0, ErrNotRunning }
func (staticFleet) Stop(int64, string) error                              { return ErrNotRunning }
func (staticFleet) Running(int64) bool                                    { return false }

// The dashboard's figures, in Chromium: the first paint of the history
// page over a 1,000-deploy ledger and of the fleet grid of 50 hosts, and
// each page's weight with its assets. `make bench` runs it
// (SLIPWAY_WEB_FIGURES=1); the step-to-screen delay is TestDashboardActions'.
func TestDashboardFigures(t *testing.T) {
	if os.Getenv("SLIPWAY_WEB_FIGURES") == "" {
		t.Skip("figures: SLIPWAY_WEB_FIGURES=1 (make bench)")
	}
	db, err := ledger.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	ctx := t.Context()
	t0 := time.Now().Add(-1000 * time.Hour)
	steps := []string{"lock", "resolve", "plan", "verify-env", "prepare", "build:venv", "build:compile", "snapshot", "migrate", "stamp", "switch", "restart", "health", "smoke", "settle", "mark-safe", "prune"}
	for i := range 1000 {
		start := t0.Add(time.Duration(i) * time.Hour)
		commit := fmt.Sprintf("%040x", i+1)
		id, err := db.StartDeploy(ctx, ledger.Deploy{Trigger: ledger.TriggerWebhook, Actor: "ci", Commit: commit, Started: start})
		if err != nil {
			t.Fatal(err)
		}
		at := start
		for j, name := range steps {
			d := time.Duration(10+j*7+i%13) * time.Millisecond
			if err := db.AddStep(ctx, ledger.Step{DeployID: id, Name: name, Started: at, Duration: d, Outcome: ledger.Succeeded, Detail: "output of " + name}); err != nil {
				t.Fatal(err)
			}
			at = at.Add(d)
		}
		outcome := ledger.Succeeded
		if i%17 == 0 {
			outcome = ledger.RolledBack
		}
		if err := db.FinishDeploy(ctx, id, outcome, "", false, at); err != nil {
			t.Fatal(err)
		}
	}
	var hosts []fleet.HostStatus
	for i := range 50 {
		h := fleet.HostStatus{Host: fmt.Sprintf("vm%02d", i), Current: strings.Repeat("a", 40), Safe: strings.Repeat("a", 40), Healthy: true, Agent: true, Slipway: "1.4.0"}
		if i == 7 {
			h.Current, h.Slipway = strings.Repeat("b", 40), "1.3.9"
		}
		hosts = append(hosts, h)
	}
	s := New("board", []byte(operatorToken), nil)
	s.Status = func(context.Context) (any, error) {
		return map[string]any{"current": map[string]string{"name": "r1", "commit": liveCommit}, "safe_commit": liveCommit, "healthy": true}, nil
	}
	s.Ledger, s.Fleet = db, staticFleet{hosts}
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	b := browser.New(t, hs.URL)
	b.SignIn(operatorToken, "")
	type timing struct {
		Paint, Bytes float64
		Count        int
	}
	measure := `new Promise(done => requestAnimationFrame(() => setTimeout(() => {
		const nav = performance.getEntriesByType("navigation")[0];
		const paint = performance.getEntriesByType("paint").find(p => p.name === "first-contentful-paint");
		const res = performance.getEntriesByType("resource");
		done({Paint: paint ? paint.startTime : -1, Bytes: res.reduce((n, r) => n + r.encodedBodySize, nav.encodedBodySize), Count: res.length + 1});
	}, 50)))`
	for _, c := range []struct{ name, path, sel string }{
		{"the history page of a 1,000-deploy ledger", "/history", "svg.durations"},
		{"the fleet grid of 50 hosts", "/fleet", "table.grid"},
		{"the status page", "/", "#banner"},
		{"one deploy's page", "/history/1000", "svg.timeline"},
	} {
		var best timing
		for round := range 3 {
			// A fresh load each round: no cache, as a first visit.
			b.Do("clear the cache", chromedp.Navigate("about:blank"))
			b.Open(c.path, c.sel)
			m := browser.Eval[timing](b, measure)
			if round == 0 || m.Paint < best.Paint {
				best = m
			}
		}
		t.Logf("figure: %s: first paint %.0f ms (best of 3), %.1f KB in %d requests", c.name, best.Paint, best.Bytes/1024, best.Count)
	}
}
