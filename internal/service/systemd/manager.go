// Package systemd runs an app's services as systemd units, through
// systemctl and journalctl. Before each start it writes the service's
// environment file (the release's APP_VERSION and the env file's values)
// and, for units slipway generates, brings the unit file in line with the
// config, so that a changed command takes effect with the next deploy.
package systemd

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/slipway-dev/slipway/internal/fsutil"
	"github.com/slipway-dev/slipway/internal/run"
	"github.com/slipway-dev/slipway/internal/service"
	"github.com/slipway-dev/slipway/internal/unit"
)

// Manager implements service.Manager on systemd.
type Manager struct {
	// Root is the app's root; environment files go to <root>/run/env.
	Root string
	// Units are the unit files slipway generates, by unit name; a unit not
	// in it is the operator's own and is only started and stopped.
	Units map[string]unit.File
	// UnitDir is where unit files are written (unit.Dir).
	UnitDir string
	// StartGrace is how long Start watches a started unit for an early exit.
	StartGrace time.Duration

	reloadMu sync.Mutex
}

// New returns a manager for the units of an app rooted at root.
func New(root string, units []unit.File) *Manager {
	m := &Manager{Root: root, Units: map[string]unit.File{}, UnitDir: unit.Dir, StartGrace: 300 * time.Millisecond}
	for _, u := range units {
		m.Units[u.Name] = u
	}
	return m
}

// Start writes the service's environment file, brings its unit file up to
// date, and starts the unit. A port held by a process outside the unit is a
// *service.PortHeldError; a unit that fails within StartGrace is a
// *service.ExitedError carrying its journal lines.
func (m *Manager) Start(ctx context.Context, s service.Spec) error {
	if err := m.writeEnv(s); err != nil {
		return err
	}
	if err := m.syncUnit(ctx, s.Unit); err != nil {
		return err
	}
	// A holder in the unit's own cgroup is the service itself.
	if err := service.CheckPort(s, func(pid int) bool { return inUnit(pid, s.Unit) }); err != nil {
		return err
	}
	// A unit that failed several times in a row (a few bad deploys) would
	// hit systemd's start rate limit; each deploy's start is deliberate.
	_, _ = Systemctl(ctx, "reset-failed", s.Unit)
	started := time.Now()
	if _, err := Systemctl(ctx, "start", s.Unit); err != nil {
		return m.failed(ctx, s, started, err)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(m.StartGrace):
	}
	p, err := show(ctx, s.Unit)
	if err != nil {
		return err
	}
	if !p.running() {
		return m.failed(ctx, s, started, nil)
	}
	if isInstance(s.Unit) {
		// The instance that serves starts again at boot; the proxy's
		// restored route points at it.
		if _, err := Systemctl(ctx, "enable", "--quiet", s.Unit); err != nil {
			return err
		}
	}
	return nil
}

// isInstance reports whether unit is an instance of a template unit.
func isInstance(unitName string) bool {
	at := strings.IndexByte(unitName, '@')
	return at > 0 && !strings.HasPrefix(unitName[at:], "@.")
}

// template returns the template unit of an instance (a@1.service -> a@.service).
func template(unitName string) string {
	at := strings.IndexByte(unitName, '@')
	dot := strings.LastIndexByte(unitName, '.')
	if at < 0 || dot < at {
		return unitName
	}
	return unitName[:at+1] + unitName[dot:]
}

// failed builds the error of a unit that did not stay up.
func (m *Manager) failed(ctx context.Context, s service.Spec, since time.Time, cause error) error {
	p, _ := show(ctx, s.Unit)
	e := &service.ExitedError{Service: s.Name, ExitCode: -1, Log: journal(ctx, s.Unit, p["InvocationID"], since, 20)}
	switch p["ExecMainCode"] {
	case "1": // CLD_EXITED
		e.ExitCode, _ = strconv.Atoi(p["ExecMainStatus"])
	case "2", "3": // killed, dumped
		n, _ := strconv.Atoi(p["ExecMainStatus"])
		e.Signal = syscall.Signal(n)
	}
	if e.Log == "" && cause != nil {
		e.Log = cause.Error()
	}
	e.LogFile = "journalctl -u " + s.Unit
	return e
}

// Stop stops the unit; systemd sends SIGTERM to every process of it, waits
// TimeoutStopSec, then SIGKILL. A unit that does not exist is not an error.
func (m *Manager) Stop(ctx context.Context, s service.Spec) error {
	p, err := show(ctx, s.Unit)
	if err != nil {
		return err
	}
	if p["LoadState"] == "not-found" {
		return nil
	}
	if _, err := Systemctl(ctx, "stop", s.Unit); err != nil {
		return fmt.Errorf("stop %s: %w", s.Name, err)
	}
	if isInstance(s.Unit) {
		if _, err := Systemctl(ctx, "disable", "--quiet", s.Unit); err != nil {
			return err
		}
	}
	return nil
}

// ListUnits lists the loaded service units whose names match pattern (a
// systemctl glob such as "board-web@*.service"), active or not.
func (m *Manager) ListUnits(ctx context.Context, pattern string) ([]string, error) {
	out, err := Systemctl(ctx, "list-units", "--all", "--plain", "--no-legend", "--full", "--type=service", pattern)
	if err != nil {
		return nil, fmt.Errorf("list units %s: %w", pattern, err)
	}
	var units []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasSuffix(f[0], ".service") {
			units = append(units, f[0])
		}
	}
	return units, nil
}

// Status reports the unit's state.
func (m *Manager) Status(ctx context.Context, s service.Spec) (service.State, error) {
	p, err := show(ctx, s.Unit)
	if err != nil {
		return service.State{}, err
	}
	st := service.State{Name: s.Name, Running: p.running()}
	// Restart=on-failure brought it back this many times since slipway
	// last started it (systemd resets the count at a start by hand).
	st.Restarts, _ = strconv.Atoi(p["NRestarts"])
	if st.Running {
		st.PID, _ = strconv.Atoi(p["MainPID"])
		st.Since = parseTime(p["ActiveEnterTimestamp"])
		return st, nil
	}
	st.Detail = fmt.Sprintf("unit %s is %s (%s)", s.Unit, p["ActiveState"], p["SubState"])
	if r := p["Result"]; r != "" && r != "success" {
		st.Detail += ", result " + r
	}
	if p["LoadState"] == "not-found" {
		st.Detail = "unit " + s.Unit + " does not exist (run `slipway install`)"
	}
	return st, nil
}

// Logs returns the last journal lines of the unit's latest run (its
// invocation), so that no earlier run's output is mixed in.
func (m *Manager) Logs(ctx context.Context, s service.Spec, lines int) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	p, _ := show(ctx, s.Unit)
	return journal(ctx, s.Unit, p["InvocationID"], time.Time{}, lines), nil
}

// writeEnv writes the environment the unit reads (unit.EnvPath), 0600.
func (m *Manager) writeEnv(s service.Spec) error {
	data, err := unit.EnvFile(s.Env)
	if err != nil {
		return fmt.Errorf("service %s: %w", s.Name, err)
	}
	path := unit.EnvPath(m.Root, s.Name)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("service %s: %w", s.Name, err)
	}
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	if err := fsutil.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("service %s: write its environment: %w", s.Name, err)
	}
	return nil
}

// syncUnit rewrites a generated unit whose file differs from the config's,
// then reloads systemd. An operator's own unit (not slipway's) is left as is.
func (m *Manager) syncUnit(ctx context.Context, name string) error {
	u, ok := m.Units[template(name)]
	if !ok {
		return nil
	}
	path := filepath.Join(m.UnitDir, u.Name)
	old, err := os.ReadFile(path)
	switch {
	case err == nil && string(old) == u.Content:
		return nil
	case err == nil && !unit.Owned(string(old)):
		return nil
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("read unit %s: %w", path, err)
	}
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	if err := fsutil.WriteFile(path, []byte(u.Content), 0o644); err != nil {
		return fmt.Errorf("write unit %s: %w", path, err)
	}
	if _, err := Systemctl(ctx, "daemon-reload"); err != nil {
		return err
	}
	return nil
}

// inUnit reports whether pid belongs to the cgroup of unit.
func inUnit(pid int, unitName string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return false
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.HasSuffix(line, "/"+unitName) || strings.Contains(line, "/"+unitName+"/") {
			return true
		}
	}
	return false
}

// props are the properties `systemctl show` printed.
type props map[string]string

func (p props) running() bool {
	return p["ActiveState"] == "active" || p["ActiveState"] == "reloading"
}

// parseTime reads a --timestamp=utc time ("Sun 2026-11-22 21:07:47 UTC").
func parseTime(s string) time.Time {
	t, err := time.Parse(showTime, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// journal returns the unit's last lines in the journal since a time (zero:
// any), waiting briefly for journald to catch up with a process that just
// exited. It returns "" when there are none or journalctl fails.
func journal(ctx context.Context, unitName, invocation string, since time.Time, lines int) string {
	args := []string{"--no-pager", "-o", "short-precise", "-n", strconv.Itoa(lines)}
	if validInvocation(invocation) {
		// The run's own output, and what systemd said of that run.
		args = append(args, "_SYSTEMD_INVOCATION_ID="+invocation, "+", "INVOCATION_ID="+invocation)
	} else {
		args = append(args, "-u", unitName)
	}
	if !since.IsZero() {
		args = append(args, "--since", "@"+strconv.FormatInt(since.Add(-time.Second).Unix(), 10))
	}
	var out string
	for range 5 {
		b, err := run.Output(ctx, run.Cmd{Argv: append([]string{"journalctl"}, args...), Timeout: 10 * time.Second})
		if err != nil {
			return ""
		}
		out = strings.TrimSpace(b)
		if out != "" && out != "-- No entries --" {
			return out
		}
		time.Sleep(100 * time.Millisecond)
	}
	return ""
}

// validInvocation reports whether id is an invocation id as systemd
// prints it: 32 hex digits, and not all zeros (a unit never started).
func validInvocation(id string) bool {
	if len(id) != 32 || strings.Trim(id, "0") == "" {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// Systemctl runs systemctl through the one command runner, with a
// timeout; its error ends with what systemctl printed.
func Systemctl(ctx context.Context, args ...string) (string, error) {
	out, err := run.Output(ctx, run.Cmd{Argv: append([]string{"systemctl"}, args...), Timeout: 5 * time.Minute})
	return out, run.WithOutput(err, 5)
}
