package ledger

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// crashChildEnv, when set to a ledger path, turns the test binary into the
// writer that TestCrashMidWrite kills.
const crashChildEnv = "SLIPWAY_LEDGER_CRASH_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		os.Exit(crashChild(path))
	}
	os.Exit(m.Run())
}

// crashChild writes deploys to the ledger at path until it is killed. After
// each call returns (so after its transaction committed) it prints what it
// committed: "start ID", "step ID", "finish ID".
func crashChild(path string) int {
	ctx := context.Background()
	db, err := Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for {
		id, err := db.StartDeploy(ctx, Deploy{Trigger: TriggerPoll, Commit: "c1", Release: "r1", Started: time.Now()})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("start %d\n", id)
		err = db.AddStep(ctx, Step{DeployID: id, Name: "build", Started: time.Now(), Outcome: Succeeded, Detail: strings.Repeat("x", 2000)})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("step %d\n", id)
		if err := db.FinishDeploy(ctx, id, Succeeded, "", false, time.Now()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("finish %d\n", id)
	}
}

// A writer killed with SIGKILL in the middle of its writes, several times
// over on the same file, leaves a ledger that passes integrity_check and
// holds every row the writer was told had been committed.
func TestCrashMidWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	path := filepath.Join(t.TempDir(), "state.db")
	committed := map[string]map[int64]bool{"start": {}, "step": {}, "finish": {}}

	// Each round kills the child at another point of its loop (it prints
	// start, step, finish in turn), some at once, some a moment later while
	// the next write is under way. The next round reopens, and so recovers,
	// whatever the last one left.
	rounds := []struct {
		lines int
		delay time.Duration
	}{
		{1, 0},                      // after the first start
		{50, 0},                     // after a step
		{180, 0},                    // after a finish
		{7, 500 * time.Microsecond}, // shortly after a start
		{32, 2 * time.Millisecond},  // shortly after a step
	}
	for round, r := range rounds {
		lines := runAndKill(t, path, r.lines, r.delay)
		for _, l := range lines {
			verb, n, ok := strings.Cut(l, " ")
			id, err := strconv.ParseInt(n, 10, 64)
			if !ok || err != nil || committed[verb] == nil {
				t.Fatalf("round %d: child printed %q", round, l)
			}
			committed[verb][id] = true
		}
	}

	db := openAt(t, path)
	ctx := t.Context()
	var check string
	if err := db.sql.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&check); err != nil {
		t.Fatal(err)
	}
	if check != "ok" {
		t.Fatalf("integrity_check: %s", check)
	}
	rows, err := db.sql.QueryContext(ctx, "PRAGMA foreign_key_check")
	if err != nil {
		t.Fatal(err)
	}
	if rows.Next() {
		t.Error("foreign_key_check found orphaned steps")
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}

	for id := range committed["start"] {
		d, err := db.Deploy(ctx, id)
		if err != nil {
			t.Errorf("deploy %d was reported committed: %v", id, err)
			continue
		}
		if committed["finish"][id] && (d.Outcome != Succeeded || d.Finished.IsZero()) {
			t.Errorf("deploy %d was reported finished, ledger says %s", id, d.Outcome)
		}
		steps, err := db.Steps(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if committed["step"][id] && len(steps) != 1 {
			t.Errorf("deploy %d: step reported committed, ledger has %d steps", id, len(steps))
		}
	}

	// What the kills cut short is left Running, for recovery to find: at
	// most one deploy per round, each one the child had started.
	unfinished, err := db.Unfinished(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(unfinished) > len(rounds) {
		t.Errorf("%d unfinished deploys after %d kills", len(unfinished), len(rounds))
	}
	for _, d := range unfinished {
		if committed["finish"][d.ID] {
			t.Errorf("deploy %d reported finished but is Running", d.ID)
		}
	}
	t.Logf("%d deploys committed, %d finished, %d left running", len(committed["start"]), len(committed["finish"]), len(unfinished))
}

// runAndKill starts the crash child on path, SIGKILLs it delay after it has
// printed killAfter lines, and returns every line it printed.
func runAndKill(t *testing.T, path string, killAfter int, delay time.Duration) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	lineCh := make(chan string)
	go func() {
		defer close(lineCh)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lineCh <- sc.Text()
		}
	}()

	var lines []string
	timeout := time.After(time.Minute)
	for len(lines) < killAfter {
		select {
		case l, ok := <-lineCh:
			if !ok {
				_ = cmd.Wait()
				t.Fatalf("child exited before it was killed: %s", stderr.String())
			}
			lines = append(lines, l)
		case <-timeout:
			_ = cmd.Process.Kill()
			for range lineCh {
			}
			_ = cmd.Wait()
			t.Fatalf("child printed %d of %d lines in a minute: %s", len(lines), killAfter, stderr.String())
		}
	}
	time.Sleep(delay)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Lines printed before the kill landed are still in the pipe.
	for l := range lineCh {
		lines = append(lines, l)
	}
	err = cmd.Wait()
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v: %s", err, stderr.String())
	}
	return lines
}
