package process

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/ledger"
	"github.com/slipway-dev/slipway/internal/run"
	"github.com/slipway-dev/slipway/internal/service"
	"github.com/slipway-dev/slipway/internal/service/procfs"
	"github.com/slipway-dev/slipway/internal/testkit"
)

// The test binary doubles as a service and as a short-lived slipway CLI,
// chosen by SLIPWAY_TEST_HELPER.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "supervise" {
		// The manager's supervisor is this executable's `supervise`.
		os.Exit(Supervise(os.Args[2:]))
	}
	switch os.Getenv("SLIPWAY_TEST_HELPER") {
	case "printenv":
		for _, kv := range os.Environ() {
			fmt.Println(kv)
		}
		fmt.Println("END")
		time.Sleep(time.Minute)
		os.Exit(0)
	case "start":
		mgr := New(os.Getenv("HELPER_RUN_DIR"), os.Getenv("HELPER_LOG_DIR"))
		err := mgr.Start(context.Background(), service.Spec{
			Name: "detached", Dir: os.Getenv("HELPER_DIR"), Command: "sleep 60", Env: []string{"PATH=/usr/bin:/bin"},
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type fixture struct {
	t                   *testing.T
	m                   *Manager
	runDir, logDir, dir string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	root := t.TempDir()
	f := &fixture{
		t:      t,
		runDir: filepath.Join(root, "run"),
		logDir: filepath.Join(root, "logs"),
		dir:    filepath.Join(root, "release"),
	}
	if err := os.MkdirAll(f.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f.m = New(f.runDir, f.logDir)
	return f
}

func (f *fixture) spec(name, command string) service.Spec {
	return service.Spec{
		App: "test", Name: name, Dir: f.dir, Command: command,
		Env:         []string{"PATH=/usr/bin:/bin"},
		StopTimeout: 5 * time.Second,
	}
}

// ctx bounds one operation of a test.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// start starts s and makes sure it is stopped when the test ends.
func (f *fixture) start(s service.Spec) service.State {
	f.t.Helper()
	f.t.Cleanup(func() {
		if err := New(f.runDir, f.logDir).Stop(context.Background(), s); err != nil {
			f.t.Errorf("cleanup: %v", err)
		}
	})
	if err := f.m.Start(ctx(f.t), s); err != nil {
		f.t.Fatalf("Start: %v", err)
	}
	st, err := f.m.Status(ctx(f.t), s)
	if err != nil {
		f.t.Fatalf("Status: %v", err)
	}
	if !st.Running || st.PID <= 0 {
		f.t.Fatalf("Status after Start = %+v, want running", st)
	}
	return st
}

func (f *fixture) pidFileExists(name string) bool {
	_, err := os.Stat(filepath.Join(f.runDir, name+".pid"))
	return err == nil
}

// alive reports whether pid is a process that has not exited.
func alive(pid int) bool {
	st, err := procfs.ReadStat(pid)
	return err == nil && !st.Gone()
}

// waitLog waits until the service's log holds want and returns the log.
func (f *fixture) waitLog(s service.Spec, want string) string {
	f.t.Helper()
	var log string
	testkit.WaitFor(f.t, 10*time.Second, fmt.Sprintf("%q in the log of %s", want, s.Name), func() bool {
		var err error
		log, err = f.m.Logs(f.t.Context(), s, 1000)
		if err != nil {
			f.t.Fatal(err)
		}
		return strings.Contains(log, want)
	})
	return log
}

var childRE = regexp.MustCompile(`child=(\d+)`)

func childPID(t *testing.T, log string) int {
	t.Helper()
	m := childRE.FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("no child=PID in log %q", log)
	}
	pid, _ := strconv.Atoi(m[1])
	return pid
}

// python returns the real python3 executable (not a pyenv shim, which
// needs more environment than a service gets).
func python(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		t.Skipf("python3 not available: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func TestHTTPServerStartStop(t *testing.T) {
	py := python(t)
	f := newFixture(t)
	port := testkit.FreePort(t)
	s := f.spec("backend", fmt.Sprintf("python3 -m http.server %d --bind 127.0.0.1", port))
	s.Env = []string{"PATH=" + filepath.Dir(py) + ":/usr/bin:/bin"}
	s.Port = port
	st := f.start(s)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	testkit.WaitFor(t, 10*time.Second, "the server to listen", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	})
	owner, cmdline, err := service.PortOwner(port)
	if err != nil || owner != st.PID || !strings.Contains(cmdline, "-m http.server") {
		t.Errorf("PortOwner(%d) = %d, %q, %v; want %d running http.server", port, owner, cmdline, err, st.PID)
	}

	t.Run("starting it again is refused", func(t *testing.T) {
		err := f.m.Start(ctx(t), s)
		if !errors.Is(err, service.ErrAlreadyRunning) {
			t.Fatalf("second Start = %v, want ErrAlreadyRunning", err)
		}
		if errors.Is(err, service.ErrPortHeld) {
			t.Errorf("its own port reported as held by a foreign process: %v", err)
		}
		if now, _ := f.m.Status(ctx(t), s); now.PID != st.PID || !now.Running {
			t.Errorf("Status after refused Start = %+v, want pid %d still running", now, st.PID)
		}
	})

	if err := f.m.Stop(ctx(t), s); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if alive(st.PID) {
		t.Errorf("pid %d still alive after Stop", st.PID)
	}
	if owner, cmdline, err := service.PortOwner(port); owner != 0 || err != nil {
		t.Errorf("port %d after Stop: held by %d (%s), %v", port, owner, cmdline, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Errorf("port not free after Stop: %v", err)
	} else {
		_ = ln.Close()
	}
	if f.pidFileExists("backend") {
		t.Error("pid file left after Stop")
	}
	if now, err := f.m.Status(ctx(t), s); err != nil || now.Running {
		t.Errorf("Status after Stop = %+v, %v", now, err)
	}
	if err := f.m.Stop(ctx(t), s); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestStopKillsWhenTermIsIgnored(t *testing.T) {
	f := newFixture(t)
	s := f.spec("stubborn", `trap "" TERM; echo ready; sleep 60`)
	s.StopTimeout = 300 * time.Millisecond
	st := f.start(s)
	f.waitLog(s, "ready")
	ps, err := procfs.ReadStat(st.PID)
	if err != nil {
		t.Fatal(err)
	}
	group, err := procfs.Group(ps.PGID)
	if err != nil || len(group) < 3 {
		t.Fatalf("group of %d = %v, %v; want the supervisor, the shell and sleep", ps.PGID, group, err)
	}
	begin := time.Now()
	if err := f.m.Stop(ctx(t), s); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	took := time.Since(begin)
	if took < s.StopTimeout || took > s.StopTimeout+3*time.Second {
		t.Errorf("Stop took %s; want SIGKILL soon after the %s stop timeout", took, s.StopTimeout)
	}
	for _, p := range group {
		if alive(p.PID) {
			t.Errorf("pid %d of the group survived Stop", p.PID)
		}
	}
}

func TestStopEndsTheWholeGroup(t *testing.T) {
	f := newFixture(t)
	s := f.spec("parent", "sleep 60 & echo child=$!; wait")
	st := f.start(s)
	child := childPID(t, f.waitLog(s, "child="))
	if !alive(child) {
		t.Fatalf("child %d not running", child)
	}
	if err := f.m.Stop(ctx(t), s); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	for _, pid := range []int{st.PID, child} {
		if alive(pid) {
			t.Errorf("pid %d survived Stop", pid)
		}
	}
}

func TestLeftoversOfAKilledSupervisor(t *testing.T) {
	f := newFixture(t)
	s := f.spec("orphans", "sleep 60 & echo child=$!; wait")
	st := f.start(s)
	child := childPID(t, f.waitLog(s, "child="))
	ps, err := procfs.ReadStat(st.PID)
	if err != nil {
		t.Fatal(err)
	}
	supervisor := ps.PGID
	if err := syscall.Kill(supervisor, syscall.SIGKILL); err != nil { // the supervisor only
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "the supervisor to die", func() bool { return !alive(supervisor) })

	now, err := f.m.Status(ctx(t), s)
	if err != nil || now.Running || !strings.Contains(now.Detail, "remain") || !strings.Contains(now.Detail, "supervisor") {
		t.Errorf("Status = %+v, %v; want not running, naming the supervisor, with leftovers named", now, err)
	}
	if err := f.m.Start(ctx(t), s); !errors.Is(err, service.ErrAlreadyRunning) {
		t.Errorf("Start with leftovers = %v, want ErrAlreadyRunning", err)
	}
	if err := f.m.Stop(ctx(t), s); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	for _, pid := range []int{st.PID, child} {
		if alive(pid) {
			t.Errorf("leftover %d survived Stop", pid)
		}
	}
}

// A service that dies is brought back by its supervisor, with a growing
// backoff, counted in Status and recorded in the ledger; one that exits
// cleanly is left alone, as systemd's Restart=on-failure does.
func TestKilledServiceIsRestarted(t *testing.T) {
	f := newFixture(t)
	f.m.Ledger = filepath.Join(t.TempDir(), "state.db")
	s := f.spec("worker", "echo started; exec sleep 60")
	st := f.start(s)
	for i := 1; i <= 2; i++ {
		if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		prev := st.PID
		testkit.WaitFor(t, 10*time.Second, fmt.Sprintf("restart %d", i), func() bool {
			var err error
			st, err = f.m.Status(ctx(t), s)
			return err == nil && st.Running && st.PID != prev
		})
		if st.Restarts != i {
			t.Fatalf("after kill %d: Restarts = %d (%s)", i, st.Restarts, st.Detail)
		}
	}
	log := f.waitLog(s, "restart 2 in 200ms")
	if !strings.Contains(log, "killed by signal killed after") || !strings.Contains(log, "restart 1 in 100ms") {
		t.Errorf("log does not tell the restarts and their backoff:\n%s", log)
	}
	db, err := ledger.Open(f.m.Ledger)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	// Each restart is recorded as it happens, in the background.
	var es []ledger.Event
	testkit.WaitFor(t, 10*time.Second, "the second restart in the ledger", func() bool {
		es, err = db.Events(t.Context(), 0)
		return err != nil || len(es) >= 2
	})
	if err != nil || len(es) != 2 || es[0].Kind != ledger.EventRestart || es[0].Service != "worker" || !strings.Contains(es[0].Detail, "restart 2") {
		t.Fatalf("ledger events = %+v, %v; want the two restarts", es, err)
	}

	clean := f.spec("oneshot", "sleep 0.5; exit 0")
	f.start(clean)
	testkit.WaitFor(t, 10*time.Second, "the clean exit", func() bool {
		st, err := f.m.Status(ctx(t), clean)
		return err == nil && !st.Running && strings.Contains(st.Detail, "exited with status 0")
	})
	if st, _ := f.m.Status(ctx(t), clean); st.Restarts != 0 || !strings.Contains(st.Detail, "not restarted") {
		t.Errorf("a clean exit: %+v; want it left alone", st)
	}
}

func TestStatusAndStopFromAnotherManager(t *testing.T) {
	f := newFixture(t)
	bin := filepath.Join(f.dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "serve"), []byte("#!/bin/sh\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := f.spec("worker", "bin/serve")
	st := f.start(s)

	other := New(f.runDir, f.logDir)
	got, err := other.Status(ctx(t), s)
	if err != nil || !got.Running || got.PID != st.PID || got.Since.IsZero() {
		t.Fatalf("Status from a fresh manager = %+v, %v; want running as %d", got, err, st.PID)
	}
	if err := other.Stop(ctx(t), s); err != nil {
		t.Fatalf("Stop from a fresh manager: %v", err)
	}
	if got, err := f.m.Status(ctx(t), s); err != nil || got.Running {
		t.Errorf("Status after Stop = %+v, %v", got, err)
	}
	if alive(st.PID) {
		t.Errorf("pid %d survived Stop", st.PID)
	}
}

// A slipway CLI starts the service and exits; a later one stops it.
func TestServiceOutlivesTheProcessThatStartedIt(t *testing.T) {
	f := newFixture(t)
	s := f.spec("detached", "sleep 60")
	t.Cleanup(func() { _ = New(f.runDir, f.logDir).Stop(context.Background(), s) })
	cli := exec.CommandContext(ctx(t), os.Args[0])
	cli.Env = append(os.Environ(), "SLIPWAY_TEST_HELPER=start",
		"HELPER_RUN_DIR="+f.runDir, "HELPER_LOG_DIR="+f.logDir, "HELPER_DIR="+f.dir)
	if out, err := cli.CombinedOutput(); err != nil {
		t.Fatalf("helper CLI: %v\n%s", err, out)
	}
	got, err := f.m.Status(ctx(t), s)
	if err != nil || !got.Running {
		t.Fatalf("Status after the starting CLI exited = %+v, %v", got, err)
	}
	self, _ := procfs.ReadStat(os.Getpid())
	if ps, err := procfs.ReadStat(got.PID); err != nil || ps.PPID == cli.Process.Pid || ps.SID != ps.PGID || ps.SID == self.SID {
		t.Errorf("service stat = %+v, %v; want a session of its own (its supervisor's), not a child of the exited CLI", ps, err)
	}
	if err := f.m.Stop(ctx(t), s); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if alive(got.PID) {
		t.Errorf("pid %d survived Stop", got.PID)
	}
}

func TestStalePidFile(t *testing.T) {
	self, err := procfs.ReadStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		rec    record
		detail string
	}{
		{"pid does not exist", record{PID: unusedPID(t), StartTicks: 1}, "has exited"},
		{"pid reused by another process", record{PID: os.Getpid(), StartTicks: self.StartTicks + 1}, "another process"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			s := f.spec("backend", "sleep 60")
			tt.rec.PGID = tt.rec.PID
			tt.rec.Started = time.Now().Add(-time.Hour)
			tt.rec.Command = "sleep 60"
			if err := os.MkdirAll(f.runDir, 0o750); err != nil {
				t.Fatal(err)
			}
			if err := writeRecord(filepath.Join(f.runDir, "backend.pid"), tt.rec); err != nil {
				t.Fatal(err)
			}
			st, err := f.m.Status(ctx(t), s)
			if err != nil || st.Running || !strings.Contains(st.Detail, tt.detail) {
				t.Errorf("Status = %+v, %v; want not running, detail with %q", st, err, tt.detail)
			}
			if err := f.m.Stop(ctx(t), s); err != nil { // must not signal the pid (it may be us)
				t.Fatalf("Stop: %v", err)
			}
			if f.pidFileExists("backend") {
				t.Error("stale pid file not removed by Stop")
			}
			if err := writeRecord(filepath.Join(f.runDir, "backend.pid"), tt.rec); err != nil {
				t.Fatal(err)
			}
			st = f.start(s) // a stale pid file does not block a start
			if st.PID == tt.rec.PID {
				t.Errorf("Start reports the stale pid %d", st.PID)
			}
		})
	}
}

// unusedPID returns a pid that is neither a process nor a process group.
func unusedPID(t *testing.T) int {
	t.Helper()
	for pid := 4_000_000; pid > 1000; pid -= 7919 {
		if _, err := procfs.ReadStat(pid); errors.Is(err, procfs.ErrNoProcess) &&
			errors.Is(syscall.Kill(-pid, 0), syscall.ESRCH) {
			return pid
		}
	}
	t.Fatal("no unused pid found")
	return 0
}

func TestCorruptPidFile(t *testing.T) {
	f := newFixture(t)
	s := f.spec("backend", "sleep 60")
	if err := os.MkdirAll(f.runDir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.runDir, "backend.pid"), []byte("{"), 0o640); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"Start":  f.m.Start(ctx(t), s),
		"Stop":   f.m.Stop(ctx(t), s),
		"Status": func() error { _, err := f.m.Status(ctx(t), s); return err }(),
	} {
		if err == nil || !strings.Contains(err.Error(), "corrupt") {
			t.Errorf("%s with a corrupt pid file = %v, want an error naming it", name, err)
		}
	}
}

func TestPortHeldByAForeignProcess(t *testing.T) {
	tests := []struct{ name, network, addr string }{
		{"ipv4 loopback", "tcp4", "127.0.0.1:0"},
		{"ipv6 loopback", "tcp6", "[::1]:0"},
		{"all addresses", "tcp", ":0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen(tt.network, tt.addr)
			if err != nil {
				t.Skipf("cannot listen on %s: %v", tt.addr, err)
			}
			t.Cleanup(func() { _ = ln.Close() })
			port := ln.Addr().(*net.TCPAddr).Port
			f := newFixture(t)
			s := f.spec("backend", "sleep 60")
			s.Port = port
			err = f.m.Start(ctx(t), s)
			var held *service.PortHeldError
			if !errors.As(err, &held) || !errors.Is(err, service.ErrPortHeld) {
				t.Fatalf("Start = %v, want a PortHeldError", err)
			}
			if held.PID != os.Getpid() || held.Port != port || !strings.Contains(held.Command, filepath.Base(os.Args[0])) {
				t.Errorf("PortHeldError = %+v, want this test (pid %d, %s)", held, os.Getpid(), os.Args[0])
			}
			wantStart := fmt.Sprintf("port %d is held by pid %d (", port, os.Getpid())
			wantEnd := "), not by slipway's backend service; stop that process or change services.backend.port"
			if msg := err.Error(); !strings.HasPrefix(msg, wantStart) || !strings.HasSuffix(msg, wantEnd) {
				t.Errorf("message %q\nwant %q...%q", msg, wantStart, wantEnd)
			}
			if f.pidFileExists("backend") {
				t.Error("pid file written although nothing started")
			}
		})
	}
}

func TestExitRightAfterStart(t *testing.T) {
	tests := []struct {
		name     string
		command  string
		code     int
		signal   syscall.Signal
		log      string
		leftover bool
	}{
		{name: "exit status and output", command: "echo starting; echo boom >&2; exit 3", code: 3, log: "starting\nboom\n"},
		{name: "killed by a signal", command: "echo bye; kill -9 $$", code: -1, signal: syscall.SIGKILL, log: "bye\n"},
		{name: "exits cleanly", command: "true", code: 0, log: ""},
		{name: "leaves a child behind", command: "sleep 60 & echo child=$!; exit 4", code: 4, leftover: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.m.StartGrace = 3 * time.Second // generous: an exit returns at once
			s := f.spec("crashy", tt.command)
			// Twice: the second error shows only the second run's output.
			for range 2 {
				err := f.m.Start(ctx(t), s)
				var exited *service.ExitedError
				if !errors.As(err, &exited) || !errors.Is(err, service.ErrExited) {
					t.Fatalf("Start = %v, want an ExitedError", err)
				}
				if exited.ExitCode != tt.code || exited.Signal != tt.signal {
					t.Errorf("exit code %d signal %v, want %d %v", exited.ExitCode, exited.Signal, tt.code, tt.signal)
				}
				if tt.leftover {
					if child := childPID(t, exited.Log); alive(child) {
						t.Errorf("child %d of the exited service still runs", child)
					}
				} else if exited.Log != tt.log {
					t.Errorf("ExitedError.Log = %q, want %q", exited.Log, tt.log)
				}
				if exited.LogFile != f.m.LogPath("crashy") {
					t.Errorf("LogFile = %q", exited.LogFile)
				}
				if tt.log != "" && !strings.Contains(err.Error(), strings.TrimSpace(tt.log)[:3]) {
					t.Errorf("message %q lacks the output", err)
				}
				if f.pidFileExists("crashy") {
					t.Error("pid file left by a service that exited")
				}
			}
			if st, err := f.m.Status(ctx(t), s); err != nil || st.Running {
				t.Errorf("Status = %+v, %v", st, err)
			}
			if tt.log != "" {
				all, err := f.m.Logs(t.Context(), s, 100)
				if err != nil || all != tt.log+tt.log {
					t.Errorf("Logs = %q, %v; want both runs", all, err)
				}
			}
		})
	}
}

func TestEnvIsExactlySpecEnv(t *testing.T) {
	exe := os.Args[0]
	if !filepath.IsAbs(exe) || run.NeedsShell(exe) {
		t.Skipf("test binary path %q cannot be a plain command", exe)
	}
	f := newFixture(t)
	s := f.spec("envdump", exe)
	s.Env = []string{"SLIPWAY_TEST_HELPER=printenv", "A=1", "B=two words", "EMPTY="}
	f.start(s)
	log := f.waitLog(s, "END\n")
	got := strings.Split(strings.TrimSuffix(log, "END\n"), "\n")
	got = slices.DeleteFunc(got, func(l string) bool { return l == "" })
	slices.Sort(got)
	want := slices.Sorted(slices.Values(s.Env))
	if !slices.Equal(got, want) {
		t.Errorf("service environment = %q, want exactly %q", got, want)
	}
}

func TestCredential(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch user")
	}
	f := newFixture(t)
	s := f.spec("asnobody", "sleep 60")
	s.Dir = "/"
	s.Credential = &syscall.Credential{Uid: 65534, Gid: 65534}
	st := f.start(s)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", st.PID))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^Uid:\s+65534\s`).Match(status) {
		t.Errorf("service does not run as uid 65534:\n%s", status)
	}
}

func TestStopWhenNeverStarted(t *testing.T) {
	f := newFixture(t)
	s := f.spec("backend", "sleep 60")
	if err := f.m.Stop(ctx(t), s); err != nil {
		t.Errorf("Stop: %v", err)
	}
	st, err := f.m.Status(ctx(t), s)
	if err != nil || st.Running || st.Name != "backend" {
		t.Errorf("Status = %+v, %v", st, err)
	}
}

func TestInvalidSpec(t *testing.T) {
	f := newFixture(t)
	tests := []struct{ name, service, dir string }{
		{"empty name", "", f.dir},
		{"name with a slash", "a/b", f.dir},
		{"name climbing out", "../x", f.dir},
		{"hidden name", ".x", f.dir},
		{"relative dir", "web", "release"},
		{"no dir", "web", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := f.spec(tt.service, "sleep 60")
			s.Dir = tt.dir
			if err := f.m.Start(ctx(t), s); err == nil {
				_ = f.m.Stop(ctx(t), s)
				t.Errorf("Start accepted name %q dir %q", tt.service, tt.dir)
			}
		})
	}
}

func TestStartCancelledDuringGrace(t *testing.T) {
	f := newFixture(t)
	f.m.StartGrace = 5 * time.Second
	s := f.spec("slow", "echo child=$$; exec sleep 60")
	c, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	err := f.m.Start(c, s)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Start = %v, want the context's deadline", err)
	}
	log, _ := f.m.Logs(t.Context(), s, 10)
	if m := childRE.FindStringSubmatch(log); m != nil {
		if pid, _ := strconv.Atoi(m[1]); alive(pid) {
			t.Errorf("pid %d still runs after a cancelled Start", pid)
		}
	}
	if f.pidFileExists("slow") {
		t.Error("pid file left by a cancelled Start")
	}
}

func TestWaitExit(t *testing.T) {
	cmd := exec.Command("sleep", "0.2")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	if err := waitExit(t.Context(), cmd.Process.Pid, time.Now().Add(30*time.Second)); err != nil {
		t.Fatalf("waitExit: %v", err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("waitExit returned while the process still ran")
	}

	// A cancelled wait returns the context's error at once.
	long := exec.Command("sleep", "60")
	if err := long.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = long.Process.Kill(); _ = long.Wait() })
	cctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	if err := waitExit(cctx, long.Process.Pid, time.Now().Add(30*time.Second)); !errors.Is(err, context.Canceled) {
		t.Fatalf("waitExit = %v; want context.Canceled", err)
	}
}

// Stop gives every process of a supervised service exactly one SIGTERM, as
// systemd does: a handler that is not reentrant (many are not) must not
// get a second one from the supervisor.
func TestStopSendsOneSIGTERM(t *testing.T) {
	py := python(t)
	f := newFixture(t)
	s := f.spec("once", py+` -u -c "
import signal, sys, time
n = 0
def term(*_):
    global n
    n += 1
    print('SIGTERM', n, flush=True)
signal.signal(signal.SIGTERM, term)
print('ready', flush=True)
while n == 0:
    time.sleep(0.01)
time.sleep(0.3)
sys.exit(0)
"`)
	f.start(s)
	f.waitLog(s, "ready")
	if err := f.m.Stop(ctx(t), s); err != nil {
		t.Fatal(err)
	}
	log, _ := f.m.Logs(t.Context(), s, 100)
	if strings.Count(log, "SIGTERM") != 1 {
		t.Errorf("the service got %d SIGTERMs, want 1:\n%s", strings.Count(log, "SIGTERM"), log)
	}
}

// TestLogsAreThisRunsOwn: the log file holds every run of a service; Logs
// (the "last output" of a failure) shows only the running one's.
func TestLogsAreThisRunsOwn(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	first := f.spec("svc", "sh -c 'echo warning from the first run; exec sleep 60'")
	f.start(first)
	f.waitLog(first, "warning from the first run")
	if err := f.m.Stop(ctx(t), first); err != nil {
		t.Fatal(err)
	}
	second := f.spec("svc", "sh -c 'echo the second run; exec sleep 60'")
	f.start(second)
	log := f.waitLog(second, "the second run")
	if strings.Contains(log, "first run") {
		t.Fatalf("Logs mixed in an earlier run's output:\n%s", log)
	}
	whole, err := os.ReadFile(f.m.LogPath("svc"))
	if err != nil || !strings.Contains(string(whole), "first run") {
		t.Fatalf("the log file must keep the earlier run: %v\n%s", err, whole)
	}
}
