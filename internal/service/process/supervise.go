package process

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/slipway-dev/slipway/internal/fsutil"
	"github.com/slipway-dev/slipway/internal/ledger"
	"github.com/slipway-dev/slipway/internal/service/procfs"
)

// Each service runs under a supervisor: the slipway binary itself
// (`slipway supervise`, hidden), the leader of the service's session and
// process group, with the service as its child in that same group. It
// restarts the service when it exits on a failure, as systemd's
// Restart=on-failure does, whether or not the agent runs: a non-zero exit
// status or a signal. A clean exit (status 0) is left alone. It counts the
// restarts in <runDir>/<name>.state and records each in the ledger's
// events. Stop signals the whole group, the supervisor included, which
// then waits for the service and exits without restarting it.
//
// The supervisor tells the Start that launched it how the first start
// went over a pipe (descriptor 3): "ok" once the service ran through the
// start grace, "exit CODE SIGNAL" when it exited within it (then nothing
// is restarted), "error TEXT" when it could not be started at all.

const (
	// firstBackoff is the wait before the first restart; it doubles with
	// every restart in a row, up to maxBackoff.
	firstBackoff = 100 * time.Millisecond
	maxBackoff   = 30 * time.Second
	// steadyRun is how long a service must have run for the backoff to
	// start again from firstBackoff.
	steadyRun = 10 * time.Second
)

// supervised is the content of <runDir>/<name>.state.
type supervised struct {
	// PID and StartTicks name the service's process while it runs (0 while
	// it waits to be restarted).
	PID        int       `json:"pid,omitempty"`
	StartTicks uint64    `json:"start_ticks,omitempty"`
	Started    time.Time `json:"started,omitzero"`
	Restarts   int       `json:"restarts"`
	// LastExit says how the service last exited, for status.
	LastExit string `json:"last_exit,omitempty"`
	// RestartAt is when a service that exited will be started again.
	RestartAt time.Time `json:"restart_at,omitzero"`
	// Done is set when the service exited cleanly and the supervisor with it.
	Done bool `json:"done,omitempty"`
}

func (m *Manager) statePath(name string) string { return m.runDir + "/" + name + ".state" }

// readState returns nil, nil when the service has no supervisor state (it
// was started by a slipway before supervision, or never).
func readState(path string) (*supervised, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read supervisor state: %w", err)
	}
	var s supervised
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("supervisor state %s is corrupt: %w", path, err)
	}
	return &s, nil
}

// running reports whether the service process the state names is alive.
func (s *supervised) running() bool {
	if s == nil || s.PID <= 0 {
		return false
	}
	st, err := procfs.ReadStat(s.PID)
	return err == nil && !st.Gone() && st.StartTicks == s.StartTicks
}

// supervisorArgs is how Start asks the supervisor to run s.
func (m *Manager) supervisorArgs(name, path string, argv []string, cred *syscall.Credential) []string {
	args := append([]string(nil), m.Supervisor...)
	args = append(args, "--name", name, "--state", m.statePath(name), "--grace", m.StartGrace.String())
	if m.Ledger != "" {
		args = append(args, "--ledger", m.Ledger)
	}
	if cred != nil {
		groups := make([]string, len(cred.Groups))
		for i, g := range cred.Groups {
			groups[i] = strconv.FormatUint(uint64(g), 10)
		}
		args = append(args, "--uid", strconv.FormatUint(uint64(cred.Uid), 10), "--gid", strconv.FormatUint(uint64(cred.Gid), 10),
			"--groups", strings.Join(groups, ","))
	}
	return append(append(args, "--path", path, "--"), argv...)
}

// Supervise is the supervisor's main (`slipway supervise ARGS`): it runs
// the service given after "--" and returns the process's exit status.
func Supervise(args []string) int {
	fl := flag.NewFlagSet("supervise", flag.ContinueOnError)
	name := fl.String("name", "", "the service's name")
	state := fl.String("state", "", "where the supervisor keeps its state")
	grace := fl.Duration("grace", DefaultStartGrace, "how long the first start is watched for an exit")
	ledgerPath := fl.String("ledger", "", "the ledger to record restarts in")
	path := fl.String("path", "", "the program to execute")
	uid := fl.Int("uid", -1, "run the service as this user id")
	gid := fl.Int("gid", -1, "and group id")
	groups := fl.String("groups", "", "and supplementary groups, comma-separated")
	if err := fl.Parse(args); err != nil || *name == "" || *state == "" || *path == "" || fl.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "slipway supervise: runs one service for the process manager; it is not meant to be run by hand")
		return 2
	}
	// The report pipe is ours alone: the service must not inherit it.
	syscall.CloseOnExec(3)
	sv := &supervisor{name: *name, state: *state, ledger: *ledgerPath, path: *path, argv: fl.Args(),
		report: os.NewFile(3, "report")}
	if *uid >= 0 {
		sv.cred = &syscall.Credential{Uid: uint32(*uid), Gid: uint32(*gid)}
		for g := range strings.SplitSeq(*groups, ",") {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				sv.cred.Groups = append(sv.cred.Groups, uint32(n))
			}
		}
	}
	return sv.run(*grace)
}

type supervisor struct {
	name, state, ledger, path string
	argv                      []string
	cred                      *syscall.Credential
	report                    *os.File // to the Start that launched us; nil once told
	st                        supervised
	events                    sync.WaitGroup // ledger writes under way
}

func (sv *supervisor) tell(msg string) {
	if sv.report == nil {
		return
	}
	_, _ = sv.report.WriteString(msg + "\n")
	_ = sv.report.Close()
	sv.report = nil
}

func (sv *supervisor) save() {
	b, _ := json.Marshal(sv.st)
	if err := fsutil.WriteFile(sv.state, b, 0o640); err != nil {
		sv.logf("cannot write %s: %v", sv.state, err)
	}
}

// logf writes one line of the supervisor's own into the service's log.
func (sv *supervisor) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "slipway: %s %s: %s\n", time.Now().UTC().Format(time.RFC3339), sv.name, fmt.Sprintf(format, args...))
}

func (sv *supervisor) run(grace time.Duration) int {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	signal.Ignore(syscall.SIGHUP)
	backoff := firstBackoff
	for first := true; ; first = false {
		cmd := &exec.Cmd{Path: sv.path, Args: sv.argv, Env: os.Environ(), Stdin: nil, Stdout: os.Stdout, Stderr: os.Stderr,
			SysProcAttr: &syscall.SysProcAttr{Credential: sv.cred}}
		if err := cmd.Start(); err != nil {
			if first {
				sv.tell("error " + err.Error())
				return 1
			}
			sv.logf("cannot start it again: %v", err)
			sv.st.PID, sv.st.LastExit = 0, "could not be started: "+err.Error()
			sv.save()
			return 1
		}
		pid := cmd.Process.Pid
		sv.st.PID, sv.st.Started, sv.st.RestartAt = pid, time.Now().UTC(), time.Time{}
		if ps, err := procfs.ReadStat(pid); err == nil {
			sv.st.StartTicks = ps.StartTicks
		}
		sv.save()
		exited := make(chan *os.ProcessState, 1)
		go func() {
			_ = cmd.Wait()
			exited <- cmd.ProcessState
		}()
		if first {
			select {
			case ps := <-exited:
				ws := ps.Sys().(syscall.WaitStatus)
				sv.tell(fmt.Sprintf("exit %d %d", ps.ExitCode(), signalOf(ws)))
				return sv.done(0)
			case <-time.After(grace):
				sv.tell("ok")
			case <-stop:
				return sv.stopped(exited)
			}
		}
		var ps *os.ProcessState
		select {
		case ps = <-exited:
		case <-stop:
			return sv.stopped(exited)
		}
		// A stop signals the whole group, so the service may have seen it
		// before we did: give it a moment to reach us before we call the
		// exit a failure.
		select {
		case <-stop:
			return sv.done(0)
		case <-time.After(stopGrace):
		}
		ran := time.Since(sv.st.Started)
		ws := ps.Sys().(syscall.WaitStatus)
		how := describeExit(ps.ExitCode(), signalOf(ws))
		sv.st.PID, sv.st.StartTicks, sv.st.LastExit = 0, 0, fmt.Sprintf("%s at %s", how, time.Now().UTC().Format(time.RFC3339))
		if ps.ExitCode() == 0 {
			sv.logf("%s; not restarted (only a failure is)", how)
			sv.st.LastExit += "; not restarted (only a failure is)"
			sv.st.Done = true
			sv.save()
			return sv.done(0)
		}
		if ran >= steadyRun {
			backoff = firstBackoff
		}
		sv.st.Restarts++
		sv.st.RestartAt = time.Now().Add(backoff).UTC()
		sv.save()
		sv.logf("%s after %s; restart %d in %s", how, ran.Round(time.Millisecond), sv.st.Restarts, backoff)
		select {
		case <-stop:
			return sv.done(0)
		case <-time.After(backoff):
		}
		// Recorded as it happens, without holding the restart up (the
		// ledger may be busy with a deploy).
		sv.event(fmt.Sprintf("%s after running %s; restarted (restart %d, after %s)", how, ran.Round(time.Millisecond), sv.st.Restarts, backoff))
		backoff = min(backoff*2, maxBackoff)
	}
}

// stopGrace is how long an exit waits for a stop signal that may follow.
const stopGrace = 50 * time.Millisecond

// done ends the supervisor: its state goes unless the service finished
// (status tells how), and the last event is written.
func (sv *supervisor) done(code int) int {
	if !sv.st.Done {
		_ = os.Remove(sv.state)
	}
	sv.events.Wait()
	return code
}

// stopped passes a stop on to the whole group once (Stop signals the
// supervisor alone), then waits for the service.
func (sv *supervisor) stopped(exited <-chan *os.ProcessState) int {
	_ = syscall.Kill(-os.Getpid(), syscall.SIGTERM) // ours comes back, and is ignored
	<-exited
	return sv.done(0)
}

// isSupervisor reports whether pid runs `... supervise ...`: a supervisor's
// stop goes to it alone.
func isSupervisor(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	argv := strings.Split(string(b), "\x00")
	return len(argv) > 2 && argv[1] == "supervise" && argv[2] == "--name"
}

// event records a restart in the ledger's events, in the background.
func (sv *supervisor) event(detail string) {
	if sv.ledger == "" {
		return
	}
	sv.events.Go(func() { sv.record(detail) })
}

func (sv *supervisor) record(detail string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := ledger.Open(sv.ledger)
	if err != nil {
		sv.logf("cannot record the restart in the ledger: %v", err)
		return
	}
	defer func() { _ = db.Close() }()
	if _, err := db.AddEvent(ctx, ledger.Event{Time: time.Now().UTC(), Kind: ledger.EventRestart, Service: sv.name, Detail: detail}); err != nil {
		sv.logf("cannot record the restart in the ledger: %v", err)
	}
}

func signalOf(ws syscall.WaitStatus) syscall.Signal {
	if ws.Signaled() {
		return ws.Signal()
	}
	return 0
}

func describeExit(code int, sig syscall.Signal) string {
	if sig != 0 {
		return "killed by signal " + sig.String()
	}
	return fmt.Sprintf("exited with status %d", code)
}
