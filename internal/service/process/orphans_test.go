package process

import (
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/service"
)

// A service started by a slipway killed before it wrote the pid file is
// still found, by its markers, and stopped; others are left alone.
func TestStopSweepsOrphanWithoutPidFile(t *testing.T) {
	dir := t.TempDir()
	m := New(dir, dir)
	env := []string{"PATH=/usr/bin:/bin", "SLIPWAY_ROOT=" + dir, "SLIPWAY_APP=board", "SLIPWAY_SERVICE=backend"}
	start := func(env []string) *exec.Cmd {
		cmd := exec.Command("sleep", "60")
		cmd.Env = env
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	orphan := start(env)
	otherRoot := start([]string{"SLIPWAY_ROOT=/elsewhere", "SLIPWAY_APP=board", "SLIPWAY_SERVICE=backend"})
	exited := make(chan struct{})
	go func() { _ = orphan.Wait(); close(exited) }()

	spec := service.Spec{App: "board", Name: "backend", Dir: dir, Env: env, StopTimeout: time.Second}
	if err := m.Stop(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the orphan still runs")
	}
	if err := syscall.Kill(otherRoot.Process.Pid, 0); err != nil {
		t.Fatalf("another root's service was stopped: %v", err)
	}
}
