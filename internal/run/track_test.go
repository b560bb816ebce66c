package run

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func readPIDs(t *testing.T, files ...string) []int {
	t.Helper()
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		pids = append(pids, pid)
	}
	return pids
}

// leaver is a command that leaves two processes behind: one in its group,
// one in a session of its own (setsid), each writing its pid to a file.
func leaver(dir string) []string {
	return []string{"sh", "-c", `setsid sleep 60 >/dev/null 2>&1 </dev/null & echo $! > ` + dir + `/setsid.pid
sleep 60 >/dev/null 2>&1 </dev/null & echo $! > ` + dir + `/group.pid
` + `[ -n "$HOLD" ] && exec sleep 60
exit 0`}
}

func TestTrackedCommandLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	tr := &Tracker{Dir: filepath.Join(dir, "commands")}
	if err := Run(t.Context(), Cmd{Argv: leaver(dir), Track: tr}); err != nil {
		t.Fatal(err)
	}
	// Gone by the time Run returns, not some time later.
	for _, pid := range readPIDs(t, dir+"/setsid.pid", dir+"/group.pid") {
		if alive(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("pid %d outlived its command", pid)
		}
	}
	if ents, _ := os.ReadDir(tr.Dir); len(ents) != 0 {
		t.Errorf("records left: %v", ents)
	}
}

func TestUntrackedCommandIsNotSwept(t *testing.T) {
	// The contrast: without a tracker the setsid child survives, which is
	// what Track is for.
	dir := t.TempDir()
	if err := Run(t.Context(), Cmd{Argv: leaver(dir)}); err != nil {
		t.Fatal(err)
	}
	pids := readPIDs(t, dir+"/setsid.pid", dir+"/group.pid")
	t.Cleanup(func() {
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	})
	if !alive(pids[0]) {
		t.Fatal("the setsid child of an untracked command is gone: this test cannot tell tracking apart")
	}
}

// TestHelperTrackedRun is not a test: the sweep test runs the test binary
// as a slipway that runs a tracked command, and kills it.
func TestHelperTrackedRun(t *testing.T) {
	dir := os.Getenv("TRACK_HELPER_DIR")
	if dir == "" {
		t.Skip("helper process only")
	}
	env := append(BaseEnv(), "HOLD=1")
	_ = Run(t.Context(), Cmd{Argv: leaver(dir), Env: env, Track: &Tracker{Dir: filepath.Join(dir, "commands")}})
	os.Exit(0)
}

func TestSweepEndsWhatAKilledRunLeft(t *testing.T) {
	dir := t.TempDir()
	helper := exec.Command(os.Args[0], "-test.run=^TestHelperTrackedRun$")
	helper.Env = append(os.Environ(), "TRACK_HELPER_DIR="+dir)
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, e1 := os.Stat(dir + "/setsid.pid")
		_, e2 := os.Stat(dir + "/group.pid")
		if e1 == nil && e2 == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the helper's command did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // both pid files written whole
	pids := readPIDs(t, dir+"/setsid.pid", dir+"/group.pid")
	t.Cleanup(func() {
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	})
	// A bystander with another command's mark must survive the sweep.
	bystander := exec.Command("sleep", "60")
	bystander.Env = append(BaseEnv(), TrackEnv+"=0123456789abcdef01234567")
	if err := bystander.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bystander.Process.Kill(); _ = bystander.Wait() })

	_ = helper.Process.Signal(syscall.SIGKILL)
	_ = helper.Wait()
	for _, pid := range pids {
		if !alive(pid) {
			t.Fatalf("pid %d died with the killed slipway: nothing left to sweep, the test proves nothing", pid)
		}
	}

	tr := &Tracker{Dir: filepath.Join(dir, "commands")}
	lines, err := tr.Sweep()
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "sleep 60") || !strings.HasPrefix(lines[0], "ended ") {
		t.Errorf("Sweep said %q; want one line naming the command", lines)
	}
	for _, pid := range pids {
		waitGone(t, pid)
	}
	if !alive(bystander.Process.Pid) {
		t.Error("the sweep killed a process of another command")
	}
	if ents, _ := os.ReadDir(tr.Dir); len(ents) != 0 {
		t.Errorf("records left: %v", ents)
	}
	if lines, err := tr.Sweep(); err != nil || len(lines) != 0 {
		t.Errorf("a second sweep = %q, %v; want nothing", lines, err)
	}
}

func TestSweepOfNothing(t *testing.T) {
	tr := &Tracker{Dir: filepath.Join(t.TempDir(), "absent")}
	if lines, err := tr.Sweep(); err != nil || lines != nil {
		t.Errorf("Sweep = %q, %v", lines, err)
	}
}

// BenchmarkTracked is what tracking adds to a command: the record, and the
// look through /proc for what it left once it exits.
func BenchmarkTracked(b *testing.B) {
	tr := &Tracker{Dir: filepath.Join(b.TempDir(), "commands")}
	for _, bc := range []struct {
		name  string
		track *Tracker
	}{{"untracked", nil}, {"tracked", tr}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if err := Run(b.Context(), Cmd{Argv: []string{"true"}, Track: bc.track}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
