//go:build e2e

package e2e

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/testkit"
)

// commandProcesses lists the VM's processes that carry a command's mark
// (SLIPWAY_COMMAND_ID): after a recovery there must be none.
func commandProcesses(t *testing.T, vm *VM) string {
	t.Helper()
	return strings.TrimSpace(vm.MustSSH(t, `for f in /proc/[0-9]*/environ; do tr '\0' '\n' < "$f" 2>/dev/null | grep -q '^SLIPWAY_COMMAND_ID=' && echo "${f%/environ}: $(tr '\0' ' ' < "${f%/environ}/cmdline")"; done; true`))
}

// TestCrashUnderSystemd is a subset of cmd/slipway's crash-point table on
// a real systemd VM, with slipway run from an operator's ssh session and
// killed with SIGKILL: at step boundaries of a deploy (the failpoints of
// a binary built with -tags failpoints), in the middle of a migration that
// leaves processes behind (one of them setsid), in a rollback and in a
// snapshot restore. After each `slipway status` recovers: nothing of the
// killed command runs, every unit is active on the safe commit, the lock
// is free and the ledger says interrupted.
func TestCrashUnderSystemd(t *testing.T) {
	t.Parallel()
	vm := Boot(t, "crash")
	s := newSite(t, vm, pythonAPI, func(cfg string) string {
		cfg = strings.Replace(cfg, "  run: .venv/bin/python migrate.py\n", "  run: sh slow-migrate.sh\n", 1)
		return cfg + "\nsnapshot:\n  data: [data]\n"
	})
	s.commit("slow migrate", map[string]string{"backend/slow-migrate.sh": readFile(t, filepath.Join("..", "testdata", "crash", "slow-migrate.sh"))})
	s.push()
	s.bootstrap()
	s.mustSlipway("deploy")
	// The CLI goes through a running agent; these kills are the CLI's own.
	vm.MustSSH(t, "systemctl stop slipway-board-agent.service")
	good := s.head()
	s.waitDeployed(good, time.Minute)

	recovered := func(what, safe string) {
		t.Helper()
		out, code := s.slipway("status")
		if code != 0 {
			t.Fatalf("%s: status after recovery: exit %d\n%s", what, code, out)
		}
		if p := commandProcesses(t, vm); p != "" {
			t.Fatalf("%s: processes of the killed command survived recovery:\n%s", what, p)
		}
		s.assertServing(safe)
		s.assertActive()
		if got := s.safeCommit(); got != safe {
			t.Fatalf("%s: safe commit %s, want %s", what, got, safe)
		}
		if out := s.mustSlipway("lock", "status"); !strings.Contains(out, "free") {
			t.Fatalf("%s: stale lock: %s", what, out)
		}
		if hist := s.mustSlipway("history", "-n", "1"); !strings.Contains(hist, "interrupted") {
			t.Fatalf("%s: the last ledger row is not interrupted:\n%s", what, hist)
		}
	}

	for i, point := range []string{"after:migrate", "after:restart", "after:health", "after:settle"} {
		s.commit(point, map[string]string{"README": fmt.Sprintf("change %d\n", i)})
		s.push()
		vm.MustSSH(t, "SLIPWAY_FAILPOINT="+point+" slipway deploy >/dev/null 2>&1; true")
		recovered(point, good)
	}

	// Killed mid-migration: the processes it left, even the setsid one,
	// are gone once recovery returns.
	s.commit("slow", map[string]string{"SLOW": "1\n"})
	s.push()
	data := "/opt/board/shared/data"
	pid := strings.TrimSpace(vm.MustSSH(t, "rm -f "+data+"/*.pid; slipway deploy >/dev/null 2>&1 & echo $!"))
	testkit.WaitFor(t, time.Minute, "the migration's processes", func() bool {
		_, code := vm.Run(t, "test", "-s", data+"/setsid.pid", "-a", "-s", data+"/group.pid")
		return code == 0
	})
	time.Sleep(100 * time.Millisecond)
	orphans := strings.Fields(vm.MustSSH(t, "cat "+data+"/setsid.pid; echo; cat "+data+"/group.pid"))
	vm.MustSSH(t, "kill -9 "+pid)
	for _, o := range orphans {
		if _, code := vm.Run(t, "kill", "-0", o); code != 0 {
			t.Fatalf("orphan %s died with slipway: the test would prove nothing", o)
		}
	}
	recovered("mid-migration", good)
	for _, o := range orphans {
		if _, err := strconv.Atoi(o); err != nil {
			t.Fatalf("pid %q", o)
		}
		if _, code := vm.Run(t, "kill", "-0", o); code == 0 {
			t.Fatalf("process %s of the killed migration survived recovery", o)
		}
	}
	s.commit("fast again", map[string]string{"SLOW": ""})
	s.push()

	// An interrupted rollback ends on its target.
	next := s.commit("next", map[string]string{"README": "next\n"})
	s.push()
	s.mustSlipway("deploy")
	s.waitDeployed(next, time.Minute)
	vm.MustSSH(t, "SLIPWAY_FAILPOINT=after:restart slipway rollback >/dev/null 2>&1; true")
	recovered("rollback after:restart", good)

	// An interrupted snapshot restore leaves the services running.
	out := s.mustSlipway("snapshot", "create", "--label", "crash")
	id := strings.Fields(out)[0]
	vm.MustSSH(t, "SLIPWAY_FAILPOINT=restore:extracting slipway snapshot restore "+id+" --yes >/dev/null 2>&1; true")
	recovered("snapshot restore mid-extraction", good)
}
