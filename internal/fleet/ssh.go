package fleet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SSH runs commands on hosts with the system's ssh client, so that the
// operator's ~/.ssh/config, ProxyJump, agent and keys apply. One master
// connection per host (ControlMaster) carries every command; the number
// of connections being set up at once is capped, since sshd drops bursts
// beyond its MaxStartups.
type SSH struct {
	// ControlDir holds the master connections' sockets; ssh names each by
	// a hash of the destination (%C), which keeps the path short.
	ControlDir     string
	ConnectTimeout time.Duration
	Persist        time.Duration
	starts         chan struct{}
	mu             sync.Mutex
	up             map[string]bool // hosts with a master connection
}

// NewSSH returns a transport whose sockets live in dir, with at most
// connections set up at once, whose master connections stay open for
// persist after their last command (for the next command to use).
func NewSSH(dir string, connections int, persist time.Duration) (*SSH, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	return &SSH{ControlDir: dir, ConnectTimeout: 10 * time.Second, Persist: max(persist, time.Second),
		starts: make(chan struct{}, max(connections, 1)), up: map[string]bool{}}, nil
}

// options are ssh's options for h, without the destination.
func (s *SSH) options(h *Host) []string {
	args := []string{
		"-o", "BatchMode=yes",
		"-o", "ConnectTimeout=" + strconv.Itoa(int(s.ConnectTimeout.Seconds())),
		"-o", "ControlMaster=auto",
		"-o", "ControlPath=" + s.ControlDir + "/%C",
		"-o", "ControlPersist=" + strconv.Itoa(int(s.Persist.Seconds())),
		"-o", "ServerAliveInterval=10",
	}
	if h.Port != 0 {
		args = append(args, "-p", strconv.Itoa(h.Port))
	}
	if h.User != "" {
		args = append(args, "-l", h.User)
	}
	if h.Key != "" {
		args = append(args, "-i", h.Key)
	}
	return append(args, h.SSHArgs...)
}

// RemoteCommand is argv as one command line for the remote shell: ssh
// passes a single string, so every word is quoted. A word with a NUL,
// which no shell can be given, is refused.
func RemoteCommand(argv []string) (string, error) {
	words := make([]string, len(argv))
	for i, a := range argv {
		q, err := shellQuote(a)
		if err != nil {
			return "", err
		}
		words[i] = q
	}
	return strings.Join(words, " "), nil
}

// shellQuote quotes s as one word for any POSIX shell: in single quotes,
// where nothing is special, with each ' written as '\”. Words of only
// safe characters are left as they are.
func shellQuote(s string) (string, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return "", fmt.Errorf("argument %q cannot be passed to a remote shell: it holds a NUL", s)
	}
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./:=@%+,-") == "" {
		return s, nil
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'", nil
}

// Command is the ssh command that runs argv on h.
func (s *SSH) Command(ctx context.Context, h *Host, argv ...string) (*exec.Cmd, error) {
	line, err := RemoteCommand(argv)
	if err != nil {
		return nil, err
	}
	args := append(s.options(h), "--", h.Dest, line)
	cmd := exec.CommandContext(ctx, "ssh", args...)
	cmd.WaitDelay = 5 * time.Second
	return cmd, nil
}

// GitSSH is the value of GIT_SSH_COMMAND that reaches h as this transport
// does (git adds the destination and its own command).
func (s *SSH) GitSSH(h *Host) string {
	words := []string{"ssh"}
	for _, o := range s.options(h) {
		q, _ := shellQuote(o) // options hold no NUL: they come from argv
		words = append(words, q)
	}
	return strings.Join(words, " ")
}

// RemoteError is a remote command that failed.
type RemoteError struct {
	Host   string
	Argv   []string
	Code   int // its exit code; 255 is ssh's own failure to connect
	Stderr string
}

func (e *RemoteError) Error() string {
	msg := strings.TrimSpace(lastLines(e.Stderr, 5))
	if e.Code == 255 {
		return fmt.Sprintf("%s: ssh: %s", e.Host, msg)
	}
	return fmt.Sprintf("%s: %s exited %d: %s", e.Host, e.Argv[0], e.Code, msg)
}

// Run runs argv on h with stdin, and returns what it printed on stdout.
// Each line of stdout is also given to line, when set, as it comes.
func (s *SSH) Run(ctx context.Context, h *Host, stdin io.Reader, line func(string), argv ...string) (string, error) {
	cmd, err := s.Command(ctx, h, argv...)
	if err != nil {
		return "", err
	}
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stderr = &errb
	if line != nil {
		cmd.Stdout = &lineWriter{buf: &out, line: line}
	} else {
		cmd.Stdout = &out
	}
	if err := s.begin(ctx, h); err != nil {
		return "", err
	}
	err = cmd.Run()
	s.end(h, err)
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return out.String(), &RemoteError{Host: h.Name, Argv: argv, Code: exit.ExitCode(), Stderr: errb.String()}
		}
		return out.String(), fmt.Errorf("%s: ssh: %w", h.Name, err)
	}
	return out.String(), nil
}

// begin takes a start slot when h has no master connection yet.
func (s *SSH) begin(ctx context.Context, h *Host) error {
	s.mu.Lock()
	up := s.up[h.Name]
	s.mu.Unlock()
	if up {
		return nil
	}
	select {
	case s.starts <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *SSH) end(h *Host, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.up[h.Name] {
		return
	}
	var exit *exec.ExitError
	if err == nil || (errors.As(err, &exit) && exit.ExitCode() != 255) {
		s.up[h.Name] = true // the master connection now stands
	}
	<-s.starts
}

// Disconnect ends the hosts' master connections, whichever command set
// them up.
func (s *SSH) Disconnect(hosts []*Host) {
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Go(func() {
			args := append(s.options(h), "-O", "exit", "--", h.Dest)
			_ = exec.Command("ssh", args...).Run() // no master: nothing to end
		})
	}
	wg.Wait()
	s.mu.Lock()
	clear(s.up)
	s.mu.Unlock()
}

// lineWriter hands each complete line to line as it is written.
type lineWriter struct {
	buf  *bytes.Buffer
	rest []byte
	line func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	w.rest = append(w.rest, p...)
	for {
		i := bytes.IndexByte(w.rest, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.line(string(w.rest[:i]))
		w.rest = w.rest[i+1:]
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
