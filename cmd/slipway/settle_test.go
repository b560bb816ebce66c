package main_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/ledger"
	"github.com/slipway-dev/slipway/internal/testkit"
)

// dieAfter makes the backend of the Python example exit 3 s after it
// starts: past its health and smoke checks, inside a 5 s settle window.
const dieAfter = `    threading.Thread(target=lambda: (time.sleep(3), print("board: crashing on purpose", flush=True), os._exit(1)), daemon=True).start()
    ThreadingHTTPServer.allow_reuse_address = True`

func TestReleaseThatDiesAfterPassingIsNotSafe(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", func(cfg string) string {
		return strings.Replace(cfg, "  settle: 200ms\n", "  settle: 5s\n", 1)
	})
	good := a.head()
	a.mustDeploy()
	bad := a.edit("dies 3 s after start", "backend/app.py", "    ThreadingHTTPServer.allow_reuse_address = True", dieAfter)
	r := a.slipway("deploy")
	if r.code != 1 || !strings.Contains(r.stderr, "settle") || !strings.Contains(r.stderr, "into the settle window") {
		t.Fatalf("a release that dies inside the settle window: want exit 1 at settle\n%s", r)
	}
	a.assertServing(good)
	if a.safeCommit() != good {
		t.Fatalf("safe = %s, want %s", a.safeCommit(), good[:7])
	}
	d := a.lastDeploy()
	if d.Commit != bad || d.Outcome != "rolled-back" || !d.Bad {
		t.Fatalf("ledger: %+v; want the commit rolled back and marked bad", d)
	}
	// What the window cost, for the note: the settle step's duration.
	for _, s := range a.steps(d.ID) {
		if s.Name == "settle" {
			t.Logf("settle step: %s, %s", s.Duration.Round(time.Millisecond), s.Detail)
		}
	}
}

// steps returns a deploy's steps from the ledger.
func (a *app) steps(id int64) []ledger.Step {
	a.t.Helper()
	db, err := ledger.Open(filepath.Join(a.root, "state.db"))
	if err != nil {
		a.t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	steps, err := db.Steps(context.Background(), id)
	if err != nil {
		a.t.Fatal(err)
	}
	return steps
}

type statusJSON struct {
	Healthy  bool
	Services []struct {
		Name     string
		Running  bool
		PID      int
		Restarts int
		Detail   string
	}
}

func (a *app) status() (statusJSON, result) {
	a.t.Helper()
	r := a.slipway("status", "--json", "--offline")
	var st statusJSON
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		a.t.Fatalf("status --json: %v\n%s", err, r)
	}
	return st, r
}

func (st statusJSON) service(name string) (pid, restarts int, running bool) {
	for _, s := range st.Services {
		if s.Name == name {
			return s.PID, s.Restarts, s.Running
		}
	}
	return 0, 0, false
}

// TestKilledServiceComesBack: with no agent running, a worker killed with
// SIGKILL is restarted by its supervisor, counted in status and in the
// ledger's events. A service that stays down makes status exit 4, and
// `slipway deploy` with nothing new brings it back.
func TestKilledServiceComesBack(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", nil)
	a.mustDeploy()
	st, r := a.status()
	pid, _, running := st.service("worker")
	if r.code != 0 || !running || pid == 0 {
		t.Fatalf("status: %s", r)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "the worker to come back", func() bool {
		st, _ := a.status()
		p, n, ok := st.service("worker")
		return ok && p != pid && n == 1
	})
	if r := a.slipway("status", "--offline"); r.code != 0 || !strings.Contains(r.stdout, "restarted 1 time(s)") {
		t.Fatalf("status after the restart: %s", r)
	}
	if r := a.slipway("history", "--events"); r.code != 0 || !strings.Contains(r.stdout, "worker") || !strings.Contains(r.stdout, "killed by signal killed") {
		t.Fatalf("history --events: %s", r)
	}

	// Down for good: the worker's whole group, supervisor included.
	a.killGroup("worker")
	testkit.WaitFor(t, 10*time.Second, "the worker to be down", func() bool {
		st, _ := a.status()
		_, _, ok := st.service("worker")
		return !ok
	})
	if r := a.slipway("status", "--offline"); r.code != 4 || !strings.Contains(r.stdout, "worker     DOWN") {
		t.Fatalf("status with the worker down: want exit 4 naming it\n%s", r)
	}
	r = a.mustDeploy()
	if !strings.Contains(r.stdout, "was down") || !strings.Contains(r.stdout, "restarted it, healthy") {
		t.Fatalf("deploy with nothing new and the worker down: want it restarted\n%s", r)
	}
	if st, r := a.status(); r.code != 0 || !st.Healthy {
		t.Fatalf("status after the repair: %s", r)
	}
}

// killGroup kills a service's whole process group, its supervisor
// included, with SIGKILL: the service is down for good.
func (a *app) killGroup(service string) {
	a.t.Helper()
	b, err := os.ReadFile(filepath.Join(a.root, "run", service+".pid"))
	if err != nil {
		a.t.Fatal(err)
	}
	var rec struct{ PGID int }
	if err := json.Unmarshal(b, &rec); err != nil || rec.PGID <= 0 {
		a.t.Fatalf("pid file of %s: %v %s", service, err, b)
	}
	if err := syscall.Kill(-rec.PGID, syscall.SIGKILL); err != nil {
		a.t.Fatal(err)
	}
}
