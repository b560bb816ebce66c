package main_test

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

// slowMigrate is a migrate command that, when the commit has a SLOW file,
// leaves two Python processes behind that would write into the shared data
// 4 s later: one in the command's process group, one in a session of its
// own (setsid). Each writes its pid into data/ first.
const slowMigrate = `if [ -f ../SLOW ]; then
  setsid python3 -c 'import os, time; open("../data/setsid.pid", "w").write(str(os.getpid())); time.sleep(4); open("../data/orphan-setsid", "w").write("x")' &
  python3 -c 'import os, time; open("../data/group.pid", "w").write(str(os.getpid())); time.sleep(4); open("../data/orphan-group", "w").write("x")' &
  sleep 60
fi
exec .venv/bin/python migrate.py
`

func withSlowMigrate(cfg string) string {
	return strings.Replace(cfg, "  run: .venv/bin/python migrate.py\n", "  run: sh slow-migrate.sh\n", 1)
}

func processAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return pid
}

func TestKill9DuringMigrateEndsItsProcesses(t *testing.T) {
	t.Parallel()
	a := newApp(t, "python-api", withSlowMigrate)
	good := a.commit("slow migrate script", map[string]string{"backend/slow-migrate.sh": slowMigrate})
	a.mustDeploy()
	a.commit("slow", map[string]string{"SLOW": "1\n"})

	cmd := exec.Command(slipwayBin, "-c", a.cfgPath, "deploy")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(a.root, "shared", "data")
	waitFor(t, 60*time.Second, "the migration's processes", func() bool {
		_, e1 := os.Stat(filepath.Join(data, "setsid.pid"))
		_, e2 := os.Stat(filepath.Join(data, "group.pid"))
		return e1 == nil && e2 == nil
	})
	time.Sleep(100 * time.Millisecond) // both pid files written whole
	pids := []int{readPID(t, filepath.Join(data, "setsid.pid")), readPID(t, filepath.Join(data, "group.pid"))}
	t.Cleanup(func() {
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	})
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	for _, p := range pids {
		if !processAlive(p) {
			t.Fatalf("pid %d died with slipway: the test would prove nothing", p)
		}
	}

	r := a.slipway("status")
	if !strings.Contains(r.stderr, "recovered deploy") || !strings.Contains(r.stderr, "process(es) left by `sh slow-migrate.sh`") {
		t.Fatalf("status did not end the migration's processes: %s", r)
	}
	// Gone when recovery returns: neither can write into the data later.
	for _, p := range pids {
		if processAlive(p) {
			t.Errorf("pid %d of the killed migration survived recovery", p)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(a.root, "run", "commands")); len(ents) != 0 {
		t.Errorf("command records left: %v", ents)
	}
	assertRecovered(t, a, good)
}
