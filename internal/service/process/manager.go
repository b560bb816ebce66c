// Package process runs services as plain child processes, for hosts without
// systemd. Each service runs detached in a session and process group of its
// own, its output appended to <logDir>/<name>.log, and who it is recorded in
// <runDir>/<name>.pid, so that a later slipway invocation can check and stop
// what an earlier one started. Callers serialise operations on one service
// (the deploy lock does).
package process

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/slipway-dev/slipway/internal/service"
	"github.com/slipway-dev/slipway/internal/service/procfs"
)

const (
	// DefaultStartGrace is how long Start watches a new service for an
	// early exit.
	DefaultStartGrace = 300 * time.Millisecond
	// DefaultStopTimeout is used when Spec.StopTimeout is 0.
	DefaultStopTimeout = 10 * time.Second
	// portWait bounds how long Stop waits for the port to be released.
	portWait = 2 * time.Second
	// exitLogLines is how much output an ExitedError carries.
	exitLogLines = 20
)

// Manager is the process service manager.
type Manager struct {
	// StartGrace is how long Start waits for the new process to exit
	// before calling it started; an exit within it is an *ExitedError.
	StartGrace time.Duration
	// Supervisor is the command that runs a service and restarts it when
	// it fails (Supervise, behind `slipway supervise`); New sets it to
	// this executable's `supervise`.
	Supervisor []string
	// Ledger, when set, is the ledger the supervisors record restarts in.
	Ledger string

	runDir, logDir string
}

var _ service.Manager = (*Manager)(nil)

// New returns a manager that keeps pid files in runDir and logs in logDir.
func New(runDir, logDir string) *Manager {
	m := &Manager{StartGrace: DefaultStartGrace, runDir: runDir, logDir: logDir}
	if exe, err := os.Executable(); err == nil {
		m.Supervisor = []string{exe, "supervise"}
	}
	return m
}

func (m *Manager) pidPath(name string) string { return filepath.Join(m.runDir, name+".pid") }

// LogPath is the file a service's output is appended to.
func (m *Manager) LogPath(name string) string { return filepath.Join(m.logDir, name+".log") }

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func checkName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("invalid service name %q", name)
	}
	return nil
}

// Start starts the service detached from the caller: it keeps running when
// the caller exits. It refuses when the service already runs
// (service.ErrAlreadyRunning) and when its port is held by another process
// (*service.PortHeldError); it returns a *service.ExitedError when the
// process exits within StartGrace.
func (m *Manager) Start(ctx context.Context, s service.Spec) error {
	if err := checkName(s.Name); err != nil {
		return err
	}
	if !filepath.IsAbs(s.Dir) {
		return fmt.Errorf("start %s: working directory %q is not absolute", s.Name, s.Dir)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("start %s: %w", s.Name, err)
	}
	pidPath := m.pidPath(s.Name)
	old, err := readRecord(pidPath)
	if err != nil {
		return fmt.Errorf("start %s: %w", s.Name, err)
	}
	if old != nil {
		o, err := observe(*old)
		if err != nil {
			return fmt.Errorf("start %s: %w", s.Name, err)
		}
		if o.running() {
			return fmt.Errorf("start %s: %w (pid %d, started %s); stop it first",
				s.Name, service.ErrAlreadyRunning, old.PID, old.Started.Format(time.RFC3339))
		}
		if err := removeRecord(pidPath); err != nil {
			return fmt.Errorf("start %s: %w", s.Name, err)
		}
	}
	// Instances of this service without a pid file (their starter was
	// killed before it wrote one) go first; one may still have been on its
	// way through exec at the first look, so the port gets a second one.
	if err := sweepOrphans(ctx, s, stopTimeout(s)); err != nil {
		return fmt.Errorf("start %s: %w", s.Name, err)
	}
	// No process of this service runs now: any holder is foreign.
	if err := service.CheckPort(s, nil); err != nil {
		var held *service.PortHeldError
		if !errors.As(err, &held) || held.PID == 0 || !isOrphanOf(held.PID, s) {
			return err
		}
		if err := sweepOrphans(ctx, s, stopTimeout(s)); err != nil {
			return fmt.Errorf("start %s: %w", s.Name, err)
		}
		if err := waitPortReleased(ctx, s.Port, held.PID); err != nil {
			return fmt.Errorf("start %s: %w", s.Name, err)
		}
		if err := service.CheckPort(s, nil); err != nil {
			return err
		}
	}
	path, argv, err := command(s)
	if err != nil {
		return fmt.Errorf("start %s: %w", s.Name, err)
	}
	for _, d := range []string{m.runDir, m.logDir} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return fmt.Errorf("start %s: %w", s.Name, err)
		}
	}
	logPath := m.LogPath(s.Name)
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("start %s: open log: %w", s.Name, err)
	}
	var logStart int64
	if fi, err := logFile.Stat(); err == nil {
		logStart = fi.Size()
	}

	env := s.Env
	if env == nil {
		env = []string{} // nil would mean "inherit slipway's environment"
	}
	if len(m.Supervisor) == 0 {
		_ = logFile.Close()
		return fmt.Errorf("start %s: no supervisor command", s.Name)
	}
	report, reportW, err := os.Pipe()
	if err != nil {
		_ = logFile.Close()
		return fmt.Errorf("start %s: %w", s.Name, err)
	}
	defer func() { _ = report.Close() }()
	args := m.supervisorArgs(s.Name, path, argv, s.Credential)
	cmd := &exec.Cmd{
		Path:       args[0],
		Args:       args,
		Dir:        s.Dir,
		Env:        env,
		Stdout:     logFile, // an *os.File: the child writes to it directly,
		Stderr:     logFile, // no goroutine of ours in between
		ExtraFiles: []*os.File{reportW},
		SysProcAttr: &syscall.SysProcAttr{
			Setsid: true, // its own session and process group
		},
	}
	err = cmd.Start()
	_ = logFile.Close() // the child has its own descriptors
	_ = reportW.Close()
	if err != nil {
		return fmt.Errorf("start %s: supervisor %s: %w", s.Name, args[0], err)
	}
	pid := cmd.Process.Pid
	// Read the start time before anything can reap the child.
	st, statErr := procfs.ReadStat(pid)
	exited := make(chan *os.ProcessState, 1)
	go func() {
		// Reap it whenever it exits, so no zombie stays while we live.
		_ = cmd.Wait()
		exited <- cmd.ProcessState
	}()
	if statErr != nil {
		_ = signalGroup(pid, syscall.SIGKILL)
		return fmt.Errorf("start %s: %w", s.Name, statErr)
	}
	rec := record{PID: pid, PGID: pid, StartTicks: st.StartTicks, Started: time.Now().UTC(), Command: s.Command, LogStart: logStart}
	if err := writeRecord(pidPath, rec); err != nil {
		_ = signalGroup(pid, syscall.SIGKILL)
		return fmt.Errorf("start %s: %w", s.Name, err)
	}
	gone := func() {
		// Its children must not stay behind as a half-started service.
		_ = signalGroup(pid, syscall.SIGKILL)
		_, _ = waitGroupGone(context.Background(), pid, killWait)
		_ = removeRecord(pidPath)
		_ = os.Remove(m.statePath(s.Name))
	}
	said := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(report).ReadString('\n')
		said <- strings.TrimSpace(line)
	}()
	var msg string
	select {
	case msg = <-said:
	case <-ctx.Done():
		gone()
		return fmt.Errorf("start %s: %w", s.Name, ctx.Err())
	}
	word, rest, _ := strings.Cut(msg, " ")
	switch word {
	case "ok":
		return nil
	case "exit":
		gone()
		var code, sig int
		_, _ = fmt.Sscan(rest, &code, &sig)
		log, _ := tail(logPath, logStart, exitLogLines)
		return &service.ExitedError{Service: s.Name, ExitCode: code, Signal: syscall.Signal(sig), Log: log, LogFile: logPath}
	case "error":
		gone()
		return fmt.Errorf("start %s: `%s`: %s", s.Name, s.Command, rest)
	}
	// It said nothing: the supervisor itself died.
	gone()
	log, _ := tail(logPath, logStart, exitLogLines)
	how := "exited"
	select {
	case ps := <-exited:
		how = ps.String()
	case <-time.After(time.Second):
	}
	return fmt.Errorf("start %s: its supervisor (%s) %s before the service was up; its last output:\n%s", s.Name, args[0], how, log)
}

// Stop sends SIGTERM to the service's process group, waits up to
// Spec.StopTimeout (DefaultStopTimeout when 0) for every process of it to
// exit, then sends SIGKILL. It then waits for Spec.Port to be released and
// removes the pid file. A service that is not running, or whose pid file
// names a process that is gone or is another one now, is not an error.
func (m *Manager) Stop(ctx context.Context, s service.Spec) error {
	if err := checkName(s.Name); err != nil {
		return err
	}
	pidPath := m.pidPath(s.Name)
	rec, err := readRecord(pidPath)
	if err != nil {
		return fmt.Errorf("stop %s: %w", s.Name, err)
	}
	if rec == nil {
		if err := sweepOrphans(ctx, s, stopTimeout(s)); err != nil {
			return fmt.Errorf("stop %s: %w", s.Name, err)
		}
		return nil
	}
	o, err := observe(*rec)
	if err != nil {
		return fmt.Errorf("stop %s: %w", s.Name, err)
	}
	if o.running() {
		if err := terminate(ctx, rec.PGID, stopTimeout(s)); err != nil {
			return fmt.Errorf("stop %s: %w", s.Name, err)
		}
		if err := waitPortReleased(ctx, s.Port, rec.PGID); err != nil {
			return fmt.Errorf("stop %s: %w", s.Name, err)
		}
	}
	if err := removeRecord(pidPath); err != nil {
		return fmt.Errorf("stop %s: %w", s.Name, err)
	}
	if err := os.Remove(m.statePath(s.Name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("stop %s: %w", s.Name, err)
	}
	return nil
}

func stopTimeout(s service.Spec) time.Duration {
	if s.StopTimeout > 0 {
		return s.StopTimeout
	}
	return DefaultStopTimeout
}

// waitPortReleased waits up to portWait until no process of the stopped
// service's session (pgid is also its session id) listens on port: a
// process that left the group (setpgid) is not killed with it.
func waitPortReleased(ctx context.Context, port, pgid int) error {
	if port <= 0 {
		return nil
	}
	deadline := time.Now().Add(portWait)
	for {
		holder, err := sessionListener(port, pgid)
		if err != nil || holder == 0 {
			return err
		}
		if !time.Now().Before(deadline) {
			cmdline, _ := procfs.Cmdline(holder)
			return fmt.Errorf("port %d is still held by pid %d (%s), which left the service's process group; stop it by hand", port, holder, cmdline)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}

// sessionListener returns a process of group or session id that listens
// on port, or 0.
func sessionListener(port, id int) (int, error) {
	inodes, err := procfs.ListeningInodes(port)
	if err != nil || len(inodes) == 0 {
		return 0, err
	}
	pids, err := procfs.SocketHolders(inodes)
	if err != nil {
		return 0, err
	}
	for _, pid := range pids {
		if st, err := procfs.ReadStat(pid); err == nil && !st.Gone() && (st.PGID == id || st.SID == id) {
			return pid, nil
		}
	}
	return 0, nil
}

// Status reports the service as running when its pid file names a live
// process that is the one started (same start time) and not a zombie.
func (m *Manager) Status(ctx context.Context, s service.Spec) (service.State, error) {
	state := service.State{Name: s.Name}
	if err := checkName(s.Name); err != nil {
		return state, err
	}
	rec, err := readRecord(m.pidPath(s.Name))
	if err != nil {
		return state, fmt.Errorf("status %s: %w", s.Name, err)
	}
	if rec == nil {
		state.Detail = "not running"
		return state, nil
	}
	o, err := observe(*rec)
	if err != nil {
		return state, fmt.Errorf("status %s: %w", s.Name, err)
	}
	sv, err := readState(m.statePath(s.Name))
	if err != nil {
		return state, fmt.Errorf("status %s: %w", s.Name, err)
	}
	switch {
	case o.leader && sv == nil:
		// Started before services were supervised: the leader is the service.
		state.Running, state.PID, state.Since = true, rec.PID, rec.Started
		state.Detail = fmt.Sprintf("running as pid %d since %s", rec.PID, rec.Started.Format(time.RFC3339))
		return state, nil
	case sv != nil:
		state.Restarts = sv.Restarts
		if o.leader && sv.running() {
			state.Running, state.PID, state.Since = true, sv.PID, sv.Started
			state.Detail = fmt.Sprintf("running as pid %d since %s", sv.PID, sv.Started.Format(time.RFC3339))
			if sv.Restarts > 0 {
				state.Detail += fmt.Sprintf(", restarted %d time(s), last %s", sv.Restarts, sv.LastExit)
			}
			return state, nil
		}
		if o.leader && !sv.Done {
			state.Detail = "not running: " + orText(sv.LastExit, "starting")
			if !sv.RestartAt.IsZero() {
				state.Detail += fmt.Sprintf("; restart %d at %s", sv.Restarts, sv.RestartAt.Format(time.RFC3339))
			}
			return state, nil
		}
		if sv.Done {
			o.why = sv.LastExit
		} else {
			o.why = "its supervisor (pid " + strconv.Itoa(rec.PID) + ") has exited"
		}
	}
	state.Detail = "not running: " + o.why
	if n := len(o.members); n > 0 {
		state.Detail += fmt.Sprintf("; %d process(es) of its group remain, such as pid %d; stop the service to end them", n, o.members[0].PID)
	}
	return state, nil
}

func orText(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Logs returns the last lines of the service's log file.
func (m *Manager) Logs(_ context.Context, s service.Spec, lines int) (string, error) {
	if err := checkName(s.Name); err != nil {
		return "", err
	}
	// Only this run's output: the log holds every earlier run's too.
	var from int64
	if rec, err := readRecord(m.pidPath(s.Name)); err == nil && rec != nil {
		from = rec.LogStart
	}
	out, err := tail(m.LogPath(s.Name), from, lines)
	if err != nil {
		return "", fmt.Errorf("logs of %s: %w", s.Name, err)
	}
	return out, nil
}
