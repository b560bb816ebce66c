package ledger

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

var (
	t0     = time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC)
	berlin = time.FixedZone("CET", 3600)
)

func TestDeployRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		start    Deploy
		update   Deploy // ID filled in by the test
		outcome  Outcome
		errMsg   string
		bad      bool
		finished time.Time
	}{
		{
			name:     "manual deploy succeeds",
			start:    Deploy{Trigger: TriggerManual, Actor: "alice", Started: t0},
			update:   Deploy{Commit: "c1", PreviousCommit: "c0", Release: "20250314T150926Z-c1"},
			outcome:  Succeeded,
			finished: t0.Add(42 * time.Second),
		},
		{
			name:     "webhook deploy fails on a bad commit",
			start:    Deploy{Trigger: TriggerWebhook, Actor: "github", Commit: "c2", PreviousCommit: "c1", Started: t0},
			update:   Deploy{Release: "r2"},
			outcome:  RolledBack,
			errMsg:   "health: GET /health: 502 after 60s",
			bad:      true,
			finished: t0.Add(time.Minute),
		},
		{
			name:     "rollback in another zone keeps the instant to the nanosecond",
			start:    Deploy{Kind: KindRollback, Trigger: TriggerRollback, Commit: "c0", Release: "r0", Started: t0.In(berlin).Add(1)},
			outcome:  Succeeded,
			finished: t0.In(berlin).Add(time.Second + 999999999),
		},
		{
			name:     "interrupted by a crash",
			start:    Deploy{Trigger: TriggerPoll, Started: t0},
			outcome:  Interrupted,
			errMsg:   "slipway stopped during build",
			finished: t0.Add(time.Hour),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := openTest(t)
			ctx := t.Context()

			id, err := db.StartDeploy(ctx, tc.start)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.start
			want.ID = id
			want.Outcome = Running
			if want.Kind == "" {
				want.Kind = KindDeploy
			}
			assertDeploy(t, db, want)

			tc.update.ID = id
			if err := db.UpdateDeploy(ctx, tc.update); err != nil {
				t.Fatal(err)
			}
			for _, f := range []struct {
				dst *string
				src string
			}{
				{&want.Commit, tc.update.Commit},
				{&want.PreviousCommit, tc.update.PreviousCommit},
				{&want.Release, tc.update.Release},
			} {
				if f.src != "" {
					*f.dst = f.src
				}
			}
			assertDeploy(t, db, want)

			if err := db.FinishDeploy(ctx, id, tc.outcome, tc.errMsg, tc.bad, tc.finished); err != nil {
				t.Fatal(err)
			}
			want.Outcome, want.Error, want.Bad, want.Finished = tc.outcome, tc.errMsg, tc.bad, tc.finished
			got := assertDeploy(t, db, want)
			if got.Started.Location() != time.UTC || got.Finished.Location() != time.UTC {
				t.Errorf("times come back in %v and %v, want UTC", got.Started.Location(), got.Finished.Location())
			}
			if d := got.Duration(); d != tc.finished.Sub(tc.start.Started) {
				t.Errorf("Duration = %v, want %v", d, tc.finished.Sub(tc.start.Started))
			}
		})
	}
}

// assertDeploy checks that the ledger holds want, times compared as instants.
func assertDeploy(t *testing.T, db *DB, want Deploy) Deploy {
	t.Helper()
	got, err := db.Deploy(t.Context(), want.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !sameDeploy(got, want) {
		t.Fatalf("deploy %d:\n got %+v\nwant %+v", want.ID, got, want)
	}
	return got
}

func sameDeploy(a, b Deploy) bool {
	if !a.Started.Equal(b.Started) || !a.Finished.Equal(b.Finished) {
		return false
	}
	a.Started, a.Finished, b.Started, b.Finished = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	return a == b
}

func TestStartDeployDefaults(t *testing.T) {
	db := openTest(t)
	before := time.Now()
	id, err := db.StartDeploy(t.Context(), Deploy{ID: 99, Trigger: TriggerAPI, Outcome: Succeeded, Bad: true, Error: "x"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := db.Deploy(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID == 99 || got.Kind != KindDeploy || got.Outcome != Running || got.Bad || got.Error != "" {
		t.Errorf("StartDeploy kept caller's ID/Outcome/Bad/Error or lost the default kind: %+v", got)
	}
	if got.Started.Before(before.Add(-time.Second)) || got.Started.After(time.Now()) {
		t.Errorf("zero Started became %v, want about now", got.Started)
	}
	if !got.Finished.IsZero() || got.Duration() != 0 {
		t.Errorf("running deploy has Finished %v, Duration %v", got.Finished, got.Duration())
	}
}

func TestInvalidArguments(t *testing.T) {
	db := openTest(t)
	ctx := t.Context()
	id, err := db.StartDeploy(ctx, Deploy{Trigger: TriggerManual})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() error
	}{
		{"unknown kind", func() error { _, err := db.StartDeploy(ctx, Deploy{Kind: "redeploy"}); return err }},
		{"finish as running", func() error { return db.FinishDeploy(ctx, id, Running, "", false, t0) }},
		{"finish with unknown outcome", func() error { return db.FinishDeploy(ctx, id, "ok", "", false, t0) }},
		{"finish without a time", func() error { return db.FinishDeploy(ctx, id, Succeeded, "", false, time.Time{}) }},
		{"step with unknown outcome", func() error { return db.AddStep(ctx, Step{DeployID: id, Name: "build", Outcome: "done"}) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); err == nil {
				t.Fatal("succeeded, want an error")
			}
		})
	}
	// None of them changed the deploy.
	if d, err := db.Deploy(ctx, id); err != nil || d.Outcome != Running {
		t.Fatalf("deploy after rejected calls: %+v, %v", d, err)
	}
}

func TestNotFound(t *testing.T) {
	db := openTest(t)
	ctx := t.Context()
	tests := []struct {
		name string
		call func() error
	}{
		{"Deploy", func() error { _, err := db.Deploy(ctx, 7); return err }},
		{"Last", func() error { _, err := db.Last(ctx); return err }},
		{"ReleaseOf", func() error { _, err := db.ReleaseOf(ctx, "c1"); return err }},
		{"UpdateDeploy", func() error { return db.UpdateDeploy(ctx, Deploy{ID: 7, Commit: "c1"}) }},
		{"FinishDeploy", func() error { return db.FinishDeploy(ctx, 7, Failed, "", false, t0) }},
		{"AddStep", func() error { return db.AddStep(ctx, Step{DeployID: 7, Name: "lock", Outcome: Succeeded}) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("err = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestUpdateDeployKeepsWhatIsKnown(t *testing.T) {
	db := openTest(t)
	ctx := t.Context()
	id, err := db.StartDeploy(ctx, Deploy{Trigger: TriggerManual, Started: t0})
	if err != nil {
		t.Fatal(err)
	}
	steps := []Deploy{
		{ID: id, Commit: "c1", PreviousCommit: "c0"}, // after resolve
		{ID: id, Release: "r1"},                      // after prepare
	}
	for _, u := range steps {
		if err := db.UpdateDeploy(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	got, err := db.Deploy(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Commit != "c1" || got.PreviousCommit != "c0" || got.Release != "r1" {
		t.Fatalf("after two partial updates: commit %q previous %q release %q", got.Commit, got.PreviousCommit, got.Release)
	}
}

// record is one deploy of a seeded history; an outcome of Running leaves it
// unfinished.
type record struct {
	commit  string
	outcome Outcome
	bad     bool
	release string
	kind    string
}

func seed(t *testing.T, db *DB, rs []record) []int64 {
	t.Helper()
	ctx := t.Context()
	var ids []int64
	for i, r := range rs {
		started := t0.Add(time.Duration(i) * time.Minute)
		id, err := db.StartDeploy(ctx, Deploy{Trigger: TriggerManual, Kind: r.kind, Commit: r.commit, Release: r.release, Started: started})
		if err != nil {
			t.Fatal(err)
		}
		if r.outcome != Running {
			if err := db.FinishDeploy(ctx, id, r.outcome, "", r.bad, started.Add(time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		ids = append(ids, id)
	}
	return ids
}

func TestIsBad(t *testing.T) {
	tests := []struct {
		name    string
		history []record
		commit  string
		want    bool
	}{
		{"never deployed", nil, "c1", false},
		{"succeeded", []record{{commit: "c1", outcome: Succeeded}}, "c1", false},
		{"failed, not its fault", []record{{commit: "c1", outcome: Failed}}, "c1", false},
		{"failed bad", []record{{commit: "c1", outcome: RolledBack, bad: true}}, "c1", true},
		{"bad then a later success", []record{
			{commit: "c1", outcome: Failed, bad: true},
			{commit: "c1", outcome: Succeeded},
		}, "c1", false},
		{"success then bad", []record{
			{commit: "c1", outcome: Succeeded},
			{commit: "c1", outcome: RolledBack, bad: true},
		}, "c1", true},
		{"bad, success, bad again", []record{
			{commit: "c1", outcome: Failed, bad: true},
			{commit: "c1", outcome: Succeeded},
			{commit: "c1", outcome: Failed, bad: true},
		}, "c1", true},
		{"bad then a later deploy that was only interrupted", []record{
			{commit: "c1", outcome: Failed, bad: true},
			{commit: "c1", outcome: Interrupted},
		}, "c1", true},
		{"bad then still running", []record{
			{commit: "c1", outcome: Failed, bad: true},
			{commit: "c1", outcome: Running},
		}, "c1", true},
		{"another commit is bad", []record{
			{commit: "c2", outcome: RolledBack, bad: true},
			{commit: "c1", outcome: Succeeded},
		}, "c1", false},
		{"another commit's success does not clear it", []record{
			{commit: "c1", outcome: RolledBack, bad: true},
			{commit: "c2", outcome: Succeeded},
		}, "c1", true},
		{"a successful rollback to it clears it", []record{
			{commit: "c1", outcome: Failed, bad: true},
			{commit: "c1", outcome: Succeeded, kind: KindRollback},
		}, "c1", false},
		{"a snapshot restore while it is live does not clear it", []record{
			{commit: "c1", outcome: Failed, bad: true},
			{commit: "c1", outcome: Succeeded, kind: KindRestore},
		}, "c1", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := openTest(t)
			seed(t, db, tc.history)
			got, err := db.IsBad(t.Context(), tc.commit)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("IsBad(%s) = %v, want %v", tc.commit, got, tc.want)
			}
		})
	}
}

func TestDeploysNewestFirst(t *testing.T) {
	db := openTest(t)
	ctx := t.Context()
	ids := seed(t, db, []record{
		{commit: "c1", outcome: Succeeded},
		{commit: "c2", outcome: Failed},
		{commit: "c3", outcome: Succeeded},
		{commit: "c4", outcome: Running},
	})
	tests := []struct {
		limit int
		want  []int64
	}{
		{0, []int64{ids[3], ids[2], ids[1], ids[0]}},
		{-1, []int64{ids[3], ids[2], ids[1], ids[0]}},
		{2, []int64{ids[3], ids[2]}},
		{10, []int64{ids[3], ids[2], ids[1], ids[0]}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("limit %d", tc.limit), func(t *testing.T) {
			ds, err := db.Deploys(ctx, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if got := idsOf(ds); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("ids = %v, want %v", got, tc.want)
			}
		})
	}
	last, err := db.Last(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if last.ID != ids[3] || last.Commit != "c4" {
		t.Fatalf("Last = %+v, want deploy %d of c4", last, ids[3])
	}
}

func TestUnfinished(t *testing.T) {
	db := openTest(t)
	ctx := t.Context()
	ids := seed(t, db, []record{
		{commit: "c1", outcome: Running},
		{commit: "c2", outcome: Succeeded},
		{commit: "c3", outcome: Running},
		{commit: "c4", outcome: Interrupted},
	})
	ds, err := db.Unfinished(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := idsOf(ds), []int64{ids[0], ids[2]}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Unfinished = %v, want %v", got, want)
	}

	// Recovery marks them interrupted; then nothing is left unfinished.
	for _, d := range ds {
		if err := db.FinishDeploy(ctx, d.ID, Interrupted, "interrupted by a crash", false, t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	ds, err = db.Unfinished(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 0 {
		t.Fatalf("after recovery, Unfinished = %v", idsOf(ds))
	}
}

func TestLastGoodReleases(t *testing.T) {
	db := openTest(t)
	ids := seed(t, db, []record{
		{commit: "c1", outcome: Succeeded, release: "r1"},
		{commit: "c2", outcome: Succeeded, release: "r2"},
		{commit: "c3", outcome: RolledBack, bad: true, release: "r3"},
		{commit: "c1", outcome: Succeeded, release: "r1", kind: KindRollback},
		{commit: "c4", outcome: Failed, release: ""},
		{commit: "c5", outcome: Succeeded, release: "r5"},
		{commit: "c6", outcome: Running, release: "r6"},
		{commit: "c3", outcome: Succeeded, release: "r3", kind: KindRestore}, // not a release that passed
	})
	tests := []struct {
		limit int
		want  []int64
	}{
		{0, []int64{ids[5], ids[3], ids[1]}}, // r5, r1 (by its rollback), r2
		{2, []int64{ids[5], ids[3]}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("limit %d", tc.limit), func(t *testing.T) {
			ds, err := db.LastGoodReleases(t.Context(), tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if got := idsOf(ds); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("ids = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestReleaseOf(t *testing.T) {
	db := openTest(t)
	seed(t, db, []record{
		{commit: "c1", outcome: Succeeded, release: "r1a"},
		{commit: "c1", outcome: Succeeded, release: "r1b"},
		{commit: "c1", outcome: RolledBack, bad: true, release: "r1c"},
		{commit: "c2", outcome: Failed, release: "r2"},
	})
	tests := []struct {
		commit  string
		want    string
		wantErr error
	}{
		{"c1", "r1b", nil},
		{"c2", "", ErrNotFound},
		{"c9", "", ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.commit, func(t *testing.T) {
			got, err := db.ReleaseOf(t.Context(), tc.commit)
			if !errors.Is(err, tc.wantErr) || got != tc.want {
				t.Fatalf("ReleaseOf(%s) = %q, %v; want %q, %v", tc.commit, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func idsOf(ds []Deploy) []int64 {
	ids := make([]int64, 0, len(ds))
	for _, d := range ds {
		ids = append(ids, d.ID)
	}
	return ids
}

func BenchmarkStartFinish(b *testing.B) {
	db := openTest(b)
	ctx := context.Background()
	for b.Loop() {
		id, err := db.StartDeploy(ctx, Deploy{Trigger: TriggerManual, Commit: "c1"})
		if err != nil {
			b.Fatal(err)
		}
		if err := db.FinishDeploy(ctx, id, Succeeded, "", false, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}
