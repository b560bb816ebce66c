package agent

import (
	"sync"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/ledger"
)

func TestSchedulerCoalesces(t *testing.T) {
	tests := []struct {
		name         string
		jobs         []*job
		wantFollow   []int64
		wantReplaced []int64 // 0 = none
		wantNext     []int64 // the order next() gives
	}{
		{
			name:         "tip deploys join the waiting one",
			jobs:         []*job{{id: 1, kind: ledger.KindDeploy, tip: true}, {id: 2, kind: ledger.KindDeploy, tip: true}, {id: 3, kind: ledger.KindDeploy, tip: true}},
			wantFollow:   []int64{1, 1, 1},
			wantReplaced: []int64{0, 0, 0},
			wantNext:     []int64{1},
		},
		{
			name:         "a specific commit replaces the waiting deploy",
			jobs:         []*job{{id: 1, kind: ledger.KindDeploy, tip: true}, {id: 2, kind: ledger.KindDeploy}},
			wantFollow:   []int64{1, 2},
			wantReplaced: []int64{0, 1},
			wantNext:     []int64{2},
		},
		{
			name:         "a rollback waits in its own slot and goes first",
			jobs:         []*job{{id: 1, kind: ledger.KindDeploy, tip: true}, {id: 2, kind: ledger.KindRollback}},
			wantFollow:   []int64{1, 2},
			wantReplaced: []int64{0, 0},
			wantNext:     []int64{2, 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newScheduler()
			for i, j := range tt.jobs {
				follow, replaced := s.add(j)
				if follow != tt.wantFollow[i] {
					t.Errorf("job %d: follow %d, want %d", j.id, follow, tt.wantFollow[i])
				}
				var got int64
				if replaced != nil {
					got = replaced.id
				}
				if got != tt.wantReplaced[i] {
					t.Errorf("job %d: replaced %d, want %d", j.id, got, tt.wantReplaced[i])
				}
			}
			for _, want := range tt.wantNext {
				j := s.next()
				if j == nil || j.id != want {
					t.Fatalf("next = %v, want job %d", j, want)
				}
				s.ran()
			}
			if j := s.next(); j != nil {
				t.Fatalf("next = job %d, want none", j.id)
			}
		})
	}
}

func TestSchedulerWaitGetsTheResult(t *testing.T) {
	s := newScheduler()
	got := make(chan Done, 1)
	go func() {
		d, ok := s.wait(t.Context(), 7)
		if ok {
			got <- d
		}
	}()
	time.Sleep(20 * time.Millisecond)
	s.finish(7, Done{})
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("wait did not return")
	}
	// A late waiter gets the remembered result at once.
	if _, ok := s.wait(t.Context(), 7); !ok {
		t.Fatal("a finished job's result was not remembered")
	}
}

func TestJitterStaysWithinTenPercent(t *testing.T) {
	for _, r := range []float64{0, 0.5, 0.999} {
		d := jitter(10*time.Second, func() float64 { return r })
		if d < 9*time.Second || d > 11*time.Second {
			t.Errorf("jitter(10s, %v) = %s", r, d)
		}
	}
}

// fakeClock is a clock the test moves: After's channels fire when Advance
// passes their deadline.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{c.now.Add(d), ch})
	return ch
}

// Advance moves the time on by d and fires what fell due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- c.now
	}
	c.waiters = kept
}

func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// A tip deploy queued behind a running job settles before it starts; one
// that found nothing running starts at once; a rollback never waits. The
// settle runs on a clock the test moves, so no window depends on how busy
// the machine is.
func TestSettle(t *testing.T) {
	var clk *fakeClock
	a := &Agent{sched: newScheduler(), Settle: 150 * time.Millisecond, SettleMax: time.Second}
	// Each case gets a clock of its own: a timer an earlier settle left
	// behind is not counted as waiting.
	newClock := func() {
		clk = &fakeClock{now: time.Unix(1_000_000, 0)}
		a.clock = clk
	}
	newClock()
	push := func() {
		a.mu.Lock()
		a.state.lastPush = clk.Now()
		a.mu.Unlock()
	}
	// settle runs a.settle in the background; its done channel closes when
	// it returns.
	settle := func() (done chan struct{}) {
		// The worker takes the scheduler's wake-up before it settles.
		select {
		case <-a.sched.wake:
		default:
		}
		done = make(chan struct{})
		go func() { defer close(done); a.settle(t.Context()) }()
		return done
	}
	// blocked waits (real time, bounded) until settle is either done or
	// waiting on both its timers: the limit and the quiet one.
	blocked := func(done chan struct{}) bool {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-done:
				return false
			default:
			}
			if clk.pending() == 2 {
				return true
			}
			time.Sleep(time.Millisecond)
		}
		t.Fatalf("settle neither returned nor waited: %d timers pending at %v", clk.pending(), clk.Now())
		return false
	}
	finished := func(done chan struct{}) bool {
		select {
		case <-done:
			return true
		case <-time.After(10 * time.Second):
			return false
		}
	}

	push()
	a.sched.add(&job{id: 1, kind: ledger.KindDeploy, tip: true})
	if !finished(settle()) {
		t.Fatal("a tip deploy with nothing running settled")
	}
	a.sched.next() // job 1 runs

	a.sched.add(&job{id: 2, kind: ledger.KindDeploy, tip: true})
	a.sched.ran() // job 1 is done
	newClock()
	push()
	start := clk.Now()
	done := settle()
	// Pushes keep coming every 50 ms for 300 ms.
	for range 6 {
		if !blocked(done) {
			t.Fatalf("settle returned %v after the pushes started", clk.Now().Sub(start))
		}
		clk.Advance(50 * time.Millisecond)
		push()
	}
	// Then 150 ms of quiet, and it returns: not before.
	if !blocked(done) {
		t.Fatal("settle returned right after the last push")
	}
	clk.Advance(149 * time.Millisecond)
	if !blocked(done) {
		t.Fatal("settle returned before 150 ms of quiet")
	}
	clk.Advance(time.Millisecond)
	if !finished(done) {
		t.Fatal("settle still waits after 150 ms of quiet")
	}
	if d := clk.Now().Sub(start); d != 450*time.Millisecond {
		t.Fatalf("settled for %v; want the pushes' 300 ms plus the 150 ms quiet", d)
	}

	push()
	a.sched.add(&job{id: 3, kind: ledger.KindRollback})
	if !finished(settle()) {
		t.Fatal("settle waited with a rollback waiting")
	}

	a.SettleMax = 200 * time.Millisecond
	a.sched.next() // the rollback runs
	a.sched.add(&job{id: 4, kind: ledger.KindDeploy, tip: true})
	a.sched.ran()
	newClock()
	push()
	start = clk.Now()
	done = settle()
	// Endless pushes every 20 ms: SettleMax ends it.
	for blocked(done) {
		if clk.Now().Sub(start) > time.Second {
			t.Fatal("settle still waits after 1 s of pushes; want SettleMax (200 ms)")
		}
		clk.Advance(20 * time.Millisecond)
		push()
	}
	if d := clk.Now().Sub(start); d != 200*time.Millisecond {
		t.Fatalf("settled for %v under endless pushes; want SettleMax (200 ms)", d)
	}
}
