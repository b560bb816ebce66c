package ledger

import (
	"testing"
	"time"
)

func TestEvents(t *testing.T) {
	db := openTest(t)
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for i, svc := range []string{"web", "worker", "web"} {
		if _, err := db.AddEvent(t.Context(), Event{Time: t0.Add(time.Duration(i) * time.Second), Kind: EventRestart, Service: svc, Detail: "exited"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.AddEvent(t.Context(), Event{}); err == nil {
		t.Error("an event without a kind was added")
	}
	es, err := db.Events(t.Context(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 || es[0].Service != "web" || es[1].Service != "worker" || !es[0].Time.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("Events(2) = %+v, want the newest two, newest first", es)
	}
	if all, _ := db.Events(t.Context(), 0); len(all) != 3 {
		t.Fatalf("Events(0) = %d events, want 3", len(all))
	}
}
