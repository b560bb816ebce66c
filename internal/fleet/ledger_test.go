package fleet

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Hosts post their transitions at once: each is committed when its
// channel says so (another handle on the file reads it), none is lost, and
// each host's stay in the order it posted them.
func TestRecordAtOnce(t *testing.T) {
	const hosts, states = 40, 4
	path := filepath.Join(t.TempDir(), "fleet.db")
	l, err := OpenLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	other, err := OpenLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Close() })
	ctx := t.Context()
	id, err := l.StartRollout(ctx, RolloutRow{App: "board", Kind: KindDeploy, Started: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, hosts*states)
	for h := range hosts {
		wg.Go(func() {
			host := fmt.Sprintf("h%02d", h)
			for i := range states {
				if err := <-l.Post(Transition{Rollout: id, Host: host, State: fmt.Sprint(i)}); err != nil {
					errs <- err
					return
				}
				_, ts, err := other.Rollout(ctx, id)
				if err != nil {
					errs <- err
					return
				}
				n := 0
				for _, tr := range ts {
					if tr.Host == host {
						n++
					}
				}
				if n != i+1 {
					errs <- fmt.Errorf("%s: after recording %d transitions the other handle reads %d", host, i+1, n)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	_, ts, err := other.Rollout(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	next := map[string]int{}
	for _, tr := range ts {
		if tr.State != fmt.Sprint(next[tr.Host]) {
			t.Fatalf("%s: state %s recorded after %d", tr.Host, tr.State, next[tr.Host])
		}
		next[tr.Host]++
	}
	if len(ts) != hosts*states {
		t.Fatalf("%d transitions, want %d", len(ts), hosts*states)
	}
}

// What was posted without waiting is committed by Flush, and by Close.
func TestFlushCommitsWhatWasPosted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleet.db")
	l, err := OpenLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	id, err := l.StartRollout(ctx, RolloutRow{App: "board", Kind: KindDeploy, Started: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	count := func() int {
		other, err := OpenLedger(path)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = other.Close() }()
		_, ts, err := other.Rollout(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return len(ts)
	}
	for i := range 100 {
		l.Post(Transition{Rollout: id, Host: "h", State: fmt.Sprint(i)})
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 100 {
		t.Fatalf("after Flush: %d transitions, want 100", n)
	}
	for i := range 50 {
		l.Post(Transition{Rollout: id, Host: "h", State: fmt.Sprint(100 + i)})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 150 {
		t.Fatalf("after Close: %d transitions, want 150", n)
	}
}

// TestRolloutByID: one rollout is read by its id, among others; an id the
// ledger lacks is ErrNoRollout.
func TestRolloutByID(t *testing.T) {
	l, err := OpenLedger(filepath.Join(t.TempDir(), "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	ctx := t.Context()
	var ids []int64
	for _, commit := range []string{"aaaa", "bbbb", "cccc"} {
		id, err := l.StartRollout(ctx, RolloutRow{App: "board", Kind: KindDeploy, Commit: commit, Started: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	r, _, err := l.Rollout(ctx, ids[1])
	if err != nil || r.ID != ids[1] || r.Commit != "bbbb" {
		t.Fatalf("rollout %d: %+v %v", ids[1], r, err)
	}
	if _, _, err := l.Rollout(ctx, ids[2]+1); !errors.Is(err, ErrNoRollout) {
		t.Fatalf("a missing rollout: %v, want ErrNoRollout", err)
	}
}
