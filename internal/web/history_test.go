package web

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/ledger"
)

// seedLedger writes two deploys into a real ledger: one that succeeded,
// then one that failed its health check and was rolled back.
func seedLedger(t *testing.T) *ledger.DB {
	t.Helper()
	db, err := ledger.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	ctx := t.Context()
	t0 := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	for i, d := range []struct {
		commit, actor string
		outcome       ledger.Outcome
		err           string
		steps         []string
	}{
		{"aaaaaaa1111111111111111111111111111111111", "alice", ledger.Succeeded, "", []string{"fetch", "build", "health"}},
		{"bbbbbbb2222222222222222222222222222222222", "bob", ledger.RolledBack, "health: /health answered 500; rolled back to aaaaaaa", []string{"fetch", "build", "health"}},
	} {
		start := t0.Add(time.Duration(i) * time.Hour)
		id, err := db.StartDeploy(ctx, ledger.Deploy{Trigger: ledger.TriggerManual, Actor: d.actor, Commit: d.commit, Started: start})
		if err != nil {
			t.Fatal(err)
		}
		at := start
		for j, name := range d.steps {
			outcome, detail := ledger.Succeeded, "output of "+name
			if d.outcome != ledger.Succeeded && j == len(d.steps)-1 {
				outcome, detail = ledger.Failed, "GET /health: 500"
			}
			if err := db.AddStep(ctx, ledger.Step{DeployID: id, Name: name, Started: at, Duration: time.Duration(j+1) * time.Second, Outcome: outcome, Detail: detail}); err != nil {
				t.Fatal(err)
			}
			at = at.Add(time.Duration(j+1) * time.Second)
		}
		if err := db.FinishDeploy(ctx, id, d.outcome, d.err, false, at); err != nil {
			t.Fatal(err)
		}
		if d.outcome != ledger.Succeeded {
			if err := db.NoteFailure(ctx, id, "rolled back: aaaaaaa (releases/r1) is live", "push a fix"); err != nil {
				t.Fatal(err)
			}
		}
	}
	return db
}

// History lists the deploys newest first, with outcome, trigger and actor;
// one deploy shows its steps as a timeline, their output, and a failure
// in red with what it rolled back to. Signed out, neither says anything.
func TestHistoryPages(t *testing.T) {
	db := seedLedger(t)
	s := newSiteWith(t, func(srv *Server) { srv.Ledger = db })
	for _, path := range []string{"/history", "/history/2"} {
		if resp, body := s.get(path); resp.StatusCode != http.StatusSeeOther || strings.Contains(body, "bbbbbbb") {
			t.Fatalf("GET %s signed out: %d, want 303 to the sign-in\n%s", path, resp.StatusCode, body)
		}
	}
	s.signIn(operatorToken)
	resp, body := s.get("/history")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /history: %d", resp.StatusCode)
	}
	newer, older := strings.Index(body, "bbbbbbb"), strings.Index(body, "aaaaaaa")
	if newer < 0 || older < 0 || newer > older {
		t.Fatalf("history not newest first:\n%s", body)
	}
	for _, want := range []string{`class="outcome-rolled-back"`, `class="outcome-succeeded"`, "alice", "bob", "manual", `href="/history/2"`} {
		if !strings.Contains(body, want) {
			t.Errorf("history lacks %q", want)
		}
	}
	resp, body = s.get("/history/2")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /history/2: %d", resp.StatusCode)
	}
	for _, want := range []string{"failing", "rolled back to aaaaaaa", "rolled back: aaaaaaa (releases/r1) is live", "push a fix", "GET /health: 500", "output of build", `<rect class="step failed"`} {
		if !strings.Contains(body, want) {
			t.Errorf("deploy 2 lacks %q:\n%s", want, body)
		}
	}
	if n := strings.Count(body, "<rect "); n != 3 {
		t.Errorf("the timeline has %d bars, want 3", n)
	}
	for _, path := range []string{"/history/99", "/history/x"} {
		if resp, _ := s.get(path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, resp.StatusCode)
		}
	}
}

// The durations chart stacks each deploy's steps, oldest on the left,
// scaled to the longest deploy, with one colour per step name.
func TestDurationsChart(t *testing.T) {
	db := seedLedger(t)
	s := newSiteWith(t, func(srv *Server) { srv.Ledger = db })
	ds, err := db.Deploys(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.srv.durations(t.Context(), ds)
	if err != nil || c == nil {
		t.Fatalf("durations: %v, %v", c, err)
	}
	// Both deploys' steps take 1 s, 2 s and 3 s: 6 s, the full 200 high.
	if c.Max != 6*time.Second || len(c.Columns) != 2 || len(c.Legend) != 3 {
		t.Fatalf("the chart: max %v, %d columns, %d in the legend", c.Max, len(c.Columns), len(c.Legend))
	}
	if c.Columns[0].ID != 1 || c.Columns[1].ID != 2 || c.Columns[0].X >= c.Columns[1].X {
		t.Errorf("the columns are not oldest first: %+v", c.Columns)
	}
	for _, col := range c.Columns {
		top := col.Segments[len(col.Segments)-1]
		if col.Segments[0].Y+col.Segments[0].H != 200 || top.Y != 0 || top.Fill != c.Legend[2].Fill {
			t.Errorf("deploy %d's column: %+v", col.ID, col.Segments)
		}
	}
	s.signIn(operatorToken)
	if _, body := s.get("/history"); !strings.Contains(body, `class="durations"`) || !strings.Contains(body, "#2 health: 3.00s") {
		t.Errorf("the history page lacks the chart:\n%s", body)
	}
}

// The timeline places each step at its start, as long as it took, on a
// 1000-wide scale.
func TestTimeline(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	d := ledger.Deploy{Started: t0, Finished: t0.Add(10 * time.Second)}
	bars := timeline(d, []ledger.Step{
		{Name: "fetch", Started: t0, Duration: 2 * time.Second},
		{Name: "build", Started: t0.Add(2 * time.Second), Duration: 5 * time.Second},
		{Name: "health", Started: t0.Add(7 * time.Second), Duration: 3 * time.Second},
	})
	for i, want := range [][2]int{{0, 200}, {200, 500}, {700, 300}} {
		if bars[i].X != want[0] || bars[i].W != want[1] {
			t.Errorf("%s: x %d w %d, want %v", bars[i].Name, bars[i].X, bars[i].W, want)
		}
	}
}
