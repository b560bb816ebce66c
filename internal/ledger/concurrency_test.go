package ledger

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Two handles on one file, as when the agent and a manual `slipway deploy`
// both write: they open (and migrate) a fresh ledger at the same moment, then
// write at the same time. No write is lost and no id is handed out twice.
func TestConcurrentWritersOnTwoHandles(t *testing.T) {
	const writers, perWriter = 2, 200
	path := filepath.Join(t.TempDir(), "state.db")
	ctx := t.Context()

	dbs := make([]*DB, writers)
	var wg sync.WaitGroup
	errs := make(chan error, writers*perWriter)
	for i := range writers {
		wg.Go(func() {
			db, err := Open(path)
			if err != nil {
				errs <- fmt.Errorf("writer %d: open: %w", i, err)
				return
			}
			dbs[i] = db
		})
	}
	wg.Wait()
	for _, db := range dbs {
		if db != nil {
			t.Cleanup(func() { _ = db.Close() })
		}
	}
	if len(errs) > 0 {
		t.Fatal(<-errs)
	}

	ids := make([][]int64, writers)
	for i, db := range dbs {
		wg.Go(func() {
			for n := range perWriter {
				id, err := db.StartDeploy(ctx, Deploy{Trigger: TriggerAPI, Actor: fmt.Sprintf("w%d-%d", i, n)})
				if err != nil {
					errs <- fmt.Errorf("writer %d, insert %d: %w", i, n, err)
					return
				}
				if err := db.AddStep(ctx, Step{DeployID: id, Name: "lock", Started: time.Now(), Outcome: Succeeded}); err != nil {
					errs <- fmt.Errorf("writer %d, step %d: %w", i, n, err)
					return
				}
				ids[i] = append(ids[i], id)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	all, err := dbs[0].Deploys(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != writers*perWriter {
		t.Fatalf("ledger holds %d deploys, want %d", len(all), writers*perWriter)
	}
	byID := make(map[int64]Deploy, len(all))
	for _, d := range all {
		byID[d.ID] = d
	}
	for i := range writers {
		for n, id := range ids[i] {
			d, ok := byID[id]
			if want := fmt.Sprintf("w%d-%d", i, n); !ok || d.Actor != want {
				t.Errorf("id %d: got %+v, want actor %s", id, d, want)
			}
		}
	}
	for id := range byID {
		steps, err := dbs[1].Steps(ctx, id)
		if err != nil || len(steps) != 1 {
			t.Errorf("deploy %d has %d steps, %v; want 1", id, len(steps), err)
		}
	}
}

// A deploy queued on one handle is never, not even for a moment, a running
// deploy to a recovery reading on another: recovery would mark it
// interrupted, and the agent's later Begin would find it gone.
func TestQueuedIsNeverSeenRunning(t *testing.T) {
	const queued = 300
	path := filepath.Join(t.TempDir(), "state.db")
	ctx := t.Context()
	writer, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = writer.Close() })
	reader, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reader.Close() })

	done := make(chan error, 1)
	go func() {
		for range queued {
			if _, err := writer.Queue(ctx, Deploy{Trigger: TriggerWebhook}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for reads := 0; ; reads++ {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d reads during %d queues", reads, queued)
			return
		default:
		}
		ds, err := reader.Unfinished(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) > 0 {
			t.Fatalf("deploy %d was seen %s while it was being queued", ds[0].ID, ds[0].Outcome)
		}
	}
}
