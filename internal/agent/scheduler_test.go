package agent

import (
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

// A tip deploy queued behind a running job settles before it starts; one
// that found nothing running starts at once; a rollback never waits.
func TestSettle(t *testing.T) {
	a := &Agent{sched: newScheduler(), Settle: 150 * time.Millisecond, SettleMax: time.Second}
	timed := func() time.Duration {
		t0 := time.Now()
		a.settle(t.Context())
		return time.Since(t0)
	}
	a.state.lastPush = time.Now()
	a.sched.add(&job{id: 1, kind: ledger.KindDeploy, tip: true})
	if d := timed(); d > 50*time.Millisecond {
		t.Fatalf("a tip deploy with nothing running settled for %v", d)
	}
	a.sched.next() // job 1 runs

	a.sched.add(&job{id: 2, kind: ledger.KindDeploy, tip: true})
	a.sched.ran() // job 1 is done
	go func() {
		// Pushes keep coming for 300 ms.
		for range 6 {
			time.Sleep(50 * time.Millisecond)
			a.mu.Lock()
			a.state.lastPush = time.Now()
			a.mu.Unlock()
		}
	}()
	if d := timed(); d < 400*time.Millisecond || d > 900*time.Millisecond {
		t.Fatalf("settled for %v; want the pushes' 300 ms plus the 150 ms quiet", d)
	}

	a.state.lastPush = time.Now()
	a.sched.add(&job{id: 3, kind: ledger.KindRollback})
	if d := timed(); d > 50*time.Millisecond {
		t.Fatalf("settled for %v with a rollback waiting", d)
	}

	a.SettleMax = 200 * time.Millisecond
	a.sched.next() // the rollback runs
	a.sched.add(&job{id: 4, kind: ledger.KindDeploy, tip: true})
	a.sched.ran()
	stop := time.Now().Add(time.Second)
	go func() {
		for time.Now().Before(stop) {
			time.Sleep(20 * time.Millisecond)
			a.mu.Lock()
			a.state.lastPush = time.Now()
			a.mu.Unlock()
		}
	}()
	if d := timed(); d > 500*time.Millisecond {
		t.Fatalf("settled for %v under endless pushes; want SettleMax", d)
	}
}
