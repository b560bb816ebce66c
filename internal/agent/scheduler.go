package agent

import (
	"context"
	"sync"
	"time"

	"github.com/slipway-dev/slipway/internal/deploy"
	"github.com/slipway-dev/slipway/internal/ledger"
)

// job is one deploy or rollback the agent accepted.
type job struct {
	id   int64
	kind string // ledger.KindDeploy or ledger.KindRollback
	opts deploy.Options
	to   string // rollback target
	// restoreData: the rollback restores the data snapshot taken before the
	// migration of the release it leaves.
	restoreData bool
	// tip: a deploy of whatever the branch tip is when the job starts.
	tip bool
	// queued: it was added while another job ran, so it waited.
	queued bool
}

// Done is how a job ended.
type Done struct {
	Result deploy.Result
	Err    error
}

// scheduler runs one job at a time. At most one deploy waits: a new
// request for the branch tip joins it, any other request replaces it (the
// replaced one is recorded as skipped). A rollback waits in a slot of its own
// and goes first.
type scheduler struct {
	mu       sync.Mutex
	running  *job
	pending  *job
	rollback *job
	wake     chan struct{}
	done     map[int64]Done
	waiters  map[int64][]chan Done
	order    []int64 // done ids, oldest first, to bound the map
}

func newScheduler() *scheduler {
	return &scheduler{wake: make(chan struct{}, 1), done: map[int64]Done{}, waiters: map[int64][]chan Done{}}
}

// add queues j. It returns the id the caller should follow (j's own, or
// the waiting deploy j joined) and the job that j replaced, if any.
func (s *scheduler) add(j *job) (id int64, replaced *job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	slot := &s.pending
	if j.kind == ledger.KindRollback {
		slot = &s.rollback
	}
	if cur := *slot; cur != nil {
		if j.tip && cur.tip {
			return cur.id, nil
		}
		replaced = cur
	}
	j.queued = s.running != nil
	*slot = j
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return j.id, replaced
}

// waitingTip reports whether the next job would be a deploy of the branch
// tip that was queued behind another job.
func (s *scheduler) waitingTip() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rollback == nil && s.pending != nil && s.pending.tip && s.pending.queued
}

// next takes the job to run now, or nil.
func (s *scheduler) next() *job {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.rollback
	if j != nil {
		s.rollback = nil
	} else if j = s.pending; j != nil {
		s.pending = nil
	}
	s.running = j
	return j
}

// ran clears the running job.
func (s *scheduler) ran() {
	s.mu.Lock()
	s.running = nil
	s.mu.Unlock()
}

// finish records how job id ended and wakes its waiters.
func (s *scheduler) finish(id int64, d Done) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done[id] = d
	s.order = append(s.order, id)
	if len(s.order) > 256 {
		delete(s.done, s.order[0])
		s.order = s.order[1:]
	}
	for _, w := range s.waiters[id] {
		w <- d
	}
	delete(s.waiters, id)
}

// wait blocks until job id ends (or ctx does).
func (s *scheduler) wait(ctx context.Context, id int64) (Done, bool) {
	s.mu.Lock()
	if d, ok := s.done[id]; ok {
		s.mu.Unlock()
		return d, true
	}
	w := make(chan Done, 1)
	s.waiters[id] = append(s.waiters[id], w)
	s.mu.Unlock()
	select {
	case d := <-w:
		return d, true
	case <-ctx.Done():
		return Done{}, false
	}
}

// jitter spreads d by up to 10% either way.
func jitter(d time.Duration, r func() float64) time.Duration {
	return d + time.Duration((r()*0.2-0.1)*float64(d))
}
