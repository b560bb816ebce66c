package ledger

import (
	"fmt"
	"testing"
	"time"
)

// A fleet's report records every host at once; a host seen again replaces
// what was known of it, and the hosts list by name.
func TestUpsertVMs(t *testing.T) {
	db := openTest(t)
	ctx := t.Context()
	at := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	if err := db.UpsertVMs(ctx, []VM{
		{Name: "web-2", Address: "10.0.0.2", App: "board", CurrentCommit: "c1", SafeCommit: "c1", Version: "v1", Seen: at},
		{Name: "web-1", Address: "10.0.0.1", App: "board", CurrentCommit: "c1", SafeCommit: "c1", Version: "v1", Seen: at},
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.UpsertVM(ctx, VM{Name: "web-2", Address: "10.0.0.9", App: "board", CurrentCommit: "c2", SafeCommit: "c2", Version: "v2", Seen: at.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	vms, err := db.VMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(vms)
	want := fmt.Sprint([]VM{
		{Name: "web-1", Address: "10.0.0.1", App: "board", CurrentCommit: "c1", SafeCommit: "c1", Version: "v1", Seen: at},
		{Name: "web-2", Address: "10.0.0.9", App: "board", CurrentCommit: "c2", SafeCommit: "c2", Version: "v2", Seen: at.Add(time.Hour)},
	})
	if got != want {
		t.Fatalf("VMs =\n%s\nwant\n%s", got, want)
	}
}
