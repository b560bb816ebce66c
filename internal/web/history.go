package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/slipway-dev/slipway/internal/ledger"
)

// Ledger is what the history pages read.
type Ledger interface {
	Deploys(ctx context.Context, limit int) ([]ledger.Deploy, error)
	Deploy(ctx context.Context, id int64) (ledger.Deploy, error)
	Steps(ctx context.Context, deployID int64) ([]ledger.Step, error)
	Snapshots(ctx context.Context, limit int) ([]ledger.Snapshot, error)
}

// historyLimit is how many deploys the history page lists.
const historyLimit = 200

type historyPage struct {
	page
	Deploys []ledger.Deploy
	// Good are the commits of kept good releases other than the live
	// one: a rollback may go there.
	Good  map[string]bool
	Chart *chart
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.signedIn(w, r)
	if !ok {
		return
	}
	p := &historyPage{page: page{Session: sess}, Good: map[string]bool{}}
	ds, err := s.Ledger.Deploys(r.Context(), historyLimit)
	if err == nil {
		p.Deploys = ds
		p.Chart, err = s.durations(r.Context(), ds)
	}
	if err != nil {
		p.Error = err.Error()
		s.render(w, http.StatusInternalServerError, "history.html", p)
		return
	}
	if st, err := s.status(r.Context()); err == nil {
		for _, g := range st.RollbackTo() {
			p.Good[g.Commit] = true
		}
	}
	s.render(w, http.StatusOK, "history.html", p)
}

// chartDeploys is how many of the last deploys the durations chart draws.
const chartDeploys = 30

// chart is the last deploys' durations, a stacked column of steps each,
// oldest left, on a 1000 × 200 drawing.
type chart struct {
	Columns []column
	Legend  []legendItem
	// Max is the longest deploy drawn, the chart's full height.
	Max time.Duration
}

type column struct {
	ID       int64
	X, W     int
	Segments []segment
}

type segment struct {
	Step     string
	Duration time.Duration
	Y, H     int
	Fill     string
}

type legendItem struct {
	Step string
	Fill string
	X    int
}

// palette colours the steps, in the order they first appear.
var palette = []string{"#4c6ef5", "#12b886", "#fab005", "#e64980", "#7950f2", "#15aabf", "#fd7e14", "#82c91e", "#be4bdb", "#868e96"}

// durations draws the last finished deploys (kind deploy) of ds, newest
// first, by step: a build that got slower shows as its colour growing.
func (s *Server) durations(ctx context.Context, ds []ledger.Deploy) (*chart, error) {
	var picked []ledger.Deploy
	for _, d := range ds {
		if d.Kind == ledger.KindDeploy && !d.Finished.IsZero() && d.Outcome != ledger.Skipped {
			picked = append(picked, d)
			if len(picked) == chartDeploys {
				break
			}
		}
	}
	if len(picked) < 2 {
		return nil, nil
	}
	c := &chart{}
	colour := map[string]string{}
	steps := make([][]ledger.Step, len(picked))
	for i, d := range picked {
		st, err := s.Ledger.Steps(ctx, d.ID)
		if err != nil {
			return nil, err
		}
		steps[i] = st
		var total time.Duration
		for _, x := range st {
			total += x.Duration
			if _, ok := colour[x.Name]; !ok {
				colour[x.Name] = palette[len(colour)%len(palette)]
				c.Legend = append(c.Legend, legendItem{Step: x.Name, Fill: colour[x.Name]})
			}
		}
		c.Max = max(c.Max, total)
	}
	if c.Max <= 0 {
		return nil, nil
	}
	w := 1000 / chartDeploys
	for i := range picked {
		d := picked[len(picked)-1-i] // oldest on the left
		col := column{ID: d.ID, X: i * w, W: w - 4}
		var sum time.Duration // the steps below, so that rounding does not add up
		for _, x := range steps[len(picked)-1-i] {
			bottom := 200 - int(200*sum/c.Max)
			sum += x.Duration
			top := 200 - int(200*sum/c.Max)
			if top == bottom {
				continue
			}
			col.Segments = append(col.Segments, segment{Step: x.Name, Duration: x.Duration, Y: top, H: bottom - top, Fill: colour[x.Name]})
		}
		c.Columns = append(c.Columns, col)
	}
	for i := range c.Legend {
		c.Legend[i].X = (i % 6) * 165
	}
	return c, nil
}

// bar is one step of a deploy's timeline, placed on a 1000-wide scale
// right of its name (timelineLabel wide).
type bar struct {
	ledger.Step
	X, W, Y int
	// At is X on the drawing, and TextY the baseline of the step's name.
	At, TextY int
}

const timelineLabel = 160

type deployPage struct {
	page
	Deploy ledger.Deploy
	Steps  []bar
	// Height is the timeline's, in its own units.
	Height int
}

func (s *Server) deploy(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.signedIn(w, r)
	if !ok {
		return
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		s.render(w, http.StatusNotFound, "deploy.html", &deployPage{page: page{Session: sess, Error: "no such deploy"}})
		return
	}
	d, err := s.Ledger.Deploy(r.Context(), id)
	if errors.Is(err, ledger.ErrNotFound) {
		s.render(w, http.StatusNotFound, "deploy.html", &deployPage{page: page{Session: sess, Error: fmt.Sprintf("no deploy %d", id)}})
		return
	}
	var steps []ledger.Step
	if err == nil {
		steps, err = s.Ledger.Steps(r.Context(), id)
	}
	if err != nil {
		s.render(w, http.StatusInternalServerError, "deploy.html", &deployPage{page: page{Session: sess, Error: err.Error()}})
		return
	}
	p := deployPage{page: page{Session: sess}, Deploy: d, Steps: timeline(d, steps)}
	p.Height = 22*len(p.Steps) + 4
	s.render(w, http.StatusOK, "deploy.html", &p)
}

// timeline places each step by its start and length within the deploy.
func timeline(d ledger.Deploy, steps []ledger.Step) []bar {
	if len(steps) == 0 {
		return nil
	}
	start := d.Started
	end := d.Finished
	for _, st := range steps {
		if st.Started.Before(start) {
			start = st.Started
		}
		if e := st.Started.Add(st.Duration); e.After(end) {
			end = e
		}
	}
	total := max(end.Sub(start), time.Millisecond)
	out := make([]bar, len(steps))
	for i, st := range steps {
		x := int(1000 * st.Started.Sub(start) / total)
		w := max(int(1000*st.Duration/total), 2)
		x = min(x, 998)
		out[i] = bar{Step: st, X: x, W: min(w, 1000-x), Y: 22*i + 2, At: timelineLabel + x, TextY: 22*i + 16}
	}
	return out
}
