package web

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/slipway-dev/slipway/internal/fleet"
)

// FleetBackend is what `slipway fleet ui` shows and does, on the
// operator's machine: the hosts' last known status, the fleet ledger, and
// the rollouts this process runs.
type FleetBackend interface {
	// Grid is each host's status as last gathered, and when.
	Grid() ([]fleet.HostStatus, time.Time)
	Rollouts(ctx context.Context, limit int) ([]fleet.RolloutRow, error)
	Rollout(ctx context.Context, id int64) (fleet.RolloutRow, []fleet.Transition, error)
	// Deploy starts a rollout of commit (empty: the branch's tip) with
	// the fleet's settings, and returns its id.
	Deploy(ctx context.Context, commit, actor string) (int64, error)
	// Stop halts or reverts a rollout this process runs (fleet.StopHalt,
	// fleet.StopRevert), before its next batch.
	Stop(id int64, how string) error
	// Running says whether this process runs rollout id.
	Running(id int64) bool
}

// ErrNotRunning is a halt or revert of a rollout this process does not run.
var ErrNotRunning = errors.New("this dashboard does not run that rollout (it ended, or another process runs it)")

type gridRow struct {
	fleet.HostStatus
	// Drift marks the values that differ from most hosts'.
	CurrentDrift, SafeDrift, SlipwayDrift bool
}

// spread is the fleet's version spread: how many hosts run each commit.
type spread struct {
	Commit string
	Hosts  int
	X, W   int
	Fill   string
}

type fleetPage struct {
	page
	Hosts    []gridRow
	AsOf     time.Time
	Spread   []spread
	Rollouts []fleet.RolloutRow
}

func (s *Server) fleetHome(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.signedIn(w, r)
	if !ok {
		return
	}
	sts, asOf := s.Fleet.Grid()
	p := &fleetPage{page: page{Session: sess}, AsOf: asOf}
	cur := fleet.Usual(sts, func(h fleet.HostStatus) string { return h.Current })
	safe := fleet.Usual(sts, func(h fleet.HostStatus) string { return h.Safe })
	ver := fleet.Usual(sts, func(h fleet.HostStatus) string { return h.Slipway })
	count := map[string]int{}
	for _, h := range sts {
		p.Hosts = append(p.Hosts, gridRow{HostStatus: h, CurrentDrift: h.Current != cur, SafeDrift: h.Safe != safe, SlipwayDrift: h.Slipway != ver})
		count[h.Current]++
	}
	commits := make([]string, 0, len(count))
	for c := range count {
		commits = append(commits, c)
	}
	slices.SortFunc(commits, func(a, b string) int { return cmp.Or(count[b]-count[a], cmp.Compare(a, b)) })
	x := 0
	for i, c := range commits {
		w := 1000 * count[c] / max(len(sts), 1)
		p.Spread = append(p.Spread, spread{Commit: c, Hosts: count[c], X: x, W: w, Fill: palette[i%len(palette)]})
		x += w
	}
	var err error
	if p.Rollouts, err = s.Fleet.Rollouts(r.Context(), 50); err != nil {
		p.Error = err.Error()
	}
	p.Refresh = asOf.IsZero() // the first round of asking the hosts comes
	for _, ro := range p.Rollouts {
		p.Refresh = p.Refresh || s.Fleet.Running(ro.ID)
	}
	s.render(w, http.StatusOK, "fleet.html", p)
}

type batchRow struct {
	N     int
	Hosts []hostState
}

type hostState struct {
	Host, State, Detail string
	At                  time.Time
}

type rolloutPage struct {
	page
	Rollout     fleet.RolloutRow
	Batches     []batchRow
	Transitions []fleet.Transition
	Running     bool
}

func (s *Server) fleetRollout(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.signedIn(w, r)
	if !ok {
		return
	}
	p := &rolloutPage{page: page{Session: sess}}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err == nil {
		p.Rollout, p.Transitions, err = s.Fleet.Rollout(r.Context(), id)
	}
	if err != nil {
		p.Error = "no such rollout"
		s.render(w, http.StatusNotFound, "rollout.html", p)
		return
	}
	last := map[string]fleet.Transition{}
	for _, t := range p.Transitions {
		last[t.Host] = t
	}
	for i, names := range p.Rollout.Plan.Batches {
		b := batchRow{N: i + 1}
		for _, n := range names {
			t, ok := last[n]
			st := hostState{Host: n, State: "pending"}
			if ok {
				st.State, st.Detail, st.At = t.State, t.Detail, t.At
			}
			b.Hosts = append(b.Hosts, st)
		}
		p.Batches = append(p.Batches, b)
	}
	p.Running = s.Fleet.Running(id)
	p.Refresh = p.Running || p.Rollout.Finished.IsZero()
	s.render(w, http.StatusOK, "rollout.html", p)
}
