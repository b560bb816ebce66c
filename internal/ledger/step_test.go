package ledger

import (
	"testing"
	"time"
)

func TestStepsRoundTripInOrder(t *testing.T) {
	db := openTest(t)
	ctx := t.Context()
	ids := seed(t, db, []record{{commit: "c1", outcome: Running}, {commit: "c2", outcome: Running}})

	// Added out of time order on purpose: Steps keeps the order they were added.
	want := []Step{
		{DeployID: ids[0], Name: "lock", Started: t0.Add(2 * time.Second), Duration: 3 * time.Millisecond, Outcome: Succeeded},
		{DeployID: ids[0], Name: "resolve", Started: t0.In(berlin), Duration: 1500*time.Millisecond + 7, Outcome: Succeeded, Detail: "origin/main = c1"},
		{DeployID: ids[0], Name: "build", Started: t0.Add(time.Minute), Duration: 90 * time.Second, Outcome: Failed, Detail: "uv sync: exit 1\nline two"},
		{DeployID: ids[0], Name: "migrate", Started: t0.Add(2 * time.Minute), Outcome: Skipped},
	}
	other := Step{DeployID: ids[1], Name: "lock", Started: t0, Outcome: Succeeded}
	for _, s := range append(want[:2:2], other) {
		if err := db.AddStep(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range want[2:] {
		if err := db.AddStep(ctx, s); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name   string
		deploy int64
		want   []Step
	}{
		{"first deploy", ids[0], want},
		{"second deploy", ids[1], []Step{other}},
		{"no such deploy", ids[1] + 100, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := db.Steps(ctx, tc.deploy)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d steps, want %d: %+v", len(got), len(tc.want), got)
			}
			for i := range got {
				g, w := got[i], tc.want[i]
				if !g.Started.Equal(w.Started) {
					t.Errorf("step %d started %v, want %v", i, g.Started, w.Started)
				}
				g.Started, w.Started = time.Time{}, time.Time{}
				if g != w {
					t.Errorf("step %d:\n got %+v\nwant %+v", i, g, w)
				}
			}
		})
	}
}
