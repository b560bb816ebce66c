// Package run is the one way slipway starts external commands: explicit argv
// and environment, a timeout that kills the whole process group, and errors
// that name the command, its exit code and the tail of its output.
package run

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Cmd is one command to run.
type Cmd struct {
	Argv []string
	Dir  string
	// Env is the complete environment; nil means a minimal one (see BaseEnv).
	Env []string
	// Timeout bounds the run; 0 means only ctx bounds it.
	Timeout time.Duration
	// Output, when set, receives stdout and stderr as they are written.
	Output io.Writer
	// Stdin, when set, is the command's standard input.
	Stdin      io.Reader
	Credential *syscall.Credential
	// Display replaces Argv in errors when the argv holds something that
	// must not be shown (it never should; kept for shell commands).
	Display string
	// Track, when set, records the command while it runs, so that what it
	// leaves behind is found even after slipway is killed (Tracker.Sweep).
	// Everything it started, in its process group or not, ends with it.
	Track *Tracker
}

// tailSize is how much of a command's output an error keeps.
const tailSize = 4 << 10

// Error is a command that could not start, failed, or timed out.
type Error struct {
	Command  string
	ExitCode int // -1 when it did not exit on its own
	TimedOut bool
	Tail     string // the last lines of its output
	Err      error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "`%s`", e.Command)
	switch {
	case e.TimedOut:
		b.WriteString(" timed out")
	case e.ExitCode >= 0:
		fmt.Fprintf(&b, " exited with code %d", e.ExitCode)
	default:
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// WithOutput returns err with the last n lines of what the command printed
// appended, when err is an *Error with output; else err as it is.
func WithOutput(err error, n int) error {
	var re *Error
	if errors.As(err, &re) && strings.TrimSpace(re.Tail) != "" {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(LastLines(re.Tail, n)))
	}
	return err
}

// Output returns the command's stdout; stderr is kept for the error.
func Output(ctx context.Context, c Cmd) (string, error) {
	var out bytes.Buffer
	c2 := c
	c2.Output = nil
	err := c2.start(ctx, &out, nil)
	return out.String(), err
}

// Run runs the command, sending its output to c.Output.
func Run(ctx context.Context, c Cmd) error {
	return c.start(ctx, nil, c.Output)
}

func (c Cmd) start(ctx context.Context, stdout *bytes.Buffer, both io.Writer) error {
	if len(c.Argv) == 0 {
		return errors.New("run: empty command")
	}
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	tail := &tailWriter{max: tailSize}
	cmd := exec.CommandContext(ctx, c.Argv[0], c.Argv[1:]...)
	cmd.Dir = c.Dir
	cmd.Env = c.Env
	if cmd.Env == nil {
		cmd.Env = BaseEnv()
	}
	env, tr, err := c.track(cmd.Env)
	if err != nil {
		return &Error{Command: c.display(), ExitCode: -1, Err: err}
	}
	cmd.Env = env
	cmd.Stdin = c.Stdin
	// Its own group, so a timeout kills the command's children too; and
	// killed with slipway, so a build or migration never outlives a
	// kill -9 of the deploy that ran it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: c.Credential, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error {
		// The whole group: a shell's children must not outlive a timeout.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 2 * time.Second
	var errOut io.Writer = tail
	if both != nil {
		errOut = io.MultiWriter(tail, both)
	}
	if stdout != nil {
		cmd.Stdout = stdout
	} else {
		cmd.Stdout = errOut
	}
	cmd.Stderr = errOut
	err = cmd.Start()
	if err == nil {
		tr.started(cmd.Process.Pid)
		err = cmd.Wait()
	}
	tr.done()
	if err == nil {
		return nil
	}
	e := &Error{Command: c.display(), ExitCode: -1, Tail: tail.String(), Err: err}
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		e.TimedOut = true
		e.Err = context.DeadlineExceeded
	} else if ctx.Err() != nil {
		e.Err = ctx.Err()
	} else if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		e.ExitCode = ee.ExitCode()
	}
	return e
}

func (c Cmd) display() string {
	if c.Display != "" {
		return c.Display
	}
	return strings.Join(c.Argv, " ")
}

// BaseEnv is the environment commands get when none is given: enough to find
// programs and behave predictably, nothing inherited that could leak secrets.
func BaseEnv() []string {
	return []string{
		"PATH=" + DefaultPath(),
		"LC_ALL=C",
		"HOME=" + homeDir(),
	}
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	max int
	buf []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*t.max {
		cut := len(t.buf) - t.max
		if t.buf[cut-1] != '\n' {
			// Start the kept tail at a line, not in the middle of one.
			if i := bytes.IndexByte(t.buf[cut:], '\n'); i >= 0 {
				cut += i + 1
			}
		}
		t.buf = append(t.buf[:0], t.buf[cut:]...)
	}
	return len(p), nil
}

func (t *tailWriter) String() string {
	b := t.buf
	if len(b) > t.max {
		b = b[len(b)-t.max:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}

// LastLines returns at most n trailing lines of s.
func LastLines(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
