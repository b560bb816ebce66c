// Package service defines how the deploy engine starts, stops and inspects
// the long-running processes of a release. The process and systemd
// subpackages implement Manager.
package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"
)

// Spec is everything a manager needs to run one service of one release.
type Spec struct {
	App, Name string
	// Dir is the absolute working directory, inside the release.
	Dir string
	// Command is as written in slipway.yml. It runs with /bin/sh -c when it
	// contains shell syntax, else it is split on whitespace and executed
	// directly: a program name with a slash is relative to Dir, one without
	// is looked up in the PATH of Env.
	Command string
	// Env is the complete environment (KEY=VALUE); the manager adds nothing.
	Env []string
	// Port is the TCP port the service listens on; 0 means none.
	Port int
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL.
	StopTimeout time.Duration
	// Unit is the systemd unit name (unused by the process manager).
	Unit string
	// Credential runs the service as another user; nil means the current one.
	Credential *syscall.Credential
}

// State is what a manager knows about one service.
type State struct {
	Name    string
	Running bool
	PID     int       // 0 when not running
	Since   time.Time // when it was started; zero when unknown
	Detail  string    // one line for operators, e.g. why it is not running
	// Restarts counts the times the manager brought the service back
	// after it exited on its own, since slipway last started it.
	Restarts int
}

// Manager runs the services of the current release.
type Manager interface {
	// Start starts the service. It returns a *PortHeldError when Port is
	// held by a process that is not this service, and an *ExitedError when
	// the service exits right after it started.
	Start(ctx context.Context, s Spec) error
	// Stop stops the service and waits until it is gone; it is not an
	// error when it is not running.
	Stop(ctx context.Context, s Spec) error
	// Status reports whether the service runs.
	Status(ctx context.Context, s Spec) (State, error)
	// Logs returns the last lines of the output of the service's latest
	// run (the one running, or the one that ended last), for error
	// messages: never an earlier run's.
	Logs(ctx context.Context, s Spec, lines int) (string, error)
}

var (
	// ErrPortHeld is matched (errors.Is) by every *PortHeldError.
	ErrPortHeld = errors.New("port held by another process")
	// ErrExited is matched by every *ExitedError.
	ErrExited = errors.New("service exited right after start")
	// ErrAlreadyRunning is returned by Start when the service still runs:
	// the caller must Stop it first.
	ErrAlreadyRunning = errors.New("service is already running")
	// ErrOwnerUnknown is returned by PortOwner when something listens on
	// the port but its process is not visible to this one.
	ErrOwnerUnknown = errors.New("port is held by a process that cannot be seen")
)

// PortHeldError is a service's port held by a process that is not the service.
type PortHeldError struct {
	Service string // the service that wanted the port
	Port    int
	PID     int    // 0 when the holder cannot be seen (another user's, when not root)
	Command string // the holder's command line
}

func (e *PortHeldError) Error() string {
	holder := "a process slipway cannot see (run `ss -ltnp` as root to find it)"
	if e.PID > 0 {
		holder = fmt.Sprintf("pid %d (%s)", e.PID, shorten(e.Command, 200))
	}
	return fmt.Sprintf("port %d is held by %s, not by slipway's %s service; stop that process or change services.%s.port",
		e.Port, holder, e.Service, e.Service)
}

// Unwrap makes errors.Is(err, ErrPortHeld) true.
func (e *PortHeldError) Unwrap() error { return ErrPortHeld }

// ExitedError is a service that exited right after it was started.
type ExitedError struct {
	Service  string
	ExitCode int            // -1 when a signal ended it
	Signal   syscall.Signal // the signal that ended it, if one did
	Log      string         // the last lines of its output
	LogFile  string         // where its whole output is, when it is a file
}

func (e *ExitedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "service %s exited right after start", e.Service)
	if e.ExitCode >= 0 {
		fmt.Fprintf(&b, " with exit status %d", e.ExitCode)
	} else if e.Signal != 0 {
		fmt.Fprintf(&b, " on signal %s", e.Signal)
	}
	if e.LogFile != "" {
		fmt.Fprintf(&b, " (log: %s)", e.LogFile)
	}
	log := strings.TrimRight(e.Log, "\n")
	if log == "" {
		b.WriteString("; it printed nothing")
		return b.String()
	}
	b.WriteString("; its last output:")
	for line := range strings.SplitSeq(log, "\n") {
		b.WriteString("\n    ")
		b.WriteString(line)
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrExited) true.
func (e *ExitedError) Unwrap() error { return ErrExited }

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
