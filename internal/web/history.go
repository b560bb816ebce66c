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
}

// historyLimit is how many deploys the history page lists.
const historyLimit = 200

type historyPage struct {
	page
	Deploys []ledger.Deploy
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.SessionOf(r)
	if !ok {
		http.Redirect(w, r, "/signin", http.StatusSeeOther)
		return
	}
	ds, err := s.Ledger.Deploys(r.Context(), historyLimit)
	if err != nil {
		s.render(w, http.StatusInternalServerError, "history.html", &historyPage{page: page{Session: sess, Error: err.Error()}})
		return
	}
	s.render(w, http.StatusOK, "history.html", &historyPage{page: page{Session: sess}, Deploys: ds})
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
	sess, ok := s.SessionOf(r)
	if !ok {
		http.Redirect(w, r, "/signin", http.StatusSeeOther)
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
